"""Fundamentals from SEC XBRL facts: the field map, placement by filing date, the
point-in-time view, daily ratios and the quality rules. Pure polars; no Dagster here."""
