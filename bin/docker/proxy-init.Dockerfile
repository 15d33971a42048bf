# Written by bin/images --dockerfiles from its table; edit the table, not this.
# From the repository's root:
#   docker build -t ghcr.io/linkerd-rs/proxy-init:0.1.0 -f bin/docker/proxy-init.Dockerfile .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p linkerd-proxy-init --bin linkerd-proxy-init

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends iptables \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/linkerd-proxy-init /usr/local/bin/linkerd-proxy-init
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/linkerd-proxy-init"]
