"""The files of a run directory besides checkpoints and figures (math §9).

``config.json`` (the settings, the data set, the seeds), ``metrics.jsonl`` (one JSON object per
epoch: per-seed lists in an ensemble, scalars in a single run) and ``measurements/epoch_XXXX.npz``
(the SRM measurements of one epoch). Every JSON file is strict: NaN/Inf are written as ``null``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from train.measure import json_float


def json_clean(x):
    """Make ``x`` strict-JSON: NaN/Inf become ``None``, NumPy scalars Python numbers."""
    if isinstance(x, dict):
        return {str(k): json_clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return json_clean(x.tolist())
    if isinstance(x, (float, np.floating)):
        return json_float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def write_json(path: Path, data) -> None:
    """Write strict JSON (no NaN tokens)."""
    path.write_text(json.dumps(json_clean(data), indent=2, allow_nan=False) + "\n")


def write_metrics(path: Path, history: list[dict]) -> None:
    """(Re)write ``metrics.jsonl`` from the history: one JSON object per line."""
    with path.open("w") as f:
        for record in history:
            f.write(json.dumps(json_clean(record), allow_nan=False) + "\n")


def append_metrics(path: Path, record: dict) -> None:
    """Append one record to ``metrics.jsonl``."""
    with path.open("a") as f:
        f.write(json.dumps(json_clean(record), allow_nan=False) + "\n")


def measurement_path(workdir: Path, epoch: int) -> Path:
    """Where the measurements of ``epoch`` are saved."""
    return workdir / "measurements" / f"epoch_{epoch:04d}.npz"


def _squeeze(value):
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def output_record(record: dict, ensemble: bool) -> dict:
    """A history record as ``metrics.jsonl`` holds it: per-seed lists, or scalars (single run)."""
    if ensemble:
        return record
    return {k: _squeeze(v) if k != "epoch" else v for k, v in record.items()}


def output_history(history: list[dict], ensemble: bool) -> list[dict]:
    """Every record of ``history`` as ``metrics.jsonl`` holds it."""
    return [output_record(r, ensemble) for r in history]


def load_measurements(workdir: Path, epochs: list[int]) -> dict[int, dict]:
    """The saved measurements of those ``epochs`` that have a file, by epoch."""
    out = {}
    for epoch in epochs:
        path = measurement_path(workdir, epoch)
        if path.exists():
            with np.load(path) as f:
                out[epoch] = {k: f[k] for k in f.files}
    return out
