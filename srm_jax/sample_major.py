"""The sample-major kernel: only the planes a sample can light, enumerated sample by sample.

math §5.1. Group the basis into its K distinct directions ``q_k`` (``b̂_α = s_α q_{k(α)}``,
``s_α = ±1``: antipodal vectors share a direction) and let ``z_k = d̂·q_k``. For a plane
``(α, β)`` with ``c = b̂_α·b̂_β`` the in-plane radius obeys
``r² = (x_α² + x_β² − 2c x_α x_β)/(1 − c²) ≤ 2 max(x_α², x_β²)/(1 − |c|)``, so for ε > 0 a
plane is lit (``r ≥ ε``) only if one of its two directions *leads*: ``z_k² ≥ τ``,
``τ = ε²(1 − c_max)/2`` (``c_max``: the largest ``|c|`` between distinct directions). Since
``Σ_k z_k² = d̂ᵀQᵀQd̂ ≤ λ_max(QQᵀ)`` (the frame bound, 1 for orthonormal directions), a sample has
at most ``L = ⌊λ_max/τ⌋`` leaders: two at ε = 0.9 for a ``±`` orthonormal basis (the standard
basis ``±e_i``, an orthoplex, any rotation of them).

Per chunk of samples the kernel (1) projects the chunk onto the directions (one
:func:`exact_matmul`, or a gather when every direction is a coordinate axis ``±e_i``), (2)
compacts the leading ``(sample, direction)`` pairs into a queue of *rows* (at most ``L`` a
sample, so a chunk's queue has a static capacity), (3) tests each row against every partner
direction with a bound on the radius of all the planes of that direction pair,
``r² ≤ (z_a² + z_b² + 2|c||z_a z_b|)/(1 − c²)`` (equality for orthogonal directions), and
compacts the *candidate* ``(row, partner)`` pairs that may reach ε (a plane whose two
directions both lead is taken by the leader of lower index only), and (4) evaluates every plane
of each candidate exactly and histograms the lit arcs as the arc kernel does
(:func:`srm_jax.kernel_ops._arc_bins`, the same ``x``, ``y`` and rounding). Work:
``O(N·n·K)`` for the projection (``O(N·n)`` for ``±e_i``), plus ``K`` cheap tests per row,
plus ``J`` planes per candidate (``J`` planes per direction pair): in proportion to the lit
planes. Rows and candidates are processed a fixed number at a time in while loops, so any
number of them (a chunk of one-hot samples lights every plane of its direction) is exact.

ε ≤ 0: every sample lights every plane, so there is nothing to skip. For ε < 0 the kernel uses
the complement ``#{d̂·s ≥ ε} = N − #{d̂·s < ε} = N − #{(−d̂)·s > |ε|}``, counting the
negative arcs at ``|ε| > 0`` (equal except for samples with ``d̂·s`` exactly at ``±ε``, which
math §5.2 leaves to rounding); ε = 0 is handed to the tile kernel (:mod:`srm_jax.arc_kernel`).

Four entry points: :func:`sample_major_counts`, full ``(G, C, P, T)`` counts (a difference
array per group and copy, folded once at the end, only in its rows that hold an arc: ``P · T``
int32 folded in place on a uniform grid with its endpoint, the default, see
:func:`_fold_one_turn`; ``P · (2T + 1)`` on any other grid);
:func:`sample_major_summaries`, the additive sums of :class:`srm_jax.SRMSummary`'s fields,
which never hold ``(P, T)``: per-angle counts summed over planes and per-plane counts summed over
angles; :func:`sample_major_curves`, the mean curves of a sweep of thresholds in one
enumeration (math §6.2); and :func:`sample_major_credits`, each sample's lit count and its
basis vectors' credits (math §11). All run the same steps, module-level functions over a
typed scan carry (:class:`_Carry`): :func:`_chunk_leaders`, :func:`_find_candidates`,
:func:`_candidate_arcs` and the accumulators :func:`_add_counts` / :func:`_add_sums`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from srm_jax._precision import axis_coordinates, exact_matmul
from srm_jax.kernel_ops import (
    _arc_bins,
    _atan2,
    _compact,
    _Grid,
    credit_share,
    grid_bins,
    pad_samples,
)

# Samples per chunk: the candidate queue holds C · L · K int32 (at most this many: 64 MB). Each
# chunk's loops cost a fixed overhead, so fewer, larger chunks are faster where L is large (a
# rotation test's least ε at 384 units: 0.26 s → 0.18 s a rotation of 8,366 samples from 2**22).
SAMPLE_MAJOR_CHUNK_ELEMENTS = 1 << 24
# (row, partner) pairs tested per step of the candidate search, and (candidate, plane) entries
# histogrammed per step.
SAMPLE_MAJOR_STEP_ENTRIES = 1 << 16
# Cosines beyond ±(1 − this) make two basis vectors one direction (math §2.2: they span no plane).
PARALLEL_TOLERANCE = 1e-6
# Slack on the leader threshold τ: rounding never drops a leader the exact test would keep.
LEADER_SLACK = 1e-4
# Slack on ε² for the candidate (row, partner) pairs: rounding never drops a lit plane.
CANDIDATE_SLACK = 1e-4
# Low limb of the wide (two int32) sums of :func:`wide_add`.
WIDE_BITS = 24


@dataclasses.dataclass(frozen=True)
class BasisStructure:
    """A basis grouped into its distinct directions (hashable, static; from a concrete basis).

    ``b̂_α = s_α q_{direction[α]}``: ``member[α]`` is 0 for the vector that defines its direction
    (``representative``) and 1 for its antipode (``s_α = −1``). ``coordinate`` is set when every
    direction is a coordinate axis (``q_k = ±e_i``: ``coordinate[k] = i``,
    ``coordinate_sign[k] = ±1``), so the projection is a gather. ``max_cosine`` is the largest
    ``|q_k·q_l|`` between distinct directions and ``frame_bound`` bounds ``λ_max(QQᵀ)`` (by
    Gershgorin); both are invariant under rotation of the basis, so one structure serves every
    rotated copy of it (the rotation test).
    """

    num_directions: int
    direction: tuple[int, ...]
    member: tuple[int, ...]
    representative: tuple[int, ...]
    num_members: int
    max_cosine: float
    frame_bound: float
    coordinate: tuple[int, ...] | None = None
    coordinate_sign: tuple[float, ...] | None = None


def basis_structure(basis) -> BasisStructure:
    """The :class:`BasisStructure` of a concrete ``(m, n)`` basis (rows are normalised here).

    Raises ``ValueError`` for a basis with two parallel vectors (the same direction twice).
    """
    b = np.asarray(basis, np.float64)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    m, n = b.shape
    nonzero = np.abs(b) > 0
    if np.all(nonzero.sum(axis=1) == 1):  # every vector is ±e_i: no Gram matrix needed
        axis = np.argmax(nonzero, axis=1)
        sign = np.sign(b[np.arange(m), axis])
        keys = axis
        cosine_max = 0.0
    else:
        gram = np.asarray(np.asarray(b, np.float32) @ np.asarray(b, np.float32).T, np.float64)
        np.fill_diagonal(gram, 0.0)
        if np.any(gram >= 1 - PARALLEL_TOLERANCE):
            i, j = np.argwhere(gram >= 1 - PARALLEL_TOLERANCE)[0]
            raise ValueError(f"basis vectors {i} and {j} are parallel: one direction twice.")
        antipode = np.where(np.any(gram <= -1 + PARALLEL_TOLERANCE, axis=1),
                            np.argmin(gram, axis=1), -1)
        keys = np.where((antipode >= 0) & (antipode < np.arange(m)), antipode, np.arange(m))
        axis = sign = None
        distinct = np.abs(gram)
        distinct[gram <= -1 + PARALLEL_TOLERANCE] = 0.0
        cosine_max = float(distinct.max()) if m > 1 else 0.0
    _, first, direction = np.unique(keys, return_index=True, return_inverse=True)
    direction = direction.ravel()
    representative = first  # the lowest-index vector of each direction (member 0)
    member = (np.arange(m) != representative[direction]).astype(int)
    if np.bincount(direction).max() > 2:
        raise ValueError("a basis direction appears more than twice: parallel basis vectors.")
    num_directions = int(representative.shape[0])
    if axis is not None:
        coordinate = tuple(int(i) for i in axis[representative])
        coordinate_sign = tuple(float(s) for s in sign[representative])
        if len(set(coordinate)) != num_directions:
            raise ValueError("basis vectors are parallel: one direction twice.")
        frame = 1.0
    else:
        coordinate = coordinate_sign = None
        q = np.asarray(b[representative], np.float32).astype(np.float64)
        gram = np.abs(q @ q.T)
        frame = float(np.max(np.sum(gram, axis=1)))  # Gershgorin: λ_max(QQᵀ) ≤ max row sum
    return BasisStructure(
        num_directions=num_directions,
        direction=tuple(int(k) for k in direction),
        member=tuple(int(k) for k in member),
        representative=tuple(int(k) for k in representative),
        num_members=int(member.max()) + 1,
        max_cosine=cosine_max,
        frame_bound=max(frame, 1.0),
        coordinate=coordinate,
        coordinate_sign=coordinate_sign,
    )


@dataclasses.dataclass(frozen=True)
class SampleMajorPlan:
    """The static settings of the sample-major kernel for one basis and ε (hashable).

    ``threshold`` is the ε the kernel's leader bound was made for (``|ε|``; the kernel is exact
    for any traced ε of the same sign with ``|ε| ≥ threshold``); ``complement`` says ε < 0
    (math §5.3: counted through the opposite cone). ``leaders`` is ``L``. ``both_orientations``
    says the planes may hold a pair of vectors in both orders (``planes="perm"``): the plane
    table then needs a slot per orientation (:func:`plane_table`); :func:`planes_orientations`
    decides it from concrete pairs.
    """

    structure: BasisStructure
    threshold: float
    leaders: int
    complement: bool = False
    both_orientations: bool = True

    @property
    def leader_threshold(self) -> float:
        """τ: a direction with ``z² < τ`` leads no lit plane."""
        return self.threshold ** 2 * (1 - self.structure.max_cosine) / 2 * (1 - LEADER_SLACK)

    @property
    def planes_per_pair(self) -> int:
        """``J``: table slots per ordered direction pair (members², times 2 orientations when
        ``both_orientations``)."""
        return (2 if self.both_orientations else 1) * self.structure.num_members ** 2


def sample_major_plan(structure: BasisStructure, epsilon: float) -> SampleMajorPlan | None:
    """The :class:`SampleMajorPlan` for ``epsilon``, or ``None`` where the kernel cannot skip
    anything (ε = 0, or a basis whose directions are too close: ``c_max ≥ 1``)."""
    threshold = abs(float(epsilon))
    if threshold == 0.0 or structure.max_cosine >= 1 - PARALLEL_TOLERANCE:
        return None
    plan = SampleMajorPlan(structure, threshold, 1, complement=float(epsilon) < 0)
    bound = structure.frame_bound * (1 + LEADER_SLACK) / plan.leader_threshold
    leaders = max(1, min(structure.num_directions, int(math.floor(bound))))
    return dataclasses.replace(plan, leaders=leaders)


def sample_major_work(plan: SampleMajorPlan, leaders: float | None = None) -> float:
    """Entries per sample, ``L · K · J``: the kernel's cost model (with the lit arcs), for the
    bound ``L`` or for ``leaders`` leader rows a sample (:func:`observed_leaders`)."""
    rows = plan.leaders if leaders is None else leaders
    return rows * plan.structure.num_directions * plan.planes_per_pair


def probe_rows(num_samples: int, max_rows: int) -> np.ndarray:
    """At most ``max_rows`` evenly spaced row indices of ``num_samples`` rows (first and last
    included): the rows a plan reads of concrete samples."""
    return np.unique(np.linspace(0, num_samples - 1, min(num_samples, max_rows)).astype(np.int64))


def observed_leaders(plan: SampleMajorPlan, activations, basis, max_rows: int = 2048) -> float:
    """The mean number of leader rows (directions with ``z² ≥ τ``) of concrete samples: at most
    ``max_rows`` evenly spaced rows are read (finite, non-zero rows only; host NumPy, for
    planning). The kernel's cost follows this number, which for most data lies far below the
    bound ``L`` (a Haar-rotated layer has almost none at any ε that lights anything)."""
    with jax.ensure_compile_time_eval():  # concrete samples closed over by a jit: read them
        x = np.asarray(activations[probe_rows(activations.shape[0], max_rows)], np.float32)
    norms = np.linalg.norm(x.astype(np.float64), axis=1)
    keep = np.isfinite(norms) & (norms > 0)
    if not np.any(keep):
        return 0.0
    x = x[keep] / norms[keep, None].astype(np.float32)
    s = plan.structure
    if s.coordinate is not None:  # ±e_i directions: the coordinates themselves, no product
        z = x[:, np.asarray(s.coordinate)]
    else:
        directions = np.asarray(basis, np.float32)[np.asarray(s.representative)]
        z = x @ (directions / np.linalg.norm(directions, axis=1, keepdims=True)).T
    return float(np.mean(np.sum(np.square(z) >= plan.leader_threshold, axis=1)))


def plane_table(plan: SampleMajorPlan, pairs: jax.Array) -> jax.Array:
    """int32 ``(K, K, J)``: for a leader direction ``a`` and a partner ``b``, the planes whose two
    directions are ``{a, b}``, as ``2·p + o`` (−1 where none; ``o = 0`` when ``α`` lies along
    ``a``). Slot ``j = o·M² + member_a·M + member_b`` (``member_a``: the member of the vector
    along ``a``; ``M`` members per direction; the ``o·M²`` term only when
    ``plan.both_orientations``).

    Every pair must span a plane and appear once (checked by :func:`check_plane_table_pairs`).
    """
    first, second = _table_positions(plan, pairs)
    s = plan.structure
    k, j = s.num_directions, plan.planes_per_pair
    ids = 2 * jnp.arange(pairs.shape[0], dtype=jnp.int32)
    table = jnp.full(k * k * j, -1, jnp.int32)
    table = table.at[first].set(ids).at[second].set(ids + 1)
    return table.reshape(k, k, j)


def _table_positions(plan: SampleMajorPlan, pairs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Flat :func:`plane_table` positions of each plane, led by ``α``'s direction and by
    ``β``'s."""
    s = plan.structure
    k, mm, j = s.num_directions, s.num_members, plan.planes_per_pair
    direction = jnp.asarray(s.direction, jnp.int32)
    member = jnp.asarray(s.member, jnp.int32)
    alpha, beta = pairs[:, 0], pairs[:, 1]
    da, db, ma, mb = direction[alpha], direction[beta], member[alpha], member[beta]
    turned = mm * mm if plan.both_orientations else 0
    first = (da * k + db) * j + ma * mm + mb
    second = (db * k + da) * j + turned + mb * mm + ma
    return first, second


