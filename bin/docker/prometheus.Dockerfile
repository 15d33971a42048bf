# Written by bin/images --dockerfiles from its table; edit the table, not this.
#   docker build -t ghcr.io/linkerd-rs/prometheus:0.1.0 -f bin/docker/prometheus.Dockerfile .
FROM debian:bookworm-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends prometheus

FROM gcr.io/distroless/cc-debian12
COPY --from=build /usr/bin/prometheus /usr/local/bin/prometheus
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/prometheus"]
