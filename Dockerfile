# Build and run the wardwatch engine (used by docker-compose.yml).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/wardwatch --create-home wardwatch
COPY --from=build /src/target/release/wardwatch /usr/local/bin/wardwatch
# The engine's own configuration only: no broker files (passwords, ACL),
# no secrets. Secrets come from the environment at run time.
COPY config/wardwatch.toml /etc/wardwatch/wardwatch.toml
COPY config/pathways /etc/wardwatch/pathways
COPY config/teams /etc/wardwatch/teams
ENV WARDWATCH_PATHWAYS_DIR=/etc/wardwatch/pathways \
    WARDWATCH_TEAMS_DIR=/etc/wardwatch/teams
# Not root; the embedded SQLite store (if used) lives in its home.
USER wardwatch
WORKDIR /var/lib/wardwatch
ENTRYPOINT ["wardwatch"]
CMD ["serve", "--config", "/etc/wardwatch/wardwatch.toml"]
