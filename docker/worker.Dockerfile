# syntax=docker/dockerfile:1
#
# One image per prism binary, from the repository root:
#
#   docker build -f docker/worker.Dockerfile --build-arg BIN=prism-resize -t prism-resize .
#
# BIN is one of prism-api, prism-resize, prism-archiver, prism-metadata (each is the Cargo
# package and the binary of the same name). `cdk deploy` builds the same way (cdk/lib/stacks/
# compute-stack.ts: ContainerImage.fromAsset with buildArgs BIN and an exclude list standing in
# for a root .dockerignore). See docker/README.md.
#
# Stages: chef (toolchain + native build deps) → planner (recipe.json: the dependency graph only)
# → builder (cook dependencies: a layer that survives source edits; then the release build)
# → runtime (debian slim, CA certificates, non-root, the one binary as PID 1).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
# nasm: rav1e/AVIF assembly; cmake + clang: aws-lc-rs and C codec crates; pkg-config + -dev:
# link libheif (HEIF/HEIC decode) and dav1d (AVIF decode) for prism-resize.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends nasm cmake clang pkg-config libheif-dev libdav1d-dev \
    && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --locked --version 0.1.77
WORKDIR /app

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
ARG BIN
RUN test -n "${BIN}" || (echo "build with --build-arg BIN=<prism binary>" >&2 && exit 1)
COPY --from=planner /app/recipe.json recipe.json
# Dependencies only: this layer is rebuilt when Cargo.lock or a manifest changes, not on edits.
RUN cargo chef cook --release --locked --recipe-path recipe.json -p "${BIN}" --bin "${BIN}"
COPY . .
# scripts/test-cdk.sh checks that this line stays the documented build command.
RUN cargo build --release --locked -p ${BIN} --bin ${BIN}

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
ARG BIN
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# CA certificates for TLS to AWS APIs. libheif1 + libdav1d6 only for prism-resize: the other three
# binaries do not link them, and leaving them out keeps those images smaller and their CVE
# surface to what they use. Versions float with the bookworm security updates on purpose (DL3008).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && if [ "${BIN}" = "prism-resize" ]; then \
         apt-get install -y --no-install-recommends libheif1 libdav1d6; \
       fi \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin prism
COPY --from=builder /app/target/release/${BIN} /usr/local/bin/${BIN}
# A fixed name for ENTRYPOINT/HEALTHCHECK (exec form does not expand build args). Fail the build
# if the binary needs a shared library this stage lacks, rather than at the first task start.
RUN ln -s /usr/local/bin/${BIN} /usr/local/bin/prism-entrypoint \
    && ! ldd /usr/local/bin/${BIN} | grep 'not found'
USER 10001:10001
# 8080: prism-api (API, /healthz, /metrics); 9090: workers (/healthz, /metrics).
EXPOSE 8080 9090
# The binary GETs its own /healthz and exits 0 or 1 (ECS uses the same command).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/prism-entrypoint", "healthcheck"]
# Exec form: the binary is PID 1 and receives SIGTERM itself (drains, then exits 0).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/prism-entrypoint"]
