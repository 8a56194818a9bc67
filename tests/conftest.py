"""Shared test fixtures and independent NumPy float64 references."""

from __future__ import annotations

import functools
import gc
import itertools
import json
import os
import subprocess
import sys
import textwrap
import zlib

import jax
import numpy as np
import pytest
import scipy.linalg
from jax import monitoring

import srm_jax
from srm_jax.report.cli import one_blas_thread

# OpenBLAS on one thread in every test process, whatever ran before in it (the report's console
# entry point does the same): jaxlib's QR calls SciPy's OpenBLAS from XLA:CPU's own threads, and
# a threaded OpenBLAS there oversubscribes the cores a second worker holds.
one_blas_thread()

# One compiled in-memory SRM reference shared by the test modules (the eager engine dispatches
# op by op). It uses the engine's "direct" method, the cheaper to compile; with every sample away
# from the threshold (see `away_from_threshold`) all methods give identical counts.
SRM = jax.jit(
    functools.partial(srm_jax.spotlight_resonance, method="direct"),
    static_argnames=("planes", "signed", "max_planes", "chunk_size"),
)
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


class CompileCounter:
    """Counts XLA backend compilations (jax.monitoring) while active."""

    def __init__(self):
        self.count = 0

    def __call__(self, event, duration, **kwargs):
        if event == COMPILE_EVENT:
            self.count += 1

    def __enter__(self):
        monitoring.register_event_duration_secs_listener(self)
        return self

    def __exit__(self, *exc):
        monitoring.unregister_event_duration_listener(self)


def pearson(a, b) -> float:
    """Pearson correlation of two curves in float64 (the alignment score's definition)."""
    a = np.asarray(a, np.float64) - np.mean(a)
    b = np.asarray(b, np.float64) - np.mean(b)
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


@pytest.fixture(scope="module", autouse=True)
def _release_compiled_code():
    """Drops JAX's compiled executables after each test module.

    Each executable holds about 20 memory mappings of XLA:CPU code; a test worker that keeps
    every one of a few thousand reaches Linux's ``vm.max_map_count`` (65,530), and the next
    compilation segfaults inside XLA (seen in CI after ~25 minutes of one worker).
    """
    yield
    jax.clear_caches()
    gc.collect()


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


def away_from_threshold(rng, x, basis, angles, epsilons, transform=None, tol=1e-4):
    """Redraw the rows of ``x`` whose ``d̂·s(θ)`` lies within ``tol`` of some ``±ε`` (float64).

    Such a sample may fall on either side of the threshold with float32 rounding, which can
    depend on the batch shape (XLA's matrix products); away from it every way of batching,
    sharding or compiling must give identical counts. NaN rows are kept.
    """
    transform = transform or (lambda v: v)
    pairs = reference_pairs(basis.shape[0], "comb")
    for _ in range(100):
        dots = np.abs(reference_dots(transform(x), basis, pairs, angles))
        near = np.zeros(len(x), bool)
        for eps in epsilons:
            near |= np.any(np.abs(dots - eps) < tol, axis=(1, 2))
        if not near.any():
            return x
        x[near] = rng.standard_normal((int(near.sum()), x.shape[1])).astype(x.dtype)
    raise AssertionError("could not draw samples away from the threshold")


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


def run_report(argv, capsys):
    """``srm-jax report ARGV`` in this process: ``(status, stdout, stderr)``."""
    from srm_jax.report import cli

    status = cli.main(["report", *(str(a) for a in argv)])
    out, err = capsys.readouterr()
    return status, out, err


def load_report(out_dir) -> dict:
    """The ``report.json`` that ``srm-jax report`` wrote in ``out_dir``."""
    with open(os.path.join(out_dir, "report.json")) as fh:
        return json.load(fh)
