# syntax=docker/dockerfile:1
# Multi-stage build: one image holding every qb-backfill binary (the three dedicated pipelines,
# the generic `qb-backfill --entity NAME`) and the simulator.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release --locked \
      -p bin-customers -p bin-items -p bin-invoices -p bin-backfill -p qbo-sim \
 && mkdir -p /out \
 && cp target/release/qb-customers-backfill target/release/qb-items-backfill \
       target/release/qb-invoices-backfill target/release/qb-backfill target/release/qbo-sim /out/

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin qb \
 && mkdir /evidence && chown qb /evidence
COPY --from=build /out/ /usr/local/bin/
USER qb
# No default entrypoint: each Compose service names the binary it runs.
CMD ["qb-invoices-backfill", "--help"]
