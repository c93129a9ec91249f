# swarmstore node image: multi-stage build, small non-root runtime.
#   docker build -t swarmstore .
#   docker run -d --name ss1 -p 4001:4001/tcp -p 4001:4001/udp -v ss1:/data swarmstore
# A five-node private testnet: deploy/compose.yml (README, "Operating a testnet").
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY examples ./examples
RUN cargo build --release --locked --bin swarmstore

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin swarmstore \
    && mkdir -p /data && chown swarmstore /data
COPY --from=build /src/target/release/swarmstore /usr/local/bin/swarmstore
USER swarmstore
ENV SWARMSTORE_DATA_DIR=/data
VOLUME ["/data"]
# 4001: the swarm (TCP and QUIC); 9090: metrics and /health when --metrics 0.0.0.0:9090.
EXPOSE 4001/tcp 4001/udp 9090/tcp
# Healthy while the node answers a client over its own protocol at the address it wrote to
# /data/node.addr (SWARMSTORE_SWARM_KEY, if set for the node, is used by the client too).
HEALTHCHECK --interval=15s --timeout=10s --start-period=20s --retries=3 \
    CMD ["swarmstore", "status", "--data-dir", "/data", "--identity", "/data/health-client.key"]
ENTRYPOINT ["swarmstore", "node"]
