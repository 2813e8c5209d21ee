# syntax=docker/dockerfile:1
# The one binary: `serve` by default, `sidecar` or `ctl` by argument.
#
#   docker build -t agent-registry .
#   docker run -p 50051:50051 -v agent-registry-data:/var/lib/agent-registry agent-registry
#
# One file, two ways to get the binary:
# - A plain build (`docker build .`) compiles it in the `build` stage: the normal multi-stage
#   build a user runs.
# - A binary compiled beforehand replaces that stage: `--build-context binary=DIR`, where DIR
#   holds a file `agent-registry` (Linux x86-64, glibc ≤ bookworm's). A named build context takes
#   the place of the stage of the same name (BuildKit and buildah alike), so the `binary` stage,
#   and the `build` stage only it uses, are skipped and the Rust image is never needed. This is
#   what deploy/image/build.sh does (buildah, no registry): it also points RUNTIME_IMAGE at a
#   base image made locally with debootstrap.
# BUILD_IMAGE and RUNTIME_IMAGE name the base images, so a mirror or a local copy can stand in.
ARG BUILD_IMAGE=rust:1.88-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${BUILD_IMAGE} AS build
WORKDIR /src
# Dependencies and the crates below the server (crates/: the core and the client) first, in
# their own layer: it is rebuilt only when the manifests, the lock file, the contract, the
# migrations or those crates change.
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY migrations migrations
COPY crates crates
COPY bench bench
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && cargo build --release --locked --bin agent-registry \
 && rm -rf src
COPY src src
# The same command CI runs (.ci/run) before it builds this file with that binary.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin agent-registry

# The binary alone, at /agent-registry: what `--build-context binary=DIR` replaces.
FROM scratch AS binary
COPY --from=build /src/target/release/agent-registry /agent-registry

FROM ${RUNTIME_IMAGE}
# CA certificates (TLS to Postgres, Redis or a registry with a public certificate), a user and
# group 10001, and the data directory it owns. debian:bookworm-slim has no CA certificates, so
# they are installed; build.sh's local base already has them, so that build needs no network.
RUN if [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && groupadd --gid 10001 registry \
 && useradd --uid 10001 --gid 10001 --no-create-home --no-log-init \
      --home-dir /var/lib/agent-registry --shell /usr/sbin/nologin registry \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/agent-registry
COPY --from=binary /agent-registry /usr/local/bin/agent-registry
USER 10001:10001
# The data directory is the working directory, so `serve` on its embedded default
# (`sqlite://agent-registry.db`, relative) keeps the database (and its -wal/-shm files) here. It
# is the only path the server writes: the root filesystem can be read-only. A volume, so the
# data outlives the container; with Postgres (DATABASE_URL) nothing is written here.
WORKDIR /var/lib/agent-registry
VOLUME ["/var/lib/agent-registry"]
# 50051: gRPC (registry, discovery, admin, grpc.health.v1, reflection; --listen/LISTEN_ADDR).
# 8080: the HTTP/JSON API and the web console (--http-listen/HTTP_LISTEN_ADDR; empty for off),
# with the same TLS and tokens as gRPC.
# 9090: Prometheus metrics over HTTP at /metrics (--metrics-listen/METRICS_LISTEN_ADDR); keep it
# off public load balancers.
EXPOSE 50051 8080 9090
# No HEALTHCHECK: orchestrators probe grpc.health.v1 on 50051 (the overall entry "" for
# readiness); see deploy/kubernetes/registry.yaml.
ENTRYPOINT ["/usr/local/bin/agent-registry"]
CMD ["serve"]
