# syntax=docker/dockerfile:1
# The Sluice operator. Build from the repository root:
#   docker build -f docker/operator.Dockerfile -t sluice/operator:dev .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p sluice-operator --bin sluice-operator \
    && install -D -m 0755 target/release/sluice-operator /out/sluice-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/sluice-operator /usr/local/bin/sluice-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/sluice-operator"]
