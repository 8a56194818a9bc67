"""The quickstart notebook runs to the end (so it can never rot), and the examples import."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"


def _missing(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def test_quickstart_notebook_executes(monkeypatch):
    missing = _missing("nbformat", "nbclient", "ipykernel")
    if missing:
        pytest.skip(
            f"executing the notebook needs {', '.join(missing)}: pip install -e '.[test]'"
        )
    if _missing("sklearn"):
        pytest.skip("the notebook's data set (digits) needs scikit-learn: pip install -e '.[data]'")
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # The kernel's inline backend, so that figures become outputs (whatever MPLBACKEND says).
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()  # raises CellExecutionError, with the failing cell, on any error
    text = "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )
    assert "alignment score" in text and "p-value" in text
    figures = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    ]
    assert len(figures) >= 3  # SRM panels, alignment curve, rotation-test histogram


def test_notebook_is_stored_without_outputs():
    import json

    notebook = json.loads(NOTEBOOK.read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert not cell["outputs"] and cell["execution_count"] is None
    code = "\n".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code")
    # No device-specific code: the same notebook runs on CPU, GPU and TPU runtimes.
    for pattern in (r"devices\(\s*[\"']", r"backend\s*=", r"\.cuda", r"platform\s*="):
        assert not re.search(pattern, code), pattern


@pytest.mark.parametrize(
    "name", ["any_layer.py", "train_with_srm_metric.py", "multihost_srm.py"]
)
def test_example_scripts_import(name, monkeypatch):
    """Each example imports cleanly and exposes main() (running them is left to users/CI docs)."""
    if _missing("sklearn"):
        pytest.skip("the examples' data set (digits) needs scikit-learn: pip install -e '.[data]'")
    monkeypatch.syspath_prepend(str(ROOT))
    spec = importlib.util.spec_from_file_location(f"example_{name[:-3]}", ROOT / "examples" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(module.main)
