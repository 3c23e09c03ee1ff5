# syntax=docker/dockerfile:1
# amesh image: the `amesh` binary on Debian slim, run as a non-root user.
#   docker build -t amesh:dev .        (docker compose up builds it too)
# The same image runs every amesh service of docker-compose.yml: `acl
# generate`, `demo-provider`, and `run` for the gateway and the agents.

# --- build -------------------------------------------------------------------
FROM rust:1.94-slim-bookworm AS builder
# cmake, a C compiler and OpenSSL headers build Paho's bundled C library;
# amesh links the system SQLite (.cargo/config.toml).
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake build-essential binutils libssl-dev libsqlite3-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The caches keep dependencies between builds; the binary is copied out of
# the cached target dir, its debug info split into amesh.debug (linked by
# .gnu_debuglink: panics still name function, file and line).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p amesh-runtime --bin amesh --features postgres,mysql \
 && bash scripts/split-debuginfo target/release/amesh \
 && install -m 0755 target/release/amesh /usr/local/bin/amesh \
 && install -m 0644 target/release/amesh.debug /usr/local/bin/amesh.debug

# --- runtime -----------------------------------------------------------------
FROM debian:bookworm-slim
# libssl3: Paho's TLS (ssl:// brokers); libsqlite3-0: the SQL store's
# SQLite; ca-certificates: https MCP servers, models and brokers; curl:
# the health check.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 libsqlite3-0 curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 amesh \
 && useradd --system --uid 10001 --gid amesh --home-dir /var/lib/amesh --shell /usr/sbin/nologin amesh \
 && install -d -o amesh -g amesh -m 0700 /var/lib/amesh /var/lib/amesh/data /var/lib/amesh/acl
COPY --from=builder /usr/local/bin/amesh /usr/local/bin/amesh.debug /usr/local/bin/
USER amesh:amesh
WORKDIR /var/lib/amesh
# Gateway HTTP (8000) and the demo provider (9100).
EXPOSE 8000 9100
# The gateway's /healthz (HEALTHCHECK_URL for another port or service;
# compose sets its own checks per service).
ENV HEALTHCHECK_URL=http://127.0.0.1:8000/healthz
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -fsS "$HEALTHCHECK_URL" >/dev/null || exit 1
ENTRYPOINT ["amesh"]
CMD ["run"]
