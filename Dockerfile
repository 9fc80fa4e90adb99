# Build and run the wardwatch engine (used by docker-compose.yml).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/wardwatch /usr/local/bin/wardwatch
COPY config /etc/wardwatch
ENV WARDWATCH_PATHWAYS_DIR=/etc/wardwatch/pathways \
    WARDWATCH_TEAMS_DIR=/etc/wardwatch/teams
ENTRYPOINT ["wardwatch"]
CMD ["serve", "--config", "/etc/wardwatch/wardwatch.toml"]
