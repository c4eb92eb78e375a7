# syntax=docker/dockerfile:1.7
#
# mnemom-gateway container image.
#
#   docker build -t ghcr.io/mnemom/gateway:0.1.0 .
#   docker run --rm -p 8787:8787 --read-only --tmpfs /tmp --tmpfs /var/lib/mnemom \
#     --tmpfs /var/cache/mnemom/plugins ghcr.io/mnemom/gateway:0.1.0
#
# The default provider adapters (WebAssembly components) are built for wasm32-wasip2 by the host's
# build script and embedded in the binary; copies are exported to /usr/share/mnemom/plugins as a
# starting point for your own (see docs/plugins.md). The chart (charts/mnemom-gateway) runs this
# image as user 65534 with a read-only root filesystem and emptyDir volumes at /tmp, MNEMOM_DATA_DIR
# and MNEMOM_PLUGIN_CACHE_DIR; it always sets `command: [/usr/local/bin/mnemom-gateway]` and
# `args: [serve]` (or `[migrate]` for the migration Job).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---------------------------------------------------------------------------------------- builder
FROM docker.io/library/rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder
WORKDIR /src
# The plugins are compiled for this target by host/build.rs.
RUN rustup target add wasm32-wasip2
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p mnemom-gateway \
 && install -D -m 0755 target/release/mnemom-gateway /out/usr/local/bin/mnemom-gateway \
 && /out/usr/local/bin/mnemom-gateway --version \
 && /out/usr/local/bin/mnemom-gateway plugins export /out/usr/share/mnemom/plugins \
 && install -d -m 0755 -o 65534 -g 65534 \
      /out/var/lib/mnemom /out/var/cache/mnemom/plugins /out/etc/mnemom/plugins

# ---------------------------------------------------------------------------------------- runtime
# glibc, libgcc_s and /bin/sleep (the chart's preStop hook); nothing else is needed: TLS roots
# are compiled in (webpki-roots).
FROM docker.io/library/debian:${DEBIAN_RELEASE}-slim AS runtime
COPY --from=builder /out/ /
ENV PORT=8787 \
    MNEMOM_DATA_DIR=/var/lib/mnemom \
    MNEMOM_PLUGIN_CACHE_DIR=/var/cache/mnemom/plugins
# A read-only working directory: the gateway writes only to MNEMOM_DATA_DIR, MNEMOM_PLUGIN_CACHE_DIR and /tmp.
WORKDIR /
USER 65534:65534
EXPOSE 8787
STOPSIGNAL SIGTERM
LABEL org.opencontainers.image.title="mnemom-gateway" \
      org.opencontainers.image.description="Self-hosted LLM gateway with WebAssembly adapters and AIP integrity checks" \
      org.opencontainers.image.source="https://github.com/mnemom/mnemom-gateway" \
      org.opencontainers.image.licenses="Apache-2.0"
ENTRYPOINT ["/usr/local/bin/mnemom-gateway"]
CMD ["serve"]
