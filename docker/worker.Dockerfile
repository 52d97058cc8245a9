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

# Builder and runtime must use the same Debian release: the runtime installs the packages that own
# the shared libraries the binary was linked against, by name and soname.
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# nasm: rav1e/AVIF assembly; cmake + clang: aws-lc-rs and the C codecs built from source;
# pkg-config + -dev: libheif's plugins (libde265, dav1d, aom) for prism-resize.
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
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG BIN
RUN test -n "${BIN}" || (echo "build with --build-arg BIN=<prism binary>" >&2 && exit 1)
COPY --from=planner /app/recipe.json recipe.json
# The build configuration (C/C++ dependencies compiled with clang), so the cooked dependencies
# are the ones the final build links.
COPY .cargo .cargo
# Dependencies only: this layer is rebuilt when Cargo.lock or a manifest changes, not on edits.
RUN cargo chef cook --release --locked --recipe-path recipe.json -p "${BIN}" --bin "${BIN}"
COPY . .
# scripts/test-cdk.sh checks that this line stays the documented build command.
RUN cargo build --release --locked -p ${BIN} --bin ${BIN}
# The Debian packages owning every shared library the binary links (ldd → dpkg -S; /lib and
# /usr/lib are the same directory on merged-/usr Debian, so try both spellings). prism-resize
# gets libdav1d6, libde265-0, libaom3, …; the other binaries little beyond libc.
RUN ldd "target/release/${BIN}" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' \
    | while read -r lib; do \
        dpkg -S "$lib" 2>/dev/null || dpkg -S "/usr${lib}" 2>/dev/null || dpkg -S "${lib#/usr}" 2>/dev/null \
          || { echo "no Debian package owns $lib" >&2; exit 1; }; \
      done \
    | cut -d: -f1 | sort -u > runtime-packages.txt \
    && cat runtime-packages.txt

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
ARG BIN
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY --from=builder /app/runtime-packages.txt /tmp/runtime-packages.txt
# CA certificates for TLS to AWS APIs, plus exactly the shared-library packages this binary links
# (computed in the builder): the resize image gets its codec libraries, the other three stay
# minimal. Versions float with the Debian security updates of the release on purpose (DL3008).
# hadolint ignore=DL3008
RUN apt-get update \
    && xargs --arg-file=/tmp/runtime-packages.txt apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin prism
COPY --from=builder /app/target/release/${BIN} /usr/local/bin/${BIN}
# A fixed name for ENTRYPOINT/HEALTHCHECK (exec form does not expand build args). Fail the build
# if the binary needs a shared library this stage lacks, rather than at the first task start.
RUN ln -s /usr/local/bin/${BIN} /usr/local/bin/prism-entrypoint \
    && ! ldd /usr/local/bin/${BIN} | grep 'not found'
USER 10001:10001
# 8080: prism-api (API, /healthz, /metrics); 9090: workers (/healthz, /metrics). On one machine
# each worker has its own default metrics port; in a container every worker uses 9090.
ENV PRISM__METRICS__LISTEN_ADDR=0.0.0.0:9090
EXPOSE 8080 9090
# The binary GETs its own /healthz and exits 0 or 1 (ECS uses the same command).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/prism-entrypoint", "healthcheck"]
# Exec form: the binary is PID 1 and receives SIGTERM itself (drains, then exits 0).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/prism-entrypoint"]
