"""Benchmark workloads of issue 5, with fixed seeds.

Activations are clustered around the basis: a basis row (unit length) scaled by 3 plus
unit-variance Gaussian noise, ``d = 3 b̂_k + z``, ``k`` uniform, ``z ~ N(0, I_n)``. The basis is a
fixed Gaussian draw (rows normalised; not orthogonal). With ``n = 24`` the noise (norm ≈ √24)
outweighs the signal (norm 3), so ``|d̂·b̂_k| ≈ 0.5`` and at ε = 0.9 few (sample, plane) pairs
light any angle: most of SRM's per-pair work can be skipped, which the arc kernel exploits.
``dense=True`` variants (noise scaled to unit total variance, ``z ~ N(0, I_n/n)``) light a
plane for most of its cluster's samples and show the kernel when lit pairs are many.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class Workload:
    """One SRM problem: ``N`` samples in ``n`` dimensions, ``m`` basis vectors, ``T`` angles."""

    name: str
    num_samples: int
    n: int
    m: int
    kind: str
    num_angles: int
    epsilon: float
    seed: int = 0
    dense: bool = False

    @property
    def num_planes(self) -> int:
        return self.m * (self.m - 1) // (2 if self.kind == "comb" else 1)

    def replace(self, **changes) -> Workload:
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        return (
            f"N={self.num_samples:,} n={self.n} m={self.m} {self.kind} P={self.num_planes:,} "
            f"T={self.num_angles} eps={self.epsilon}" + (" dense" if self.dense else "")
        )


FIG1 = Workload("fig1", 10_000, 24, 48, "comb", 100, 0.9)
LARGE = Workload("large", 60_000, 24, 96, "perm", 360, 0.8)
FIG1_DENSE = FIG1.replace(name="fig1-dense", dense=True)
WORKLOADS = {w.name: w for w in (FIG1, LARGE, FIG1_DENSE)}

# One axis at a time around fig1 (log-spaced).
SWEEP_VALUES = {
    "num_samples": (1_000, 10_000, 100_000, 1_000_000),
    "m": (8, 16, 32, 64, 128, 256),
    "num_angles": (16, 64, 256, 1024, 4096),
}
QUICK_SWEEP_VALUES = {
    "num_samples": (1_000, 10_000),
    "m": (8, 32),
    "num_angles": (16, 256),
}


def sweep(axis: str, quick: bool = False) -> list[Workload]:
    """The fig1 workload with one parameter swept over ``SWEEP_VALUES[axis]``."""
    values = (QUICK_SWEEP_VALUES if quick else SWEEP_VALUES)[axis]
    return [FIG1.replace(name=f"sweep-{axis}={v}", **{axis: v}) for v in values]


def make_basis(workload: Workload) -> np.ndarray:
    """``(m, n)`` float32 basis: a fixed Gaussian draw, rows normalised."""
    rng = np.random.default_rng([workload.seed, workload.m, workload.n])
    basis = rng.standard_normal((workload.m, workload.n))
    return (basis / np.linalg.norm(basis, axis=1, keepdims=True)).astype(np.float32)


def make_activations(workload: Workload, seed_offset: int = 0) -> np.ndarray:
    """``(N, n)`` float32 activations ``3 b̂_k + z`` around the workload's basis."""
    basis = make_basis(workload)
    rng = np.random.default_rng([workload.seed + seed_offset, workload.num_samples, 1])
    cluster = rng.integers(0, workload.m, workload.num_samples)
    scale = 1 / np.sqrt(workload.n) if workload.dense else 1.0
    noise = rng.standard_normal((workload.num_samples, workload.n), dtype=np.float32)
    return (3 * basis[cluster] + scale * noise).astype(np.float32)


def make_pairs(workload: Workload) -> np.ndarray:
    """The ``(P, 2)`` planes in math §2.1 order."""
    gen = itertools.combinations if workload.kind == "comb" else itertools.permutations
    return np.array(list(gen(range(workload.m), 2)), dtype=np.int32)


def make_angles(workload: Workload) -> np.ndarray:
    """The default grid, ``linspace(0, 2π, T)`` with the endpoint (math §4.5), float32."""
    return np.linspace(0, 2 * np.pi, workload.num_angles, dtype=np.float32)


@dataclasses.dataclass(frozen=True)
class WideWorkload:
    """A language-model-width problem (issue 16): ``n`` units, the ``±e_i`` basis (``m = 2n``),
    every spanning comb plane, ``T`` angles, heavy-tailed tokens with outlier channels."""

    name: str
    n: int
    num_samples: int
    num_angles: int = 100
    epsilon: float = 0.9
    seed: int = 0

    @property
    def num_planes(self) -> int:
        return 2 * self.n * (2 * self.n - 1) // 2 - self.n

    def replace(self, **changes) -> WideWorkload:
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        return (f"N={self.num_samples:,} n={self.n} m={2 * self.n} ±e_i comb "
                f"P={self.num_planes:,} T={self.num_angles} eps={self.epsilon}")


LLM768 = WideWorkload("llm768", 768, 20_000)
LLM3072 = WideWorkload("llm3072", 3072, 100_000)
WIDE_WORKLOADS = {w.name: w for w in (LLM768, LLM3072)}
# Outlier channels of the heavy-tailed tokens, and their scale (GPT-2's residual stream has a
# handful of channels one to two orders of magnitude above the rest).
NUM_OUTLIER_CHANNELS = 6
OUTLIER_SCALE = 30.0


def outlier_channels(n: int, seed: int = 0) -> np.ndarray:
    """The fixed outlier channels of :func:`make_wide_activations` (sorted)."""
    rng = np.random.default_rng([seed, n, 7])
    return np.sort(rng.choice(n, NUM_OUTLIER_CHANNELS, replace=False))


def make_wide_activations(n: int, num_samples: int, seed: int = 0, start: int = 0) -> np.ndarray:
    """``(num_samples, n)`` float32 heavy-tailed tokens (Student-t, 3 degrees of freedom) whose
    :func:`outlier_channels` are scaled by ``OUTLIER_SCALE``: rows ``start…`` of one fixed
    stream (generated in blocks, so a file of any length can be written block by block)."""
    channels = outlier_channels(n, seed)
    rng = np.random.default_rng([seed, n, start])
    x = rng.standard_t(3, (num_samples, n)).astype(np.float32)
    x[:, channels] *= OUTLIER_SCALE
    return x


def spread_tokens(n: int, num_samples: int, epsilon: float, seed: int = 0) -> np.ndarray:
    """``(num_samples, n)`` float32 tokens that are the sample-major kernel's worst case at
    ``epsilon`` on the ``±e_i`` basis: each has equal magnitude on ``s = ⌈1/ε²⌉ − 1`` random
    coordinates (``z² = 1/s > ε²``, random signs) and ``1e-3`` Gaussian noise elsewhere, so
    every one of its ``s`` directions leads and lights every plane it spans (``s = 1`` at
    ε > 0.71: one-hot tokens)."""
    rng = np.random.default_rng([seed, n, 11])
    s = max(1, min(n, math.ceil(1 / (epsilon * epsilon)) - 1))
    x = 1e-3 * rng.standard_normal((num_samples, n)).astype(np.float32)
    idx = np.argsort(rng.random((num_samples, n)), axis=1)[:, :s]
    x[np.arange(num_samples)[:, None], idx] = rng.choice([-1.0, 1.0], (num_samples, s))
    return x
