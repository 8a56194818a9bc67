"""``srm-jax report``'s outputs are unchanged: ``report.json`` against a golden copy.

The golden files in ``tests/data/report_golden/`` were written by ``generate.py`` there (last
regenerated, deliberately, when the verdict became a test over a sweep of ε and ``report.json``
gained ``carriers``, ``bulk``, ``mean`` and tie marks; before, with the revision before the
report became a package); this test runs the same command lines on the same inputs and seed and
compares every field. Three cases cover the main paths: a labelled planted file with NaN/Inf
rows at one ε (counts, class selectivity, an "aligned" verdict), a wide outlier-channel file at
one ε (every plane through summaries, with the candidates' second pass) and a two-layer ``.npz``
(``--key all``, the table across layers; the default verdict over the sweep of ε).

Paths (``input.path``, ``labels``) are compared by file name only, and ``srm_jax_version`` is
left out; the figures' file names are compared. Integers, strings, booleans and ``None`` must
be equal; floats agree to a relative 1e-6 (the same computations; a refactor that changes
numbers shows here).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os

import pytest

from srm_jax import cli

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "report_golden")
#: Fields that name where the inputs lie (compared by file name) or which release wrote it.
PATHS = {("input", "path"), ("labels",)}
EXCLUDED = {("srm_jax_version",)}
RTOL = 1e-6


def _generator():
    spec = importlib.util.spec_from_file_location("report_golden", os.path.join(HERE,
                                                                                "generate.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _differences(got, want, path=()) -> list[str]:
    """Every field where ``got`` differs from ``want`` (``path`` names the field)."""
    if path[-1:] in EXCLUDED:
        return []
    if (path[-2:] in PATHS or path[-1:] in PATHS) and isinstance(want, str):
        got, want = os.path.basename(str(got)), os.path.basename(want)
    where = "/".join(map(str, path)) or "<root>"
    if isinstance(want, dict):
        if not isinstance(got, dict) or set(got) != set(want):
            return [f"{where}: keys {sorted(got) if isinstance(got, dict) else got} != "
                    f"{sorted(want)}"]
        return [d for k in want for d in _differences(got[k], want[k], (*path, k))]
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return [f"{where}: {got!r} != {want!r}"]
        return [d for i, (g, w) in enumerate(zip(got, want, strict=True)) for d in
                _differences(g, w, (*path, i))]
    if isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        if math.isclose(got, want, rel_tol=RTOL, abs_tol=1e-12):
            return []
        return [f"{where}: {got!r} != {want!r}"]
    if type(got) is not type(want) or got != want:
        return [f"{where}: {got!r} != {want!r}"]
    return []


@pytest.mark.parametrize("name", ["planted", "wide", "layers"])
def test_report_json_matches_the_golden_copy(name, tmp_path, capsys):
    generator = _generator()
    out = str(tmp_path / "report")
    status = cli.main(generator.argv(name, out))
    _, err = capsys.readouterr()
    assert status == 0, err
    with open(os.path.join(out, "report.json")) as fh:
        got = json.load(fh)
    with open(os.path.join(HERE, f"{name}.json")) as fh:
        want = json.load(fh)
    differences = _differences(got, want)
    assert not differences, "\n".join(differences[:20])
