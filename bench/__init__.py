"""Benchmarks of the thyroid toolkit (see bench/README.md)."""
