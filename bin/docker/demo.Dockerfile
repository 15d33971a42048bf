# Written by bin/images --dockerfiles from its table; edit the table, not this.
# From the repository's root:
#   docker build -t ghcr.io/linkerd-rs/demo:0.1.0 -f bin/docker/demo.Dockerfile .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p linkerd-cli --bin linkerd

FROM gcr.io/distroless/cc-debian12
COPY --from=build /src/target/release/linkerd /usr/local/bin/linkerd
USER 2105:2105
ENTRYPOINT ["/usr/local/bin/linkerd"]
