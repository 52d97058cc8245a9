# syntax=docker/dockerfile:1
#
# One image holding all four prism binaries, built once, from the repository root:
#
#   docker build -f docker/worker.Dockerfile -t prism .
#   docker build -f docker/worker.Dockerfile --platform linux/arm64 -t prism:arm64 .
#   docker run --rm prism                                # prism-api (the default CMD)
#   docker run --rm prism /usr/local/bin/prism-resize    # any other binary
#
# `cdk deploy` builds it exactly once (cdk/lib/stacks/compute-stack.ts: one
# ContainerImage.fromAsset for the platform of `-c cpuArchitecture`, with an exclude list
# standing in for a root .dockerignore); every ECS container runs it with its own binary as
# `command`. See docker/README.md.
#
# Stages: chef (toolchain + native build deps) → planner (recipe.json: the dependency graph only)
# → builder (cook dependencies once for all four binaries: a layer that survives source edits;
# then one release build of the four) → runtime (debian slim, CA certificates, the shared
# libraries the binaries link, non-root).
#
# No GPL encoder: libheif is compiled from the sources embedded in libheif-sys, whose CMake build
# enables every codec it *finds* (x265 included). The chef stage installs the decoders' -dev
# packages one by one instead of libheif-dev (which depends on libx265-dev), the build fails if
# libx265-dev is present, and the builder fails if a binary links libx265 or holds x265 symbols.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# Builder and runtime must use the same Debian release: the runtime installs the packages that own
# the shared libraries the binaries were linked against, by name and soname.
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# nasm: rav1e/AVIF assembly; cmake + clang: aws-lc-rs and the C codecs built from source;
# pkg-config + -dev: the libheif codecs prism-resize uses (libde265 HEVC decoding, dav1d and aom
# AV1). Never libheif-dev or libx265-dev: see the header.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends nasm cmake clang pkg-config libde265-dev libdav1d-dev libaom-dev \
    && rm -rf /var/lib/apt/lists/* \
    && if dpkg-query -W -f='${Status}' libx265-dev 2>/dev/null | grep -q 'install ok installed'; then \
         echo "libx265-dev is installed: the embedded libheif would link the GPL x265 encoder" >&2; exit 1; \
       fi
RUN cargo install cargo-chef --locked --version 0.1.77
WORKDIR /app

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY --from=planner /app/recipe.json recipe.json
# The build configuration (C/C++ dependencies compiled with clang), so the cooked dependencies
# are the ones the final build links.
COPY .cargo .cargo
# Dependencies only, once for all four binaries: this layer is rebuilt when Cargo.lock or a
# manifest changes, not on edits.
RUN cargo chef cook --release --locked --recipe-path recipe.json -p prism-api -p prism-resize -p prism-archiver -p prism-metadata
COPY . .
# scripts/test-cdk.sh checks that this line stays the documented build command.
RUN cargo build --release --locked -p prism-api -p prism-resize -p prism-archiver -p prism-metadata
# No GPL encoder in any binary: neither a libx265 dependency nor x265 code linked statically.
RUN for bin in prism-api prism-resize prism-archiver prism-metadata; do \
      if ldd "target/release/${bin}" | grep -qi x265 || nm -D "target/release/${bin}" 2>/dev/null | grep -qi ' x265_' \
         || nm "target/release/${bin}" 2>/dev/null | grep -qi ' x265_'; then \
        echo "${bin} links the x265 encoder" >&2; exit 1; \
      fi; \
    done
# The Debian packages owning every shared library the binaries link (ldd → dpkg -S; /lib and
# /usr/lib are the same directory on merged-/usr Debian, so try both spellings). prism-resize
# brings libdav1d6, libde265-0, libaom3, libstdc++6; the others little beyond libc.
RUN for bin in prism-api prism-resize prism-archiver prism-metadata; do ldd "target/release/${bin}"; done \
    | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u \
    | while read -r lib; do \
        dpkg -S "$lib" 2>/dev/null || dpkg -S "/usr${lib}" 2>/dev/null || dpkg -S "${lib#/usr}" 2>/dev/null \
          || { echo "no Debian package owns $lib" >&2; exit 1; }; \
      done \
    | cut -d: -f1 | sort -u > runtime-packages.txt \
    && cat runtime-packages.txt \
    && if grep -qi x265 runtime-packages.txt; then echo "x265 in the runtime packages" >&2; exit 1; fi

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY --from=builder /app/runtime-packages.txt /tmp/runtime-packages.txt
# CA certificates for TLS to AWS APIs, plus exactly the shared-library packages the binaries link
# (computed in the builder). Versions float with the Debian security updates of the release on
# purpose (DL3008).
# hadolint ignore=DL3008
RUN apt-get update \
    && xargs --arg-file=/tmp/runtime-packages.txt apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin prism
COPY --from=builder /app/target/release/prism-api /app/target/release/prism-resize /app/target/release/prism-archiver /app/target/release/prism-metadata /usr/local/bin/
# Fail the build if a binary needs a shared library this stage lacks, rather than at the first
# task start.
RUN for bin in prism-api prism-resize prism-archiver prism-metadata; do \
      if ldd "/usr/local/bin/${bin}" | grep 'not found'; then exit 1; fi; \
    done
USER 10001:10001
# 8080: prism-api (API, /healthz, /metrics); 9090: workers (/healthz, /metrics). On one machine
# each worker has its own default metrics port; in a container every worker uses 9090.
ENV PRISM__METRICS__LISTEN_ADDR=0.0.0.0:9090
EXPOSE 8080 9090
# No HEALTHCHECK: it would have to name one binary. Each ECS container defines its own
# (`<binary> healthcheck`, which GETs the binary's own /healthz and exits 0 or 1).
STOPSIGNAL SIGTERM
# Exec form, no shell and no ENTRYPOINT: the binary named by the command is PID 1 and receives
# SIGTERM itself (drains, then exits 0). ECS sets the command per service.
CMD ["/usr/local/bin/prism-api"]
