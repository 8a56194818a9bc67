"""The sample-major kernel (issue 16, SPEC §5.1) against the arc kernel and the definition."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_orthogonal, reference_count_bounds, reference_dots

import srm_jax
from srm_jax import resonance, sample_major
from srm_jax.neurons import vector_shares


def _data(rng, kind: str, num: int, n: int) -> np.ndarray:
    if kind == "onehot":  # every sample leads one direction: it lights all its planes
        x = np.zeros((num, n), np.float32)
        x[np.arange(num), rng.integers(0, n, num)] = rng.choice([-2.0, 3.0], num)
        return x + 0.01 * rng.standard_normal((num, n)).astype(np.float32)
    if kind == "heavy":  # Student-t tokens with three outlier channels
        x = rng.standard_t(3, (num, n)).astype(np.float32)
        x[:, rng.choice(n, 3, replace=False)] *= 20
        return x
    return rng.standard_normal((num, n)).astype(np.float32)


def _basis(rng, n: int, rotated: bool) -> np.ndarray:
    if not rotated:
        return np.asarray(srm_jax.standard_basis(n))
    q = random_orthogonal(rng, n).astype(np.float32)
    return np.concatenate([q, -q])[rng.permutation(2 * n)]  # any order of the vectors


def _in_basis(x: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Samples whose coordinates on the basis' directions are the rows of ``x`` (outlier
    channels and one-hot rows follow a rotated basis)."""
    n = x.shape[1]
    directions = sample_major.basis_structure(basis).representative
    return (x @ basis[list(directions)]).astype(np.float32) if basis.shape[0] == 2 * n else x


def _counts(x, basis, method, **kw):
    r = srm_jax.spotlight_resonance(x, basis, method=method, **kw)
    neg = None if r.negative_counts is None else np.asarray(r.negative_counts)
    return np.asarray(r.counts), neg, int(r.num_samples)


