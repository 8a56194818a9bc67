"""``python -m benchmarks.device --quick``: the prepared GPU check runs end to end on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from benchmarks import device

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quick_device_check_passes_and_writes_its_report(tmp_path):
    results = os.path.join(ROOT, "benchmarks", "RESULTS.md")
    with open(results) as fh:
        before = fh.read()
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.device", "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "device.json").read_text())
    assert report["ok"] and report["precision"]["jaxpr_all_highest"]
    assert report["precision"]["counts_unchanged"] == {"emulated bf16": True,
                                                       "emulated tf32": True}
    assert set(report["timing"]) == {"fig1", "fig1-dense", "large"}
    for row in report["timing"].values():
        assert row["auto"]["median_s"] > 0 and row["floor_s"] > 0
    assert all(v["ok"] for v in report["exactness"].values())
    assert report["wide"]["rows"] == 2_000 and report["wide"]["sample_major_summary_s"] > 0
    assert report["exactness"]["fig1-dense"]["lit"] > 0  # the reference compared something
    sweep = report["sweep_test"]  # the rotation test over a sweep (384 units when quick)
    assert (sweep["width"], sweep["epsilons"], sweep["rotations"]) == (384, 3, 19)
    assert sweep["seconds"] > 0 and 0 < sweep["family_wise_p_value"] <= 1
    assert len(sweep["lit_share"]) == 3
    with open(results) as fh:
        assert fh.read() == before  # --quick leaves RESULTS.md alone


def test_float64_reference_bounds_match_the_definition(rng):
    """The device check's reference (SPEC §5 form) against the direct definition (expm)."""
    from conftest import reference_count_bounds, reference_dots, reference_pairs

    basis = rng.standard_normal((7, 5)).astype(np.float32)
    x = rng.standard_normal((120, 5)).astype(np.float32)
    angles = np.linspace(0, 2 * np.pi, 13).astype(np.float32)
    pairs = reference_pairs(7, "perm")
    low, high = device.reference_bounds(x, basis, pairs, angles, 0.4, 1e-9)
    ref_low, ref_high, _ = reference_count_bounds(
        reference_dots(x, basis, pairs, angles), 0.4, 1e-9)
    np.testing.assert_array_equal(low, ref_low)
    np.testing.assert_array_equal(high, ref_high)


def test_device_check_imports_without_the_data_packages(tmp_path):
    """A GPU image has neither mlxtend nor TFDS: the device check's modules import without them."""
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import sys\n"
        "class _Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('mlxtend', 'tensorflow_datasets', 'sklearn'):\n"
        "            raise ImportError(f'{name} is hidden')\n"
        "sys.meta_path.insert(0, _Hide())\n")
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}")
    code = ("import benchmarks.device, benchmarks.wide_benchmark, srm_jax\n"
            "try:\n    import mlxtend\nexcept ImportError:\n    print('hidden')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "hidden" in proc.stdout
