"""Per-class signed SRM and a grandmother-neuron finder (paper App. B.2, Figs. 3–4; Eqn. 4).

The paper hand-picks planes whose signed SRM differs between classes (a neuron that fires
positively for some digits and negatively for others). This module measures the signed SRM of
every plane for every class in one pass, scores every plane and every single basis vector by how
much the class changes its firing (*class selectivity*), and calibrates the scores against the
same scores with shuffled labels, so a ranking can be read against "what no selectivity looks
like".

Selectivity statistic (documented choice). With per-class curves ``v_c`` (signed SRM of a plane,
``(T,)``, or the signed firing of one basis vector, a scalar), class weights ``w_c = N_c/N`` and
the pooled curve ``v̄ = Σ_c w_c v_c`` (the SRM of all labelled samples),
``S = √( Σ_c w_c · mean_θ (v_c(θ) − v̄(θ))² )``: the class-weighted RMS deviation of the class
curves from the pooled one, in units of "fraction of samples". ``S = 0`` when the class carries
no information about the firing; a neuron that fires (cosine ≥ ε) for every sample of one class of
weight ``w`` and never otherwise has ``S = √(w(1 − w))``.

Single-vector firing of basis vector ``i`` for class ``c``:
``(#{d̂·b̂_i ≥ ε} − #{d̂·b̂_i ≤ −ε}) / N_c`` (signed; the signed SRM at θ = 0 of every plane
``(i, ·)``), or only the first term when unsigned.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from srm_jax import _validation
from srm_jax._precision import exact_matmul, working_dtype
from srm_jax.resonance import SRMResult, plan_counts, plan_measurement, validate_inputs
from srm_jax.rotation import normalise_rows
from srm_jax.significance import batched_map, monte_carlo_sizes, permutation_p_value, planes_key


def _check_labels(activations, labels, num_classes) -> jax.Array:
    labels = jnp.asarray(labels)
    if labels.shape != (activations.shape[0],):
        raise ValueError(
            f"labels must have shape ({activations.shape[0]},) (one per sample), got "
            f"{labels.shape}."
        )
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
    return labels.astype(jnp.int32)


def per_class_srm(
    activations: jax.Array,
    basis: jax.Array,
    labels: jax.Array,
    *,
    num_classes: int,
    epsilon: float | jax.Array,
    angles: jax.Array | None = None,
    planes: str | jax.Array = "comb",
    signed: bool = True,
    method: str = "auto",
    max_planes: int | None = None,
    key: jax.Array | None = None,
    chunk_size: int | None = None,
) -> SRMResult:
    """Signed SRM (Eqn. 4) of every plane for every class, in one pass (App. B.2, Figs. 3–4).

    Args:
      activations: ``(N, n)`` samples.
      basis: ``(m, n)`` privileged basis.
      labels: int ``(N,)`` class of each sample in ``[0, num_classes)``; samples with another
        label (e.g. ``-1``) are left out, as are rows with NaN/Inf.
      num_classes: ``C`` (static).
      epsilon, angles, planes, method, max_planes, key, chunk_size: as
        :func:`srm_jax.spotlight_resonance`.
      signed: signed SRM (default, as the paper's per-class figures) or plain SRM.

    Returns:
      An :class:`srm_jax.SRMResult` with a leading class axis: ``counts`` (and
      ``negative_counts``) ``(C, P, T)``, ``num_samples`` ``(C,)``; ``values`` is ``(C, P, T)``
      (NaN for a class with no samples) and ``mean_curve`` ``(C, T)``.
    """
    plan, pairs, angles = plan_measurement(
        activations, basis, epsilon=epsilon, angles=angles, planes=planes, signed=signed,
        method=method, max_planes=max_planes, key=key, chunk_size=chunk_size,
    )
    labels = _check_labels(activations, labels, num_classes)
    return _per_class_srm(
        activations, basis, labels, pairs, angles, epsilon, num_classes=int(num_classes),
        plan=plan,
    )


@partial(jax.jit, static_argnames=("num_classes", "plan"))
def _per_class_srm(activations, basis, labels, pairs, angles, epsilon, *, num_classes, plan):
    grouped = plan_counts(plan, activations, basis, pairs, angles, epsilon, groups=labels,
                          num_groups=num_classes)
    return SRMResult.from_counts(grouped, pairs, epsilon, plan.signed)


def _valid_samples(activations, labels, num_classes):
    return jnp.all(jnp.isfinite(activations), axis=1) & (labels >= 0) & (labels < num_classes)


def _firing_from_projections(projections, labels, valid, num_classes, epsilon, signed):
    """Per-class signed firing counts of every basis vector and the class sizes."""
    live = valid[:, None]
    fire = ((projections >= epsilon) & live).astype(jnp.int32)
    if signed:
        fire = fire - ((projections <= -epsilon) & live).astype(jnp.int32)
    groups = jnp.where(valid, labels, 0)
    counts = jax.ops.segment_sum(fire, groups, num_segments=num_classes)
    sizes = jax.ops.segment_sum(valid.astype(jnp.int32), groups, num_segments=num_classes)
    return counts, sizes


def _unit_projections(activations, basis, valid):
    unit = normalise_rows(jnp.where(valid[:, None], activations, 0))
    return exact_matmul(unit, normalise_rows(basis).T)


def vector_firing(
    activations: jax.Array,
    basis: jax.Array,
    labels: jax.Array,
    *,
    num_classes: int,
    epsilon: float | jax.Array,
    signed: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """How each single basis vector fires for each class (App. B.2's grandmother neurons).

    ``(#{d̂·b̂_i ≥ ε} − #{d̂·b̂_i ≤ −ε}) / N_c`` for class ``c`` and basis vector ``i`` (signed; only
    the first term when unsigned): the signed SRM at θ = 0 of every plane ``(i, ·)``, without a
    plane or an angle grid. Pure and jit-safe (``num_classes`` and ``signed`` static).

    Args:
      activations: ``(N, n)``; basis: ``(m, n)``; labels: int ``(N,)`` (others than
        ``[0, num_classes)`` and rows with NaN/Inf are left out).
      epsilon: ``ε ∈ [−1, 1]``.

    Returns:
      ``values (C, m)`` (NaN for an empty class) and ``num_samples (C,)``.
    """
    validate_inputs(activations, basis, epsilon=epsilon, angles=None, planes="comb")
    labels = _check_labels(activations, labels, num_classes)
    return _vector_firing(activations, basis, labels, epsilon, num_classes=int(num_classes),
                          signed=bool(signed))


@partial(jax.jit, static_argnames=("num_classes", "signed"))
def _vector_firing(activations, basis, labels, epsilon, *, num_classes, signed):
    dtype = working_dtype(activations, basis)
    activations = jnp.asarray(activations, dtype)
    valid = _valid_samples(activations, labels, num_classes)
    projections = _unit_projections(activations, jnp.asarray(basis, dtype), valid)
    counts, sizes = _firing_from_projections(
        projections, labels, valid, num_classes, jnp.asarray(epsilon, dtype), signed
    )
    return counts.astype(dtype) / sizes.astype(dtype)[:, None], sizes


def class_selectivity(values: jax.Array, num_samples: jax.Array) -> jax.Array:
    """Class selectivity ``S = √(Σ_c w_c mean_θ (v_c − v̄)²)``, ``w_c = N_c/N`` (module docstring).

    Args:
      values: per-class values ``(C, P, T)`` (per-class SRM curves: the angle axis is averaged)
        or ``(C, m)`` (single-vector firing). Classes with no samples (NaN values) get weight 0.
      num_samples: ``(C,)`` class sizes.

    Returns:
      ``(P,)`` or ``(m,)`` non-negative scores.
    """
    values = jnp.asarray(values)
    sizes = jnp.asarray(num_samples).astype(values.dtype)
    weights = sizes / jnp.maximum(jnp.sum(sizes), 1)
    weights = weights.reshape((-1,) + (1,) * (values.ndim - 1))
    values = jnp.where(weights > 0, values, 0)
    pooled = jnp.sum(weights * values, axis=0)
    between = jnp.sum(weights * (values - pooled) ** 2, axis=0)
    if between.ndim >= 2:
        between = jnp.mean(between, axis=-1)
    return jnp.sqrt(between)


def shuffle_labels(key: jax.Array, labels: jax.Array, valid: jax.Array) -> jax.Array:
    """Labels permuted at random among the ``valid`` samples only (class sizes are kept).

    An invalid sample (NaN/Inf row, or a label outside the classes) keeps its own label, so no
    label moves between valid and invalid rows: the null has the same samples as the data.
    """
    n = labels.shape[0]
    u = jax.random.uniform(key, (n,))
    # Valid positions first, in random order; then the invalid ones, in their own order (a tie
    # at 2, kept by the stable sort).
    order = jnp.argsort(jnp.where(valid, u, 2.0), stable=True)
    positions = jnp.argsort(~valid, stable=True)  # valid positions first, in their order
    return labels.at[positions].set(labels[order])


@struct.dataclass
class Selectivity:
    """Ranking of planes and single basis vectors by class selectivity (a pytree; see
    :func:`rank_selectivity`).

    Attributes:
      per_class: :class:`srm_jax.SRMResult` with counts ``(C, P, T)`` (signed by default).
      plane_scores: ``(P,)`` selectivity ``S`` of each plane's per-class SRM curves.
      plane_z: ``(P,)`` ``(S − mean_null)/std_null`` against the shuffled-label scores.
      plane_p_values: ``(P,)`` per-plane permutation p-value ``(1 + #{null ≥ S})/(1 + K)``.
      plane_p_adjusted: ``(P,)`` family-wise (max-statistic) p-value: the null is the largest
        shuffled score over all planes, so ``p_adjusted ≤ α`` controls the chance that *any*
        plane of non-selective data is reported at level α ("out of the null band").
      plane_null_max: ``(K,)`` the largest plane score of each shuffle.
      plane_order: ``(P,)`` plane indices by decreasing ``plane_scores``.
      vector_values: ``(C, m)`` per-class firing of each basis vector (:func:`vector_firing`).
      vector_scores, vector_z, vector_p_values, vector_p_adjusted, vector_null_max,
        vector_order: the same for single basis vectors.
      class_counts: ``(C,)`` labelled samples per class.
      num_shuffles: ``K``, the label shuffles (``num_resamples`` of :func:`rank_selectivity`);
        static.
    """

    per_class: SRMResult
    plane_scores: jax.Array
    plane_z: jax.Array
    plane_p_values: jax.Array
    plane_p_adjusted: jax.Array
    plane_null_max: jax.Array
    plane_order: jax.Array
    vector_values: jax.Array
    vector_scores: jax.Array
    vector_z: jax.Array
    vector_p_values: jax.Array
    vector_p_adjusted: jax.Array
    vector_null_max: jax.Array
    vector_order: jax.Array
    class_counts: jax.Array
    num_shuffles: int = struct.field(pytree_node=False, default=0)

    @property
    def top_planes(self) -> jax.Array:
        """The ``(α, β)`` pairs in ranked order, ``(P, 2)``."""
        return self.per_class.planes[self.plane_order]


def rank_selectivity(
    key: jax.Array,
    activations: jax.Array,
    basis: jax.Array,
    labels: jax.Array,
    *,
    num_classes: int,
    epsilon: float | jax.Array,
    angles: jax.Array | None = None,
    planes: str | jax.Array = "comb",
    signed: bool = True,
    num_resamples: int = 99,
    method: str = "auto",
    max_planes: int | None = None,
    chunk_size: int | None = None,
    map_batch_size: int | None = 1,
    num_shuffles=_validation.UNSET,
    batch_size=_validation.UNSET,
) -> Selectivity:
    """Grandmother-neuron finder: rank planes and basis vectors by class selectivity (App. B.2).

    Measures the per-class (signed) SRM of every plane (:func:`per_class_srm`) and the per-class
    firing of every basis vector (:func:`vector_firing`), scores each by
    :func:`class_selectivity`, and calibrates the scores with ``num_resamples`` random
    permutations of the labels among the labelled samples (from ``key``; class sizes kept). The
    permutation null answers "how selective would this plane look if the class told nothing";
    both per-item and family-wise (max over items) p-values ``(1 + #{null ≥ S})/(1 + K)`` are
    returned. Pure and jit-compiled (``num_classes``, ``signed``, ``num_resamples``, ``method``,
    ``max_planes``, ``chunk_size``, ``map_batch_size`` static).

    Args:
      key: PRNG key for the label shuffles.
      activations: ``(N, n)``; basis: ``(m, n)``; labels: int ``(N,)``.
      num_classes: ``C``.
      epsilon: ``ε`` (the paper's Figs. 3–4 use 0.75).
      angles, planes, method, chunk_size: as :func:`srm_jax.spotlight_resonance`.
      signed: signed SRM and signed firing (default, as the paper).
      num_resamples: ``K`` label permutations (``p < 0.01`` needs ``K ≥ 100``).
      max_planes: draw this many of the named ``planes`` at random, as
        :func:`srm_jax.spotlight_resonance`, from :func:`srm_jax.significance.planes_key` of
        ``key`` (the shuffles are those of ``key`` with or without it).
      map_batch_size: shuffles evaluated together (:func:`srm_jax.significance.batched_map`);
        default 1, one at a time; ``None`` evaluates all at once.
      num_shuffles: deprecated name of ``num_resamples``.
      batch_size: deprecated name of ``map_batch_size`` (``None`` there meant one at a time).

    Returns:
      :class:`Selectivity`.
    """
    map_batch_size, num_resamples = monte_carlo_sizes(
        "rank_selectivity", batch_size, map_batch_size, ("num_shuffles", num_shuffles),
        num_resamples, 99)
    plan, pairs, angles = plan_measurement(
        activations, basis, epsilon=epsilon, angles=angles, planes=planes, signed=signed,
        method=method, max_planes=max_planes, key=planes_key(key, max_planes),
        chunk_size=chunk_size,
    )
    labels = _check_labels(activations, labels, num_classes)
    if int(num_resamples) < 1:
        raise ValueError(f"num_resamples must be >= 1, got {num_resamples}.")
    return _rank_selectivity(
        key, activations, basis, labels, pairs, angles, epsilon, num_classes=int(num_classes),
        num_resamples=int(num_resamples), plan=plan, map_batch_size=map_batch_size,
    )


@partial(jax.jit, static_argnames=("num_classes", "num_resamples", "plan", "map_batch_size"))
def _rank_selectivity(key, activations, basis, labels, pairs, angles, epsilon, *, num_classes,
                      num_resamples, plan, map_batch_size):
    signed = plan.signed
    dtype = working_dtype(activations, basis)
    activations = jnp.asarray(activations, dtype)
    basis = jnp.asarray(basis, dtype)
    eps = jnp.asarray(epsilon, dtype)
    valid = _valid_samples(activations, labels, num_classes)
    projections = _unit_projections(activations, basis, valid)

    def statistics(lab):
        result = SRMResult.from_counts(
            plan_counts(plan, activations, basis, pairs, angles, eps, groups=lab,
                        num_groups=num_classes),
            pairs, eps, signed,
        )
        sizes = result.num_samples
        plane = class_selectivity(result.values, sizes)
        fire, _ = _firing_from_projections(projections, lab, valid, num_classes, eps, signed)
        vector_values = fire.astype(dtype) / sizes.astype(dtype)[:, None]
        vector = class_selectivity(vector_values, sizes)
        return plane, vector, (result, vector_values)

    plane, vector, (per_class, vector_values) = statistics(labels)
    sizes = per_class.num_samples

    def null_statistics(shuffle_key):
        p, v, _ = statistics(shuffle_labels(shuffle_key, labels, valid))
        return p, v

    null_plane, null_vector = batched_map(
        null_statistics, jax.random.split(key, num_resamples), map_batch_size
    )

    def calibrate(observed, null):
        z = (observed - jnp.mean(null, axis=0)) / jnp.maximum(jnp.std(null, axis=0), 1e-12)
        null_max = jnp.max(null, axis=1)
        p = permutation_p_value(observed, null)
        p_adjusted = permutation_p_value(observed, null_max[:, None])
        return z, p, p_adjusted, null_max, jnp.argsort(-observed)

    plane_z, plane_p, plane_adj, plane_max, plane_order = calibrate(plane, null_plane)
    vec_z, vec_p, vec_adj, vec_max, vec_order = calibrate(vector, null_vector)
    return Selectivity(
        per_class=per_class,
        plane_scores=plane,
        plane_z=plane_z,
        plane_p_values=plane_p,
        plane_p_adjusted=plane_adj,
        plane_null_max=plane_max,
        plane_order=plane_order,
        vector_values=vector_values,
        vector_scores=vector,
        vector_z=vec_z,
        vector_p_values=vec_p,
        vector_p_adjusted=vec_adj,
        vector_null_max=vec_max,
        vector_order=vec_order,
        class_counts=sizes,
        num_shuffles=num_resamples,
    )


def distinct_planes(
    basis: jax.Array,
    planes: jax.Array | None = None,
    ranking: jax.Array | None = None,
    *,
    tolerance: float = 1e-4,
    pairs=_validation.UNSET,
    order=_validation.UNSET,
) -> np.ndarray:
    """Indices of ``planes`` (in ``ranking``) keeping only the first plane of each geometric span.

    Different pairs can span the same plane: with antipodal vectors (orthoplex bases
    ``{±q_k}``), ``(α, β)``, ``(α, β')``, ``(α', β)`` and ``(α', β')`` with ``b_α' = −b_α`` and
    ``b_β' = −b_β`` are one plane seen in four orientations, so a ranking repeats it. Two pairs
    span the same plane when their orthogonal projectors differ by at most ``tolerance``
    (Frobenius norm). A pair that spans no plane (``|b̂_α·b̂_β| ≥ 1 − 1e-6``, math §2.2) is left
    out. Host-side (NumPy) utility for reports and figures: the result is ragged.

    Args:
      basis: ``(m, n)``; planes: int ``(P, 2)`` pairs (formerly ``pairs``, still accepted with
        a DeprecationWarning); ranking: indices into ``planes`` in the order to keep them
        (default ``0..P-1``), e.g. ``Selectivity.plane_order`` (formerly ``order``, still
        accepted with a DeprecationWarning: ``order`` is ``srm_spectrum``'s harmonic order).

    Returns:
      int array of indices into ``planes``, a sub-sequence of ``ranking``.
    """
    planes = _validation.renamed("distinct_planes", "pairs", pairs, "planes", planes, None)
    order = _validation.renamed("distinct_planes", "order", order, "ranking", ranking, None)
    if planes is None:
        raise TypeError("distinct_planes() needs planes: the (P, 2) pairs to deduplicate.")
    b = _validation.host_unit_rows(basis)
    pairs = np.asarray(planes).reshape(-1, 2)
    order = np.arange(len(pairs)) if order is None else np.asarray(order)
    spans = _validation.spans_plane(basis, pairs)
    a, bb = b[pairs[:, 0]], b[pairs[:, 1]]
    u = bb - np.sum(a * bb, axis=1, keepdims=True) * a
    u /= np.where(spans, np.linalg.norm(u, axis=1), 1.0)[:, None]
    projectors = np.einsum("pi,pj->pij", a, a) + np.einsum("pi,pj->pij", u, u)
    kept: list[int] = []
    for p in order:
        if not spans[p]:
            continue
        if all(np.linalg.norm(projectors[p] - projectors[q]) > tolerance for q in kept):
            kept.append(int(p))
    return np.asarray(kept, dtype=np.int64)
