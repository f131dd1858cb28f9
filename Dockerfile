# syntax=docker/dockerfile:1

# order-service image: built with Rust on Debian bookworm, run on distroless (glibc, no
# shell, no package manager) as the fixed non-root user 65532.
#
#   docker build -t order-service .
#   docker buildx build --platform linux/amd64,linux/arm64 -t USER/order-service --push .
#
# Multi-arch: each platform is compiled natively in its own builder (under QEMU when it
# is not the host's), with no cross-compilation toolchain; see docs/deployment.md.

ARG RUST_VERSION=1.95

########################################################################## planner
# The workspace's manifests and lockfile, with stand-in sources for every member: all
# that the dependency layer below is built from. It is rebuilt on every change, but
# its output only changes with a Cargo.toml or Cargo.lock, so the layer that copies it
# stays cached otherwise. Works for any set of workspace members.
FROM rust:${RUST_VERSION}-bookworm AS planner
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
COPY . .
RUN mkdir -p /skeleton \
 && cp Cargo.lock /skeleton/ \
 && find . -name Cargo.toml -not -path './target/*' -print0 | while IFS= read -r -d '' manifest; do \
      dir=$(dirname "$manifest"); \
      mkdir -p "/skeleton/$dir/src"; \
      cp "$manifest" "/skeleton/$dir/"; \
      if [[ -f "$dir/src/main.rs" ]]; then echo 'fn main() {}' > "/skeleton/$dir/src/main.rs"; fi; \
      if [[ -f "$dir/src/lib.rs" ]]; then : > "/skeleton/$dir/src/lib.rs"; fi; \
      for bin in "$dir"/src/bin/*.rs; do \
        if [[ -f "$bin" ]]; then mkdir -p "/skeleton/$dir/src/bin"; echo 'fn main() {}' > "/skeleton/$bin"; fi; \
      done; \
    done

############################################################################ build
FROM rust:${RUST_VERSION}-bookworm AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0 \
    CARGO_NET_RETRY=5

# 1. Dependencies only, compiled against the stand-ins.
COPY --from=planner /skeleton/ ./
RUN cargo fetch --locked \
 && cargo build --release --locked --bin order-service

# 2. The service itself. migrations/ is embedded at compile time (sqlx::migrate!). The
#    touch makes cargo rebuild the workspace crates over the stand-ins even when the
#    copied files are older than them. The release profile keeps line tables
#    (backtraces with file:line); compressing them shrinks the binary about 2.5x and
#    backtraces still read them.
COPY . .
RUN find . -path ./target -prune -o -name '*.rs' -exec touch {} + \
 && cargo build --release --locked --bin order-service \
 && mkdir -p /out/data \
 && objcopy --compress-debug-sections=zlib target/release/order-service /out/order-service

############################################################################ runtime
# cc = glibc + libgcc_s, which the binary links (SQLite is compiled in; no OpenSSL).
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime

LABEL org.opencontainers.image.title="order-service" \
      org.opencontainers.image.description="Order service for e-commerce platforms: a durable saga over inventory, payment and shipping." \
      org.opencontainers.image.source="https://github.com/order-service/order-service" \
      org.opencontainers.image.licenses="Apache-2.0"

# The default SQLite database is ./data/orders.db, relative to this directory; /app/data
# is the only directory the process writes (mount a volume there, or use PostgreSQL).
WORKDIR /app
COPY --from=build --chown=65532:65532 /out/data /app/data
COPY --from=build /out/order-service /usr/local/bin/order-service

ENV LOG_FORMAT=json \
    HOST=0.0.0.0 \
    PORT=8004
USER 65532:65532
EXPOSE 8004
STOPSIGNAL SIGTERM

ENTRYPOINT ["/usr/local/bin/order-service"]
CMD ["serve"]
