"""Writing a report's files: ``report.json``, ``report.md`` and the figures, all or nothing."""

from __future__ import annotations

import json
import os
import shutil

from srm_jax.report.compose import Report
from srm_jax.report.defaults import FIGURES
from srm_jax.report.figures import write_figures
from srm_jax.report.jsonable import json_safe
from srm_jax.report.markdown import layers_markdown, layers_summary, report_markdown

OUTPUT_FILES = ("report.json", "report.md", *FIGURES.values())
#: Folder of the per-layer figures of a multi-layer report.
LAYERS_DIR = "layers"


def _layer_directory(key: str | None, index: int) -> str:
    """The figures' folder of one layer of a multi-layer report: ``layers/<key>``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(key)).strip(".")
    return os.path.join(LAYERS_DIR, safe or f"layer{index}")


def draw_layer(report: Report, summary: dict, scratch: str, index: int, several: bool) -> dict:
    """Draws one layer's figures into ``scratch`` (``layers/<key>/`` of it when the report has
    ``several`` layers) as soon as the layer is analysed, so that only its summary is kept;
    returns ``summary`` with its ``figures`` (file names relative to the report's directory)."""
    if not several:
        summary["figures"] = write_figures(report, scratch)
        return summary
    folder = _layer_directory(summary["input"]["key"], index)
    os.makedirs(os.path.join(scratch, folder))
    figures = write_figures(report, os.path.join(scratch, folder))
    summary["figures"] = {k: f"{folder}/{v}" for k, v in figures.items()}
    return summary


def _documents(summaries: list[dict], source_name: str) -> tuple[dict, str]:
    """``report.json``'s document and ``report.md`` of the drawn layers' ``summaries``."""
    if len(summaries) == 1:
        summary = summaries[0]
        return summary, report_markdown(summary, summary["figures"], source=source_name)
    return (layers_summary(summaries),
            layers_markdown(summaries, [s["figures"] for s in summaries], source=source_name))


def _move_into(scratch: str, out: str) -> None:
    """Moves the files of ``scratch`` into ``out``, replacing a previous report's files (and
    dropping those this report does not write); other files in ``out`` stay."""
    written = set(os.listdir(scratch))
    if not os.path.exists(out):
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        shutil.move(scratch, out)
        return
    for name in (*OUTPUT_FILES, LAYERS_DIR):
        target = os.path.join(out, name)
        if os.path.isdir(target) and name == LAYERS_DIR:
            shutil.rmtree(target)
        elif os.path.exists(target):
            os.remove(target)
        if name in written:
            shutil.move(os.path.join(scratch, name), target)


def write_report(summaries: list[dict], scratch: str, out: str, source_name: str) -> None:
    """Writes ``report.json`` and ``report.md`` of the layers' ``summaries`` (each drawn by
    :func:`draw_layer` into ``scratch``, a temporary directory), then moves every file into
    ``out``.

    One layer: ``report.json``, ``report.md`` and the figures. Several layers: the figures of
    each in ``layers/<key>/``, one ``report.json`` with an entry per layer and the table across
    layers, and one ``report.md`` with a section per layer.
    """
    document, markdown = _documents(summaries, source_name)
    with open(os.path.join(scratch, "report.json"), "w") as fh:
        json.dump(json_safe(document), fh, indent=2, allow_nan=False)
        fh.write("\n")
    with open(os.path.join(scratch, "report.md"), "w") as fh:
        fh.write(markdown)
    _move_into(scratch, out)