CASES = [  # (data, n, ε, signed, planes, rotated)
    ("heavy", 16, 0.95, False, "comb", False),
    ("heavy", 64, 0.9, True, "comb", True),
    ("onehot", 32, 0.9, False, "perm", True),
    ("iso", 16, 0.3, True, "comb", True),
    ("heavy", 24, 0.6, True, "perm", False),
    ("iso", 16, -0.5, True, "comb", True),
    ("heavy", 128, 0.8, False, "comb", False),
    ("heavy", 256, 0.9, True, "comb", True),
    ("onehot", 48, 0.7, True, "comb", False),
    ("iso", 32, 0.5, False, "perm", False),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-n{c[1]}-eps{c[2]}" for c in CASES])
def test_sample_major_equals_arc_and_the_definition(rng, case):
    kind, n, eps, signed, kind_planes, rotated = case
    basis = _basis(rng, n, rotated)
    x = _in_basis(_data(rng, kind, 200, n), basis)
    x[3] = np.nan  # left out of numerator and denominator alike
    x[5] = 0.0  # a zero row: cosine 0 with every spotlight
    kw = dict(epsilon=eps, signed=signed, planes=kind_planes)
    major = _counts(x, basis, "sample_major", **kw)
    arc = _counts(x, basis, "arc", **kw)
    assert major[2] == arc[2] == 199
    assert major[0].sum() > 0
    # Equal to the arc kernel except where d̂·s lies within rounding of ±ε (SPEC §5).
    pairs = np.asarray(srm_jax.spotlight_resonance(x[:2], basis, **kw).planes)
    angles = np.asarray(srm_jax.angle_grid())
    if n <= 16:  # the float64 definition: every count within its rounding bounds
        dots = reference_dots(x, basis, pairs, angles)
        for sign, counts in ((1, major[0]), (-1, major[1])):
            if counts is None:
                continue
            low, high, _ = reference_count_bounds(dots, eps, 1e-5, sign)
            assert np.all((counts >= low) & (counts <= high))
    np.testing.assert_array_equal(major[0], arc[0]) if eps > 0 else None
    if eps < 0:  # the complement may differ from the arc kernel by a rounding sample
        assert np.abs(major[0] - arc[0]).max() <= 1
    if signed and eps > 0:
        np.testing.assert_array_equal(major[1], arc[1])


@pytest.mark.parametrize("epsilon", [0.8, 0.4, -0.3])
@pytest.mark.parametrize("kind", ["thompson", "random"])
def test_a_basis_neither_orthogonal_nor_antipodal_matches_arc(rng, kind, epsilon):
    """The leader bound for any basis (SPEC §5.1: c_max and the frame bound), on an
    overcomplete Thompson basis (some antipodes, the rest neither orthogonal nor antipodal) and
    on random unit vectors."""
    key = jax.random.key(int(rng.integers(1 << 30)))
    if kind == "thompson":
        basis = np.asarray(srm_jax.thompson_basis(key, 12, 8, steps=300))
    else:
        basis = np.asarray(srm_jax.random_basis(key, 10, 8))
    structure = sample_major.basis_structure(basis)
    assert 0 < structure.max_cosine < 1 and structure.frame_bound > 1
    x = _data(rng, "heavy", 300, 8)
    major = _counts(x, basis, "sample_major", epsilon=epsilon, signed=True)
    arc = _counts(x, basis, "arc", epsilon=epsilon, signed=True)
    assert major[0].sum() > 0
    if epsilon > 0:
        np.testing.assert_array_equal(major[0], arc[0])
        np.testing.assert_array_equal(major[1], arc[1])
    else:  # the complement: within a rounding sample of the arc kernel
        assert np.abs(major[0] - arc[0]).max() <= 1 and np.mean(major[0] != arc[0]) < 1e-3


@pytest.mark.parametrize("grid", ["shifted", "no-endpoint", "irregular"])
def test_full_counts_on_every_grid_layout_match_arc(rng, grid):
    """One-turn differences with wraps (uniform grids with their endpoint, from any start) and
    the two-turn layout (other grids), with arcs wide enough to wrap past 2π often."""
    angles = {
        "shifted": np.linspace(0.3, 0.3 + 2 * np.pi, 50),
        "no-endpoint": np.linspace(0, 2 * np.pi, 64, endpoint=False),
        "irregular": np.sort(rng.uniform(0, 2 * np.pi, 41)),
    }[grid]
    basis = _basis(rng, 16, rotated=True)
    x = _in_basis(_data(rng, "heavy", 300, 16), basis)
    kw = dict(epsilon=0.3, signed=True, angles=angles)
    major = _counts(x, basis, "sample_major", **kw)
    arc = _counts(x, basis, "arc", **kw)
    assert major[0].sum() > 0
    np.testing.assert_array_equal(major[0], arc[0])
    np.testing.assert_array_equal(major[1], arc[1])


def test_sample_major_equals_direct_on_a_small_problem(rng):
    basis = _basis(rng, 12, rotated=True)
    x = _in_basis(_data(rng, "heavy", 200, 12), basis)
    for eps in (0.7, -0.4):
        major = _counts(x, basis, "sample_major", epsilon=eps, signed=True)
        direct = _counts(x, basis, "direct", epsilon=eps, signed=True)
        assert np.abs(major[0] - direct[0]).max() <= 1
        assert np.mean(major[0] != direct[0]) < 1e-3
        assert np.abs(major[1] - direct[1]).max() <= 1


def test_rows_beyond_one_step_and_a_one_hot_chunk_are_all_counted(rng, monkeypatch):
    """A chunk of one-hot samples lights n − 1 planes per sample, far past one step's rows."""
    monkeypatch.setattr(sample_major, "SAMPLE_MAJOR_STEP_ENTRIES", 64)
    x = _data(rng, "onehot", 257, 16)
    basis = _basis(rng, 16, rotated=False)
    major = _counts(x, basis, "sample_major", epsilon=0.9, chunk_size=64)
    arc = _counts(x, basis, "arc", epsilon=0.9)
    np.testing.assert_array_equal(major[0], arc[0])
    # Every one-hot sample lights each of its direction's planes somewhere.
    assert np.all(major[0].sum(axis=1) > 0)


def test_per_class_counts_and_traced_angles_match_arc(rng):
    basis = _basis(rng, 16, rotated=True)
    x = _in_basis(_data(rng, "heavy", 240, 16), basis)
    labels = rng.integers(0, 3, 240)
    a = srm_jax.per_class_srm(x, basis, labels, num_classes=3, epsilon=0.8, method="arc")
    b = srm_jax.per_class_srm(x, basis, labels, num_classes=3, epsilon=0.8,
                              method="sample_major")
    np.testing.assert_array_equal(np.asarray(a.counts), np.asarray(b.counts))
    angles = jnp.linspace(0.2, 5.9, 37)
    plan, pairs, _ = resonance.plan_measurement(x, basis, epsilon=0.8, method="sample_major")
    plan = resonance.dataclasses.replace(plan, grid=None)  # angles decided inside the kernel
    traced = jax.jit(lambda ang: resonance.plan_counts(plan, x, basis, pairs, ang, 0.8)[0])(angles)
    arc = srm_jax.spotlight_resonance(x, basis, epsilon=0.8, angles=angles, method="arc")
    np.testing.assert_array_equal(np.asarray(traced[0]), np.asarray(arc.counts))


def test_auto_picks_sample_major_for_a_wide_pm_basis_only(rng):
    wide = srm_jax.standard_basis(256)  # work L·K·J = 4,096 ≤ P/4 = 32,640
    plan, *_ = resonance.plan_measurement(None, wide, epsilon=0.9)
    assert plan.sample_major is not None and plan.gather
    dense = jnp.asarray(rng.standard_normal((48, 24)), jnp.float32)
    plan, *_ = resonance.plan_measurement(None, dense, epsilon=0.9)
    assert plan.sample_major is None
    plan, *_ = resonance.plan_measurement(None, wide, epsilon=0.0)  # ε = 0: the tile kernel
    assert plan.sample_major is None


def test_basis_structure_groups_antipodes_and_bounds_the_leaders(rng):
    basis = _basis(rng, 8, rotated=True)
    s = sample_major.basis_structure(basis)
    assert s.num_directions == 8 and s.num_members == 2
    direction = np.asarray(s.direction)
    for k in range(8):  # the two vectors of a direction are antipodal
        a, b = np.flatnonzero(direction == k)
        assert np.allclose(basis[a], -basis[b], atol=1e-6)
    assert s.max_cosine < 1e-5 and abs(s.frame_bound - 1) < 1e-4
    plan = sample_major.sample_major_plan(s, 0.9)
    assert plan.leaders == 2  # ⌊2/ε²⌋
    with pytest.raises(ValueError, match="parallel"):
        sample_major.basis_structure(np.concatenate([basis, basis[:1]]))


def test_summaries_equal_sums_of_the_full_counts_and_add_over_batches(rng):
    basis = _basis(rng, 32, rotated=True)
    x = _in_basis(_data(rng, "heavy", 400, 32), basis)
    for eps, signed in ((0.8, False), (0.6, True), (-0.5, True)):
        kw = dict(epsilon=eps, signed=signed)
        # The same kernel's full counts: against "arc" a sample within rounding of ±ε may
        # fall either way (SPEC §5; the equality tests above allow for it).
        full = srm_jax.spotlight_resonance(x, basis, method="sample_major", **kw)
        whole = srm_jax.resonance_summary(x, basis, method="sample_major", **kw)
        parts = (srm_jax.resonance_summary(x[:150], basis, method="sample_major", **kw)
                 + srm_jax.resonance_summary(x[150:], basis, method="sample_major", **kw))
        values = np.asarray(full.values, np.float64)
        for summary in (whole, parts):
            np.testing.assert_allclose(summary.mean_curve, values.mean(0), atol=2e-6)
            np.testing.assert_allclose(summary.plane_means, values.mean(1), atol=2e-6)
        np.testing.assert_array_equal(np.asarray(whole.plane_totals),
                                      np.asarray(parts.plane_totals))
        shares = np.asarray(vector_shares(whole.lit_plane_totals, whole.planes, basis.shape[0]))
        counts = np.asarray(full.counts, np.float64).sum(1)
        pairs = np.asarray(full.planes)
        expected = np.zeros(basis.shape[0])
        np.add.at(expected, pairs[:, 0], counts)
        np.add.at(expected, pairs[:, 1], counts)
        if eps > 0:
            np.testing.assert_allclose(shares, expected / expected.sum(), atol=1e-6)


def test_wide_sums_pass_int32():
    total = jnp.zeros((3, 2), jnp.int32)
    value = jnp.asarray([2**30, 2**30 + 5, 7], jnp.int32)
    for _ in range(9):
        total = sample_major.wide_add(total, value)
    limbs = np.asarray(total, np.int64)
    np.testing.assert_array_equal(limbs[:, 0] * 2**24 + limbs[:, 1],
                                  9 * np.asarray(value, np.int64))
    doubled = sample_major.wide_sum(total, total)
    assert float(sample_major.wide_value(doubled)[0]) == 18 * 2**30


@pytest.mark.parametrize("kind,rotated", [("heavy", False), ("onehot", True), ("normal", True)])
def test_one_enumeration_of_a_sweep_equals_each_threshold_alone(rng, kind, rotated):
    """sample_major_curves (one leader and candidate search at the least ε) gives, at every ε,
    the curve that ε measured alone gives (math §6.2): equal counts, not close ones."""
    n = 24
    basis = _basis(rng, n, rotated)
    x = _in_basis(_data(rng, kind, 300, n), basis)
    x[5] = np.nan  # a row that is not a sample
    sweep = np.asarray([0.25, 0.4, 0.55, 0.9], np.float32)
    plan, pairs, angles = resonance.plan_measurement(x, basis, epsilon=float(sweep.min()),
                                                     method="sample_major")
    curves = np.asarray(srm_jax.summaries.plan_sweep_curves(plan, x, basis, pairs, angles, sweep))
    num_samples = np.sum(np.all(np.isfinite(x), axis=1))
    for j, eps in enumerate(sweep):
        alone = srm_jax.resonance_summary(x, basis, epsilon=float(eps), method="sample_major")
        np.testing.assert_array_equal(curves[j], np.asarray(alone.mean_curve))
        # The tile kernel projects a rotated basis in another order: counts equal but where
        # d̂·s lies within rounding of ε (math §5.2), here at most one count an angle.
        arc = srm_jax.spotlight_resonance(x, basis, epsilon=float(eps), method="arc")
        np.testing.assert_allclose(np.rint(curves[j] * num_samples * pairs.shape[0]),
                                   np.asarray(arc.counts).sum(axis=0), rtol=0, atol=1)
    with pytest.raises(ValueError, match="at least"):
        srm_jax.summaries.plan_sweep_curves(plan, x, basis, pairs, angles, sweep - 0.1)


@pytest.mark.parametrize("kind,rotated", [("heavy", False), ("onehot", True)])
def test_a_subset_counted_as_a_group_equals_its_rows_alone(rng, kind, rotated):
    """plan_sweep_curves(subset=): one enumeration gives the curves of every row and of the
    subset's rows, each equal (bitwise) to those rows' own enumeration."""
    n = 20
    basis = _basis(rng, n, rotated)
    x = _in_basis(_data(rng, kind, 257, n), basis)
    x[3] = np.nan  # in the subset, not a sample
    sweep = np.asarray([0.3, 0.5, 0.9], np.float32)
    plan, pairs, angles = resonance.plan_measurement(x, basis, epsilon=float(sweep.min()),
                                                     method="sample_major")
    subset = rng.random(x.shape[0]) < 0.7
    subset[3] = True
    both = np.asarray(srm_jax.summaries.plan_sweep_curves(plan, x, basis, pairs, angles, sweep,
                                                          subset=np.flatnonzero(subset)))
    assert both.shape == (2, sweep.size, angles.shape[0])
    for curves, rows in ((both[0], x), (both[1], x[subset])):
        alone = srm_jax.summaries.plan_sweep_curves(plan, rows, basis, pairs, angles, sweep)
        np.testing.assert_array_equal(curves, np.asarray(alone))


def test_auto_counts_the_leaders_the_samples_have(rng):
    """The bound L·K·J rejects the sample-major kernel at ε = 0.15 on 384 units; samples with
    fewer leaders (Gaussian rows: about 14) take it, rows with 80 equal coordinates (80 leaders,
    every pair of them lit) do not."""
    n, eps = 384, 0.15
    basis = srm_jax.standard_basis(n)
    plan, *_ = resonance.plan_measurement(None, basis, epsilon=eps)
    assert plan.sample_major is None  # the bound alone: 88·384·4 > P/4
    spread = rng.standard_normal((500, n)).astype(np.float32)
    plan, *_ = resonance.plan_measurement(spread, basis, epsilon=eps)
    assert plan.sample_major is not None and plan.gather
    major = sample_major.sample_major_plan(sample_major.basis_structure(basis), eps)
    unit = spread / np.linalg.norm(spread, axis=1, keepdims=True)
    expected = np.mean(np.sum(unit**2 >= major.leader_threshold, axis=1))
    assert sample_major.observed_leaders(major, spread, basis) == pytest.approx(expected)
    worst = np.zeros((500, n), np.float32)
    for row in worst:
        row[rng.choice(n, 80, replace=False)] = 1.0
    assert sample_major.observed_leaders(major, worst, basis) == 80
    plan, *_ = resonance.plan_measurement(worst, basis, epsilon=eps)
    assert plan.sample_major is None
