"""Plain Python numbers for ``report.json``."""

from __future__ import annotations

import math

import numpy as np


def to_float(x) -> float:
    """A Python float; float32 values by their shortest repr (0.02, not 0.0199999995)."""
    value = np.asarray(x)
    if value.dtype == np.float32:
        return float(str(np.float32(value)))
    return float(value)


def to_floats(x) -> list[float]:
    """:func:`to_float` of every entry of ``x``, flattened."""
    return [to_float(v) for v in np.asarray(x).reshape(-1)]


def json_safe(value):
    """``value`` with NaN/Inf floats as ``None`` and NumPy scalars as Python numbers (JSON)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
