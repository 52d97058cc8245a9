#!/usr/bin/env bash
# The whole test suite (the README's test command). Runs from the repository root.
# Needs: Rust (cargo, nextest), the apt packages in .ci/apt-packages.txt, Node 20 + npm, and the
# Python tools in .ci/requirements.txt. `.ci/run` installs them on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings
echo "== cargo nextest"
cargo nextest run --workspace --all-features --no-fail-fast
# Robustness: every fuzz target in fuzz/ for a bounded time (needs cargo-fuzz; see .ci/run).
echo "== fuzz (each target ${PRISM_FUZZ_SECS:-60} s; fails on a crash)"
scripts/fuzz.sh
echo "== cdk + docker"
scripts/test-cdk.sh
