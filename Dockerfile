# One image for the code location, the webserver and the daemon.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DAGSTER_HOME=/opt/dagster/home
WORKDIR /opt/market-assets

COPY pyproject.toml README.md ./
COPY market_assets ./market_assets
RUN pip install --no-cache-dir .

COPY configs ./configs
COPY sql ./sql
COPY dagster.yaml /opt/dagster/home/dagster.yaml
COPY docker/workspace.yaml /opt/dagster/home/workspace.yaml
