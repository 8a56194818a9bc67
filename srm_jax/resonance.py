"""Spotlight resonance: SRM (Eqn. 2), signed SRM (Eqn. 4) and self-SRM (SPEC §4-5).

Two exact methods compute the same integer counts:

* ``"direct"`` evaluates the definition: ``d̂·s_αβ(θ) ≥ ε`` for every sample, plane and angle,
  with ``s`` from the closed form of :func:`srm_jax.spotlight`. Work ``O(N·P·T·n)``.
* ``"arc"`` uses the equivalent form of SPEC §5: ``d̂·s(θ) = r cos(θ + φ)``, so each sample lights
  the spotlight on one arc of angles; the arcs of all samples are histogrammed onto the angles
  with a difference array. Work ``O(N·m + N·P + P·T)`` at most, and only the (sample, plane)
  pairs that can reach the spotlight (``r ≥ ε``) are evaluated in full (see :func:`_arc_counts`).

Both stream over chunks of samples, so memory grows as ``N·n + P·T`` plus one bounded working
chunk; no ``N × P × T`` array is ever held. They agree on every angle except where ``d̂·s(θ)``
lies within floating-point rounding of ``±ε``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from srm_jax import _validation
from srm_jax._precision import exact_matmul, working_dtype
from srm_jax.planes import DEFAULT_NUM_ANGLES, angle_grid, spanning_planes
from srm_jax.planes import planes as make_planes
from srm_jax.rotation import _cosine_and_sine, normalise_rows, spotlight

METHODS = ("auto", "arc", "direct")
# Arc kernel work units (tuned on CPU; see benchmarks/RESULTS.md): samples per block (the unit of
# work the kernel skips or evaluates), (plane, block) tiles per chunk of samples (the per-chunk
# temporaries are a few arrays of this many elements), and sample-plane pairs per step of the
# exact screening of tiles and of the arc histogram.
ARC_BLOCK = 64
ARC_CHUNK_TILES = 1 << 21
ARC_SCREEN_PAIRS = 1 << 17
ARC_STEP_PAIRS = 1 << 16
# Direct method: elements of the largest per-chunk temporary (2**22 float32 = 16 MiB).
DIRECT_CHUNK_ELEMENTS = 1 << 22
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

TWO_PI = 2.0 * math.pi


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
        cls, grouped: tuple, planes: jax.Array, epsilon: float | jax.Array, signed: bool,
        *, group: int | None = None,
    ) -> SRMResult:
        """The result of :func:`plan_counts`' ``(counts, negative, num_samples, angles)``.

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
    """The result of the union of two disjoint sample sets (SPEC §4: counts are additive).

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
    Used before adding two measurements (SPEC §4: counts add only over the same settings).
    """
    for name in names:
        a, b = getattr(first, name), getattr(second, name)
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
    """Checks the inputs of an SRM measurement (SPEC §1-2) and resolves its planes and angles.

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
    if activations is not None and activations.shape[1] != basis.shape[1]:
        raise ValueError(
            f"activations have n={activations.shape[1]} features but the basis vectors have "
            f"n={basis.shape[1]}: the basis must live in the activations' space (SPEC §1)."
        )
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
    """The static half of a validated measurement: how its counts are computed (issue 12).

    Built once, eagerly, by :func:`plan_measurement`, and passed to :func:`plan_counts` (a
    hashable static argument, so every jitted entry point keeps the angles' bin layout even
    when it traces the angles, and eager calls of the same shapes compile once).

    Attributes:
      signed: signed SRM (Eqn. 4): negative counts too.
      method: ``"auto"``, ``"arc"`` or ``"direct"`` (validated).
      chunk_size: samples per working chunk (``None``: the method's default).
      grid: the bin layout of the angles, known before tracing; ``None`` decides it inside the
        kernel (angles that were traced when the plan was made).
      backend: the backend whose kernel ops and ``"auto"`` crossover are used (``None``:
        :func:`jax.default_backend` at trace time).
    """

    signed: bool = False
    method: str = "auto"
    chunk_size: int | None = None
    grid: _Grid | None = None
    backend: str | None = None


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
    """Validates a measurement's settings once (SPEC §1-2) and fixes what its counts need.

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
    plan = CountPlan(signed=bool(signed), method=method,
                     chunk_size=None if chunk_size is None else int(chunk_size), grid=grid,
                     backend=jax.default_backend())
    return plan, pairs, angles


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
):
    """SRM counts (Eqns. 2 and 4) of disjoint sample groups, as ``plan`` says to compute them.

    The one counting function behind every entry point: jitted and cached (eager calls of the
    same shapes and plan compile once; inside another ``jit`` it is inlined). Inputs are
    assumed validated by :func:`plan_measurement`. ``groups`` is an int ``(N,)`` array in
    ``[0, num_groups)`` (``None`` puts every sample in group 0); samples outside that range are
    left out.

    Returns:
      ``counts (G, P, T)``, ``negative_counts (G, P, T)`` or ``None``, ``num_samples (G,)`` and
      the angles cast to the working float dtype.
    """
    return _grouped_counts_jit(
        activations, basis, pairs, angles, epsilon, groups=groups, num_groups=num_groups,
        signed=plan.signed, method=plan.method, chunk_size=plan.chunk_size, grid=plan.grid,
        backend=plan.backend or jax.default_backend(),
    )


