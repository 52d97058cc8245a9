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
echo "== dashboard browser test: npm ci (playwright-core; chromium comes from apt)"
(cd workers/cli/tests/browser && npm ci --no-audit --no-fund --loglevel=error)
echo "== cargo nextest"
cargo nextest run --workspace --all-features --no-fail-fast
echo "== k6 smoke (loadtest/) against a prism dev it starts"
loadtest/run-local.sh smoke
# Robustness: every fuzz target in fuzz/ for a bounded time (needs cargo-fuzz; see .ci/run).
echo "== fuzz (each target ${PRISM_FUZZ_SECS:-60} s; fails on a crash)"
scripts/fuzz.sh
echo "== cdk + docker"
scripts/test-cdk.sh
