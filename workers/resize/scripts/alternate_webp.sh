#!/usr/bin/env bash
# WebP-only rounds alternating sharp and prism on one machine (see workers/resize/README.md,
# "Latest figures"). Per round: sharp, prism with the earlier runner (--schedule threads
# --order name), prism with the defaults, prism with the defaults on the corpus without
# iphone_7.heic (the files sharp reads). Each program runs in its own session whose scheduler
# autogroup is raised to nice -20 (needs root). Prints one line per run:
#   LABEL wall=S cpu=CPU-S rss=MB images_per_s=N
# Usage: workers/resize/scripts/alternate_webp.sh [ROUNDS] (from the repository root; needs
# the release build in $CARGO_TARGET_DIR or target/, and sharp in $SHARP_DIR or /tmp/sharpbench)
set -euo pipefail
rounds=${1:-6}
corpus=$(cd ../shared/corpus && pwd)
bin=${CARGO_TARGET_DIR:-target}/release/prism-resize
sharp_dir=${SHARP_DIR:-/tmp/sharpbench}
script=$(cd ../shared/bench && pwd)/sharp-baseline.mjs
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/noheic"
for f in "$corpus"/*; do
  [ "$(basename "$f")" = iphone_7.heic ] || ln -s "$f" "$work/noheic/"
done
prio() { setsid -w bash -c 'echo -20 > /proc/$$/autogroup; exec "$@"' prio "$@"; }
report() {
  awk -v ips="$(grep -o '"images_per_s": *[0-9.]*' "$work/out.json" | grep -o '[0-9.]*$')" \
    '{printf "%s wall=%s cpu=%.2f rss=%dMB images_per_s=%s\n", $1, $2, $3 + $4, $5 / 1024, ips}' "$work/time.txt"
}
for _ in $(seq "$rounds"); do
  (cd "$sharp_dir" && prio /usr/bin/time -f "sharp %e %U %S %M" -o "$work/time.txt" \
    node "$script" "$corpus" "$work/sharp" --webp-only --quiet > "$work/out.json")
  report
  for run in "old|$corpus|--schedule threads --order name" "now|$corpus|" "noheic|$work/noheic|"; do
    IFS='|' read -r label dir extra <<< "$run"
    # shellcheck disable=SC2086
    prio /usr/bin/time -f "$label %e %U %S %M" -o "$work/time.txt" \
      "$bin" bench --corpus "$dir" --out "$work/out-$label" --formats webp $extra > "$work/out.json" 2>/dev/null
    report
  done
done