def planes_orientations(structure: BasisStructure, pairs) -> bool:
    """Whether concrete ``pairs`` hold some pair of vectors in both orders (see
    :attr:`SampleMajorPlan.both_orientations`)."""
    pairs = np.asarray(pairs, np.int64)
    m = len(structure.direction)
    unordered = np.minimum(pairs[:, 0], pairs[:, 1]) * m + np.maximum(pairs[:, 0], pairs[:, 1])
    return _repeats(unordered)


def _repeats(keys: np.ndarray) -> bool:
    """Whether integer ``keys`` hold a value twice (by a sort, cheaper than ``np.unique``)."""
    keys = np.sort(keys)
    return bool(np.any(keys[1:] == keys[:-1]))


def check_plane_table_pairs(structure: BasisStructure, pairs) -> str | None:
    """Why concrete ``pairs`` cannot go through :func:`plane_table` (``None`` when they can)."""
    pairs = np.asarray(pairs)
    direction = np.asarray(structure.direction)
    if np.any(direction[pairs[:, 0]] == direction[pairs[:, 1]]):
        return "a pair of antipodal vectors spans no plane"
    keys = pairs[:, 0].astype(np.int64) * len(direction) + pairs[:, 1]
    if _repeats(keys):
        return "the pairs hold a plane twice"
    return None


