"""Spotlight resonance: SRM (Eqn. 2), signed SRM (Eqn. 4) and self-SRM (math §4-5).

Three exact methods (:data:`KERNELS`, their one registry) compute the same integer counts:

* ``"direct"`` evaluates the definition: ``d̂·s_αβ(θ) ≥ ε`` for every sample, plane and angle,
  with ``s`` from the closed form of :func:`srm_jax.spotlight`. Work ``O(N·P·T·n)``.
* ``"arc"`` uses the equivalent form of math §5: ``d̂·s(θ) = r cos(θ + φ)``, so each sample lights
  the spotlight on one arc of angles; the arcs of all samples are histogrammed onto the angles
  with a difference array. Work ``O(N·m + N·P + P·T)`` at most, and only the (sample, plane)
  pairs that can reach the spotlight (``r ≥ ε``) are evaluated in full (see
  :func:`srm_jax.arc_kernel.arc_counts`).
* ``"sample_major"`` enumerates, sample by sample, only the planes a sample can light
  (:mod:`srm_jax.sample_major`, math §5.1): work in proportion to the lit planes.

``"auto"`` picks one (:func:`kernel_method`). Every method is handed the whole
:class:`CountPlan` of the measurement. All stream over chunks of samples, so memory grows as
``N·n + P·T`` plus one bounded working chunk; no ``N × P × T`` array is ever held. They agree
on every angle except where ``d̂·s(θ)`` lies within floating-point rounding of ``±ε``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from srm_jax import _validation
from srm_jax._precision import working_dtype
from srm_jax.arc_kernel import ARC_BLOCK, ARC_CHUNK_TILES, arc_counts
from srm_jax.direct_kernel import DIRECT_CHUNK_ELEMENTS, direct_counts
from srm_jax.kernel_ops import TWO_PI, _Grid, angle_layout
from srm_jax.planes import DEFAULT_NUM_ANGLES, angle_grid, plane_pairs, spanning_planes
from srm_jax.rotation import normalise_rows
from srm_jax.sample_major import (
    BasisStructure,
    SampleMajorPlan,
    SampleMajorSums,
    basis_structure,
    check_plane_table_pairs,
    observed_leaders,
    planes_orientations,
    sample_major_counts,
    sample_major_plan,
    sample_major_summaries,
    sample_major_work,
)

# method="auto" takes the direct definition up to this much work N·P·T (the second limit applies
# when T ≤ 32, where the direct method's cost per pair is small) and the arc kernel above: the
# crossover measured per backend (benchmarks/RESULTS.md, `python -m benchmarks --only
# crossover`). A backend not measured (GPU: not measured yet) uses the CPU values.
AUTO_DIRECT_LIMIT = {"cpu": (250_000, 1_000_000)}


def auto_direct_limit(num_angles: int = 100, backend: str | None = None) -> int:
    """Largest ``N·P·T`` for which ``method="auto"`` takes ``"direct"`` on ``backend``."""
    backend = backend or jax.default_backend()
    backend = "gpu" if backend in ("cuda", "rocm") else backend
    limit, few_angles_limit = AUTO_DIRECT_LIMIT.get(backend, AUTO_DIRECT_LIMIT["cpu"])
    return few_angles_limit if num_angles <= 32 else limit


class GroupedCounts(NamedTuple):
    """What :func:`plan_counts` returns: SRM counts of disjoint sample groups."""

    counts: jax.Array  # int32 (G, P, T): d̂·s ≥ ε
    negative_counts: jax.Array | None  # int32 (G, P, T): d̂·s ≤ −ε (signed SRM), else None
    num_samples: jax.Array  # int32 (G,): the samples that counted
    angles: jax.Array  # (T,) in the working dtype


@struct.dataclass
class SRMResult:
    """Spotlight-resonance counts for every plane and angle (a pytree; additive over batches).

    Attributes:
      counts: int32 ``(P, T)``: the number of samples with ``d̂·s_αβ(θ) ≥ ε``.
      negative_counts: int32 ``(P, T)``: the number with ``d̂·s_αβ(θ) ≤ −ε`` (signed SRM only,
        else ``None``).
      num_samples: int32 scalar: the samples that counted (rows with NaN/Inf are left out).
      angles: ``(T,)`` rotation angles θ.
      planes: int32 ``(P, 2)`` the ``(α, β)`` pairs, in the order of the rows of ``counts``.
      epsilon: scalar ε (cosine of the spotlight half-angle).
      signed: whether this is signed SRM (Eqn. 4); static.
    """

    counts: jax.Array
    negative_counts: jax.Array | None
    num_samples: jax.Array
    angles: jax.Array
    planes: jax.Array
    epsilon: jax.Array
    signed: bool = struct.field(pytree_node=False, default=False)

    @property
    def values(self) -> jax.Array:
        """SRM fractions ``(P, T)``: Eqn. 2, or Eqn. 4 when ``signed`` (counts over samples).

        With no counted samples the values are NaN (0/0): there is nothing to measure.
        """
        count = self.counts
        if self.signed:
            count = count - self.negative_counts
        denominator = jnp.asarray(self.num_samples)[..., None, None]
        dtype = jnp.result_type(self.angles.dtype, jnp.float32)
        return count.astype(dtype) / denominator.astype(dtype)

    @property
    def mean_curve(self) -> jax.Array:
        """The mean SRM curve over planes, ``(T,)`` (the dashed line of the paper's figures)."""
        return jnp.mean(self.values, axis=-2)

    def __add__(self, other: SRMResult) -> SRMResult:
        return combine_results(self, other)

    @classmethod
    def zeros(
        cls, planes: jax.Array, angles: jax.Array, epsilon: float | jax.Array, signed: bool = False
    ) -> SRMResult:
        """The result of no samples: zero counts on ``planes × angles`` (a streaming start)."""
        zeros = jnp.zeros((planes.shape[0], angles.shape[0]), jnp.int32)
        return cls(
            counts=zeros,
            negative_counts=zeros if signed else None,
            num_samples=jnp.zeros((), jnp.int32),
            angles=angles,
            planes=planes,
            epsilon=jnp.asarray(epsilon, angles.dtype),
            signed=signed,
        )

    @classmethod
    def from_counts(
        cls, grouped: GroupedCounts, planes: jax.Array, epsilon: float | jax.Array,
        signed: bool, *, group: int | None = None,
    ) -> SRMResult:
        """The result of :func:`plan_counts`' :class:`GroupedCounts`.

        With ``group`` the result of that one group (no leading group axis), else of all groups
        (``counts (G, P, T)``, ``num_samples (G,)``).
        """
        counts, negative, num_samples, angles = grouped
        if group is not None:
            counts, num_samples = counts[group], num_samples[group]
            negative = None if negative is None else negative[group]
        return cls(
            counts=counts,
            negative_counts=negative,
            num_samples=num_samples,
            angles=angles,
            planes=planes,
            epsilon=jnp.asarray(epsilon, angles.dtype),
            signed=signed,
        )


def combine_results(first: SRMResult, second: SRMResult) -> SRMResult:
    """The result of the union of two disjoint sample sets (math §4.4: counts are additive).

    Both results must share planes, angles, ε and ``signed``; this is checked whenever the values
    are concrete.
    """
    if first.signed != second.signed:
        raise ValueError("cannot combine a signed SRM result with an unsigned one.")
    if first.counts.shape != second.counts.shape:
        raise ValueError(
            f"cannot combine results of shapes {first.counts.shape} and {second.counts.shape}: "
            "they must be measured on the same planes and angles."
        )
    check_same_settings(first, second, ("angles", "planes", "epsilon"))
    negative = None
    if first.signed:
        negative = first.negative_counts + second.negative_counts
    return first.replace(
        counts=first.counts + second.counts,
        negative_counts=negative,
        num_samples=first.num_samples + second.num_samples,
    )


def check_same_settings(first, second, names: tuple[str, ...]) -> None:
    """Raises unless ``first`` and ``second`` hold equal ``names`` attributes (shape and value).

    Values are compared whenever both are concrete (under ``jax.jit`` only shapes are checked).
    Used before adding two measurements (math §4.4: counts add only over the same settings).
    """
    for name in names:
        a, b = getattr(first, name), getattr(second, name)
        if a is b:  # one array (a stream's planes): nothing to compare (a wide layer's planes
            continue  # are many)
        if jnp.shape(a) != jnp.shape(b):
            raise ValueError(
                f"cannot combine results measured with different {name} (shapes "
                f"{jnp.shape(a)} and {jnp.shape(b)})."
            )
        if _validation.is_concrete(a) and _validation.is_concrete(b):
            if not np.array_equal(np.asarray(a), np.asarray(b)):
                raise ValueError(f"cannot combine results measured with different {name}.")


def validate_inputs(
    activations: jax.Array | None,
    basis: jax.Array,
    *,
    epsilon: float | jax.Array | None,
    angles: jax.Array | None,
    planes: str | jax.Array,
    method: str = "auto",
    max_planes: int | None = None,
    key: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Checks the inputs of an SRM measurement (math §1-2) and resolves its planes and angles.

    ``activations`` or ``epsilon`` may be ``None`` where a caller has none yet (a streaming
    accumulator, a metric). Raises ``ValueError`` with what is wrong and how to fix it. This is
    the one place every SRM entry point checks its settings (``method`` included).
    Named ``planes`` skip the pairs that span no plane when ``basis`` is concrete (see
    :func:`_resolve_planes`).

    Returns:
      int32 ``(P, 2)`` pairs and the ``(T,)`` angles (:func:`angle_grid` when ``None``).
    """
    if activations is not None:
        _validation.check_matrix(activations, "activations")
    _validation.check_basis(basis)
    if activations is not None:
        _validation.check_activations(activations, basis)
    if epsilon is not None:
        _validation.check_epsilon(epsilon)
    check_method(method)
    pairs = _resolve_planes(planes, basis, max_planes, key)
    _validation.check_planes(basis, pairs)
    angles = angle_grid() if angles is None else jnp.asarray(angles)
    if angles.ndim != 1 or angles.shape[0] == 0:
        raise ValueError(f"angles must be a non-empty 1-D array, got shape {angles.shape}.")
    return pairs, angles


def check_method(method: str) -> None:
    """Raises unless ``method`` is one of :data:`METHODS` (part of :func:`validate_inputs`)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")


@dataclasses.dataclass(frozen=True)
class CountPlan:
    """The static half of a validated measurement: how its counts are computed.

    Built once, eagerly, by :func:`plan_measurement`, and passed whole to :func:`plan_counts`,
    :func:`srm_jax.summaries.plan_summaries` and :func:`srm_jax.distributed.sharded_counts`,
    and from them to the method's entry in :data:`KERNELS` (a hashable static argument, so every
    jitted entry point keeps the angles' bin layout even when it traces the angles, and eager
    calls of the same shapes compile once).

    Attributes:
      signed: signed SRM (Eqn. 4): negative counts too.
      method: one of :data:`METHODS`: ``"auto"``, ``"arc"``, ``"direct"`` or
        ``"sample_major"`` (validated).
      chunk_size: samples per working chunk (``None``: the method's default).
      grid: the bin layout of the angles, known before tracing; ``None`` decides it inside the
        kernel (angles that were traced when the plan was made).
      backend: the backend whose kernel ops and ``"auto"`` crossover are used (``None``:
        :func:`jax.default_backend` at trace time).
      sample_major: the sample-major kernel's settings (:mod:`srm_jax.sample_major`) when it
        applies to this basis, ε and planes (``None``: it does not, or was not asked for).
      gather: the sample-major projection is a gather (the planned basis is ``±e_i``); a caller
        that counts on another basis with this plan (a rotated one) must clear it.
    """

    signed: bool = False
    method: str = "auto"
    chunk_size: int | None = None
    grid: _Grid | None = None
    backend: str | None = None
    sample_major: SampleMajorPlan | None = None
    gather: bool = False

    @property
    def major(self) -> SampleMajorPlan | None:
        """The sample-major settings in effect: ``sample_major`` where the method may take the
        sample-major kernel (``"auto"`` or ``"sample_major"``), else ``None``."""
        return self.sample_major if self.method in ("auto", "sample_major") else None

    def resolved(self) -> CountPlan:
        """This plan with its backend fixed (:func:`jax.default_backend` when ``None``)."""
        if self.backend is not None:
            return self
        return dataclasses.replace(self, backend=jax.default_backend())


def plan_measurement(
    activations: jax.Array | None,
    basis: jax.Array,
    *,
    epsilon: float | jax.Array | None,
    angles: jax.Array | None = None,
    planes: str | jax.Array = "comb",
    signed: bool = False,
    method: str = "auto",
    max_planes: int | None = None,
    key: jax.Array | None = None,
    chunk_size: int | None = None,
) -> tuple[CountPlan, jax.Array, jax.Array]:
    """Validates a measurement's settings once (math §1-2) and fixes what its counts need.

    Every entry point of the package calls this eagerly, before its own ``jit``, then
    :func:`plan_counts` inside. ``activations`` or ``epsilon`` may be ``None`` where a caller has
    none yet (a streaming accumulator, a metric).

    Returns:
      ``(plan, pairs, angles)``: the :class:`CountPlan`, the int32 ``(P, 2)`` planes measured
      and the ``(T,)`` angles (:func:`angle_grid` when ``None``).
    """
    default_angles = angles is None
    pairs, angles = validate_inputs(
        activations, basis, epsilon=epsilon, angles=angles, planes=planes, method=method,
        max_planes=max_planes, key=key,
    )
    if chunk_size is not None and int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be a positive number of samples, got {chunk_size}.")
    dtype = working_dtype(basis) if activations is None else working_dtype(activations, basis)
    if default_angles:
        # The default grid's layout is known without its values.
        period = DEFAULT_NUM_ANGLES - 1
        grid = _Grid(period=period, theta0=0.0, step=TWO_PI / period)
    else:
        grid = angle_layout(angles, dtype)
    major = _plan_sample_major(basis, pairs, epsilon, method, activations)
    plan = CountPlan(signed=bool(signed), method=method,
                     chunk_size=None if chunk_size is None else int(chunk_size), grid=grid,
                     backend=jax.default_backend(), sample_major=major,
                     gather=major is not None and major.structure.coordinate is not None)
    return plan, pairs, angles


# method="auto" takes the sample-major kernel when its work per sample (L·K·J with the leaders
# bound L, :func:`srm_jax.sample_major.sample_major_work`) is at most this fraction of the planes:
# on the kernel's worst-case tokens the crossover against the tile kernel lies near P/4
# (benchmarks/RESULTS.md, "Cost over ε"). Where the bound says no and the samples are concrete,
# the same rule is applied to the leader rows the samples actually have (their mean over at most
# SAMPLE_MAJOR_PROBE_ROWS rows), plus the scan of every (sample, direction) at
# SAMPLE_MAJOR_SCAN_ENTRIES entries each. Below SAMPLE_MAJOR_MIN_PLANES planes the tile kernels.
SAMPLE_MAJOR_WORK_FRACTION = 1 / 4
SAMPLE_MAJOR_MIN_PLANES = 4096
SAMPLE_MAJOR_PROBE_ROWS = 2048
SAMPLE_MAJOR_SCAN_ENTRIES = 4


def _plan_sample_major(basis, pairs, epsilon, method,
                       activations=None) -> SampleMajorPlan | None:
    """The sample-major settings for this measurement, or ``None`` (see :class:`CountPlan`).

    ``method="sample_major"`` needs a concrete basis, ε ≠ 0 and concrete pairs that each span a
    plane once; it raises otherwise. ``"auto"`` takes it where it applies and pays (above).
    """
    if method not in ("auto", "sample_major"):
        return None
    wanted = method == "sample_major"
    concrete = all(_validation.is_concrete(x) for x in (basis, pairs)) and (
        epsilon is not None and _validation.is_concrete(epsilon))
    if not concrete:
        if wanted:
            raise ValueError("method='sample_major' needs a concrete basis, planes and epsilon "
                             "when the measurement is planned (close over them under jit).")
        return None
    num_planes = int(pairs.shape[0])
    if not wanted and num_planes < SAMPLE_MAJOR_MIN_PLANES:
        return None
    structure = _basis_structure(basis)
    major = sample_major_plan(structure, float(epsilon))
    if major is None:  # ε = 0: every sample lights every plane; the tile kernel counts it
        return None
    why, both_orientations = _pairs_layout(basis, structure, pairs)
    if why is not None:
        if wanted:
            raise ValueError(f"method='sample_major' cannot count these planes: {why}.")
        return None
    major = dataclasses.replace(major, both_orientations=both_orientations)
    if not wanted and not _sample_major_pays(major, num_planes, basis, activations):
        return None
    return major


def _sample_major_pays(major: SampleMajorPlan, num_planes: int, basis, activations) -> bool:
    """``"auto"``'s rule for the sample-major kernel (the constants above)."""
    budget = SAMPLE_MAJOR_WORK_FRACTION * num_planes
    if sample_major_work(major) <= budget:
        return True
    if activations is None or not _validation.is_concrete(activations) or activations.ndim != 2:
        return False
    leaders = observed_leaders(major, activations, basis, SAMPLE_MAJOR_PROBE_ROWS)
    scan = SAMPLE_MAJOR_SCAN_ENTRIES * major.structure.num_directions
    return sample_major_work(major, leaders) + scan <= budget


def replan(plan: CountPlan, basis, pairs, epsilon, activations) -> CountPlan:
    """``plan`` (of :func:`plan_measurement`, for ``basis`` and ``pairs``) with its sample-major
    settings made again for another ε or other concrete samples (a sweep's thresholds, the
    rotated copies of a rotation test: :func:`srm_jax.alignment_test`), by the rule of
    :func:`plan_measurement`, without validating the inputs again. A method other than
    ``"auto"`` and ``"sample_major"`` keeps its plan."""
    if plan.method not in ("auto", "sample_major"):
        return plan
    major = _plan_sample_major(basis, pairs, epsilon, plan.method, activations)
    return dataclasses.replace(
        plan, sample_major=major,
        gather=major is not None and major.structure.coordinate is not None)


_STRUCTURES: dict = {}
_PAIRS_LAYOUTS: dict = {}


def _pairs_layout(basis, structure: BasisStructure, pairs) -> tuple[str | None, bool]:
    """:func:`srm_jax.sample_major.check_plane_table_pairs` and
    :func:`srm_jax.sample_major.planes_orientations` of concrete pairs, cached by the basis' and
    the pairs' bytes (both sort every pair: a wide basis' millions of planes, planned once per ε
    of a sweep)."""
    key = (_validation.array_key(basis), _validation.array_key(pairs))
    def layout() -> tuple[str | None, bool]:
        why = check_plane_table_pairs(structure, pairs)
        return why, why is None and planes_orientations(structure, pairs)

    return _validation.kept(_PAIRS_LAYOUTS, key, layout, 8)


def _basis_structure(basis) -> BasisStructure:
    """:func:`srm_jax.sample_major.basis_structure`, cached by the basis' bytes (a wide dense
    basis costs a Gram matrix; entry points plan the same basis many times)."""
    return _validation.kept(_STRUCTURES, _validation.array_key(basis),
                            lambda: basis_structure(np.asarray(basis)), 8)


def plan_counts(
    plan: CountPlan,
    activations: jax.Array,
    basis: jax.Array,
    pairs: jax.Array,
    angles: jax.Array,
    epsilon: float | jax.Array,
    *,
    groups: jax.Array | None = None,
    num_groups: int = 1,
    table: jax.Array | None = None,
) -> GroupedCounts:
    """SRM counts (Eqns. 2 and 4) of disjoint sample groups, as ``plan`` says to compute them.

    The one counting function behind every entry point: jitted and cached (eager calls of the
    same shapes and plan compile once; inside another ``jit`` it is inlined). Inputs are
    assumed validated by :func:`plan_measurement`. ``groups`` is an int ``(N,)`` array in
    ``[0, num_groups)`` (``None`` puts every sample in group 0); samples outside that range are
    left out. ``table`` is the sample-major kernel's plane table
    (:func:`srm_jax.sample_major.plane_table`), to build once for many calls.

    Returns:
      :class:`GroupedCounts`: ``counts (G, P, T)``, ``negative_counts (G, P, T)`` or ``None``,
      ``num_samples (G,)`` and the angles cast to the working float dtype.
    """
    return _grouped_counts_jit(
        activations, basis, pairs, angles, epsilon, groups=groups, num_groups=num_groups,
        plan=plan.resolved(), table=table,
    )


def _resolve_planes(planes, basis, max_planes, key) -> jax.Array:
    """The ``(P, 2)`` pairs to measure (math §2).

    A named kind (``"comb"``, ``"perm"``) skips the pairs that span no plane
    (``|b̂_α·b̂_β| ≥ 1 − 1e-6``: :func:`srm_jax.spanning_planes`), so ``±`` bases work with the
    defaults. That needs the basis' values: when ``basis`` is traced (an argument of a jitted
    function) the number of planes cannot depend on it, so the named kind keeps every pair
    (:func:`srm_jax.planes`); that is right for any basis without (anti-)parallel vectors
    (random, Thompson, simplex). For a ``±`` basis under ``jax.jit``, compute
    ``spanning_planes(basis)`` outside and pass it as ``planes=``, or close over the basis.
    """
    if isinstance(planes, str):
        if _validation.is_concrete(basis):
            return spanning_planes(basis, planes, max_planes=max_planes, key=key)
        return plane_pairs(basis.shape[0], planes, max_planes=max_planes, key=key)
    if max_planes is not None:
        raise ValueError("max_planes applies to planes='comb' or 'perm', not to explicit pairs.")
    return jnp.asarray(planes, dtype=jnp.int32)


def spotlight_resonance(
    activations: jax.Array,
    basis: jax.Array,
    *,
    epsilon: float | jax.Array,
    angles: jax.Array | None = None,
    planes: str | jax.Array = "comb",
    signed: bool = False,
    method: str = "auto",
    max_planes: int | None = None,
    key: jax.Array | None = None,
    chunk_size: int | None = None,
) -> SRMResult:
    """Spotlight resonance of ``activations`` about the planes of ``basis`` (Eqns. 2 and 4).

    ``f(θ; α, β) = |{d : d̂·s_αβ(θ) ≥ ε}| / N`` with the spotlight ``s_αβ(θ) = R_αβ(θ) b̂_α``
    (Eqn. 1); signed SRM (Eqn. 4) subtracts ``|{d : d̂·s_αβ(θ) ≤ −ε}|``. Every plane and angle is
    computed in one compiled computation; the function is pure and safe under ``jax.jit``
    (with ``planes``, ``signed``, ``method``, ``max_planes`` and ``chunk_size`` static) and
    ``jax.vmap``. Rows of ``activations`` containing NaN or Inf are left out of numerator and
    denominator alike (``num_samples`` says how many counted); a zero row has cosine 0 with every
    spotlight (math §1).

    Args:
      activations: ``(N, n)`` samples, one a row.
      basis: ``(m, n)`` privileged basis, one vector a row (rows are normalised).
      epsilon: ``ε ∈ [−1, 1]``, the cosine of the spotlight's half-angle.
      angles: 1-D rotation angles; default :func:`angle_grid` (100 angles, 0 to 2π inclusive).
      planes: ``"comb"`` (Combination-SRM), ``"perm"`` (Permutation-SRM), or explicit int
        ``(P, 2)`` pairs. The named kinds skip pairs that span no plane (``|b̂_α·b̂_β| ≥
        1 − 1e-6``, math §2.2; ``result.planes`` lists those measured), except with a traced
        basis, where they keep every pair (see :func:`_resolve_planes`); an explicit pair that
        spans no plane is an error.
      signed: signed SRM (Eqn. 4); fills ``negative_counts``.
      method: one of :data:`METHODS`: ``"direct"`` (the definition), ``"arc"`` (exact arc
        histogram, math §5), ``"sample_major"`` (only the planes each sample can light,
        :mod:`srm_jax.sample_major`; needs a concrete basis, ε ≠ 0 and planes that each span a
        plane once) or ``"auto"`` (``"sample_major"`` for a wide basis where it pays,
        ``"direct"`` for small problems, ``"arc"`` above the crossover measured per backend:
        :data:`AUTO_DIRECT_LIMIT`, ``benchmarks/RESULTS.md``).
      max_planes: draw this many planes at random (needs ``key``), as the paper's ``max_planes``.
      key: PRNG key for ``max_planes``.
      chunk_size: samples per working chunk; by default the arc method's per-chunk
        temporaries hold ``ARC_CHUNK_TILES`` elements (8 MiB) and the direct method's 16 MiB.

    Returns:
      :class:`SRMResult` with integer counts, ``num_samples``, ``angles``, ``planes``, ``epsilon``.
    """
    plan, pairs, angles = plan_measurement(
        activations, basis, epsilon=epsilon, angles=angles, planes=planes, signed=signed,
        method=method, max_planes=max_planes, key=key, chunk_size=chunk_size,
    )
    grouped = plan_counts(plan, activations, basis, pairs, angles, epsilon)
    return SRMResult.from_counts(grouped, pairs, epsilon, signed, group=0)


class PreparedSamples(NamedTuple):
    """The inputs of every kernel, in the working dtype (:func:`_prepare`)."""

    basis: jax.Array  # (m, n) as given (the kernels normalise it where they need to)
    angles: jax.Array  # (T,)
    valid: jax.Array  # (N,) bool: finite and in a group
    groups: jax.Array  # (N,) int32, 0 where not valid
    unit: jax.Array  # (N, n) unit rows, zero where not valid
    num_samples: jax.Array  # (G,) int32: the valid samples of each group


def _prepare(activations, basis, angles, groups, num_groups) -> PreparedSamples:
    """Working-dtype inputs, the valid rows (finite, in a group), unit rows and group sizes."""
    dtype = working_dtype(activations, basis)
    activations = jnp.asarray(activations, dtype)
    basis = jnp.asarray(basis, dtype)
    angles = jnp.asarray(angles).astype(dtype)
    n_samples = activations.shape[0]
    valid = jnp.all(jnp.isfinite(activations), axis=1)
    if groups is None:
        groups = jnp.zeros(n_samples, jnp.int32)
    else:
        groups = jnp.asarray(groups, jnp.int32)
        valid = valid & (groups >= 0) & (groups < num_groups)
        groups = jnp.where(valid, groups, 0)
    unit = normalise_rows(jnp.where(valid[:, None], activations, 0))
    num_samples = jax.ops.segment_sum(valid.astype(jnp.int32), groups, num_segments=num_groups)
    return PreparedSamples(basis, angles, valid, groups, unit, num_samples)


# Every kernel takes ``(plan, samples, pairs, epsilon, *, num_groups, table)`` (the whole
# :class:`CountPlan`, a :class:`PreparedSamples`) and returns the counts at ε, ``(G, P, T)``,
# and the negative counts or ``None`` (unsigned).


def _arc_kernel(plan: CountPlan, samples: PreparedSamples, pairs, epsilon, *, num_groups: int,
                table=None):
    """The arc kernel (:func:`srm_jax.arc_kernel.arc_counts`)."""
    del table
    n_samples, num_planes = samples.unit.shape[0], pairs.shape[0]
    # Tiles per chunk stay below 2**23 (prefix sums are exact float32 matmuls).
    most = max(1, (2**23 // num_planes)) * ARC_BLOCK
    chunk = plan.chunk_size or max(1, ARC_CHUNK_TILES // num_planes) * ARC_BLOCK
    return arc_counts(
        samples.unit, samples.valid, samples.groups, num_groups, normalise_rows(samples.basis),
        pairs, samples.angles, epsilon, plan.signed, min(chunk, most, max(n_samples, 1)),
        plan.grid, plan.backend,
    )


def _direct_kernel(plan: CountPlan, samples: PreparedSamples, pairs, epsilon, *,
                   num_groups: int, table=None):
    """The definition (:func:`srm_jax.direct_kernel.direct_counts`)."""
    del table
    num_planes, num_angles = pairs.shape[0], samples.angles.shape[0]
    plane_block = max(1, min(num_planes, DIRECT_CHUNK_ELEMENTS // (num_angles * 256)))
    chunk = plan.chunk_size or max(1, DIRECT_CHUNK_ELEMENTS // (plane_block * num_angles))
    return direct_counts(
        samples.unit, samples.valid, samples.groups, num_groups, samples.basis, pairs,
        samples.angles, epsilon, plan.signed, min(chunk, max(samples.unit.shape[0], 1)),
        plane_block,
    )


def _sample_major_call(kernel, plan: CountPlan, samples: PreparedSamples, pairs, epsilon,
                       num_groups: int, table):
    """``kernel`` (an entry point of :mod:`srm_jax.sample_major`) on the plan's settings."""
    return kernel(
        samples.unit, samples.valid, samples.groups, num_groups, normalise_rows(samples.basis),
        pairs, samples.angles, epsilon, plan.signed, plan=plan.major, grid=plan.grid,
        backend=plan.backend, chunk=plan.chunk_size, table=table, gather=plan.gather,
    )


def _sample_major_kernel(plan: CountPlan, samples: PreparedSamples, pairs, epsilon, *,
                         num_groups: int, table=None):
    """The sample-major kernel's full counts, at ε (:func:`_complement` for ε < 0)."""
    counts = _sample_major_call(sample_major_counts, plan, samples, pairs, epsilon, num_groups,
                                table)
    positive, negative = _complement(plan.major, counts[:, 0], counts[:, -1],
                                     samples.num_samples[:, None, None])
    return positive, (negative if plan.signed else None)


def _sample_major_summaries(plan: CountPlan, samples: PreparedSamples, pairs, epsilon, *,
                            num_groups: int, table=None) -> SampleMajorSums:
    """The sample-major kernel's summaries (at ``|ε|``: :class:`SampleMajorSums`)."""
    return _sample_major_call(sample_major_summaries, plan, samples, pairs, epsilon, num_groups,
                              table)


def _complement(major: SampleMajorPlan, positive, negative, num_samples):
    """Counts at ε from the kernel's counts at ``|ε|`` (math §5.3; ε < 0: through the opposite
    cone, ``#{d̂·s ≥ ε} = N − #{d̂·s ≤ −|ε|}`` and ``#{d̂·s ≤ −ε} = N − #{d̂·s ≥ |ε|}``)."""
    if not major.complement:
        return positive, negative
    return num_samples - negative, num_samples - positive


class Kernel(NamedTuple):
    """One counting method: its full counts and, where it has them, its own summaries.

    ``summaries`` returns :class:`srm_jax.sample_major.SampleMajorSums` at ``|ε|``; ``None``
    sums the full counts (:func:`srm_jax.summaries.plan_summaries`). ``needs_concrete_basis``:
    the method is planned from the basis' values, so it refuses a basis traced by ``jit`` or
    ``vmap`` (a caller that maps over bases measures them one at a time).
    """

    counts: Callable[..., tuple]
    summaries: Callable[..., SampleMajorSums] | None = None
    needs_concrete_basis: bool = False


# The one registry of counting methods: a new method is a new entry here (and, if it needs
# planning, a field of :class:`CountPlan`).
KERNELS = {
    "arc": Kernel(_arc_kernel),
    "direct": Kernel(_direct_kernel),
    "sample_major": Kernel(_sample_major_kernel, _sample_major_summaries,
                           needs_concrete_basis=True),
}
# Every method a measurement accepts: "auto" picks a kernel (:func:`kernel_method`).
METHODS = ("auto", *KERNELS)


def kernel_method(plan: CountPlan, num_samples: int, num_planes: int, num_angles: int) -> str:
    """The :data:`KERNELS` entry that counts for ``plan`` (``"auto"`` resolved, static).

    The sample-major kernel where the plan holds its settings; ``"sample_major"`` without them
    (ε = 0) hands over to the tile kernel; ``"auto"`` otherwise takes the definition up to
    :func:`auto_direct_limit` of work ``N·P·T`` and the arc kernel above.
    """
    if plan.major is not None:
        return "sample_major"
    if plan.method == "sample_major":
        return "arc"
    if plan.method == "auto":
        work = num_samples * num_planes * num_angles
        return "direct" if work <= auto_direct_limit(num_angles, plan.backend) else "arc"
    return plan.method


def _grouped_counts(activations, basis, pairs, angles, epsilon, *, groups, num_groups: int,
                    plan: CountPlan, table=None) -> GroupedCounts:
    """The counts of :func:`plan_counts` (``plan`` resolved, static)."""
    samples = _prepare(activations, basis, angles, groups, num_groups)
    method = kernel_method(plan, samples.unit.shape[0], pairs.shape[0], samples.angles.shape[0])
    counts, negative = KERNELS[method].counts(plan, samples, pairs, epsilon,
                                              num_groups=num_groups, table=table)
    return GroupedCounts(counts, negative, samples.num_samples, samples.angles)


# Eager calls compile once per shape and plan (epsilon stays a traced argument).
_grouped_counts_jit = jax.jit(_grouped_counts, static_argnames=("num_groups", "plan"))


def self_srm(
    basis: jax.Array,
    *,
    epsilon: float | jax.Array,
    angles: jax.Array | None = None,
    planes: str | jax.Array = "comb",
    signed: bool = False,
    **kwargs,
) -> SRMResult:
    """Self-SRM: SRM with the basis itself as the data (``D = B``), same planes, angles and ε.

    The reference oscillation of a perfectly axis-aligned (local-coding) representation
    (paper Sec. 3, Fig. 1 centre; math §4). Keyword arguments go to :func:`spotlight_resonance`.
    """
    return spotlight_resonance(
        basis, basis, epsilon=epsilon, angles=angles, planes=planes, signed=signed, **kwargs
    )
