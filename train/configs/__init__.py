"""One config per preset of the paper's experiments (math §9), as in the Flax examples.

Each module ``train/configs/<preset>.py`` has ``get_config() -> Config``; :func:`get_config`
looks a preset up by name.
"""

from __future__ import annotations

import importlib

from train.configs.default import Config, check_srm_method, override

PRESETS = ("fig1", "fig2", "fig5", "fig6", "fig7", "fig8", "fig9", "isotropic")


def get_config(preset: str) -> Config:
    """The :class:`Config` of ``preset`` (one of :data:`PRESETS`)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}.")
    return importlib.import_module(f"train.configs.{preset}").get_config()


__all__ = ["PRESETS", "Config", "check_srm_method", "get_config", "override"]