def wide_add(total: jax.Array, value: jax.Array) -> jax.Array:
    """``total + value`` for counts that may pass ``2**31``: ``total`` is int32 ``(..., 2)``
    (high and low limbs, ``high · 2**24 + low``), ``value`` int32 ``(...)`` with
    ``0 ≤ value < 2**31 − 2**24``. Exact up to ``2**55``; the limbs of equal sums are equal."""
    low = total[..., 1] + value
    high = total[..., 0] + (low >> WIDE_BITS)
    return jnp.stack([high, low & ((1 << WIDE_BITS) - 1)], axis=-1)


def wide_value(total: jax.Array, dtype=jnp.float32) -> jax.Array:
    """The value of wide counts (:func:`wide_add`) as ``dtype``."""
    total = jnp.asarray(total)
    return (total[..., 0].astype(dtype) * (1 << WIDE_BITS) + total[..., 1].astype(dtype))


def wide_sum(first: jax.Array, second: jax.Array) -> jax.Array:
    """The sum of two wide counts (:func:`wide_add`)."""
    return wide_add(first.at[..., 0].add(second[..., 0]), second[..., 1])


def _coordinates(plan: SampleMajorPlan, unit_basis, unit_chunk):
    """``z = d̂·q_k`` of a chunk on the K directions, ``(C, K)``; ``unit_basis`` is ``None`` to
    project by a gather (every direction a coordinate axis)."""
    s = plan.structure
    if s.coordinate is not None and unit_basis is None:
        in_order = s.coordinate == tuple(range(unit_chunk.shape[1]))
        return axis_coordinates(unit_chunk, None if in_order else s.coordinate,
                                None if min(s.coordinate_sign) > 0 else s.coordinate_sign)
    directions = unit_basis[jnp.asarray(s.representative)]
    return exact_matmul(unit_chunk, directions.T)


class SampleMajorSums(NamedTuple):
    """What :func:`sample_major_summaries` returns: wide (:func:`wide_add`) int32 sums.

    ``C`` copies: copy 0 counts ``d̂·s ≥ |ε|``; copy 1 (signed SRM, or ε < 0) counts
    ``d̂·s ≤ −|ε|`` (the caller takes ε < 0 through the complement, math §5.3).
    """

    curve: jax.Array  # (G, C, T, 2): per angle, the counts summed over planes
    totals: jax.Array  # (G, C, P, 2): per plane, the counts summed over the angles


