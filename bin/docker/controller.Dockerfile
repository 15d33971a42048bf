# Written by bin/images --dockerfiles from its table; edit the table, not this.
# From the repository's root:
#   docker build -t ghcr.io/linkerd-rs/controller:0.1.0 -f bin/docker/controller.Dockerfile .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p linkerd-controller --bin linkerd-controller

FROM gcr.io/distroless/cc-debian12
COPY --from=build /src/target/release/linkerd-controller /usr/local/bin/linkerd-controller
USER 2103:2103
ENTRYPOINT ["/usr/local/bin/linkerd-controller"]
