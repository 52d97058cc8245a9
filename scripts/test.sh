#!/usr/bin/env bash
# The test suite (the README's test command). Runs from the repository root.
#
#   scripts/test.sh            # everything: fmt, clippy, every test, k6 smoke, schemathesis, fuzz, CDK + docker
#   scripts/test.sh --quick    # fmt, clippy and the fast tests (nextest profile `quick`: no
#                              # moto, browser, chaos or whole-corpus tests, no k6/fuzz/CDK)
#
# Needs: the Rust toolchain of rust-toolchain.toml, cargo-nextest, the apt packages in
# .ci/apt-packages.txt, Node 20 + npm, and the Python tools in .ci/requirements.txt on PATH;
# the full suite also needs cargo-fuzz. `.ci/run` installs all of them on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
[[ "${1:-}" == "--quick" ]] && quick=1
started=$SECONDS
step() { printf '== %s (%ds)\n' "$1" $((SECONDS - started)); }

step "cargo fmt --check"
cargo fmt --all --check
step "cargo clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings

if ((quick)); then
  step "cargo nextest (quick profile)"
  cargo nextest run --workspace --all-features --no-fail-fast --profile quick
  step "done (quick)"
  exit 0
fi

step "dashboard browser test: npm ci (playwright-core; chromium comes from apt)"
(cd workers/cli/tests/browser && npm ci --no-audit --no-fund --loglevel=error)
step "cargo nextest"
cargo nextest run --workspace --all-features --no-fail-fast
step "k6 smoke (loadtest/) against a prism dev it starts"
# The `prism` binary nextest just built (same profile and features): no second build.
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
PRISM_BIN="$target_dir/debug/prism" loadtest/run-local.sh smoke
step "schemathesis: the API against its OpenAPI document, on a prism dev it starts"
PRISM_BIN="$target_dir/debug/prism" scripts/schemathesis.sh
# Robustness: every fuzz target in fuzz/ for a bounded time (needs cargo-fuzz; see .ci/run).
step "fuzz (each target ${PRISM_FUZZ_SECS:-60} s; fails on a crash)"
scripts/fuzz.sh
step "cdk + docker"
scripts/test-cdk.sh
step "done"
