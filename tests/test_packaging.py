"""The wheel ships the library alone (issue 18): build it, list it, install it in a fresh
virtual environment outside the checkout, run ``srm-jax report`` there, and check that the
repository's ``train`` and ``benchmarks`` are not importable there.

The fresh environment is a venv *without* the system site-packages, so nothing installed there
(in particular an editable install of a checkout, whose import finder maps its packages from any
working directory) is seen. Its dependencies (JAX, NumPy, ...) come from a ``.pth`` file that
lists the running interpreter's site-packages directories as plain paths: ``.pth`` files inside
those directories (an editable install's finder among them) are not executed for such paths.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import numpy as np
import pytest

import srm_jax

ROOT = Path(__file__).resolve().parents[1]
IGNORE = shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", "build", "dist", "runs",
                                ".pytest_cache", ".ruff_cache", ".ipynb_checkpoints", "*.png")

pytestmark = pytest.mark.slow


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE")}
    env["PYTHONNOUSERSITE"] = "1"
    env["JAX_PLATFORMS"] = "cpu"
    env["MPLBACKEND"] = "Agg"
    return env


def _run(args, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                            env=_clean_env(), timeout=300, **kwargs)
    assert result.returncode == 0, (args, result.stdout[-2000:], result.stderr[-4000:])
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of a copy of the checkout (a build writes ``build/`` and ``*.egg-info`` next to
    the sources: the checkout stays clean). Offline: no build isolation, no dependencies."""
    if _pip_missing():
        pytest.skip("building a wheel needs pip")
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=IGNORE)
    out = base / "dist"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", out]
    # Offline with the installed setuptools when it can build this project (>= 68 and
    # bdist_wheel); otherwise in pip's isolated build environment (from the package index).
    offline = subprocess.run([str(a) for a in [*build, "--no-build-isolation", "--no-index",
                                                source]],
                             capture_output=True, text=True, env=_clean_env(), timeout=300)
    if offline.returncode != 0:
        _run([*build, source])
    wheels = sorted(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _pip_missing() -> bool:
    return subprocess.run([sys.executable, "-m", "pip", "--version"],
                          capture_output=True).returncode != 0


def test_wheel_holds_srm_jax_alone(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    version = srm_jax.__version__
    dist_info = f"srm_jax-{version}.dist-info"
    assert wheel.name.startswith(f"srm_jax-{version}-")
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {"srm_jax", dist_info}, sorted(tops)
    # Every module of the library is in it (nothing left behind by the package list).
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "srm_jax").rglob("*.py")}
    assert modules <= set(names), sorted(modules - set(names))
    with zipfile.ZipFile(wheel) as zf:
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
        metadata = zf.read(f"{dist_info}/METADATA").decode()
    assert "srm-jax = srm_jax.cli:main" in entry_points
    assert f"Version: {version}" in metadata


def test_wheel_installs_and_reports_in_a_fresh_environment(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=False, with_pip=False, symlinks=os.name != "nt").create(
        env_dir)
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / ("python.exe" if os.name == "nt" else "python")
    # The venv's own site-packages, and the dependencies as plain paths after it.
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    venv_site = Path(_run([python, "-c", purelib]).stdout.strip())
    deps = [p for p in {*site.getsitepackages(), sysconfig.get_paths()["purelib"]}
            if Path(p).is_dir() and not Path(p).resolve().is_relative_to(ROOT)]
    (venv_site / "zz_dependencies.pth").write_text("\n".join(sorted(deps)) + "\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
          "--quiet", wheel])

    work = tmp_path / "elsewhere"  # outside the checkout: nothing of it on the path
    work.mkdir()
    probe = (
        "import importlib.util, json, srm_jax\n"
        "print(json.dumps({'srm_jax': srm_jax.__file__, 'version': srm_jax.__version__,\n"
        "  'train': getattr(importlib.util.find_spec('train'), 'origin', None),\n"
        "  'benchmarks': getattr(importlib.util.find_spec('benchmarks'), 'origin', None)}))\n"
    )
    found = json.loads(_run([python, "-c", probe], cwd=work).stdout)
    assert Path(found["srm_jax"]).resolve().is_relative_to(venv_site.resolve()), found
    assert found["version"] == srm_jax.__version__
    assert found["train"] is None and found["benchmarks"] is None, found
    for name in ("train", "benchmarks"):
        result = subprocess.run([str(python), "-c", f"import {name}"], cwd=work,
                                capture_output=True, text=True, env=_clean_env(), timeout=60)
        assert result.returncode != 0 and "ModuleNotFoundError" in result.stderr, (
            name, result.stderr[-1000:])

    # The console script of the wheel, on a small file of activations aligned with ±e_i.
    rng = np.random.default_rng(0)
    n, num = 3, 120
    basis = np.concatenate([np.eye(n), -np.eye(n)])
    x = 3 * basis[rng.integers(0, 2 * n, num)] + 0.3 * rng.normal(size=(num, n))
    np.save(work / "acts.npy", x.astype(np.float32))
    script = bin_dir / ("srm-jax.exe" if os.name == "nt" else "srm-jax")
    assert script.exists()
    _run([script, "report", "acts.npy", "--resamples", "19", "--epsilon", "0.9", "--out",
          "report"], cwd=work)
    report = json.loads((work / "report" / "report.json").read_text())
    assert report["srm_jax_version"] == srm_jax.__version__
    assert report["num_samples"] == num
    assert report["p_value"] <= 0.1  # planted alignment: the smallest two-sided p of 19 rotations
