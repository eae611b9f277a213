"""Stores: the Parquet lake (local or S3) and TimescaleDB/PostgreSQL."""
