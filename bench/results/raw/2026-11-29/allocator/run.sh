#!/usr/bin/env bash
# Allocator comparison: every candidate in turn, ROUNDS rounds (default 3), alternating.
#   run.sh BINDIR [OUTDIR]   # BINDIR holds push-server-{glibc,glibctrim,jemalloc,jemalloc-final,mimalloc}
# The binaries (release builds, copied from target/release/push-server):
#   glibc           cargo build --release -p push-server --no-default-features
#   jemalloc        --features jemalloc before its options were compiled in; with today's
#                   default build, _RJEM_MALLOC_CONF=background_thread:false,dirty_decay_ms:10000
#                   in the environment gives the same allocator settings
#   jemalloc-final  cargo build --release -p push-server   (the default)
#   mimalloc        cargo build --release -p push-server --features mimalloc
#   glibctrim       an experiment build, not kept: the glibc build whose main() first starts
#                   a thread calling libc::malloc_trim(0) every PUSH_EXP_TRIM_MS milliseconds
# Per candidate and round: push-loadgen suite (idle 5,000 + fan-out 10,000 clients at
# 20 publishes/s for 10 s; servers on CPU 0, generator on CPU 1), spike.py (5,000
# connections then all gone) and e2e/hostile/test_large_broadcast.py.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../../../.." && pwd)
bins=$1
out=${2:-$here}
rounds=${ROUNDS:-3}
candidates=${CANDIDATES:-"glibc jemalloc-bg-decay1s glibc-arena2 mimalloc glibc-arena2-trimthr jemalloc glibc-malloc_trim-1s mimalloc-purge0"}
export PATH=$root/.tools/bin:$PATH
cd "$root"
setup() { # label -> binary and env
  env_=()
  case $1 in
    glibc) bin=glibc ;;
    glibc-arena2) bin=glibc; env_=(MALLOC_ARENA_MAX=2) ;;
    glibc-arena2-trimthr) bin=glibc; env_=(MALLOC_ARENA_MAX=2 MALLOC_TRIM_THRESHOLD_=131072) ;;
    # a build of main.rs with a thread calling libc::malloc_trim(0) every PUSH_EXP_TRIM_MS
    glibc-malloc_trim-1s) bin=glibctrim; env_=(PUSH_EXP_TRIM_MS=1000) ;;
    jemalloc) bin=jemalloc ;;
    jemalloc-bg-decay1s) bin=jemalloc; env_=(_RJEM_MALLOC_CONF=background_thread:true,dirty_decay_ms:1000) ;;
    # the default build: jemalloc with background_thread:true,dirty_decay_ms:1000 compiled in
    jemalloc-final) bin=jemalloc-final ;;
    mimalloc) bin=mimalloc ;;
    mimalloc-purge0) bin=mimalloc; env_=(MIMALLOC_PURGE_DELAY=0) ;;
    *) echo "unknown candidate $1" >&2; exit 2 ;;
  esac
  bin=$bins/push-server-$bin
}
mkdir -p "$out"
for r in $(seq 1 "$rounds"); do
  for c in $candidates; do
    setup "$c"
    echo "== round $r: $c ($bin ${env_[*]:-})" >&2
    env "${env_[@]}" taskset -c 1 target/release/push-loadgen suite --server push --server-cpus 0 \
      --push-server-bin "$bin" --scenarios idle,fanout --idle-sizes 5000 --fanout-rates 20 \
      --step-secs 10 --out "$out/suite-$c-r$r.json" 2> "$out/suite-$c-r$r.log"
    env "${env_[@]}" python3 "$here/spike.py" "$bin" "$out/spike-$c-r$r.json" 5000 \
      > /dev/null 2> "$out/spike-$c-r$r.log"
    env "${env_[@]}" PUSH_SERVER_BIN="$bin" python3 -m pytest e2e/hostile/test_large_broadcast.py -q -s \
      -p no:cacheprovider > "$out/large-$c-r$r.txt" 2>&1 || true
    grep -h "large broadcast" "$out/large-$c-r$r.txt" >&2 || true
  done
done
