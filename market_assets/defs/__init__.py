"""The Dagster edge: assets, checks, IO managers, resources, partitions and automation."""
