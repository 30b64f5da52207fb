# Builds the imapshift binary and ships it in a small Debian image.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && strip target/release/imapshift

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/imapshift /usr/local/bin/imapshift
WORKDIR /work
ENTRYPOINT ["imapshift"]
CMD ["sync", "--config", "/work/imapshift.toml"]
