"""Writes the golden report inputs and their ``report.json`` (``tests/test_report_golden.py``).

Run from the repository root of the revision whose outputs are the reference:
``python tests/data/report_golden/generate.py``. The inputs come from a fixed NumPy seed; the
reports from ``srm-jax report`` with the arguments of :data:`CASES`.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
#: Each case: (name, input files relative to HERE, extra arguments).
CASES = {
    "planted": (["planted.npy", "--labels", "planted_labels.npy", "--resamples", "39",
                 "--max-samples", "300", "--epsilon", "0.9"]),
    "wide": (["wide.npy", "--resamples", "19", "--epsilon", "0.9"]),
    "layers": (["layers.npz", "--key", "all", "--labels", "y", "--resamples", "19"]),
}


def write_inputs(directory: str = HERE) -> None:
    """The three inputs: a labelled planted ±e_i file with NaN/Inf rows (the per-class path), a
    wide outlier-channel file (n = 80: every plane through summaries) and a two-layer ``.npz``
    with labels (``--key all``)."""
    rng = np.random.default_rng(23)
    n = 6
    basis = np.concatenate([np.eye(n), -np.eye(n)])
    index = rng.integers(0, 2 * n, 400)
    x = (3 * basis[index] + 0.5 * rng.normal(size=(400, n))).astype(np.float32)
    x[[3, 50]] = np.nan
    x[7, 2] = np.inf
    np.save(os.path.join(directory, "planted.npy"), x)
    np.save(os.path.join(directory, "planted_labels.npy"), index)
    wide = rng.standard_t(5, size=(200, 80)).astype(np.float32)
    wide[:, [5, 17, 30]] *= 8.0
    np.save(os.path.join(directory, "wide.npy"), wide)
    y = rng.integers(0, 3, 150)
    a = (rng.normal(size=(150, 8)) + 2.0 * np.eye(8)[y]).astype(np.float32)
    b = rng.normal(size=(150, 8)).astype(np.float32)
    np.savez(os.path.join(directory, "layers.npz"), mlp=a, out=b, y=y)


def argv(name: str, out: str, directory: str = HERE) -> list[str]:
    """The ``srm-jax report`` arguments of case ``name`` writing to ``out``."""
    args = list(CASES[name])
    args[0] = os.path.join(directory, args[0])
    if "--labels" in args and args[args.index("--labels") + 1].endswith(".npy"):
        i = args.index("--labels") + 1
        args[i] = os.path.join(directory, args[i])
    return ["report", *args, "--out", out]


if __name__ == "__main__":
    import tempfile

    from srm_jax import cli

    write_inputs()
    for name in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            status = cli.main(argv(name, os.path.join(tmp, "r")))
            assert status == 0, name
            with open(os.path.join(tmp, "r", "report.json")) as fh:
                document = json.load(fh)
        with open(os.path.join(HERE, f"{name}.json"), "w") as fh:
            json.dump(document, fh, indent=1)
            fh.write("\n")
    sys.exit(0)
