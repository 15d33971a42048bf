# Written by bin/images --dockerfiles from its table; edit the table, not this.
# From the repository's root:
#   docker build -t ghcr.io/linkerd-rs/web:0.1.0 -f bin/docker/web.Dockerfile .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p linkerd-web --bin linkerd-web

FROM gcr.io/distroless/cc-debian12
COPY --from=build /src/target/release/linkerd-web /usr/local/bin/linkerd-web
USER 2103:2103
ENTRYPOINT ["/usr/local/bin/linkerd-web"]
