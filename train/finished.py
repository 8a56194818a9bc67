"""Is a run already finished? A check that needs no JAX (``python -m train`` answers a rerun of
a finished run with it before importing anything heavy)."""

from __future__ import annotations

import json
from pathlib import Path

from train.configs import Config


def finished_summary(workdir: str | Path, config: Config,
                     seeds: list[int] | None = None) -> dict | None:
    """The summary of the finished run of these settings in ``workdir``, or ``None``.

    Cheap (reads two JSON files): a rerun of a finished run returns this at once. With
    ``train_steps`` set, ``epochs`` is compared after the budget was resolved.
    """
    workdir = Path(workdir)
    config_path, summary_path = workdir / "config.json", workdir / "summary.json"
    if not (config_path.exists() and summary_path.exists()):
        return None
    saved_all = json.loads(config_path.read_text())
    saved = saved_all["config"]
    ignore = ["description"] + (["seed"] if seeds is not None else [])
    if config.train_steps is not None:
        ignore.append("epochs")
    current = config.to_dict()
    if any(saved.get(k) != current[k] for k in current if k not in ignore):
        return None
    if seeds is not None and saved_all.get("seeds") != seeds:
        return None
    if seeds is None and saved_all.get("seeds", [config.seed]) != [config.seed]:
        return None
    summary = json.loads(summary_path.read_text())
    done = summary.get("status") == "completed" or str(summary.get("status", "")).startswith(
        "completed")
    if not done or summary.get("epochs_completed", -1) < saved.get("epochs", 0):
        return None
    return summary
