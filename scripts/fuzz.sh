#!/usr/bin/env bash
# Run every fuzz target in fuzz/ for a bounded time; exit non-zero when one finds a crash, a
# failed assertion, a timeout or a memory blow-up (libFuzzer writes the input to
# $CARGO_TARGET_DIR/fuzz-artifacts/TARGET/ and prints how to reproduce it).
#
#   scripts/fuzz.sh                   # every target, PRISM_FUZZ_SECS (60) seconds each
#   scripts/fuzz.sh image_probe 600   # one target, ten minutes
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`); the nightly-only flags it passes are
# accepted by the stable compiler through RUSTC_BOOTSTRAP=1. Seeds: fuzz/corpus/TARGET (kept in
# the repository); inputs the fuzzer finds go to a scratch corpus beside the build.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

export RUSTC_BOOTSTRAP=1
base="${CARGO_TARGET_DIR:-$PWD/target}"
target_dir="$base/fuzz"
secs="${2:-${PRISM_FUZZ_SECS:-60}}"
if [[ $# -ge 1 ]]; then targets=("$1"); else targets=(event_parse key_decode upload_policy image_probe); fi

command -v cargo-fuzz >/dev/null || { echo "fuzz: cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2; exit 1; }

# One build for every target (release, debug assertions on, AddressSanitizer). cargo-fuzz builds
# with one codegen unit per crate unless told otherwise; 16 lets LLVM use both cores inside the
# large crates, for a much faster cold build. `run` gets the same flags, or it rebuilds.
build_flags=(--release --debug-assertions --codegen-units 16 --target-dir "$target_dir")
cargo fuzz build "${build_flags[@]}"

status=0
for t in "${targets[@]}"; do
  scratch="$base/fuzz-corpus/$t"
  artifacts="$base/fuzz-artifacts/$t"
  mkdir -p "$scratch" "$artifacts"
  echo "== fuzz $t (${secs}s)"
  if ! cargo fuzz run "$t" "${build_flags[@]}" \
      "$scratch" "corpus/$t" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$artifacts/" 2>&1 | tail -n 40; then
    echo "fuzz: $t FAILED; reproduce with: RUSTC_BOOTSTRAP=1 cargo fuzz run $t $artifacts/<crash-file>" >&2
    status=1
  fi
done
exit $status
