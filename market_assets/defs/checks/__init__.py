"""Data-quality checks on every bar asset, the coverage report built from them, and alerts."""
