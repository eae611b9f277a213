# The database of the compose stack: TimescaleDB 2.28.3 on PostgreSQL 15.18, both pinned.
#
# The PostgreSQL minor is pinned on purpose: on PostgreSQL 15.20 every TimescaleDB background
# job run (compression and retention policies) is recorded as failed ("cannot drop portal ...
# while it is being set up") although its work commits, with TimescaleDB 2.17.2 and 2.28.3
# alike; 15.18 runs them cleanly. The timescale/timescaledb:<version>-pg15 images follow the
# newest 15.x of their build day, so this image starts from the official postgres:15.18 image,
# holds its server packages and adds TimescaleDB from Timescale's Debian repository.
# Upgrading either version: docs/operations.md ("Upgrades").
FROM postgres:15.18-bookworm

ARG TIMESCALEDB_VERSION=2.28.3

RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates curl gnupg; \
    curl -fsSL https://packagecloud.io/timescale/timescaledb/gpgkey \
        | gpg --dearmor -o /usr/share/keyrings/timescaledb.gpg; \
    echo "deb [signed-by=/usr/share/keyrings/timescaledb.gpg] https://packagecloud.io/timescale/timescaledb/debian/ bookworm main" \
        > /etc/apt/sources.list.d/timescaledb.list; \
    apt-mark hold postgresql-15 postgresql-client-15 libpq5; \
    apt-get update; \
    apt-get install -y --no-install-recommends \
        "timescaledb-2-postgresql-15=${TIMESCALEDB_VERSION}~debian12" \
        "timescaledb-2-loader-postgresql-15=${TIMESCALEDB_VERSION}~debian12"; \
    apt-get purge -y --auto-remove curl gnupg; \
    rm -rf /var/lib/apt/lists/*; \
    test "$(postgres --version | awk '{print $3}')" = "15.18"

CMD ["postgres", "-c", "shared_preload_libraries=timescaledb", "-c", "timescaledb.telemetry_level=off"]
