"""Benchmarks of srm-jax (results in RESULTS.md)."""
