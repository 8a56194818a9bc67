"""The ``srm-jax`` console script's entry point (``srm_jax.cli:main``): see
:mod:`srm_jax.report.cli`."""

from srm_jax.report.cli import build_parser, main

__all__ = ["build_parser", "main"]
