"""The two NumPy baselines srm-jax is timed against (issue 5). Baselines, not part of the library.

* :func:`published_counts`: the paper's App. A algorithm as published, plane by plane: the
  bivector ``B_αβ = ½(b̂_α b̂_βᵀ − b̂_β b̂_αᵀ)`` is eigendecomposed with ``np.linalg.eig``, its
  eigenvalues are normalised to ``±i``, the rotations ``R(θ) = V exp(θΛ) V^H`` (Eqn. 3) are formed
  for every angle, and the normalised activations are compared with every rotated spotlight
  ``s(θ) = R(θ) b̂_α`` by an einsum and counted ``≥ ε``; ``form`` picks the published single
  einsum or the cheaper two steps. It is float64 (complex128 for the eigendecomposition), as
  NumPy's defaults give. It is slow, so the benchmark times a few planes and scales by ``P``.
  (For ``n > 3``, ``np.linalg.eig`` returns a non-orthonormal basis of the ``(n−2)``-fold zero
  eigenspace, so ``R(θ)`` itself is not orthogonal; ``R(θ) b̂_α`` is still exact, as ``b̂_α`` is
  orthogonal to that eigenspace.)
* :func:`vectorised_counts`: what a competent NumPy user would write from math §5, float32: one
  matrix product ``D̂ B̂ᵀ`` gives every plane's coordinates ``x = d̂·b̂_α``,
  ``y = (d̂·b̂_β − c x)/√(1 − c²)``; each (sample, plane) lights an arc of angles,
  ``θ ∈ [−φ − w, −φ + w]`` with ``φ = atan2(y, x)``, ``w = arccos(ε/r)``, found on the sorted
  angles by ``np.searchsorted`` and added into a difference array with ``np.add.at`` (only the
  bins the arcs touch; no full-length pass over the ``P × (2T + 1)`` histogram per chunk). It
  streams over chunks of samples, as the library does, so that the ``N × P`` temporaries fit.

Both count ``#{d̂·s ≥ ε}`` (SRM, Eqn. 2) as integers ``(P, T)`` and agree with srm-jax except
where ``d̂·s`` lies within rounding of ``ε`` (``tests/test_baselines.py``). Rows with NaN/Inf
are left out and zero rows stay zero (math §1.2), so the comparison is like for like.
"""

from __future__ import annotations

import math

import numpy as np

TWO_PI = 2.0 * math.pi


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms == 0, 1, norms)


def _finite_rows(activations: np.ndarray) -> np.ndarray:
    return activations[np.all(np.isfinite(activations), axis=1)]


def published_rotations(b_alpha: np.ndarray, b_beta: np.ndarray, angles: np.ndarray):
    """``(T, n, n)`` rotations ``R(θ) = V exp(θΛ) V^H`` of one plane (App. A steps 2-5, Eqn. 3)."""
    a, b = _normalise(b_alpha), _normalise(b_beta)
    bivector = 0.5 * (np.outer(a, b) - np.outer(b, a))
    values, vectors = np.linalg.eig(bivector)
    # The two non-zero eigenvalues are ±iλ: normalise them to ±i (the rest are ~0).
    values = 1j * values.imag / np.abs(values.imag).max()
    exponentials = np.exp(np.outer(angles, values))  # (T, n)
    rotations = np.einsum("ij,tj,kj->tik", vectors, exponentials, vectors.conj())
    return rotations.real


