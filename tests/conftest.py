"""Shared test fixtures and independent NumPy float64 references."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest
import scipy.linalg


@pytest.fixture
def rng(request) -> np.random.Generator:
    """A generator per test, seeded from the test's name (and ``SRM_TEST_SEED``, default 0).

    Set ``SRM_TEST_SEED`` to draw fresh inputs; a failure reproduces with the same value.
    """
    seed = zlib.crc32(request.node.nodeid.encode()) + int(os.environ.get("SRM_TEST_SEED", "0"))
    return np.random.default_rng(seed)


def reference_pairs(m: int, kind: str) -> np.ndarray:
    gen = itertools.combinations if kind == "comb" else itertools.permutations
    return np.array(list(gen(range(m), 2)), dtype=np.int64)


def reference_spotlights(basis: np.ndarray, pairs: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """``(P, T, n)`` spotlights ``expm(θ G) b̂_α`` by scipy's matrix exponential (Eqn. 1)."""
    b = np.asarray(basis, np.float64)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    out = np.empty((len(pairs), len(angles), b.shape[1]))
    for p, (alpha, beta) in enumerate(pairs):
        a, bb = b[alpha], b[beta]
        c = a @ bb
        generator = 0.5 * (np.outer(a, bb) - np.outer(bb, a)) / (0.5 * np.sqrt(1 - c * c))
        for t, theta in enumerate(angles):
            out[p, t] = scipy.linalg.expm(theta * generator) @ a
    return out


def reference_dots(activations, basis, pairs, angles) -> np.ndarray:
    """``(N, P, T)`` cosines ``d̂·s_αβ(θ)`` in float64; NaN/Inf rows become NaN, zero rows 0."""
    d = np.asarray(activations, np.float64)
    norms = np.linalg.norm(d, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = np.where(norms == 0, 0.0, d / np.where(norms == 0, 1, norms))
    spot = reference_spotlights(basis, pairs, angles)
    return np.einsum("nk,ptk->npt", unit, spot)


def reference_count_bounds(dots: np.ndarray, epsilon: float, tol: float, sign: int = 1):
    """Lower/upper bounds of ``#{d̂·s ≥ ε}`` (sign=+1) or ``#{d̂·s ≤ −ε}`` (sign=−1) over finite
    rows, when values within ``tol`` of the threshold may fall either way (float rounding).

    Zero rows have cosine exactly 0 (SPEC §1) and get no tolerance.
    """
    finite = np.all(np.isfinite(dots), axis=(1, 2))
    x = sign * dots[finite]
    zero = np.all(x == 0, axis=(1, 2))
    row_tol = np.where(zero, 0.0, tol)[:, None, None]
    low = np.sum(x >= epsilon + row_tol, axis=0)
    high = np.sum(x >= epsilon - row_tol, axis=0)
    return low, high, int(finite.sum())


def random_orthogonal(rng: np.random.Generator, n: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def run_python(source: str, env_extra: dict[str, str], timeout: float = 300) -> str:
    """Runs ``source`` in a fresh interpreter (for JAX flags that must precede import)."""
    env = dict(os.environ, **env_extra)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        capture_output=True, text=True, env=env, timeout=timeout, cwd=root,
    )
    if proc.returncode != 0:
        raise AssertionError(f"subprocess failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


@pytest.fixture
def run_x64(rng):
    """Runs a script with ``JAX_ENABLE_X64=1``; ``SEED`` in the script is replaced by a seed."""
    seed = int(rng.integers(2**31))

    def run(source: str) -> str:
        return run_python(source.replace("SEED", str(seed)), {"JAX_ENABLE_X64": "1"})

    return run