def _resolve_planes(planes, basis, max_planes, key) -> jax.Array:
    """The ``(P, 2)`` pairs to measure (SPEC §2).

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
        return make_planes(basis.shape[0], planes, max_planes=max_planes, key=key)
    if max_planes is not None:
        raise ValueError("max_planes applies to planes='comb' or 'perm', not to explicit pairs.")
    return jnp.asarray(planes, dtype=jnp.int32)




def _pad_samples(unit, valid, groups, chunk: int):
    n_samples = unit.shape[0]
    num_chunks = max(1, -(-n_samples // chunk))
    pad = num_chunks * chunk - n_samples
    if pad:
        unit = jnp.pad(unit, ((0, pad), (0, 0)))
        valid = jnp.pad(valid, (0, pad))
        groups = jnp.pad(groups, (0, pad))
    return (
        unit.reshape(num_chunks, chunk, -1),
        valid.reshape(num_chunks, chunk),
        groups.reshape(num_chunks, chunk),
    )


def portable_kernel(backend: str) -> bool:
    """Whether the arc kernel takes its portable ops on ``backend`` (SPEC §1, issue 10).

    The kernel's CPU forms (prefix sums and compaction indices by triangular matmuls, the argmax
    of the sort key by a matmul, a polynomial ``atan2``) exist because XLA:CPU's ``cumsum``,
    ``argmax`` and ``atan2`` are several times slower. Those matmuls ask for ``HIGHEST`` and are
    exact on every backend; elsewhere the portable ops (int32 ``cumsum``, ``argmax``,
    ``arctan2``) are exact by construction and as fast, so every backend but ``"cpu"`` takes them.
    """
    return backend != "cpu"


def _atan2(y, x, portable: bool = False):
    """``atan2(y, x)``; on CPU in float32 by range reduction and the Cephes ``atanf`` polynomial.

    XLA:CPU lowers ``atan2`` to a scalar library call, ~50x slower than this vectorised form,
    whose error (< 4e-7 rad) is below float32 rounding of the cosines it is compared with.
    Other dtypes (float64) and the portable kernel use :func:`jnp.arctan2`.
    """
    if portable or x.dtype != jnp.float32:
        return jnp.arctan2(y, x)
    ax, ay = jnp.abs(x), jnp.abs(y)
    big, small = jnp.maximum(ax, ay), jnp.minimum(ax, ay)
    t = small / jnp.where(big == 0, 1, big)
    reduce = t > 0.41421356  # tan(π/8): atan(t) = π/4 + atan((t − 1)/(t + 1))
    t = jnp.where(reduce, (t - 1) / (t + 1), t)
    z = t * t
    p = (((8.05374449538e-2 * z - 1.38776856032e-1) * z + 1.99777106478e-1) * z
         - 3.33329491539e-1) * z * t + t
    p = jnp.where(reduce, p + np.float32(math.pi / 4), p)
    p = jnp.where(ay > ax, np.float32(math.pi / 2) - p, p)
    p = jnp.where(x < 0, np.float32(math.pi) - p, p)
    return jnp.where(y < 0, -p, p)


_PREFIX_WIDTH = 128


def _prefix_sum(x):
    """Inclusive prefix sum of a 1-D int vector by triangular matmuls (exact below 2**24).

    XLA:CPU's ``cumsum`` is several times slower and slower to compile.
    """
    inclusive, _ = _prefix_sums_2d(x)
    return inclusive.ravel()[: x.shape[0]].astype(jnp.int32)


def _prefix_sums_2d(x, portable: bool = False):
    """Inclusive and exclusive prefix sums of a 1-D int or bool vector, as ``(rows, 128)`` blocks
    of the (zero-padded) vector in row-major order.

    Portable: an int32 ``cumsum``. CPU: float32 products with a triangular matrix, exact for sums
    below 2**24 because they ask for ``HIGHEST`` (an integer below 2**24 is a float32; TF32 or
    bfloat16 operands would round the block offsets, which exceed 2**11).
    """
    width = _PREFIX_WIDTH
    size = x.shape[0]
    rows = -(-size // width)
    if portable:
        values = jnp.pad(x.astype(jnp.int32), (0, rows * width - size)).reshape(rows, width)
        inclusive = jnp.cumsum(values.ravel()).reshape(rows, width)
        return inclusive, inclusive - values
    blocks = jnp.pad(x.astype(jnp.float32), (0, rows * width - size)).reshape(rows, width)
    upper = jnp.triu(jnp.ones((width, width), jnp.float32))
    # Both sums come out of the one matmul: computing the exclusive sum from ``x`` instead would
    # make XLA recompute ``x``'s producer (the bound of the arc kernel) in that consumer.
    within = exact_matmul(
        blocks, jnp.concatenate([upper, upper - jnp.eye(width, dtype=jnp.float32)], axis=1)
    )
    inclusive, exclusive = within[:, :width], within[:, width:]
    if rows > 1:
        offsets = (_prefix_sum(inclusive[:, -1]) - inclusive[:, -1]).astype(jnp.float32)
        inclusive = inclusive + offsets[:, None]
        exclusive = exclusive + offsets[:, None]
    return inclusive, exclusive


def _compact(flags, capacity: int, portable: bool = False):
    """Indices of the true entries of a 1-D bool ``flags``, in order, and their count.

    Returns an int32 ``(capacity,)`` array (``capacity > flags.shape[0]``); entries past the
    count are arbitrary.
    """
    inclusive, exclusive = _prefix_sums_2d(flags, portable)
    # A false entry goes to the last slot, past every true one (capacity exceeds their count).
    # Computed on the (rows, 128) blocks: a flat slice of them makes XLA:CPU's loop scalar.
    slot = jnp.where(inclusive > exclusive, exclusive, capacity - 1).astype(jnp.int32)
    index = jnp.arange(slot.size, dtype=jnp.int32).reshape(slot.shape)
    compact = jnp.zeros(capacity, jnp.int32).at[slot.ravel()].set(
        index.ravel(), mode="promise_in_bounds"
    )
    return compact, inclusive[-1, -1].astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class _Grid:
    """How the grid angles map onto histogram bins, known before tracing (hashable, static).

    Uniform: ``θ_k = theta0 + k·step`` with ``period·step = 2π`` (``period`` is ``T − 1`` for the
    default grid with its endpoint, ``T`` without it): bins are lattice positions, found by
    arithmetic. General: bins are ranks in the sorted angles (mod 2π), found by binary search.
    """

    period: int
    theta0: float | None = None
    step: float | None = None
    sorted_angles: tuple | None = None
    inverse: tuple | None = None


def angle_layout(angles: jax.Array, dtype=None) -> _Grid | None:
    """The static bin layout of concrete ``angles`` in ``dtype`` (default: their working dtype);
    ``None`` when they are traced (the layout is then decided inside the kernel)."""
    if not _validation.is_concrete(angles):
        return None
    dtype = working_dtype(angles) if dtype is None else dtype
    values = np.asarray(angles).astype(dtype).astype(np.float64)
    num = values.shape[0]
    if num >= 2:
        step = (values[-1] - values[0]) / (num - 1)
        tol = 8 * np.finfo(dtype).eps * max(np.max(np.abs(values)), TWO_PI)
        on_lattice = np.max(np.abs(values - (values[0] + step * np.arange(num)))) <= tol
        for period in (num - 1, num):
            if step > 0 and on_lattice and abs(period * step - TWO_PI) <= tol * num:
                return _Grid(period=period, theta0=float(values[0]), step=float(step))
    reduced = np.mod(np.asarray(angles).astype(dtype), np.asarray(TWO_PI, dtype))
    order = np.argsort(reduced, kind="stable")
    inverse = np.empty(num, np.int64)
    inverse[order] = np.arange(num)
    return _Grid(
        period=num,
        sorted_angles=tuple(float(v) for v in reduced[order]),
        inverse=tuple(int(i) for i in inverse),
    )


def _traced_grid(angles):
    """:func:`angle_layout` for traced angles, as arrays (the uniform test is a traced bool)."""
    dtype = angles.dtype
    num = angles.shape[0]
    index = jnp.arange(num, dtype=jnp.int32)
    step = (angles[-1] - angles[0]) / max(num - 1, 1)
    tol = 8 * jnp.finfo(dtype).eps * jnp.maximum(jnp.max(jnp.abs(angles)), TWO_PI)
    on_lattice = jnp.max(jnp.abs(angles - (angles[0] + index.astype(dtype) * step))) <= tol
    fits = jnp.abs(jnp.array([num - 1, num], dtype) * step - TWO_PI) <= tol * num
    uniform = (num >= 2) & (step > 0) & on_lattice & jnp.any(fits)
    lattice_period = jnp.where(fits[0], num - 1, num)
    reduced = jnp.mod(angles, TWO_PI)
    order = jnp.argsort(reduced)
    inverse = jnp.zeros(num, jnp.int32).at[order].set(index)
    return dict(
        uniform=uniform,
        theta0=angles[0],
        step=jnp.where(uniform, step, 1),
        period=jnp.where(uniform, lattice_period, num),
        sorted_angles=reduced[order],
        out_index=jnp.where(uniform, index % jnp.maximum(lattice_period, 1), inverse),
    )


def _arc_bins(lo, half_width, shift, grid):
    """Extended bins ``[start, stop)`` of the grid angles on the arcs ``[lo, lo + 2w] + shift``.

    Bins run over two turns (``2·period + 1``) so that an arc that wraps past 2π stays one
    interval; the turns are folded together after the histogram.
    """

    def uniform(lo, half_width, theta0, step, period):
        inv = 1 / step
        u = (lo + shift - theta0) * inv
        u = u - jnp.floor(u / period) * period  # mod (jnp.mod is a scalar libm call on CPU)
        start = jnp.minimum(jnp.ceil(u), period)
        stop = jnp.minimum(jnp.floor(u + 2 * half_width * inv) + 1, 2 * period)
        return start.astype(jnp.int32), stop.astype(jnp.int32)

    def general(lo, half_width, sorted_angles):
        extended = jnp.concatenate([sorted_angles, sorted_angles + TWO_PI])
        lo = lo + shift
        lo = jnp.clip(lo - jnp.floor(lo / TWO_PI) * TWO_PI, 0, TWO_PI)
        start = jnp.searchsorted(extended, lo, side="left").astype(jnp.int32)
        stop = jnp.searchsorted(extended, lo + 2 * half_width, side="right").astype(jnp.int32)
        return start, stop

    dtype = lo.dtype
    if isinstance(grid, _Grid):
        if grid.theta0 is not None:
            return uniform(lo, half_width, dtype.type(grid.theta0), dtype.type(grid.step),
                           dtype.type(grid.period))
        return general(lo, half_width, jnp.asarray(grid.sorted_angles, dtype))
    return jax.lax.cond(
        grid["uniform"],
        lambda: uniform(lo, half_width, grid["theta0"], grid["step"],
                        grid["period"].astype(dtype)),
        lambda: general(lo, half_width, grid["sorted_angles"]),
    )


@dataclasses.dataclass(frozen=True)
class _ArcLayout:
    """The arc kernel's static work units for one problem (sizes known before tracing).

    A chunk of ``chunk`` samples is cut into ``num_blocks`` blocks of ``ARC_BLOCK``; a tile is a
    (plane, block) pair, ``num_tiles = P · num_blocks`` per chunk. Tiles are screened
    ``tiles_per_screen`` and histogrammed ``tiles_per_step`` at a time. The difference array
    holds, per group and per copy (the second copy is signed SRM's negative arcs), one row of
    ``width = 2T + 1`` extended bins per plane.
    """

    num_planes: int
    num_angles: int
    m: int
    chunk: int
    num_groups: int
    copies: int
    portable: bool

    @property
    def num_blocks(self) -> int:
        return self.chunk // ARC_BLOCK

    @property
    def num_tiles(self) -> int:
        return self.num_planes * self.num_blocks

    @property
    def tiles_per_step(self) -> int:
        return max(1, min(self.num_tiles, ARC_STEP_PAIRS // ARC_BLOCK))

    @property
    def tiles_per_screen(self) -> int:
        return max(1, min(self.num_tiles, ARC_SCREEN_PAIRS // ARC_BLOCK))

    @property
    def queue_size(self) -> int:
        return self.num_tiles + max(self.tiles_per_screen, self.tiles_per_step)

    @property
    def width(self) -> int:
        return 2 * self.num_angles + 1

    @property
    def group_stride(self) -> int:
        return self.copies * self.num_planes * self.width


class _PlaneGeometry(NamedTuple):
    """Per-plane constants of the arc form (SPEC §5) and the threshold."""

    alpha: jax.Array  # (P,) int32
    beta: jax.Array  # (P,) int32
    c: jax.Array  # (P,) b̂_α·b̂_β
    inv_sine: jax.Array  # (P,) 1/√(1 − c²)
    bound_scale: jax.Array  # (P,) inflated 1/(1 − c²) of the tile bound
    eps: jax.Array  # scalar ε
    eps2: jax.Array  # scalar ε²


class _SortedChunk(NamedTuple):
    """One chunk after :func:`_arc_sort_and_bound`: projections in sorted blocks, live tiles."""

    proj: jax.Array  # (m · num_blocks, ARC_BLOCK) d̂·b̂_k, rows k · num_blocks + block
    valid_blocks: jax.Array  # (num_blocks, ARC_BLOCK) bool
    group_blocks: jax.Array  # (num_blocks, ARC_BLOCK) int32
    live_tiles: jax.Array  # (num_tiles + tiles_per_screen,) tile ids the bound kept, in order
    num_live: jax.Array  # scalar int32
    order: jax.Array  # (chunk,) the chunk's samples in sorted order (block b: b·ARC_BLOCK...)


def _plane_geometry(unit_basis, pairs, epsilon, dtype) -> _PlaneGeometry:
    alpha, beta = pairs[:, 0], pairs[:, 1]
    c, sine = _cosine_and_sine(unit_basis[alpha], unit_basis[beta])
    inv_sine = 1 / sine
    eps = jnp.asarray(epsilon, dtype)
    # r² = (x_α² + x_β² − 2c x_α x_β)/(1 − c²) ≤ (A² + B² + 2|c|AB)/(1 − c²) for |x_α| ≤ A,
    # |x_β| ≤ B; inflated so that rounding never rules out a pair the exact test would keep.
    return _PlaneGeometry(alpha, beta, c, inv_sine, (1 + 1e-4) * inv_sine * inv_sine, eps,
                          eps * eps)


def _arc_sort_and_bound(layout: _ArcLayout, geometry: _PlaneGeometry, unit_basis, unit_chunk,
                        valid_chunk, group_chunk) -> _SortedChunk:
    """Stage 1: sort a chunk's samples by nearest basis vector; keep the tiles the bound allows.

    Samples near the same basis vector side by side, so that lit pairs fill few tiles. A tile
    (plane, block) is live when the bound on ``r`` over the block (from the block's largest
    ``|d̂·b̂_α|`` and ``|d̂·b̂_β|``) reaches ε (every tile when ε ≤ 0) and the block holds a
    valid sample.
    """
    m, chunk, num_blocks = layout.m, layout.chunk, layout.num_blocks
    dtype = unit_chunk.dtype
    proj = exact_matmul(unit_basis, unit_chunk.T)  # (m, chunk); left-out rows are zero
    # The key is the index of the largest |d̂·b̂_k|; on CPU by a matmul (XLA:CPU's argmax is
    # several times slower), where ties (zero rows) give a sum of indices, clipped. The key
    # only orders the samples: any key gives the same counts.
    magnitude = jnp.abs(proj)
    if layout.portable:
        key = jnp.argmax(magnitude, axis=0).astype(jnp.int32)
    else:
        is_top = (magnitude == jnp.max(magnitude, axis=0)).astype(dtype)
        key = exact_matmul(jnp.arange(m, dtype=dtype), is_top)
        key = jnp.minimum(key, m - 1).astype(jnp.int32)
    if m * chunk < 2**31:  # one int32 sort of (key, index) packed: faster than argsort
        order = jnp.sort(key * chunk + jnp.arange(chunk, dtype=jnp.int32)) % chunk
    else:
        order = jnp.argsort(key)
    proj = exact_matmul(unit_basis, unit_chunk[order].T).reshape(m * num_blocks, ARC_BLOCK)
    valid_blocks = valid_chunk[order].reshape(num_blocks, ARC_BLOCK)
    group_blocks = group_chunk[order].reshape(num_blocks, ARC_BLOCK).astype(jnp.int32)
    top = jnp.max(jnp.abs(proj), axis=1).reshape(m, num_blocks)
    top_a, top_b = top[geometry.alpha], top[geometry.beta]
    bound = top_a * top_a + top_b * top_b + 2 * jnp.abs(geometry.c)[:, None] * top_a * top_b
    live = (bound * geometry.bound_scale[:, None] >= geometry.eps2) | (geometry.eps <= 0)
    live = (live & jnp.any(valid_blocks, axis=1)[None, :]).ravel()
    live_tiles, num_live = _compact(live, layout.num_tiles + layout.tiles_per_screen,
                                    layout.portable)
    return _SortedChunk(proj, valid_blocks, group_blocks, live_tiles, num_live, order)


def _tile_coordinates(layout: _ArcLayout, geometry: _PlaneGeometry, sorted_chunk: _SortedChunk,
                      tiles):
    """Plane, block and every sample's in-plane ``(x, y)`` (SPEC §5) of ``tiles``."""
    num_blocks = layout.num_blocks
    plane, block = tiles // num_blocks, tiles % num_blocks
    rows_a = geometry.alpha[plane] * num_blocks + block
    rows_b = geometry.beta[plane] * num_blocks + block
    x = sorted_chunk.proj.at[rows_a].get(mode="promise_in_bounds")
    y = sorted_chunk.proj.at[rows_b].get(mode="promise_in_bounds")
    y = (y - geometry.c[plane][:, None] * x) * geometry.inv_sine[plane][:, None]
    return plane, block, x, y


def _lights(geometry: _PlaneGeometry, x, y, live):
    """Every angle lit when r ≤ −ε (ε ≤ 0); none when r < ε; otherwise one arc."""
    eps, eps2 = geometry.eps, geometry.eps2
    r2 = x * x + y * y
    full = live & (eps <= 0) & (r2 <= eps2)
    partial = live & ~full & ((eps <= 0) | (r2 >= eps2))
    return r2, full, partial


def _arc_screen(layout: _ArcLayout, geometry: _PlaneGeometry, sorted_chunk: _SortedChunk):
    """Stage 2: the exact test on the live tiles; returns the queue of lit tiles and its length.

    A tile is lit when one of its valid samples lights its plane on some angle.
    """
    per = layout.tiles_per_screen

    def screen(state):
        i, queue, queued = state
        tiles = jax.lax.dynamic_slice(sorted_chunk.live_tiles, (i * per,), (per,))
        in_range = i * per + jnp.arange(per) < sorted_chunk.num_live
        _, block, x, y = _tile_coordinates(layout, geometry, sorted_chunk, tiles)
        live = sorted_chunk.valid_blocks[block] & in_range[:, None]
        _, full, partial = _lights(geometry, x, y, live)
        lit, num_lit = _compact(jnp.any(full | partial, axis=1), per + 1, layout.portable)
        queue = jax.lax.dynamic_update_slice(queue, tiles[lit[:per]], (queued,))
        return i + 1, queue, queued + num_lit

    screen_steps = -(-sorted_chunk.num_live // per)
    _, queue, queued = jax.lax.while_loop(
        lambda s: s[0] < screen_steps, screen,
        (jnp.int32(0), jnp.zeros(layout.queue_size, jnp.int32), jnp.int32(0)),
    )
    return queue, queued


def _arc_histogram(layout: _ArcLayout, geometry: _PlaneGeometry, sorted_chunk: _SortedChunk,
                   queue, queued, grid, period, diff):
    """Stage 3: the arcs of the queued tiles' samples, +1/−1 into the difference array ``diff``.

    ``diff`` is int32 ``(G · copies · P · width,)`` over two turns of extended bins
    (:func:`_arc_bins`); :func:`_fold_histogram` turns it into counts.
    """
    per, width = layout.tiles_per_step, layout.width
    eps, eps2 = geometry.eps, geometry.eps2

    def step(state):
        i, diff = state
        tiles = jax.lax.dynamic_slice(queue, (i * per,), (per,))
        in_range = i * per + jnp.arange(per) < queued
        plane, block, x, y = _tile_coordinates(layout, geometry, sorted_chunk, tiles)
        live = sorted_chunk.valid_blocks[block] & in_range[:, None]
        r2, full, partial = _lights(geometry, x, y, live)
        phi = _atan2(y, x, layout.portable)
        half_width = _atan2(
            jnp.sqrt(jnp.maximum(r2 - eps2, 0)), jnp.broadcast_to(eps, x.shape), layout.portable
        )
        lo = -phi - half_width
        base = plane[:, None] * width
        if layout.num_groups > 1:
            base = base + sorted_chunk.group_blocks[block] * layout.group_stride
        starts, stops = [], []
        # d̂·s ≤ −ε  ⟺  (−d̂)·s ≥ ε: the negative arcs are the same arcs shifted by π.
        for copy, shift in enumerate((0.0, math.pi)[:layout.copies]):
            start, stop = _arc_bins(lo, half_width, shift, grid)
            start = jnp.where(partial, start, 0)
            stop = jnp.where(partial, stop, jnp.where(full, period, 0))
            offset = base + copy * layout.num_planes * width
            starts.append((offset + start).ravel())
            stops.append((offset + stop).ravel())
        diff = diff.at[jnp.concatenate(starts)].add(1, mode="promise_in_bounds")
        diff = diff.at[jnp.concatenate(stops)].add(-1, mode="promise_in_bounds")
        return i + 1, diff

    num_steps = -(-queued // per)
    _, diff = jax.lax.while_loop(lambda s: s[0] < num_steps, step, (jnp.int32(0), diff))
    return diff


def _fold_histogram(layout: _ArcLayout, diff, period, out_index):
    """Stage 4: prefix sums of the difference array, two turns folded, bins to grid angles.

    Returns int32 ``(G, copies, P, T)`` counts.
    """
    extended = jnp.cumsum(
        diff.reshape(layout.num_groups, layout.copies, layout.num_planes, layout.width), axis=-1
    )
    # Lattice position j collects extended bins j and j + period.
    folded = extended[..., :layout.num_angles] + jax.lax.dynamic_slice_in_dim(
        extended, period, layout.num_angles, axis=-1
    )
    return folded[..., out_index]


def _arc_counts(
    unit, valid, groups, num_groups, unit_basis, pairs, angles, epsilon, signed, chunk, grid=None,
    backend="cpu",
):
    """Counts by the arc form (SPEC §5): a histogram of each sample's arc of lit angles.

    Sample ``d`` lights plane ``(α, β)`` on the arc ``θ ∈ [−φ − w, −φ + w]`` (mod 2π) when
    ``r ≥ ε``, at every angle when ``r ≤ −ε``, else nowhere (``x = d̂·b̂_α``, ``y = d̂·û``,
    ``r = √(x² + y²)``, ``φ = atan2(y, x)``, ``w = arccos(ε/r)``). Each arc adds +1 at its first
    grid angle and −1 past its last in a difference array, whose prefix sum is the count.

    The work is organised around sparsity: a sample lights a plane only if its projection onto
    the plane reaches ε, so for ε > 0 most (sample, plane) pairs light nothing. Per chunk of
    samples, four named stages: :func:`_arc_sort_and_bound` (sort by nearest basis vector, cut
    into blocks of ``ARC_BLOCK``, rule out (plane, block) tiles by a bound on ``r``),
    :func:`_arc_screen` (the exact test on the remaining tiles), :func:`_arc_histogram` (the
    lit tiles' arcs into the difference array, ``ARC_STEP_PAIRS`` pairs at a time) and, once at
    the end, :func:`_fold_histogram`. For ε ≤ 0 every tile is evaluated.

    ``groups`` (int ``(N,)`` in ``[0, num_groups)``) splits the samples into disjoint groups whose
    counts are kept apart in the same pass; the returned counts are ``(num_groups, P, T)``.
    ``grid`` is the static :class:`_Grid` of the angles, or ``None`` to decide it when traced.
    ``backend`` picks the kernel's ops (:func:`portable_kernel`); every choice is exact.
    """
    num_angles = angles.shape[0]
    layout = _ArcLayout(
        num_planes=pairs.shape[0], num_angles=num_angles, m=unit_basis.shape[0],
        chunk=-(-chunk // ARC_BLOCK) * ARC_BLOCK, num_groups=num_groups,
        copies=2 if signed else 1, portable=portable_kernel(backend),
    )
    geometry = _plane_geometry(unit_basis, pairs, epsilon, unit.dtype)
    if grid is None:
        grid = _traced_grid(angles)
        period, out_index = grid["period"], grid["out_index"]
    elif grid.theta0 is not None:
        period, out_index = grid.period, np.arange(num_angles) % grid.period
    else:
        period, out_index = grid.period, np.asarray(grid.inverse)

    def body(diff, chunk_data):
        sorted_chunk = _arc_sort_and_bound(layout, geometry, unit_basis, *chunk_data)
        queue, queued = _arc_screen(layout, geometry, sorted_chunk)
        return _arc_histogram(layout, geometry, sorted_chunk, queue, queued, grid, period,
                              diff), None

    diff = jnp.zeros(num_groups * layout.group_stride, jnp.int32)
    diff, _ = jax.lax.scan(body, diff, _pad_samples(unit, valid, groups, layout.chunk))
    counts = _fold_histogram(layout, diff, period, out_index)
    return counts[:, 0], (counts[:, 1] if signed else None)


def _direct_counts(
    unit, valid, groups, num_groups, basis, pairs, angles, epsilon, signed, chunk, plane_block
):
    """Counts by the direct definition, Eqns. 2 and 4, blocked over planes and samples.

    Returns counts of shape ``(num_groups, P, T)`` (see :func:`_arc_counts`).
    """
    num_planes = pairs.shape[0]
    num_angles = angles.shape[0]
    num_blocks = -(-num_planes // plane_block)
    padded_pairs = jnp.concatenate(
        [pairs, jnp.broadcast_to(pairs[:1], (num_blocks * plane_block - num_planes, 2))]
    ).reshape(num_blocks, plane_block, 2)
    eps = jnp.asarray(epsilon, unit.dtype)
    chunks = _pad_samples(unit, valid, groups, chunk)

    def group_sum(mask, group_chunk):
        mask = mask.astype(jnp.int32)
        if num_groups == 1:
            return jnp.sum(mask, axis=0, dtype=jnp.int32)[None]
        return jax.ops.segment_sum(mask, group_chunk, num_segments=num_groups)

    def block_counts(block_pairs):
        spot = spotlight(basis, block_pairs, angles).reshape(plane_block * num_angles, -1)

        def body(carry, chunk_data):
            unit_chunk, valid_chunk, group_chunk = chunk_data
            dots = exact_matmul(unit_chunk, spot.T)
            live = valid_chunk[:, None]
            pos = group_sum((dots >= eps) & live, group_chunk)
            neg = group_sum((dots <= -eps) & live, group_chunk)
            return (carry[0] + pos, carry[1] + neg), None

        zeros = jnp.zeros((num_groups, plane_block * num_angles), jnp.int32)
        (pos, neg), _ = jax.lax.scan(body, (zeros, zeros), chunks)
        return pos, neg

    pos, neg = jax.lax.map(block_counts, padded_pairs)  # (blocks, G, block * T)

    def unblock(x):
        x = x.reshape(num_blocks, num_groups, plane_block, num_angles)
        return jnp.moveaxis(x, 1, 0).reshape(num_groups, -1, num_angles)[:, :num_planes]

    return unblock(pos), (unblock(neg) if signed else None)


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
    spotlight (SPEC §1).

    Args:
      activations: ``(N, n)`` samples, one a row.
      basis: ``(m, n)`` privileged basis, one vector a row (rows are normalised).
      epsilon: ``ε ∈ [−1, 1]``, the cosine of the spotlight's half-angle.
      angles: 1-D rotation angles; default :func:`angle_grid` (100 angles, 0 to 2π inclusive).
      planes: ``"comb"`` (Combination-SRM), ``"perm"`` (Permutation-SRM), or explicit int
        ``(P, 2)`` pairs. The named kinds skip pairs that span no plane (``|b̂_α·b̂_β| ≥
        1 − 1e-6``, SPEC §2; ``result.planes`` lists those measured), except with a traced
        basis, where they keep every pair (see :func:`_resolve_planes`); an explicit pair that
        spans no plane is an error.
      signed: signed SRM (Eqn. 4); fills ``negative_counts``.
      method: ``"direct"`` (the definition), ``"arc"`` (exact arc histogram, SPEC §5) or
        ``"auto"`` (``"direct"`` for small problems, ``"arc"`` above the crossover measured
        per backend: :data:`AUTO_DIRECT_LIMIT`, ``benchmarks/RESULTS.md``).
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
    counts, negative, num_samples, angles = plan_counts(
        plan, activations, basis, pairs, angles, epsilon
    )
    return SRMResult(
        counts=counts[0],
        negative_counts=None if negative is None else negative[0],
        num_samples=num_samples[0],
        angles=angles,
        planes=pairs,
        epsilon=jnp.asarray(epsilon, angles.dtype),
        signed=signed,
    )


def _grouped_counts(
    activations, basis, pairs, angles, epsilon, *, groups, num_groups, signed, method,
    chunk_size, grid, backend,
):
    """The counts of :func:`plan_counts`, with the plan's settings as static arguments."""
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
    num_planes, num_angles = pairs.shape[0], angles.shape[0]

    if method == "auto":
        work = n_samples * num_planes * num_angles
        method = "direct" if work <= auto_direct_limit(num_angles, backend) else "arc"
    if method == "arc":
        # Tiles per chunk stay below 2**23 (prefix sums are exact float32 matmuls).
        most = max(1, (2**23 // num_planes)) * ARC_BLOCK
        chunk = chunk_size or max(1, ARC_CHUNK_TILES // num_planes) * ARC_BLOCK
        counts, negative = _arc_counts(
            unit, valid, groups, num_groups, normalise_rows(basis), pairs, angles, epsilon,
            signed, min(chunk, most, max(n_samples, 1)), grid, backend,
        )
    else:
        plane_block = max(1, min(num_planes, DIRECT_CHUNK_ELEMENTS // (num_angles * 256)))
        chunk = chunk_size or max(1, DIRECT_CHUNK_ELEMENTS // (plane_block * num_angles))
        counts, negative = _direct_counts(
            unit, valid, groups, num_groups, basis, pairs, angles, epsilon, signed,
            min(chunk, max(n_samples, 1)), plane_block,
        )
    return counts, negative, num_samples, angles


# Eager calls compile once per shape and setting (epsilon stays a traced argument).
_grouped_counts_jit = jax.jit(
    _grouped_counts,
    static_argnames=("num_groups", "signed", "method", "chunk_size", "grid", "backend"),
)


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
    (paper Sec. 3, Fig. 1 centre; SPEC §4). Keyword arguments go to :func:`spotlight_resonance`.
    """
    return spotlight_resonance(
        basis, basis, epsilon=epsilon, angles=angles, planes=planes, signed=signed, **kwargs
    )
