"""SRM summaries (``srm_jax.summaries``) against int64 sums of the full counts, and the wide
int32-limb arithmetic they add with against int64.

The reference counts are the float64 definition (``d̂·s(θ) ≥ ε``, the spotlight rotated in the
plane's orthonormal frame) on samples drawn away from the threshold, where every kernel is exact;
the summaries are also checked against the sums of :func:`srm_jax.spotlight_resonance`'s counts.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import srm_jax
from srm_jax import resonance, summaries
from srm_jax.sample_major import WIDE_BITS, wide_add, wide_sum, wide_value
from tests.conftest import random_orthogonal, reference_dots

LOW = 1 << WIDE_BITS


# --- wide limbs ---------------------------------------------------------------------------------


def _limbs_value(total) -> np.ndarray:
    """The int64 value of wide counts, read from the limbs, which must be canonical."""
    total = np.asarray(total)
    assert total.dtype == np.int32 and total.shape[-1] == 2
    assert np.all((total[..., 1] >= 0) & (total[..., 1] < LOW)) and np.all(total[..., 0] >= 0)
    return total[..., 0].astype(np.int64) * LOW + total[..., 1]


def _accumulate(values) -> jax.Array:
    def add(total, value):
        return wide_add(total, value), None

    start = jnp.zeros(values.shape[1:] + (2,), jnp.int32)
    return jax.lax.scan(add, start, jnp.asarray(values, jnp.int32))[0]


def test_wide_add_and_wide_sum_equal_int64_past_2_31(rng):
    # 40 values each up to the largest wide_add takes: sums reach 2**36, many carries.
    most = 2**31 - 2**24 - 1
    values = rng.integers(0, most + 1, (40, 6))
    values[:, 0] = most  # the largest value every time
    values[:, 1] = 0
    values[:, 2] = rng.integers(0, LOW, 40)  # below one low limb: carries from sums alone
    expect = values.sum(axis=0)
    total = _accumulate(values)
    np.testing.assert_array_equal(_limbs_value(total), expect)
    assert expect.max() > 2**35
    # Equal sums have equal limbs, whatever the order of the additions.
    np.testing.assert_array_equal(np.asarray(_accumulate(values[::-1])), np.asarray(total))
    # wide_sum: the sum of two wide totals.
    other_values = rng.integers(0, most + 1, (25, 6))
    other = _accumulate(other_values)
    both = wide_sum(total, other)
    np.testing.assert_array_equal(_limbs_value(both), expect + other_values.sum(axis=0))
    np.testing.assert_array_equal(np.asarray(both), np.asarray(_accumulate(
        np.concatenate([other_values, values]))))


def test_wide_value_reads_the_limbs(rng):
    values = rng.integers(0, 2**31 - 2**24, (30, 50))
    total = _accumulate(values)
    expect = values.sum(axis=0)
    got = np.asarray(wide_value(total), np.float64)  # float32: one rounding
    assert np.all(np.abs(got - expect) <= expect * 2.0**-24)
    with jax.enable_x64(True):
        exact = np.asarray(wide_value(jnp.asarray(np.asarray(total)), jnp.float64))
    np.testing.assert_array_equal(exact, expect.astype(np.float64))


# --- summaries against the full counts ----------------------------------------------------------

N, T = 150, 23
# Fixed grids (a general grid's sorted angles are part of the compiled kernel's static layout).
UNIFORM = np.linspace(0, 2 * np.pi, T).astype(np.float32)
NONUNIFORM = np.random.default_rng(23).uniform(-np.pi, 3 * np.pi, T).astype(np.float32)


def _basis(rng, n=4):
    """A random ``±`` basis ``[q; −q]`` (the sample-major kernel applies)."""
    q = random_orthogonal(rng, n).astype(np.float32)
    return np.concatenate([q, -q])


# One basis for the sample-major tests: its structure is part of the compiled kernel's static
# plan, so the tests share one compilation per setting.
BASIS = _basis(np.random.default_rng(4))


def _reference_planes(n):
    """Combination planes of ``[q; −q]``: every pair but the antipodal ``(i, i + n)``."""
    return np.array([(a, b) for a in range(2 * n) for b in range(a + 1, 2 * n) if b != a + n])


def _dots(x, basis, angles):
    """Float64 ``(N, P, T)`` cosines ``d̂·s(θ)`` with ``s(θ) = cos θ b̂_α − sin θ û`` (Eqn. 1 in
    the plane's orthonormal frame ``û ∝ b̂_β − (b̂_α·b̂_β) b̂_α``); NaN rows stay NaN, zero rows
    are 0."""
    b = basis.astype(np.float64)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    pairs = _reference_planes(basis.shape[1])
    alpha, beta = b[pairs[:, 0]], b[pairs[:, 1]]
    c = np.sum(alpha * beta, axis=1, keepdims=True)
    u = (beta - c * alpha) / np.sqrt(1 - c * c)
    d = x.astype(np.float64)
    norms = np.linalg.norm(d, axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):
        d = np.where(norms == 0, 0.0, d / np.where(norms == 0, 1.0, norms))
    angles = angles.astype(np.float64)
    return ((d @ alpha.T)[:, :, None] * np.cos(angles)
            - (d @ u.T)[:, :, None] * np.sin(angles))


def test_reference_cosines_are_those_of_the_matrix_exponential(rng):
    basis = _basis(rng)
    x = rng.standard_normal((5, 4))
    angles = rng.uniform(-7, 7, 3)
    np.testing.assert_allclose(_dots(x, basis, angles),
                               reference_dots(x, basis, _reference_planes(4), angles), atol=1e-12)


def _samples(rng, basis, angles, epsilon, num=N, tol=1e-4):
    """Samples near the basis vectors, with NaN and zero rows, none within ``tol`` of ``±ε``
    (float64) at any plane and angle: every kernel counts them exactly."""
    k = rng.integers(0, basis.shape[0], num)
    x = (basis[k] + 0.5 * rng.standard_normal((num, basis.shape[1]))).astype(np.float32)
    for _ in range(100):
        near = np.any(np.abs(np.abs(_dots(x, basis, angles)) - abs(epsilon)) < tol, axis=(1, 2))
        if not near.any():
            break
        x[near] = rng.standard_normal((int(near.sum()), x.shape[1])).astype(np.float32)
    else:
        raise AssertionError("could not draw samples away from the threshold")
    x[4] = np.nan  # left out of numerator and denominator alike
    x[7] = 0.0  # a zero row: cosine 0 with every spotlight, lit when ε ≤ 0
    return x


def _reference_counts(x, basis, angles, epsilon):
    """Float64 definition: int64 ``(P, T)`` counts of ``≥ ε`` and ``≤ −ε``, and N."""
    dots = _dots(x, basis, angles)
    dots = dots[np.all(np.isfinite(dots), axis=(1, 2))]
    return (np.sum(dots >= epsilon, axis=0, dtype=np.int64),
            np.sum(dots <= -epsilon, axis=0, dtype=np.int64), len(dots))


def _check_summary(summary, counts, negative, num, epsilon, signed):
    """Every field and value of ``summary`` from int64 ``(P, T)`` counts at ``ε`` (and ``≤ −ε``)."""
    assert int(summary.num_samples) == num
    assert summary.signed == signed
    if summary.complement:  # ε < 0: the fields count the cone at |ε| and its opposite
        positive_field, negative_field = num - negative, num - counts
    else:
        positive_field, negative_field = counts, negative
    np.testing.assert_array_equal(_limbs_value(summary.curve_counts), positive_field.sum(0))
    np.testing.assert_array_equal(_limbs_value(summary.plane_totals), positive_field.sum(1))
    if signed or summary.complement:
        np.testing.assert_array_equal(_limbs_value(summary.negative_curve_counts),
                                      negative_field.sum(0))
        np.testing.assert_array_equal(_limbs_value(summary.negative_plane_totals),
                                      negative_field.sum(1))
    else:
        assert summary.negative_curve_counts is None and summary.negative_plane_totals is None
    values = (counts - negative if signed else counts) / num  # (P, T), Eqn. 2 or 4
    np.testing.assert_allclose(summary.mean_curve, values.mean(0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(summary.plane_means, values.mean(1), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(summary.lit_plane_totals, counts.sum(1))
    assert float(summary.epsilon) == pytest.approx(epsilon)


CASES = [  # (method, ε, signed, angles): each kernel path, ε of both signs, both layouts
    ("sample_major", 0.3, False, "uniform"),
    ("sample_major", -0.2, True, "nonuniform"),
    ("arc", 0.3, True, "nonuniform"),
    ("direct", -0.2, False, "uniform"),
]


@pytest.mark.parametrize("case", CASES, ids=["-".join(map(str, c)) for c in CASES])
def test_summary_equals_the_sums_of_the_full_counts(rng, case):
    method, epsilon, signed, angles_kind = case
    basis = BASIS if method == "sample_major" else _basis(rng)
    angles = UNIFORM if angles_kind == "uniform" else NONUNIFORM
    x = _samples(rng, basis, angles, epsilon)
    summary = srm_jax.resonance_summary(x, basis, epsilon=epsilon, angles=angles, signed=signed,
                                        method=method)
    assert summary.complement == (method == "sample_major" and epsilon < 0)
    np.testing.assert_array_equal(summary.planes, _reference_planes(4))
    counts, negative, num = _reference_counts(x, basis, angles, epsilon)
    assert 0 < counts.sum() < counts.size * num and num == N - 1
    _check_summary(summary, counts, negative, num, epsilon, signed)
    # The same sums from spotlight_resonance's full counts (Eqns. 2 and 4).
    full = srm_jax.spotlight_resonance(x, basis, epsilon=epsilon, angles=angles, signed=True,
                                       method="direct")
    np.testing.assert_array_equal(full.counts, counts)
    np.testing.assert_array_equal(full.negative_counts, negative)
    full = full.replace(signed=signed)
    np.testing.assert_allclose(summary.mean_curve, full.mean_curve, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(summary.plane_means, np.mean(full.values, axis=1), rtol=1e-6,
                               atol=1e-7)


def test_summaries_add_over_batches_and_groups(rng):
    basis = BASIS
    epsilon = -0.2
    x = _samples(rng, basis, NONUNIFORM, epsilon, num=2 * N)
    counts, negative, num = _reference_counts(x, basis, NONUNIFORM, epsilon)
    kw = dict(epsilon=epsilon, angles=NONUNIFORM, signed=True, method="sample_major")
    # Two batches add up to the summary of the union (wide limbs and all).
    first, second = (srm_jax.resonance_summary(x[:N], basis, **kw),
                     srm_jax.resonance_summary(x[N:], basis, **kw))
    _check_summary(first + second, counts, negative, num, epsilon, True)
    # Disjoint groups in one pass: group g's summary is the summary of its rows alone.
    groups = rng.integers(-1, 3, 2 * N)  # −1: in no group
    plan, pairs, angles = resonance.plan_measurement(x, basis, **kw)
    sums = summaries.plan_summaries(plan, x, basis, pairs, angles, epsilon,
                                    groups=jnp.asarray(groups), num_groups=3)
    for g in range(3):
        summary = summaries.summary_from_sums(sums, pairs, epsilon, plan, group=g)
        _check_summary(summary, *_reference_counts(x[groups == g], basis, NONUNIFORM, epsilon),
                       epsilon, True)


def test_combining_summaries_of_different_settings_is_refused(rng):
    basis = _basis(rng)
    x = rng.standard_normal((20, 4)).astype(np.float32)
    a = srm_jax.resonance_summary(x, basis, epsilon=0.3, angles=UNIFORM, method="direct")
    doubled = a + a
    np.testing.assert_array_equal(_limbs_value(doubled.plane_totals),
                                  2 * _limbs_value(a.plane_totals))
    assert int(doubled.num_samples) == 2 * int(a.num_samples)
    for other in (a.replace(signed=True), a.replace(complement=True),
                  a.replace(epsilon=a.epsilon + 0.1), a.replace(angles=a.angles + 0.1),
                  a.replace(planes=a.planes[::-1])):
        with pytest.raises(ValueError):
            summaries.combine_summaries(a, other)
