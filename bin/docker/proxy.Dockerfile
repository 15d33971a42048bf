# Written by bin/images --dockerfiles from its table; edit the table, not this.
# From the repository's root:
#   docker build -t ghcr.io/linkerd-rs/proxy:0.1.0 -f bin/docker/proxy.Dockerfile .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p linkerd-proxy --bin linkerd-proxy

FROM gcr.io/distroless/cc-debian12
COPY --from=build /src/target/release/linkerd-proxy /usr/local/bin/linkerd-proxy
USER 2102:2102
ENTRYPOINT ["/usr/local/bin/linkerd-proxy"]
