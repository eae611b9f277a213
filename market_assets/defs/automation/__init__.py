"""Schedules and sensors that keep the data current."""
