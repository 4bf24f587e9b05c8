# The sluice CLI in an image, for docker-compose.yml.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake libcurl4-openssl-dev libssl-dev pkg-config zlib1g-dev
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p sluice

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libcurl4 libssl3 zlib1g && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/sluice /usr/local/bin/sluice
COPY topology.toml /etc/sluice/topology.toml
COPY schemas /etc/sluice/schemas
ENV SLUICE_TOPOLOGY=/etc/sluice/topology.toml
# Not root: the Kubernetes manifests (`sluice deploy k8s`) run it as this user with a read-only
# root filesystem.
USER 65532:65532
ENTRYPOINT ["sluice"]