@dataclasses.dataclass(frozen=True)
class _Layout:
    """The static sizes of one kernel call (hashable: known before tracing).

    ``turn_period`` is set for full counts on a uniform grid with its endpoint (the one-turn
    layout of :func:`_fold_one_turn`); otherwise the difference arrays hold two turns. ``sweep``
    is the number of thresholds of :func:`sample_major_curves` (0 for the other entry points).
    """

    plan: SampleMajorPlan
    num_groups: int
    num_planes: int
    num_angles: int
    copies: int
    chunk: int
    portable: bool
    gather: bool
    summary: bool
    turn_period: int | None = None
    sweep: int = 0

    @property
    def directions(self) -> int:
        return self.plan.structure.num_directions

    @property
    def width(self) -> int:
        """Difference-array bins per row: one turn, or two turns and a spare."""
        return self.num_angles if self.turn_period is not None else 2 * self.num_angles + 1

    @property
    def rows_per_step(self) -> int:
        """Leader rows tested against every partner per step of the candidate search."""
        return max(1, SAMPLE_MAJOR_STEP_ENTRIES // self.directions)

    @property
    def block(self) -> int:
        """Candidates histogrammed per step."""
        return max(1, SAMPLE_MAJOR_STEP_ENTRIES // self.plan.planes_per_pair)

    @property
    def capacity(self) -> int:
        """The leader queue: every leader of a chunk, one step's overshoot and a spare slot."""
        return self.chunk * self.plan.leaders + self.rows_per_step + 1

    @property
    def candidate_capacity(self) -> int:
        """The candidate queue: every candidate of a chunk, one step's overshoot of each loop
        and a spare slot."""
        k = self.directions
        return self.chunk * self.plan.leaders * k + self.rows_per_step * k + self.block + 1


class _Geometry(NamedTuple):
    """The traced constants of one call: thresholds, direction cosines and the plane table."""

    eps: jax.Array  # |ε|
    eps2: jax.Array  # ε²
    tau: jax.Array  # the leader threshold τ
    candidate_eps2: jax.Array  # ε² less the candidate slack
    cosine: jax.Array  # (K, K) q_a·q_b, zero diagonal
    sign_a: jax.Array  # (J,) the sign of the vector along the leader in each table slot
    sign_b: jax.Array  # (J,) the sign of the vector along the partner
    table: jax.Array  # (K, K, J) :func:`plane_table`
    basis: jax.Array | None  # unit basis to project on, None for a gather
    sweep: jax.Array | None = None  # (E,) the thresholds of sample_major_curves


class _Bins(NamedTuple):
    """The angle grid's bins (:func:`grid_bins`) and ``angle_prefix``: grid angles per extended
    bin, summed (angle 0 and 2π share a bin), so an arc's total is a difference of it."""

    grid: Any
    period: Any
    out_index: Any
    angle_prefix: jax.Array


class _ChunkLeaders(NamedTuple):
    """One chunk's coordinates and its queue of leader rows ``sample·K + direction``."""

    z: jax.Array  # (C, K)
    leads: jax.Array  # (C, K) bool
    queue: jax.Array  # (capacity,) leader rows
    queued: jax.Array  # scalar int32
    groups: jax.Array  # (C,) int32


class _Counts(NamedTuple):
    """Full-counts accumulator: flat difference arrays and, one-turn only, wraps per row."""

    diff: jax.Array
    wraps: jax.Array | None


class _Sums(NamedTuple):
    """Summaries accumulator: the curve (wide, or a chunk's difference array inside a chunk)
    and per-plane totals in the plane table's layout ``(G·C, K·K, J)``."""

    curve: jax.Array
    dense: jax.Array


class _Curves(NamedTuple):
    """Curves accumulator of :func:`sample_major_curves`: wide ``(G·C·E, T, 2)`` sums, or a
    chunk's difference arrays inside a chunk."""

    curve: jax.Array


class _Carry(NamedTuple):
    """The carry of the scan over chunks. ``found`` (the candidate queue) rides in it: entries
    past a chunk's count are never read, so it is allocated once, not zeroed per chunk."""

    acc: _Counts | _Sums | _Curves
    found: jax.Array


def _layout(unit, pairs, angles, num_groups, signed, plan, grid, backend, chunk, gather,
            summary, sweep=0) -> _Layout:
    """The :class:`_Layout` of a call (``grid`` as returned by :func:`grid_bins`)."""
    num_angles = angles.shape[0]
    # Full counts of a uniform grid with its endpoint (the default: T = period + 1, angle 2π
    # = angle 0) use a one-turn difference array, (P, T): half the two-turn layout, folded in
    # place into the counts, so no second (P, T) buffer is zeroed.
    one_turn = (not summary and isinstance(grid, _Grid) and grid.theta0 is not None
                and num_angles == grid.period + 1)
    k = plan.structure.num_directions
    chunk = chunk or max(1, min(unit.shape[0],
                                SAMPLE_MAJOR_CHUNK_ELEMENTS // max(k * plan.leaders, 1)))
    return _Layout(
        plan=plan, num_groups=num_groups, num_planes=pairs.shape[0], num_angles=num_angles,
        # The complement (ε < 0) needs the negative arcs of |ε|, and so does signed SRM.
        copies=2 if (signed or plan.complement) else 1, chunk=chunk,
        portable=backend != "cpu", gather=gather, summary=summary,
        turn_period=grid.period if one_turn else None, sweep=int(sweep),
    )


def _geometry(plan: SampleMajorPlan, unit_basis, pairs, epsilon, dtype, table,
              gather: bool) -> _Geometry:
    """The :class:`_Geometry` of a call (the plane table built here when ``table`` is None)."""
    k, mm = plan.structure.num_directions, plan.structure.num_members
    eps = jnp.abs(jnp.asarray(epsilon, dtype))
    eps2 = eps * eps
    # Cosines between directions, K × K (not per plane: a P-long gather of basis rows is the
    # largest fixed cost at this width); c = s_α s_β q_a·q_b.
    if gather:
        cosine = jnp.zeros((k, k), dtype)
    else:
        directions = unit_basis[jnp.asarray(plan.structure.representative)]
        cosine = exact_matmul(directions, directions.T)
        cosine = cosine * (1 - jnp.eye(k, dtype=dtype))
    slot = jnp.arange(plan.planes_per_pair, dtype=jnp.int32)
    member_a, member_b = (slot % (mm * mm)) // mm, slot % mm
    return _Geometry(
        eps=eps, eps2=eps2, tau=jnp.asarray(plan.leader_threshold, dtype),
        candidate_eps2=eps2 * (1 - CANDIDATE_SLACK), cosine=cosine,
        sign_a=jnp.where(member_a == 1, -1, 1).astype(dtype),
        sign_b=jnp.where(member_b == 1, -1, 1).astype(dtype),
        table=plane_table(plan, pairs) if table is None else table,
        basis=None if gather else unit_basis,
    )


def _bins(grid, angles) -> _Bins:
    """The :class:`_Bins` of the angles (``grid`` as :func:`grid_bins` takes it)."""
    num_angles = angles.shape[0]
    width = 2 * num_angles + 1
    grid, period, out_index = grid_bins(grid, angles)
    multiplicity = jnp.zeros(num_angles, jnp.int32).at[jnp.asarray(out_index)].add(1)
    extended = multiplicity[jnp.arange(width) % jnp.maximum(jnp.asarray(period), 1)]
    extended = jnp.where(jnp.arange(width) < 2 * jnp.asarray(period), extended, 0)
    angle_prefix = jnp.concatenate([jnp.zeros(1, jnp.int32), jnp.cumsum(extended)])
    return _Bins(grid, period, out_index, angle_prefix)


def _setup(unit, num_groups, unit_basis, pairs, angles, epsilon, signed, plan, grid, backend,
           chunk, table, gather, summary, sweep=None):
    """The layout, traced constants and bins of one call of any entry point (``sweep``: the
    ``(E,)`` thresholds of :func:`sample_major_curves`; ``epsilon`` then the least of them)."""
    bins = _bins(grid, angles)
    layout = _layout(unit, pairs, angles, num_groups, signed, plan, bins.grid, backend, chunk,
                     gather, summary, 0 if sweep is None else sweep.shape[0])
    geometry = _geometry(plan, unit_basis, pairs, epsilon, unit.dtype, table, gather)
    if sweep is not None:
        geometry = geometry._replace(sweep=jnp.abs(jnp.asarray(sweep, unit.dtype)))
    return layout, geometry, bins


def sample_major_counts(
    unit, valid, groups, num_groups, unit_basis, pairs, angles, epsilon, signed, *,
    plan: SampleMajorPlan, grid, backend: str, chunk: int | None = None,
    table: jax.Array | None = None, gather: bool = False,
) -> jax.Array:
    """Full counts by the sample-major enumeration of the module docstring.

    Arguments as :func:`srm_jax.arc_kernel.arc_counts`; ``plan`` from
    :func:`sample_major_plan`; ``chunk`` samples per chunk (``None``: the kernel's default);
    ``table`` the :func:`plane_table` of ``pairs`` (built here when ``None``: pass it to reuse it
    over many calls); ``gather`` projects by a gather (only for a basis whose directions are the
    coordinate axes, unrotated).

    Returns:
      int32 ``(G, C, P, T)`` counts at ``|ε|``: copy 0 of ``d̂·s ≥ |ε|``, copy 1 (``C = 2``
      when ``signed`` or ε < 0) of ``d̂·s ≤ −|ε|``. ε < 0 is then taken through the complement
      by the caller (math §5).
    """
    layout, geometry, bins = _setup(unit, num_groups, unit_basis, pairs, angles, epsilon, signed,
                                    plan, grid, backend, chunk, table, gather, summary=False)
    rows = num_groups * layout.copies * layout.num_planes
    wraps = None if layout.turn_period is None else jnp.zeros(rows, jnp.int32)
    acc = _Counts(jnp.zeros(rows * layout.width, jnp.int32), wraps)
    acc = _scan_chunks(layout, geometry, bins, unit, valid, groups, acc)
    diff = acc.diff.reshape(rows, layout.width)
    if layout.turn_period is not None:
        counts = _fold_one_turn(diff, acc.wraps, layout.turn_period, layout.portable)
    else:
        counts = _fold_touched(diff, bins.period, bins.out_index, layout.num_angles,
                               layout.portable)
    return counts.reshape(num_groups, layout.copies, layout.num_planes, layout.num_angles)


def sample_major_summaries(
    unit, valid, groups, num_groups, unit_basis, pairs, angles, epsilon, signed, *,
    plan: SampleMajorPlan, grid, backend: str, chunk: int | None = None,
    table: jax.Array | None = None, gather: bool = False,
) -> SampleMajorSums:
    """Summaries by the sample-major enumeration, never holding ``(P, T)``.

    Arguments as :func:`sample_major_counts`. Raises ``ValueError`` when the samples times the
    angles could overflow an int32 per-plane total of one call.

    Returns:
      :class:`SampleMajorSums`: wide per-angle sums over planes ``(G, C, T, 2)`` and per-plane
      sums over angles ``(G, C, P, 2)``, copies as in :func:`sample_major_counts`.
    """
    num_angles = angles.shape[0]
    if unit.shape[0] * num_angles >= 2**31:
        raise ValueError(
            f"{unit.shape[0]:,} samples × {num_angles} angles overflow int32 per-plane "
            "totals in one call: measure in batches (srm_jax.accumulate_srm) and add them."
        )
    layout, geometry, bins = _setup(unit, num_groups, unit_basis, pairs, angles, epsilon, signed,
                                    plan, grid, backend, chunk, table, gather, summary=True)
    rows, k = num_groups * layout.copies, layout.directions
    # Per-plane totals are summed in the layout of the plane table, (G·C, K·K, J): a step adds
    # its candidates' J slots in place, instead of scattering every entry to a plane far apart
    # in a P-long array (random scatters into a long array cost far more per element on
    # XLA:CPU). Each plane has two slots (led by α's and by β's direction), gathered once at
    # the end.
    acc = _Sums(jnp.zeros((rows, num_angles, 2), jnp.int32),
                jnp.zeros((rows, k * k, plan.planes_per_pair), jnp.int32))
    acc = _scan_chunks(layout, geometry, bins, unit, valid, groups, acc)
    first, second = _table_positions(plan, pairs)
    flat = acc.dense.reshape(rows, -1)
    totals = (flat[:, first] + flat[:, second]).reshape(num_groups, layout.copies, -1)
    totals = wide_add(jnp.zeros(totals.shape + (2,), jnp.int32), totals)
    return SampleMajorSums(curve=acc.curve.reshape(num_groups, layout.copies, num_angles, 2),
                           totals=totals)


def sample_major_curves(
    unit, valid, groups, num_groups, unit_basis, pairs, angles, epsilons, signed, *,
    plan: SampleMajorPlan, grid, backend: str, chunk: int | None = None,
    table: jax.Array | None = None, gather: bool = False,
) -> jax.Array:
    """The per-angle counts summed over planes at each of ``E`` thresholds, in one enumeration.

    A sweep of ε (math §6.2) shares its leaders and candidates: they are found once at the least
    ``|ε|`` (the plan's ``threshold``, for which the kernel is exact at every larger ``|ε|``),
    and each lit plane's arc is histogrammed at every threshold it reaches. Arguments as
    :func:`sample_major_counts`, with ``epsilons`` ``(E,)`` thresholds of one sign.

    Returns:
      wide (:func:`wide_add`) int32 ``(G, C, E, T, 2)`` curve sums at ``|ε|`` of each threshold,
      copies as in :func:`sample_major_counts`.
    """
    epsilons = jnp.asarray(epsilons)
    least = jnp.min(jnp.abs(epsilons))
    layout, geometry, bins = _setup(unit, num_groups, unit_basis, pairs, angles, least, signed,
                                    plan, grid, backend, chunk, table, gather, summary=True,
                                    sweep=epsilons)
    rows = num_groups * layout.copies * layout.sweep
    acc = _Curves(jnp.zeros((rows, layout.num_angles, 2), jnp.int32))
    acc = _scan_chunks(layout, geometry, bins, unit, valid, groups, acc)
    return acc.curve.reshape(num_groups, layout.copies, layout.sweep, layout.num_angles, 2)


def _scan_chunks(layout: _Layout, geometry: _Geometry, bins: _Bins, unit, valid, groups, acc):
    """``acc`` plus every chunk's arcs (:func:`_chunk_step`), by a scan over the chunks."""
    chunks = pad_samples(unit, valid, groups, layout.chunk)
    found = jnp.zeros(layout.candidate_capacity, jnp.int32)
    body = functools.partial(_chunk_step, layout, geometry, bins)
    carry, _ = jax.lax.scan(body, _Carry(acc, found), chunks)
    return carry.acc


def _chunk_step(layout: _Layout, geometry: _Geometry, bins: _Bins, carry: _Carry, chunk_data):
    """One chunk: its leaders, their candidates, and every candidate's arcs into ``carry``."""
    leaders = _chunk_leaders(layout, geometry, *chunk_data)
    found, num_found = _find_candidates(layout, geometry, leaders, carry.found)
    step = functools.partial(_histogram_step, layout, geometry, bins, leaders, found, num_found)
    num_blocks = -(-num_found // layout.block)

    def run(acc):
        _, acc = jax.lax.while_loop(lambda s: s[0] < num_blocks, step, (jnp.int32(0), acc))
        return acc

    if not layout.summary:
        return _Carry(run(carry.acc), found), None
    if layout.sweep:
        rows = layout.num_groups * layout.copies * layout.sweep
        chunk_curve = _fold(run(_Curves(jnp.zeros(rows * layout.width, jnp.int32))).curve
                            .reshape(rows, layout.width), bins.period, bins.out_index,
                            layout.num_angles)
        return _Carry(_Curves(wide_add(carry.acc.curve, chunk_curve)), found), None
    rows = layout.num_groups * layout.copies
    chunk_acc = run(_Sums(jnp.zeros(rows * layout.width, jnp.int32), carry.acc.dense))
    chunk_curve = _fold(chunk_acc.curve.reshape(rows, layout.width), bins.period,
                        bins.out_index, layout.num_angles)
    acc = _Sums(wide_add(carry.acc.curve, chunk_curve), chunk_acc.dense)
    return _Carry(acc, found), None


def _chunk_leaders(layout: _Layout, geometry: _Geometry, unit_chunk, valid_chunk,
                   group_chunk) -> _ChunkLeaders:
    """Step 1-2 of the module docstring: a chunk's coordinates and its leader rows."""
    z = _coordinates(layout.plan, geometry.basis, unit_chunk)  # (C, K)
    z2 = z * z
    leads = (z2 >= geometry.tau) & valid_chunk[:, None]
    queue, queued = _leader_rows(z2, leads, layout.plan.leaders, layout.capacity,
                                 layout.portable)
    return _ChunkLeaders(z, leads, queue, queued, group_chunk)


def _find_candidates(layout: _Layout, geometry: _Geometry, leaders: _ChunkLeaders, found):
    """Step 3: the (row, partner) candidates, ``rows_per_step`` rows at a time, appended to one
    queue ``found`` of flat indices ``row·K + partner`` (row: position in the leader queue).

    Returns the queue and the number of candidates in it.
    """
    step = functools.partial(_candidate_step, layout, geometry, leaders)
    num_steps = -(-leaders.queued // layout.rows_per_step)
    _, found, num_found = jax.lax.while_loop(
        lambda s: s[0] < num_steps, step, (jnp.int32(0), found, jnp.int32(0)))
    return found, num_found


def _candidate_step(layout: _Layout, geometry: _Geometry, leaders: _ChunkLeaders, state):
    """One step of :func:`_find_candidates`. A pair is a candidate when
    ``r² ≤ (z_a² + z_b² + 2|c||z_a z_b|)/(1 − c²)`` (every plane of the pair; equality for
    orthogonal directions) may reach ε; the slack keeps every pair the exact test may light."""
    i, found, count = state
    k, per = layout.directions, layout.rows_per_step
    partners = jnp.arange(k, dtype=jnp.int32)
    rows = jax.lax.dynamic_slice(leaders.queue, (i * per,), (per,))
    in_range = i * per + jnp.arange(per) < leaders.queued
    sample, a = rows // k, rows % k
    z_rows = leaders.z[sample]  # (R, K)
    z_a = z_rows[jnp.arange(per), a][:, None]
    cosine = jnp.abs(geometry.cosine)[a]
    bound = (z_a * z_a + z_rows * z_rows + 2 * cosine * jnp.abs(z_a * z_rows))
    near = bound >= geometry.candidate_eps2 * (1 - cosine * cosine)
    # A plane whose two directions both lead is taken by the lower direction index.
    earlier = leaders.leads[sample] & (partners[None, :] < a[:, None])
    flags = near & ~earlier & (partners[None, :] != a[:, None]) & in_range[:, None]
    local, n_local = _compact(flags.ravel(), per * k + 1, layout.portable)
    local = local + i * per * k
    found = jax.lax.dynamic_update_slice(found, local[:-1], (count,))
    return i + 1, found, count + n_local


class _Arcs(NamedTuple):
    """The planes of ``block`` candidates (math §5): the arc ``[lo, lo + 2w]`` of each lit
    ``(B, J)`` entry."""

    group: jax.Array  # (B, 1) the sample's group
    plane: jax.Array  # (B, J)
    pair: jax.Array  # (B,) the direction pair a·K + b
    lo: jax.Array  # (B, J)
    half_width: jax.Array  # (B, J)
    lit: jax.Array  # (B, J) bool


def _candidate_arcs(layout: _Layout, geometry: _Geometry, leaders: _ChunkLeaders, found,
                    num_found, i) -> _Arcs:
    """Step 4: every plane of candidates ``[i·block, (i + 1)·block)``, evaluated exactly."""
    k, block = layout.directions, layout.block
    g = geometry
    cand = jax.lax.dynamic_slice(found, (i * block,), (block,))
    in_range = i * block + jnp.arange(block) < num_found
    row, b = cand // k, cand % k
    sample, a = leaders.queue[row] // k, leaders.queue[row] % k
    z_a, z_b = leaders.z[sample, a][:, None], leaders.z[sample, b][:, None]
    code = g.table[a, b]  # (B, J): 2·plane + orientation
    entry = (code >= 0) & in_range[:, None]
    code = jnp.maximum(code, 0)
    plane, orient = code >> 1, code & 1
    lead_value = g.sign_a * z_a
    partner_value = g.sign_b * z_b
    x = jnp.where(orient == 0, lead_value, partner_value)
    p_beta = jnp.where(orient == 0, partner_value, lead_value)
    c = g.sign_a * g.sign_b * g.cosine[a, b][:, None]  # (B, J)
    y = (p_beta - c * x) / jnp.sqrt(1 - c * c)
    r2 = x * x + y * y
    phi = _atan2(y, x, layout.portable)
    arcs = _Arcs(group=leaders.groups[sample][:, None], plane=plane, pair=a * k + b,
                 lo=-phi, half_width=r2, lit=entry)
    return arcs if layout.sweep else _arcs_at(layout, arcs, g.eps)


def _arcs_at(layout: _Layout, planes: _Arcs, eps) -> _Arcs:
    """The arcs at threshold ``eps`` of :func:`_candidate_arcs`' planes before a threshold is
    applied (``lo`` holds ``−φ``, ``half_width`` holds ``r²`` and ``lit`` the planes in play)."""
    r2 = planes.half_width
    half_width = _atan2(jnp.sqrt(jnp.maximum(r2 - eps * eps, 0)),
                        jnp.broadcast_to(eps, r2.shape), layout.portable)
    return planes._replace(lo=planes.lo - half_width, half_width=half_width,
                           lit=planes.lit & (r2 >= eps * eps))


def _histogram_step(layout: _Layout, geometry: _Geometry, bins: _Bins, leaders: _ChunkLeaders,
                    found, num_found, state):
    """One step of the histogram: ``block`` candidates' lit arcs, each copy, into ``acc``."""
    i, acc = state
    arcs = _candidate_arcs(layout, geometry, leaders, found, num_found, i)
    if layout.sweep:
        for e in range(layout.sweep):
            eps = geometry.sweep[e]
            # Most candidates of the least ε reach no larger one: a block none of whose planes
            # is lit at this ε skips its arcs (the test is one comparison per entry).
            acc = jax.lax.cond(
                jnp.any(arcs.lit & (arcs.half_width >= eps * eps)),
                lambda acc, eps=eps, e=e: _add_sweep_arcs(
                    layout, bins, acc, _arcs_at(layout, arcs, eps), e),
                lambda acc: acc, acc)
        return i + 1, acc
    for copy, shift in enumerate((0.0, math.pi)[:layout.copies]):
        start, stop = _arc_bins(arcs.lo, arcs.half_width, shift, bins.grid)
        start = jnp.where(arcs.lit, start, 0)
        stop = jnp.where(arcs.lit, stop, 0)
        row = arcs.group * layout.copies + copy
        if layout.summary:
            acc = _add_sums(layout, bins, acc, row, arcs.pair, start, stop)
        else:
            acc = _add_counts(layout, acc, row * layout.num_planes + arcs.plane, start, stop)
    return i + 1, acc


def _add_sweep_arcs(layout: _Layout, bins: _Bins, acc: _Curves, arcs: _Arcs, e: int) -> _Curves:
    """Adds the lit arcs of threshold ``e`` of a sweep, each copy, to the chunk's curve
    differences (rows ``(group·C + copy)·E + e``)."""
    curve = acc.curve
    for copy, shift in enumerate((0.0, math.pi)[:layout.copies]):
        start, stop = _arc_bins(arcs.lo, arcs.half_width, shift, bins.grid)
        start = jnp.where(arcs.lit, start, 0)
        stop = jnp.where(arcs.lit, stop, 0)
        base = ((arcs.group * layout.copies + copy) * layout.sweep + e) * layout.width
        curve = curve.at[(base + start).ravel()].add(1, mode="promise_in_bounds")
        curve = curve.at[(base + stop).ravel()].add(-1, mode="promise_in_bounds")
    return _Curves(curve)


# Up to this many leaders a sample, rows are found by that many argmax passes over the chunk's
# (C, K) coordinates instead of a compaction of all C·K leader flags (faster for few leaders on
# XLA:CPU; the compaction's prefix sums cost O(C·K) whatever L is).
ARGMAX_LEADERS = 4


def _leader_rows(z2, leads, leaders: int, capacity: int, portable: bool):
    """The rows ``sample·K + direction`` of a chunk's leaders (``leads``, at most ``leaders`` a
    sample: the frame bound), compacted into ``(capacity,)``, and their number."""
    num, k = leads.shape
    if leaders > ARGMAX_LEADERS:
        return _compact(leads.ravel(), capacity, portable)
    sample = jnp.arange(num, dtype=jnp.int32)
    remaining = jnp.where(leads, z2, -1.0)
    rows, flags = [], []
    for _ in range(leaders):
        a = jnp.argmax(remaining, axis=1).astype(jnp.int32)
        flags.append(remaining[sample, a] >= 0)
        rows.append(sample * k + a)
        remaining = remaining.at[sample, a].set(-1.0)
    rows, flags = jnp.stack(rows, axis=1).ravel(), jnp.stack(flags, axis=1).ravel()
    slots, count = _compact(flags, capacity, portable)
    return rows[jnp.minimum(slots, rows.shape[0] - 1)], count


def _add_sums(layout: _Layout, bins: _Bins, acc: _Sums, row, pair, start, stop) -> _Sums:
    """Adds one copy's arcs (bins ``[start, stop)``; empty where ``start == stop``) of ``(B, J)``
    entries of direction pairs ``pair`` to the chunk's curve differences and the per-plane
    totals; ``row`` is the accumulator row (group and copy), ``(B, 1)``."""
    base = row * layout.width
    curve = acc.curve.at[(base + start).ravel()].add(1, mode="promise_in_bounds")
    curve = curve.at[(base + stop).ravel()].add(-1, mode="promise_in_bounds")
    total = bins.angle_prefix[stop] - bins.angle_prefix[start]
    dense = acc.dense.at[row[:, 0], pair].add(total, mode="promise_in_bounds")
    return _Sums(curve, dense)


def _add_counts(layout: _Layout, acc: _Counts, index, start, stop) -> _Counts:
    """Adds one copy's arcs (bins ``[start, stop)``) to the difference-array rows ``index``.

    In the one-turn layout of :func:`_fold_one_turn` (``layout.turn_period``) bins of the second
    turn move back one turn, and an arc that wraps past the end of the turn is stored as +1 at
    its start, −1 at its (moved) stop and one *wrap* of its row: it covers every bin but the gap
    between the two."""
    period, wraps = layout.turn_period, acc.wraps
    base = index * layout.width
    if period is not None:
        moved = start >= period  # the whole arc lies in the second turn (or is empty there)
        wrapped = (stop > period) & ~moved
        start = jnp.where(moved, start - period, start)
        stop = jnp.where(moved | wrapped, stop - period, stop)
        wraps = wraps.at[index.ravel()].add(wrapped.ravel().astype(jnp.int32),
                                            mode="promise_in_bounds")
    both = jnp.concatenate([(base + start).ravel(), (base + stop).ravel()])
    ones = jnp.concatenate([jnp.ones(start.size, jnp.int32), -jnp.ones(stop.size, jnp.int32)])
    return _Counts(acc.diff.at[both].add(ones, mode="promise_in_bounds"), wraps)


# Difference-array rows folded per step of :func:`_fold_touched`.
FOLD_ROWS = 1 << 12


def _fold_touched(diff, period, out_index, num_angles, portable):
    """:func:`_fold` of two-turn ``(rows, 2T + 1)`` difference arrays into ``(rows, T)`` counts,
    in the rows that hold an arc only (:func:`_fold_rows`)."""
    return _fold_rows(
        lambda _, index: _fold(diff[index], period, out_index, num_angles),
        jnp.any(diff != 0, axis=1), jnp.zeros((diff.shape[0], num_angles), jnp.int32), portable)


def _fold_one_turn(diff, wraps, period, portable):
    """Counts ``(rows, period + 1)`` from one-turn difference arrays of the same shape and their
    ``(rows,)`` wraps (:func:`_accumulate`), folded in place (:func:`_fold_rows`): bin
    ``b < period`` counts the prefix sum to ``b`` plus the row's wraps, the last column (angle
    2π) repeats bin 0, and column ``period`` of the differences (stops at the end of the turn) is
    dropped."""

    def fold(out, index):  # reads the loop's own buffer, so XLA folds it in place (no copy)
        turn = jnp.cumsum(out[index, :period], axis=1) + wraps[index][:, None]
        return jnp.concatenate([turn, turn[:, :1]], axis=1)

    return _fold_rows(fold, jnp.any(diff != 0, axis=1) | (wraps != 0), diff, portable)


def _fold_rows(fold, touched, out, portable):
    """``out`` with each ``touched`` row ``r`` set to ``fold(out, index)[j]`` (``index[j] = r``),
    ``FOLD_ROWS`` rows at a time: the cost is in proportion to the lit planes, not to ``P`` (a
    dense prefix sum over every plane of a wide basis would dominate); the other rows of ``out``
    are kept (zero). ``fold`` may read the rows of ``index`` from ``out`` itself: each row is
    read before it is written, and blocks hold distinct rows."""
    rows = touched.shape[0]
    block = min(FOLD_ROWS, rows)
    queue, count = _compact(touched, rows + block + 1, portable)

    def body(state):
        i, out = state
        index = jax.lax.dynamic_slice(queue, (i * block,), (block,))
        valid = i * block + jnp.arange(block) < count
        out = out.at[jnp.where(valid, index, rows)].set(fold(out, index), mode="drop")
        return i + 1, out

    steps = -(-count // block)
    _, out = jax.lax.while_loop(lambda s: s[0] < steps, body, (jnp.int32(0), out))
    return out


def _fold(diff, period, out_index, num_angles):
    """Prefix sums of ``(rows, 2T + 1)`` difference arrays, the two turns folded, bins to grid
    angles: ``(rows, T)`` counts."""
    extended = jnp.cumsum(diff, axis=-1)
    folded = extended[:, :num_angles] + jax.lax.dynamic_slice_in_dim(
        extended, period, num_angles, axis=-1)
    return folded[:, jnp.asarray(out_index)]


def sample_major_credits(
    unit, valid, unit_basis, pairs, angles, epsilon, *, plan: SampleMajorPlan, grid,
    backend: str, chunk: int | None = None, table: jax.Array | None = None,
    gather: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """Per sample, its lit ``(plane, angle)`` pairs and each basis vector's credit (math §11).

    The same enumeration as :func:`sample_major_summaries` (the same leaders, candidates and
    arcs, so a sample's count is exactly what the kernel adds to the per-plane totals for it),
    scattered per sample instead of per plane: a lit arc of plane ``(α, β)`` adds its number of
    grid angles to the sample's count and splits it between ``α`` and ``β`` in proportion to
    ``(d̂·b̂_α)²`` and ``(d̂·b̂_β)²``. Arguments as :func:`sample_major_counts` (no groups: one
    row per sample); ε must be positive (unsigned SRM, no complement).

    Returns:
      ``(counts, credits)``: int32 ``(N,)`` lit pairs of each sample (0 where not ``valid``)
      and ``(N, m)`` credits in ``unit``'s dtype, each row summing to its count.
    """
    if plan.complement or (not isinstance(epsilon, jax.core.Tracer) and float(epsilon) <= 0):
        raise ValueError("sample_major_credits counts unsigned SRM at ε > 0 only.")
    groups = jnp.zeros(unit.shape[0], jnp.int32)
    layout, geometry, bins = _setup(unit, 1, unit_basis, pairs, angles, epsilon, False, plan,
                                    grid, backend, chunk, table, gather, summary=True)
    m = unit_basis.shape[0]
    step = functools.partial(_credit_step, layout, geometry, bins, pairs, m)

    def chunk_credits(found, chunk_data):
        leaders = _chunk_leaders(layout, geometry, *chunk_data)
        found, num_found = _find_candidates(layout, geometry, leaders, found)
        num_blocks = -(-num_found // layout.block)
        state = (jnp.int32(0), jnp.zeros(layout.chunk, jnp.int32),
                 jnp.zeros(layout.chunk * m, unit.dtype))
        _, counts, credits = jax.lax.while_loop(
            lambda s: s[0] < num_blocks,
            lambda s: step(leaders, found, num_found, s), state)
        return found, (counts, credits.reshape(layout.chunk, m))

    chunks = pad_samples(unit, valid, groups, layout.chunk)
    found = jnp.zeros(layout.candidate_capacity, jnp.int32)
    _, (counts, credits) = jax.lax.scan(chunk_credits, found, chunks)
    num = unit.shape[0]
    return counts.reshape(-1)[:num], credits.reshape(-1, m)[:num]


def _credit_step(layout: _Layout, geometry: _Geometry, bins: _Bins, pairs, m: int,
                 leaders: _ChunkLeaders, found, num_found, state):
    """One step of :func:`sample_major_credits`: ``block`` candidates' lit arcs, per sample."""
    i, counts, credits = state
    arcs = _candidate_arcs(layout, geometry, leaders, found, num_found, i)
    start, stop = _arc_bins(arcs.lo, arcs.half_width, 0.0, bins.grid)
    # Grid angles on each arc, as :func:`_add_sums` counts a plane's total.
    total = jnp.where(arcs.lit, bins.angle_prefix[stop] - bins.angle_prefix[start], 0)
    # The candidates' samples and direction pairs, as :func:`_candidate_arcs` reads them.
    k = layout.directions
    cand = jax.lax.dynamic_slice(found, (i * layout.block,), (layout.block,))
    row, b = cand // k, cand % k
    sample, a = leaders.queue[row] // k, leaders.queue[row] % k
    share_a = credit_share(jnp.square(leaders.z[sample, a]),
                           jnp.square(leaders.z[sample, b]))[:, None]
    code = jnp.maximum(geometry.table[a, b], 0)
    plane, orient = code >> 1, code & 1  # orientation 0: α lies along the leader a
    share_alpha = jnp.where(orient == 0, share_a, 1 - share_a)
    vectors = pairs[plane]  # (B, J, 2)
    weight = total.astype(credits.dtype)
    base = sample[:, None] * m
    index = jnp.concatenate([(base + vectors[..., 0]).ravel(), (base + vectors[..., 1]).ravel()])
    values = jnp.concatenate([(weight * share_alpha).ravel(),
                              (weight * (1 - share_alpha)).ravel()])
    credits = credits.at[index].add(values, mode="drop")
    counts = counts.at[sample].add(jnp.sum(total, axis=1), mode="drop")
    return i + 1, counts, credits
