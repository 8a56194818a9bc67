"""The field's measures of a privileged basis, beside SRM, and their rotation null.

Three measures of whether activations single out the directions of a basis, each computed on the
coordinates ``c = (d·q_k)_k`` of every sample ``d`` in the ``K`` distinct directions ``q_k`` of the
basis (the neurons of a ``±`` orthonormal basis, :func:`srm_jax.neurons.signed_neurons`; for any
other basis the ``m`` projections ``d·b̂_k``):

* **kurtosis** of each token's coordinates across dimensions, ``m₄/m₂²`` with central moments,
  averaged over tokens (Elhage, Lasenby & Olah 2023, *Privileged Bases in the Transformer
  Residual Stream*; Caples & Neuhaus 2024): 3 for Gaussian coordinates, tens to hundreds in a
  privileged stream. It equals ``scipy.stats.kurtosis(c, axis=1, fisher=False)``.
* **outlier dimensions** (Dettmers et al. 2022, *LLM.int8()*): the share of tokens on which a
  dimension reaches ``|c_k| ≥ 6``; a dimension is an outlier dimension when that share is at least
  6 %. The threshold 6 assumes a transformer's hidden-state scale, so a scale-free form is given
  too: ``|c_k| ≥ 6 ·`` the RMS of the token's *other* coordinates (leave-one-out: with the token's
  own RMS a coordinate can never exceed ``√K`` RMS, so ``6`` RMS is unreachable below ``K = 37``).
  The summary statistic of each form is the largest share over dimensions; the report's verdict
  uses the scale-free form.
* **proximity** (the reproduction study's ``max_cosine``, ``train/measure.py``): the median over
  samples of ``max_k |cos(d, b_k)|``. To stay additive the median is read from a histogram of
  :data:`PROXIMITY_BINS` fixed bins on ``[0, 1]``: each value counts at its bin's centre, so the
  median is within half a bin (``1/8192``) of the exact one.

Every measure is a sum over samples (:class:`MeasureSums`, :func:`measure_sums`), so batches,
shards and devices combine by :func:`combine_sums`; :func:`finalise_measures` gives the values.
Rows with NaN/Inf, and zero rows (no direction), are left out (math §1.2).

:func:`measures_rotation_test` compares the basis with Haar-random rotations of it, the data
unchanged (as the SRM rotation test, App. B.1), with this convention for rotation ``i``:
``keys = jax.random.split(key, num_resamples)``, ``q_i = srm_jax.random_orthogonal(keys[i], n)``,
rotated basis ``basis @ q_iᵀ`` (:func:`srm_jax._precision.exact_matmul`). Rotations are drawn
and applied ``rotations_per_batch`` at a time (``jax.lax.map`` over key batches), a number chosen
from a memory budget (:func:`rotation_batch_size`), never all at once. Its per-rotation step,
:func:`measure_basis`, measures any (rotated) basis in row chunks, for an SRM rotation loop to
share the same rotations.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from srm_jax import _validation
from srm_jax._precision import axis_coordinates, exact_matmul
from srm_jax.bases import random_orthogonal
from srm_jax.neurons import SignedBasis, signed_neurons
from srm_jax.significance import permutation_p_value

#: Dettmers et al. (2022): an outlier reaches magnitude 6 ...
OUTLIER_THRESHOLD = 6.0
#: ... on at least 6 % of the tokens (their "sequence dimensions").
OUTLIER_SHARE = 0.06
#: Scale-free form: ``|c_k| ≥`` this times the RMS of the token's other coordinates.
RELATIVE_OUTLIER_THRESHOLD = 6.0
#: Fixed bins of the proximity histogram on ``[0, 1]`` (resolution 1/4096).
PROXIMITY_BINS = 4096
#: The measures' names, in the order of :func:`measure_statistics`.
MEASURES = ("kurtosis", "outlier_share", "outlier_share_relative", "proximity")
#: The default memory budget of the rotation null, in GiB.
DEFAULT_MEMORY_BUDGET_GIB = 4.0
#: Samples per row chunk inside one rotation (bounds the ``(chunk, K)`` coordinates).
ROW_CHUNK = 1024
#: float32 arrays of ``(chunk, K)`` alive at once while one chunk is measured (estimate).
_CHUNK_ARRAYS = 8


@struct.dataclass
class MeasureSums:
    """Additive sums over samples of the three measures: batches, shards and devices add (a
    pytree).

    Attributes:
      num_samples: rows counted (finite and non-zero).
      num_kurtosis: rows whose coordinates have non-zero variance (those with a kurtosis).
      kurtosis_sum: Σ over those rows of the kurtosis ``m₄/m₂²``.
      outlier_counts: int ``(K,)`` rows with ``|c_k| ≥`` the absolute threshold.
      relative_outlier_counts: int ``(K,)`` rows with ``|c_k| ≥`` the relative threshold times
        the RMS of the row's other coordinates.
      proximity_histogram: int ``(bins,)`` rows by ``max_k |cos(d, b_k)|`` in fixed bins of
        ``[0, 1]``.
    """

    num_samples: jax.Array
    num_kurtosis: jax.Array
    kurtosis_sum: jax.Array
    outlier_counts: jax.Array
    relative_outlier_counts: jax.Array
    proximity_histogram: jax.Array


@struct.dataclass
class BasisMeasures:
    """The measures' values (:func:`finalise_measures`); NaN where no sample counted (a
    pytree).

    Attributes:
      num_samples: rows counted.
      kurtosis: mean over tokens of the kurtosis across dimensions (3 for Gaussian).
      outlier_shares: ``(K,)`` share of tokens with ``|c_k| ≥ 6`` (absolute).
      relative_outlier_shares: ``(K,)`` share with ``|c_k| ≥ 6 ×`` the RMS of the others.
      proximity: median over samples of ``max_k |cos(d, b_k)|`` (binned, see the module doc).
    """

    num_samples: jax.Array
    kurtosis: jax.Array
    outlier_shares: jax.Array
    relative_outlier_shares: jax.Array
    proximity: jax.Array


def zero_sums(num_directions: int, bins: int = PROXIMITY_BINS, dtype=jnp.float32) -> MeasureSums:
    """Empty :class:`MeasureSums` for ``K = num_directions`` (the identity of
    :func:`combine_sums`)."""
    k = int(num_directions)
    return MeasureSums(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), jnp.zeros((), dtype),
                       jnp.zeros(k, jnp.int32), jnp.zeros(k, jnp.int32),
                       jnp.zeros(int(bins), jnp.int32))


def combine_sums(a: MeasureSums, b: MeasureSums) -> MeasureSums:
    """The sums of the union of two sets of samples (math §4.4's additivity, for the measures)."""
    return jax.tree_util.tree_map(jnp.add, a, b)


def basis_coordinates(activations: jax.Array, directions: jax.Array) -> jax.Array:
    """Raw coordinates ``(N, K)``: ``d·q_k`` of every sample on unit ``directions`` ``(K, n)``
    (exact float32 product, math §1.4). Pure and jit-safe."""
    return exact_matmul(jnp.asarray(activations), jnp.asarray(directions).T)


def measure_sums(
    coordinates: jax.Array,
    norms: jax.Array,
    *,
    threshold: float = OUTLIER_THRESHOLD,
    relative_threshold: float = RELATIVE_OUTLIER_THRESHOLD,
    bins: int = PROXIMITY_BINS,
) -> MeasureSums:
    """The measures' sums over a batch of samples (Elhage et al. 2023; Dettmers et al. 2022; the
    reproduction study's proximity; see the module docstring).

    Pure and jit-safe (``bins`` static). Rows with NaN/Inf and zero rows count nowhere.

    Args:
      coordinates: ``(N, K)`` raw (unnormalised) coordinates ``d·q_k`` of the samples in the
        basis' directions (:func:`basis_coordinates`).
      norms: ``(N,)`` the samples' norms ``‖d‖`` (for ``|cos| = |d·q_k| / ‖d‖``).
      threshold: the absolute outlier magnitude (Dettmers et al.: 6).
      relative_threshold: the scale-free outlier threshold, in RMS of the row's other
        coordinates.
      bins: fixed bins of the proximity histogram on ``[0, 1]``.

    Returns:
      :class:`MeasureSums`.
    """
    c = jnp.asarray(coordinates)
    c = c.astype(jnp.promote_types(c.dtype, jnp.float32))
    norms = jnp.asarray(norms, c.dtype)
    valid = jnp.all(jnp.isfinite(c), axis=1) & jnp.isfinite(norms) & (norms > 0)
    return _valid_sums(c, valid, norms, jnp.sum(c * c, axis=1), threshold=threshold,
                       relative_threshold=relative_threshold, bins=bins)


def _valid_sums(c, valid, norms, square_sum, *, threshold, relative_threshold, bins):
    """:func:`measure_sums` given each row's validity and ``Σ_k c_k²`` (``square_sum``).

    Every use of a row is masked by ``valid``, so invalid rows (NaN, Inf) need no zeroing: their
    NaN moments and comparisons never reach a sum.
    """
    k = c.shape[1]
    # Kurtosis across dimensions: m4 / m2^2 with central moments (scipy's fisher=False, bias).
    centred = c - jnp.mean(c, axis=1, keepdims=True)
    m2 = jnp.mean(centred**2, axis=1)
    m4 = jnp.mean(centred**4, axis=1)
    has_kurtosis = valid & (m2 > 0)
    kurtosis = jnp.where(has_kurtosis, m4 / jnp.where(has_kurtosis, m2, 1.0) ** 2, 0.0)
    # Outliers: absolute |c| >= threshold; relative c^2 >= t^2 (S - c^2) / (K - 1).
    square = c * c
    others = (square_sum[:, None] - square) / max(k - 1, 1)
    absolute = valid[:, None] & (jnp.abs(c) >= threshold)
    relative = valid[:, None] & (square >= relative_threshold**2 * others)
    # Proximity: max_k |cos(d, q_k)| into fixed bins of [0, 1].
    proximity = jnp.max(jnp.abs(c), axis=1) / jnp.where(valid, norms, 1.0)
    index = jnp.clip(jnp.floor(proximity * bins).astype(jnp.int32), 0, int(bins) - 1)
    histogram = jnp.zeros(int(bins), jnp.int32).at[index].add(valid.astype(jnp.int32))
    return MeasureSums(
        num_samples=jnp.sum(valid, dtype=jnp.int32),
        num_kurtosis=jnp.sum(has_kurtosis, dtype=jnp.int32),
        kurtosis_sum=jnp.sum(kurtosis),
        outlier_counts=_column_counts(absolute),
        relative_outlier_counts=_column_counts(relative),
        proximity_histogram=histogram,
    )


def _column_counts(mask: jax.Array) -> jax.Array:
    """int32 ``(K,)`` true entries of each column of a bool ``(N, K)``: summed as float32 (exact
    below 2²⁴ rows), which XLA:CPU reduces over rows faster than int32."""
    if mask.shape[0] >= 2**24:
        return jnp.sum(mask, axis=0, dtype=jnp.int32)
    return jnp.sum(mask.astype(jnp.float32), axis=0).astype(jnp.int32)


def activation_sums(activations: jax.Array, directions: jax.Array, **kwargs) -> MeasureSums:
    """:func:`measure_sums` of raw ``(N, n)`` activations on unit ``directions`` ``(K, n)``.

    Pure and jit-safe; keyword arguments as :func:`measure_sums`.
    """
    x = jnp.asarray(activations)
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    norms = jnp.linalg.norm(jnp.where(jnp.isfinite(x), x, jnp.nan), axis=1)
    return measure_sums(basis_coordinates(x, directions), norms, **kwargs)


def histogram_median(histogram: jax.Array) -> jax.Array:
    """The median of values binned in ``len(histogram)`` equal bins of ``[0, 1]``, as
    :func:`numpy.median` defines it (the middle value, or the mean of the two middle values)
    with each value at its bin's centre: within half a bin of the exact median. NaN when empty.
    Pure and jit-safe."""
    histogram = jnp.asarray(histogram)
    bins = histogram.shape[0]
    cumulative = jnp.cumsum(histogram)
    total = cumulative[-1]
    lower = jnp.argmax(cumulative >= (total + 1) // 2)  # the ⌈N/2⌉-th value's bin
    upper = jnp.argmax(cumulative >= total // 2 + 1)  # the (⌊N/2⌋ + 1)-th value's bin
    return jnp.where(total > 0, (lower + upper + 1.0) / (2 * bins), jnp.nan)


def finalise_measures(sums: MeasureSums) -> BasisMeasures:
    """The measures' values from their sums (:class:`BasisMeasures`). Pure and jit-safe."""
    count = sums.num_samples
    denominator = jnp.where(count > 0, count, 1).astype(sums.kurtosis_sum.dtype)
    kurtosis = sums.kurtosis_sum / jnp.where(sums.num_kurtosis > 0, sums.num_kurtosis, 1)
    undefined = count == 0
    return BasisMeasures(
        num_samples=count,
        kurtosis=jnp.where(sums.num_kurtosis > 0, kurtosis, jnp.nan),
        outlier_shares=jnp.where(undefined, jnp.nan, sums.outlier_counts / denominator),
        relative_outlier_shares=jnp.where(undefined, jnp.nan,
                                          sums.relative_outlier_counts / denominator),
        proximity=histogram_median(sums.proximity_histogram),
    )


def measure_statistics(measures: BasisMeasures) -> jax.Array:
    """The scalar statistic of each measure, in the order of :data:`MEASURES`: ``(4,)``.

    Kurtosis, the largest absolute outlier share over dimensions, the largest relative
    (scale-free) outlier share, and the proximity. Pure and jit-safe.
    """
    return jnp.stack([
        measures.kurtosis,
        jnp.max(measures.outlier_shares),
        jnp.max(measures.relative_outlier_shares),
        measures.proximity,
    ])


def outlier_dimensions(shares: jax.Array, share: float = OUTLIER_SHARE) -> jax.Array:
    """Bool ``(K,)``: the dimensions that are outliers on at least ``share`` of the tokens
    (Dettmers et al. 2022: 6 %). Pure."""
    return jnp.asarray(shares) >= share


# ------------------------------------------------------------------------------ the null


@struct.dataclass
class MeasuresTest:
    """The measures of a basis against Haar-random rotations of it (the data unchanged; a
    pytree, ``rotations_per_batch`` static).

    Attributes:
      observed: ``(4,)`` the statistics of the basis (:func:`measure_statistics`).
      null: ``(R, 4)`` the same statistics of the rotated bases, rotation ``i`` in row ``i``.
      p_greater: ``(4,)`` one-sided p-values for "higher than rotations" (privileged).
      p_less: ``(4,)`` one-sided p-values for "lower than rotations".
      measures: :class:`BasisMeasures` of the basis on the same samples.
      rotations_per_batch: rotations drawn and applied together.
    """

    observed: jax.Array
    null: jax.Array
    p_greater: jax.Array
    p_less: jax.Array
    measures: BasisMeasures
    rotations_per_batch: int = struct.field(pytree_node=False)


#: Rotations applied together at most, whatever the budget: a larger batch is no faster on CPU
#: (the work is the products and each draw's QR). A bound, not a workaround: the stall once seen
#: on 108 rotations of width 768 (jax 0.10.2, ``jax.random.orthogonal`` vmapped) is the QR's
#: LAPACK custom call running scipy's multi-threaded OpenBLAS on an XLA:CPU worker, whose threads
#: spin-wait while other processes hold the cores. It slows one rotation as much as a batch and
#: goes with ``OPENBLAS_NUM_THREADS=1`` (tests/test_xla_rotation_batch.py;
#: https://github.com/OpenMathLib/OpenBLAS/issues/5517, https://github.com/jax-ml/jax/issues/39292).
MAX_ROTATIONS_PER_BATCH = 16


def rotation_bytes(n: int, m: int, num_directions: int, row_chunk: int = ROW_CHUNK) -> int:
    """Bytes one rotation of the null holds at once (an estimate, float32): the normal draw, its
    QR and ``q`` (``3 n²``), the rotated basis and directions, and one chunk's coordinates."""
    k = int(num_directions)
    return 4 * (3 * n * n + m * n + k * n + _CHUNK_ARRAYS * int(row_chunk) * k
                + PROXIMITY_BINS + 4 * k)


def rotation_batch_size(num_samples: int, n: int, m: int, num_directions: int,
                        num_resamples: int = 199,
                        memory_budget: float = DEFAULT_MEMORY_BUDGET_GIB * 2**30, *,
                        num_rotations=_validation.UNSET) -> int:
    """Rotations to draw and apply together within ``memory_budget`` bytes (at least 1, at most
    :data:`MAX_ROTATIONS_PER_BATCH`, at most ``num_resamples``, the rotations of the null).

    The samples themselves (``num_samples × n`` float32, padded to whole row chunks) are held
    once; each rotation in flight adds :func:`rotation_bytes`. Raises ``MemoryError`` with one
    line naming what to reduce when not even one rotation fits. ``num_rotations`` is the
    deprecated name of ``num_resamples``.
    """
    num_resamples = _validation.renamed("rotation_batch_size", "num_rotations", num_rotations,
                                        "num_resamples", num_resamples, 199)
    chunk = min(ROW_CHUNK, max(1, int(num_samples)))
    rows = -(-int(num_samples) // chunk) * chunk
    fixed = 2 * 4 * rows * n
    per_rotation = rotation_bytes(n, m, num_directions, chunk)
    room = float(memory_budget) - fixed
    if room < per_rotation:
        need = (fixed + per_rotation) / 2**30
        raise MemoryError(
            f"the measures' rotation null needs {need:.2f} GiB for {num_samples:,} samples of "
            f"width {n} but the memory budget is {memory_budget / 2**30:.2f} GiB: reduce "
            "--max-samples or raise --memory-budget"
        )
    return int(max(1, min(int(num_resamples), MAX_ROTATIONS_PER_BATCH, room // per_rotation)))


def measures_rotation_test(
    key: jax.Array,
    activations: jax.Array,
    basis: jax.Array,
    num_resamples: int = 199,
    *,
    memory_budget: float = DEFAULT_MEMORY_BUDGET_GIB * 2**30,
    map_batch_size: int | None = None,
    threshold: float = OUTLIER_THRESHOLD,
    relative_threshold: float = RELATIVE_OUTLIER_THRESHOLD,
    neurons: SignedBasis | None = None,
    num_rotations=_validation.UNSET,
) -> MeasuresTest:
    """The field's measures of ``basis`` against ``num_resamples`` Haar-random rotations of it.

    The rotation test of App. B.1 (as :func:`srm_jax.alignment_test`) with the kurtosis, outlier
    and proximity statistics (:func:`measure_statistics`; Elhage et al. 2023, Dettmers et al.
    2022). Rotation ``i`` is ``q_i = random_orthogonal(keys[i], n)`` with
    ``keys = jax.random.split(key, num_resamples)``, the rotated basis ``basis @ q_iᵀ`` (exact
    product); the directions of a rotated ``±`` basis are taken from the same rows as those of
    the basis. p-values by :func:`srm_jax.permutation_p_value` (``(1 + #{null ≥ observed})/(1 + R)``
    and ``≤`` for ``p_less``).

    Rotations are drawn and applied ``map_batch_size`` at a time (``jax.lax.map`` over batches of
    keys; default: as many as ``memory_budget`` allows, :func:`rotation_batch_size`), and the
    samples are measured ``ROW_CHUNK`` rows at a time inside each rotation: memory does not grow
    with the number of rotations.

    Args:
      key: PRNG key of the rotations.
      activations: ``(N, n)`` samples (rows with NaN/Inf and zero rows are left out).
      basis: concrete ``(m, n)`` basis.
      num_resamples: ``R ≥ 1``, the rotations (199, as :func:`srm_jax.alignment_test`).
      memory_budget: bytes the null may hold at once.
      map_batch_size: rotations together (overrides the budget's choice).
      threshold, relative_threshold: as :func:`measure_sums`.
      neurons: :func:`srm_jax.neurons.signed_neurons` of ``basis`` (computed when omitted).
      num_rotations: deprecated name of ``num_resamples``.

    Returns:
      :class:`MeasuresTest`.
    """
    num_resamples = _validation.renamed("measures_rotation_test", "num_rotations", num_rotations,
                                        "num_resamples", num_resamples, 199)
    if int(num_resamples) < 1:
        raise ValueError(f"num_resamples must be >= 1, got {num_resamples}.")
    x = jnp.asarray(activations, jnp.float32)
    if x.ndim != 2 or x.shape[1] != np.shape(basis)[1]:
        raise ValueError(f"activations must be (N, n) with the basis' n = {np.shape(basis)[1]}, "
                         f"got shape {x.shape}.")
    neurons = signed_neurons(basis) if neurons is None else neurons
    n, m = int(x.shape[1]), int(np.shape(basis)[0])
    if map_batch_size is None:
        map_batch_size = rotation_batch_size(x.shape[0], n, m, neurons.num_directions,
                                             int(num_resamples), memory_budget)
    chunk = min(ROW_CHUNK, max(1, int(x.shape[0])))
    keys = jax.random.split(key, int(num_resamples))
    _, null, measures = _measures_null(
        keys, x, jnp.asarray(basis, jnp.float32), jnp.asarray(neurons.representative),
        jnp.asarray(neurons.sign[neurons.representative], jnp.float32),
        rotations_per_batch=int(map_batch_size), row_chunk=chunk, threshold=float(threshold),
        relative_threshold=float(relative_threshold),
    )
    return measures_test(measures, null, int(map_batch_size))


def measure_basis(activations: jax.Array, basis: jax.Array, representative: jax.Array,
                  signs: jax.Array, *, row_chunk: int = ROW_CHUNK,
                  threshold: float = OUTLIER_THRESHOLD,
                  relative_threshold: float = RELATIVE_OUTLIER_THRESHOLD) -> BasisMeasures:
    """The measures of ``activations`` on ``basis`` (or on a rotated copy ``basis @ qᵀ`` with the
    same rows), ``row_chunk`` samples at a time (``jax.lax.scan``; memory ``row_chunk × K``).

    The per-rotation step of :func:`measures_rotation_test`. Pure and jit-safe (``row_chunk``
    and the thresholds static).

    Args:
      activations: ``(N, n)`` samples (NaN rows and zero rows count nowhere).
      basis: ``(m, n)`` basis, rotated or not.
      representative: int ``(K,)`` one row of each direction (:attr:`SignedBasis.representative`).
      signs: ``(K,)`` the sign of each representative row (``SignedBasis.sign[representative]``).
      row_chunk: samples measured together.
      threshold, relative_threshold: as :func:`measure_sums`.

    Returns:
      :class:`BasisMeasures`.
    """
    b = jnp.asarray(basis)
    unit = b / jnp.linalg.norm(b, axis=1, keepdims=True)
    directions = jnp.asarray(signs, unit.dtype)[:, None] * unit[jnp.asarray(representative)]
    return measure_directions(activations, {"directions": directions}, row_chunk=row_chunk,
                              threshold=threshold, relative_threshold=relative_threshold)


def direction_arguments(neurons: SignedBasis, basis: jax.Array) -> dict:
    """The arrays :func:`measure_directions` needs for ``basis`` (whose neurons are ``neurons``,
    :func:`srm_jax.neurons.signed_neurons`): its unit ``directions`` ``(K, n)`` and, for the
    standard basis, the ``axes`` and ``signs`` that make each coordinate a gather (``±x_i``)
    instead of a product.

    When the directions are the coordinate axes in order (``axes = 0, …, n−1``) ``axes`` is
    ``None``: the coordinates are the samples themselves (times ``signs``; ``None`` when every
    sign is ``+``). ``None`` is an empty pytree, so the choice stays static under ``jax.jit``.
    """
    directions = neurons.directions(jnp.asarray(basis, jnp.float32))
    if not neurons.standard:
        return {"directions": directions}
    values = np.asarray(directions)
    axes = np.argmax(np.abs(values), axis=1)
    signs = np.sign(values[np.arange(len(axes)), axes])
    if np.array_equal(axes, np.arange(values.shape[1])):
        return {"directions": directions, "axes": None,
                "signs": None if np.all(signs > 0) else jnp.asarray(signs, jnp.float32)}
    return {"directions": directions, "axes": jnp.asarray(axes, jnp.int32),
            "signs": jnp.asarray(signs, jnp.float32)}


def direction_coordinates(activations: jax.Array, arguments: dict) -> jax.Array:
    """Raw coordinates ``(N, K)`` of samples on the directions of ``arguments``
    (:func:`direction_arguments`): for a standard basis' ``±e_i`` the samples themselves (times
    the signs; a gather where the axes are not in order), else :func:`basis_coordinates`' exact
    product. Equal to ``basis_coordinates(activations, arguments["directions"])`` on finite rows
    (a product with ``±1`` and ``0`` is exact) without its ``N·n·K`` multiply-adds. Pure and
    jit-safe."""
    x = jnp.asarray(activations)
    if "signs" not in arguments:
        return basis_coordinates(x, jnp.asarray(arguments["directions"], x.dtype))
    return axis_coordinates(x, arguments.get("axes"), arguments["signs"])


def _direction_sums(rows: jax.Array, arguments: dict, **kwargs) -> MeasureSums:
    """:func:`measure_sums` of ``(C, n)`` samples on the directions of ``arguments``
    (:func:`direction_arguments`)."""
    if "signs" not in arguments:
        return activation_sums(rows, jnp.asarray(arguments["directions"], rows.dtype), **kwargs)
    c = direction_coordinates(rows, arguments)
    if arguments.get("axes") is None:
        # The coordinates are the samples: Σ_k c_k² is ‖d‖², and a row is valid when it is
        # finite and non-zero, exactly when ‖d‖² is (an Inf or NaN makes it Inf or NaN).
        square_sum = jnp.sum(rows * rows, axis=1)
        valid = jnp.isfinite(square_sum) & (square_sum > 0)
        return _valid_sums(c, valid, jnp.sqrt(square_sum), square_sum, **kwargs)
    norms = jnp.linalg.norm(jnp.where(jnp.isfinite(rows), rows, jnp.nan), axis=1)
    return measure_sums(c, norms, **kwargs)


@partial(jax.jit, static_argnames=("row_chunk", "threshold", "relative_threshold"))
def measure_directions(
    activations: jax.Array,
    arguments: dict,
    *,
    row_chunk: int = ROW_CHUNK,
    threshold: float = OUTLIER_THRESHOLD,
    relative_threshold: float = RELATIVE_OUTLIER_THRESHOLD,
) -> BasisMeasures:
    """The measures of ``activations`` on unit directions (:func:`direction_arguments`),
    ``row_chunk`` samples at a time (``jax.lax.scan`` over the whole chunks, then the rest;
    memory ``row_chunk × K``).

    With ``axes`` the coordinates are gathered (``signs · x[:, axes]``, the standard basis; the
    samples themselves when ``axes`` is ``None``); otherwise they are an exact product. Pure and
    jitted (``row_chunk`` and the thresholds static): an eager call compiles once per shape, not
    its scan's body at every call.
    """
    x = jnp.asarray(activations)
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    n = x.shape[1]
    row_chunk = int(min(row_chunk, max(1, x.shape[0])))
    whole = x.shape[0] // row_chunk * row_chunk
    chunk_sums = partial(_direction_sums, arguments=arguments, threshold=threshold,
                         relative_threshold=relative_threshold, bins=PROXIMITY_BINS)
    sums = zero_sums(jnp.shape(arguments["directions"])[0])
    if whole:
        sums, _ = jax.lax.scan(lambda total, rows: (combine_sums(total, chunk_sums(rows)), None),
                               sums, x[:whole].reshape(-1, row_chunk, n))
    if whole < x.shape[0]:  # the last rows, a smaller chunk: no padded copy of the samples
        sums = combine_sums(sums, chunk_sums(x[whole:]))
    return finalise_measures(sums)


def rotated_statistics(rotated: jax.Array, arguments: dict, *, row_chunk: int = ROW_CHUNK,
                       threshold: float = OUTLIER_THRESHOLD,
                       relative_threshold: float = RELATIVE_OUTLIER_THRESHOLD) -> jax.Array:
    """:func:`measure_statistics` of samples already rotated, ``x q``, on the basis' own
    directions: the statistics of ``x`` on the rotated basis ``b qᵀ`` (the coordinates are the
    same, ``(b qᵀ) xᵀ = b (x q)ᵀ``). The ``measure`` of :func:`srm_jax.alignment_test`, which
    then measures SRM and the field's measures on one product per rotation. Pure and jit-safe.
    """
    return measure_statistics(measure_directions(
        rotated, arguments, row_chunk=row_chunk, threshold=threshold,
        relative_threshold=relative_threshold))


def measures_test(measures: BasisMeasures, null: jax.Array,
                  rotations_per_batch: int) -> MeasuresTest:
    """:class:`MeasuresTest` from the measures of the basis and the ``(R, 4)`` statistics of
    its rotations (:func:`measure_statistics`), with the p-values of
    :func:`srm_jax.permutation_p_value`."""
    observed = measure_statistics(measures)
    return MeasuresTest(
        observed=observed,
        null=null,
        p_greater=permutation_p_value(observed, null, "greater"),
        p_less=permutation_p_value(observed, null, "less"),
        measures=measures,
        rotations_per_batch=int(rotations_per_batch),
    )


@partial(jax.jit, static_argnames=("rotations_per_batch", "row_chunk", "threshold",
                                   "relative_threshold"))
def _measures_null(keys, x, basis, representative, signs, *, rotations_per_batch, row_chunk,
                   threshold, relative_threshold):
    n = x.shape[1]

    def measure(b):
        return measure_basis(x, b, representative, signs, row_chunk=row_chunk,
                             threshold=threshold, relative_threshold=relative_threshold)

    def rotated(k):
        q = random_orthogonal(k, n, dtype=basis.dtype)
        return measure_statistics(measure(exact_matmul(basis, q.T)))

    batch = None if rotations_per_batch == 1 else rotations_per_batch
    null = jax.lax.map(rotated, keys, batch_size=batch)
    measures = measure(basis)
    return measure_statistics(measures), null, measures


def two_sided(p_greater: float, p_less: float) -> float:
    """The two-sided p-value of the report's convention: ``min(1, 2 min(p_greater, p_less))``."""
    if not (math.isfinite(p_greater) and math.isfinite(p_less)):
        return math.nan
    return min(1.0, 2.0 * min(p_greater, p_less))
