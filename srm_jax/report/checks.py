"""The report's checks of its settings, and its memory plan (all before anything is computed)."""

from __future__ import annotations

import math

import numpy as np

from srm_jax import _validation
from srm_jax import basis_measures as _measures
from srm_jax.report.defaults import (
    DEFAULT_MAX_SAMPLES,
    DEFAULT_TOP,
    MIN_MAX_SAMPLES,
    PEAK_CANDIDATES,
    ROTATION_TEST_ENUMERATION,
    ROTATION_TEST_WORK,
)
from srm_jax.report.errors import ReportError


def check_basis(basis, n: int) -> np.ndarray:
    """A basis given as an array, checked (:func:`srm_jax._validation.check_basis`: ``(m, n)``,
    ``m ≥ 2``, finite, no zero row; real numbers of the activations' width ``n``), as float32."""
    b = np.asarray(basis)
    if not np.issubdtype(b.dtype, np.number) or np.issubdtype(b.dtype, np.complexfloating):
        raise ReportError(f"the basis must be real numbers, got dtype {b.dtype}")
    try:
        _validation.check_basis(b)
    except ValueError as error:
        raise ReportError(str(error)) from None
    if b.shape[1] != n:
        raise ReportError(
            f"the basis has width n={b.shape[1]} but the activations have n={n} features"
        )
    return b.astype(np.float32)


def check_epsilon(epsilon: float) -> float:
    """``ε`` as a float, checked to lie in ``[−1, 1]`` (:func:`srm_jax._validation.check_epsilon`;
    a :class:`ReportError`)."""
    try:
        _validation.check_epsilon(epsilon)
    except ValueError as error:
        raise ReportError(str(error)) from None
    return float(epsilon)


def check_count(name: str, value: int | None) -> None:
    """Raises unless the setting ``name`` is ``None`` or at least 1."""
    if value is not None and int(value) < 1:
        raise ReportError(f"{name}= must be >= 1, got {value}")


def check_top(top: int | None, num_planes: int) -> int:
    """``top``, checked: ``1 ≤ top ≤`` the planes measured; default ``min(20, P)``."""
    if top is None:
        return min(DEFAULT_TOP, int(num_planes))
    check_count("top", top)
    if int(top) > int(num_planes):
        raise ReportError(f"top= {top} is larger than the {num_planes:,} planes measured")
    return int(top)


def memory_budget_bytes(gib: float) -> float:
    """A memory budget of ``gib`` GiB in bytes, checked to be positive and finite."""
    if not (math.isfinite(gib) and gib > 0):
        raise ReportError(f"memory_budget= must be a positive number of GiB, got {gib:g}")
    return float(gib) * 2**30


def default_max_samples(n: int, num_directions: int, num_rotations: int,
                        least_epsilon: float | None = None, max_cosine: float = 0.0) -> int:
    """The report's default ``max_samples`` (the analysis subset of the rotation tests).

    :data:`DEFAULT_MAX_SAMPLES`, or fewer where the ``R`` rotations of a test cost more: each
    projects the subset on the rotated basis, ``S · n · K`` multiply-adds, kept under
    :data:`ROTATION_TEST_WORK`; and with a ``least_epsilon > 0`` (the least ε tested) each
    rotated copy is enumerated by the sample-major kernel (math §5.1), about ``K (1 + L)``
    direction tests a sample, kept under :data:`ROTATION_TEST_ENUMERATION`. ``L`` is the
    expected number of leading directions (``z² ≥ τ``, ``τ = ε²(1 − c_max)/2``,
    ``c_max = max_cosine``) of a rotated copy, which a Haar rotation makes isotropic:
    ``L = K · P(n z² ≥ n τ) ≈ K · erfc(√(n τ / 2))`` (``n z²`` of a uniform unit vector is
    χ²₁ as ``n`` grows). Never below :data:`MIN_MAX_SAMPLES`. SRM itself, the neuron ranking
    and the measures' values count every row.
    """
    rotations = max(1, int(num_rotations))
    size = ROTATION_TEST_WORK // (rotations * int(n) * int(num_directions))
    if least_epsilon is not None and least_epsilon > 0:
        tau = float(least_epsilon) ** 2 * (1.0 - float(max_cosine)) / 2.0
        leaders = num_directions * math.erfc(math.sqrt(int(n) * tau / 2.0))
        tests = rotations * num_directions * (1.0 + leaders)
        size = min(size, ROTATION_TEST_ENUMERATION // tests)
    return int(min(DEFAULT_MAX_SAMPLES, max(MIN_MAX_SAMPLES, size)))


def check_memory(num_samples: int, n: int, m: int, num_directions: int, num_planes: int,
                 num_angles: int, num_rotations: int, memory_budget: float, *,
                 summaries: bool = False) -> int:
    """The up-front memory check of a report; returns the measures' rotations per batch.

    Counts what the report holds at once (:func:`report_bytes`) and one batch of rotations of
    the field's measures (:func:`srm_jax.basis_measures.rotation_batch_size`). Raises
    :class:`ReportError` in one line naming what to reduce when even one rotation does not fit
    in ``memory_budget`` bytes.
    """
    held = report_bytes(num_samples, n, num_directions, num_planes, num_angles,
                        summaries=summaries)
    if held >= memory_budget:
        reduce = "max_samples=" if summaries else "max_samples= or max_planes="
        raise ReportError(
            f"the report needs {held / 2**30:.2f} GiB before any rotation ({num_samples:,} samples "
            f"of width {n}, {num_planes:,} planes) but the memory budget is "
            f"{memory_budget / 2**30:.2f} GiB: reduce {reduce}, or raise memory_budget="
        )
    try:
        return _measures.rotation_batch_size(num_samples, n, m, num_directions, num_rotations,
                                             memory_budget - held)
    except MemoryError as error:
        raise ReportError(str(error)) from None


def report_bytes(num_samples: int, n: int, num_directions: int, num_planes: int,
                 num_angles: int, *, summaries: bool = False) -> int:
    """Bytes a report holds beside the rotation batches (an estimate, 4-byte entries).

    The analysis subset (``S × n``), the planes (``P × 2``), the neuron map (``K × K``) and SRM:
    with counts, the ``(P, T)`` counts, the self-SRM reference and the per-plane band (three
    ``(P, T)`` arrays, one of them transient); with summaries, the per-plane totals of the data,
    the reference and a rotation (two limbs each: ``6 P``), the sample-major kernel's per-plane
    accumulator and plane table (``2 K² · 4`` for a ``±`` basis) and the candidates' ``(C, T)``
    counts, never ``(P, T)``.
    """
    k = int(num_directions)
    fixed = int(num_samples) * int(n) + 2 * int(num_planes) + k * k
    if summaries:
        srm = 6 * int(num_planes) + 8 * k * k + PEAK_CANDIDATES * int(num_angles)
    else:
        srm = 3 * int(num_planes) * int(num_angles)
    return 4 * (fixed + srm)
