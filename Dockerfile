# The `tidemark` binary: one image for every role (-target=...).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin tidemark

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/tidemark /usr/local/bin/tidemark
WORKDIR /data
EXPOSE 9009
ENTRYPOINT ["/usr/local/bin/tidemark"]