def published_counts(
    activations: np.ndarray,
    basis: np.ndarray,
    pairs: np.ndarray,
    angles: np.ndarray,
    epsilon: float,
    *,
    form: str = "published",
) -> np.ndarray:
    """SRM counts ``(len(pairs), T)`` by the paper's App. A algorithm, one plane at a time.

    ``form="published"`` compares the activations with the rotated basis vector in one einsum
    over activations, basis vector and rotation matrices, ``einsum("bi,j,tij->bt", D̂, b̂_α, R)``,
    as the authors' published implementation does (NumPy evaluates it without reordering, so it
    costs ``N·T·n²`` per plane). ``form="two-step"`` follows the steps of App. A literally and
    more cheaply: rotate first, ``s(θ) = R(θ) b̂_α``, then ``D̂ sᵀ`` (``N·T·n`` per plane).
    """
    if form not in ("published", "two-step"):
        raise ValueError(f"form must be 'published' or 'two-step', got {form!r}.")
    unit_data = _normalise(_finite_rows(np.asarray(activations, np.float64)))
    unit_basis = _normalise(np.asarray(basis, np.float64))
    angles = np.asarray(angles, np.float64)
    counts = np.zeros((len(pairs), len(angles)), np.int64)
    for p, (alpha, beta) in enumerate(np.asarray(pairs)):
        rotations = published_rotations(unit_basis[alpha], unit_basis[beta], angles)
        if form == "published":
            similarities = np.einsum("bi,j,tij->bt", unit_data, unit_basis[alpha], rotations)
        else:
            spotlights = rotations @ unit_basis[alpha]  # (T, n): b̂'_α(θ) = R(θ) b̂_α
            similarities = np.einsum("bi,ti->bt", unit_data, spotlights)
        counts[p] = np.sum(similarities >= epsilon, axis=0)
    return counts


def vectorised_counts(
    activations: np.ndarray,
    basis: np.ndarray,
    pairs: np.ndarray,
    angles: np.ndarray,
    epsilon: float,
    *,
    chunk_elements: int = 1 << 22,
) -> np.ndarray:
    """SRM counts ``(P, T)`` by the arc form of math §5 in vectorised float32 NumPy."""
    dtype = np.float32
    unit_data = _normalise(_finite_rows(np.asarray(activations, dtype)))
    unit_basis = _normalise(np.asarray(basis, dtype))
    pairs = np.asarray(pairs)
    alpha, beta = pairs[:, 0], pairs[:, 1]
    num_planes, num_angles = len(pairs), len(angles)
    cos = np.sum(unit_basis[alpha] * unit_basis[beta], axis=1)
    sine = np.linalg.norm(unit_basis[beta] - cos[:, None] * unit_basis[alpha], axis=1)
    # Angles reduced to [0, 2π) and sorted, twice over, so that an arc past 2π is one interval.
    reduced = np.mod(np.asarray(angles, dtype), dtype(TWO_PI))
    order = np.argsort(reduced, kind="stable")
    extended = np.concatenate([reduced[order], reduced[order] + dtype(TWO_PI)])
    width = 2 * num_angles + 1
    offsets = (np.arange(num_planes) * width)[None, :]
    diff = np.zeros(num_planes * width, np.int64)
    full_total = np.zeros(num_planes, np.int64)
    eps = dtype(epsilon)
    chunk = max(1, chunk_elements // num_planes)
    for first in range(0, len(unit_data), chunk):
        projections = unit_data[first : first + chunk] @ unit_basis.T  # the one matrix product
        x = projections[:, alpha]
        y = (projections[:, beta] - cos * x) / sine
        r = np.hypot(x, y)
        full = r <= -eps
        partial = (r >= eps) & ~full
        full_total += full.sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            half_width = np.arccos(np.clip(eps / r[partial], -1, 1))
        lo = np.mod(-np.arctan2(y[partial], x[partial]) - half_width, dtype(TWO_PI))
        start = np.searchsorted(extended, lo, side="left")
        stop = np.searchsorted(extended, lo + 2 * half_width, side="right")
        plane_offset = np.broadcast_to(offsets, partial.shape)[partial]
        # Only the bins the arcs touch: an unbuffered scatter-add, no full-length pass per chunk.
        np.add.at(diff, plane_offset + start, 1)
        np.add.at(diff, plane_offset + stop, -1)
    extended_counts = np.cumsum(diff.reshape(num_planes, width), axis=1)
    sorted_counts = extended_counts[:, :num_angles] + extended_counts[:, num_angles:-1]
    counts = np.empty_like(sorted_counts)
    counts[:, order] = sorted_counts
    return counts + full_total[:, None]
