# swarmstore node image: multi-stage build, small non-root runtime.
#   docker build -t swarmstore .
#   docker run -d --name ss1 -p 4001:4001/tcp -p 4001:4001/udp -v ss1:/data swarmstore
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
EXPOSE 4001/tcp 4001/udp
ENTRYPOINT ["swarmstore", "node"]
