# syntax=docker/dockerfile:1
# The Sluice broker. Build from the repository root:
#   docker build -f docker/broker.Dockerfile -t sluice/broker:dev .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p sluice-broker \
    && install -D -m 0755 target/release/sluice-broker /out/sluice-broker \
    && install -d -o 65532 -g 65532 /out/data

# glibc, CA certificates, tzdata and a non-root user (65532), nothing else.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/sluice-broker /usr/local/bin/sluice-broker
COPY --from=build --chown=65532:65532 /out/data /var/lib/sluice/data
USER 65532:65532
# Kafka protocol, metrics / health.
EXPOSE 9092 9464
ENV SLUICE_LOG_DIRS=/var/lib/sluice/data \
    SLUICE_LISTENERS=0.0.0.0:9092 \
    SLUICE_METRICS_LISTENER=0.0.0.0:9464
VOLUME ["/var/lib/sluice/data"]
ENTRYPOINT ["/usr/local/bin/sluice-broker"]
