#!/usr/bin/env bash
# The whole test suite (the README's test command). Runs from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings
echo "== cargo nextest"
cargo nextest run --workspace --all-features --no-fail-fast
