#!/usr/bin/env bash
# CPU per delivery, alternating: fan-out only (10,000 clients, 10 rooms), 20 and 40
# publishes/s, 10 s steps; servers on CPU 0, generator on CPU 1.
#   cpu.sh OUTDIR LABEL=BINARY[:ENV=VALUE] ...     ROUNDS (default 5)
set -euo pipefail
root=$(cd "$(dirname "$0")/../../../../.." && pwd)
out=$1; shift
mkdir -p "$out"
cd "$root"
for r in $(seq 1 "${ROUNDS:-5}"); do
  for side in "$@"; do
    label=${side%%=*}; rest=${side#*=}; bin=${rest%%:*}; env_=()
    [ "$rest" = "$bin" ] || env_=("${rest#*:}")
    echo "== round $r: $label ($bin ${env_[*]:-})" >&2
    env "${env_[@]}" taskset -c 1 target/release/push-loadgen suite --server push --server-cpus 0 \
      --push-server-bin "$bin" --scenarios fanout --fanout-rates 20,40 --step-secs 10 \
      --out "$out/cpu-$label-r$r.json" 2> "$out/cpu-$label-r$r.log"
  done
done
