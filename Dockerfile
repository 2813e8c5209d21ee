# syntax=docker/dockerfile:1
# The one binary: `serve` by default, `sidecar` or `ctl` by argument.

FROM rust:1.88-bookworm AS build
WORKDIR /src
# Dependencies first, in their own layer: it is rebuilt only when Cargo.toml/Cargo.lock change.
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY bench bench
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && cargo build --release --locked --bin agent-registry \
 && rm -rf src
COPY src src
COPY migrations migrations
# The same command CI runs (.ci/run), so the image's build is exercised on every change.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin agent-registry

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home registry
COPY --from=build /src/target/release/agent-registry /usr/local/bin/agent-registry
USER 10001
# gRPC, metrics.
EXPOSE 50051 9090
ENTRYPOINT ["/usr/local/bin/agent-registry"]
CMD ["serve"]
