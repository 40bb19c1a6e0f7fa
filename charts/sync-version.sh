#!/usr/bin/env bash
# The workspace version (root Cargo.toml, [workspace.package] version) is the
# one version of the project; the chart's version and appVersion follow it
# (and so do the default image tags, which are the appVersion).
#   charts/sync-version.sh          copy the workspace version into Chart.yaml
#   charts/sync-version.sh 0.2.0    bump the workspace version first, then copy
# e2e/chart/test_version.py fails when they differ.
set -euo pipefail
cd "$(dirname "$0")/.."
chart=charts/pushcluster-operator/Chart.yaml
semver='^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$'

if [ $# -gt 0 ]; then
  [[ "$1" =~ $semver ]] || { echo "not a semantic version: $1" >&2; exit 2; }
  # Only the version line of the [workspace.package] table.
  sed -i -E "/^\[workspace\.package\]/,/^\[/ s/^version = \"[^\"]*\"/version = \"$1\"/" Cargo.toml
fi

version=$(python3 -c 'import tomllib; print(tomllib.load(open("Cargo.toml", "rb"))["workspace"]["package"]["version"])')
[[ "$version" =~ $semver ]] || { echo "workspace version is not semver: $version" >&2; exit 1; }
sed -i -E "s/^version: .*/version: ${version}/; s/^appVersion: .*/appVersion: \"${version}\"/" "$chart"
echo "chart $chart: version $version, appVersion \"$version\""
