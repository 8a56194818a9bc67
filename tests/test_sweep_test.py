"""The rotation test over a sweep of ε (math §6.2): per-ε and family-wise (min-p) p-values.

Calibration: on isotropic data every p-value is uniform, so its rejection rate at 5 % and 10 %
lies inside binomial 99 % bounds over independent draws; the family-wise p-value is never below
the draw's smallest per-ε p-value; a signal planted at one ε is found; and the sweep's result
at each ε is the scalar test's, with the same rotations.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import srm_jax
from srm_jax import significance
from srm_jax.resonance import plan_measurement

SWEEP = (0.2, 0.3, 0.4)
LEVELS = (0.05, 0.10)


def pm_basis(key, n):
    """A Haar-rotated ``±e_i``: a ± orthonormal basis of ``2n`` vectors."""
    q = significance.haar_rotation(key, n)
    return jnp.concatenate([q, -q])


def spanning_pairs(basis, num_planes, seed=0):
    """``num_planes`` comb pairs, drawn once, that span a plane."""
    b = np.asarray(basis)
    m = b.shape[0]
    i, j = np.triu_indices(m, k=1)
    keep = np.abs(np.sum(b[i] * b[j], axis=-1)) < 0.99
    pairs = np.stack([i[keep], j[keep]], axis=1)
    pick = np.random.default_rng(seed).choice(len(pairs), min(num_planes, len(pairs)), False)
    return jnp.asarray(pairs[np.sort(pick)], jnp.int32)


def calibration_draws(basis, *, num_draws, num_samples, num_resamples=99, num_planes=64,
                      num_angles=16, epsilons=SWEEP, alternative="greater", seed=0):
    """Per-ε and family-wise p-values of ``num_draws`` isotropic data sets, in one jit.

    ``K = 99``: with ties counted against the basis (math §6.2), the min-p of ``K = 19``
    rotations over three ε is almost never below 1/20 (the draws most extreme at each ε tie at
    1/20), so its rate at 5 % would be near 0: valid, but not the uniformity tested here.
    """
    n = basis.shape[1]
    pairs = spanning_pairs(basis, num_planes, seed)
    angles = jnp.linspace(0.0, 2 * jnp.pi, num_angles, endpoint=False)
    probe = jnp.zeros((num_samples, n)) + 1.0
    plans = tuple(plan_measurement(probe, basis, epsilon=e, angles=angles, planes=pairs)[0]
                  for e in epsilons)
    eps = jnp.asarray(epsilons, jnp.float32)
    setup = significance._TestSetup(plans, plans, None, None, num_resamples, None, None)
    test = functools.partial(significance._sweep_test, setup=setup, alternative=alternative,
                             statistic="projection")

    def draws(keys, basis, pairs, angles, eps):
        # Arrays as arguments, not constants: XLA would fold the basis' products at compile time.
        def one(key):
            data = jax.random.normal(jax.random.fold_in(key, 0), (num_samples, n))
            result = test(jax.random.fold_in(key, 1), data, basis, pairs, angles, eps, None)
            return result.p_value, result.family_wise_p_value

        return jax.lax.map(one, keys, batch_size=10)

    keys = jax.random.split(jax.random.key(seed), num_draws)
    per_eps, family = jax.jit(draws)(keys, basis, pairs, angles, eps)
    return np.asarray(per_eps), np.asarray(family)


def assert_uniform(p, label):
    """Rejection rates at LEVELS inside binomial 99 % bounds (p is discrete on k/(K+1))."""
    draws = p.shape[0]
    for level in LEVELS:
        low, high = scipy.stats.binom.ppf([0.005, 0.995], draws, level)
        rejected = int(np.sum(p <= level + 1e-6))
        assert low <= rejected <= high, (label, level, rejected, (low, high))


def check_calibration(basis, **kwargs):
    per_eps, family = calibration_draws(basis, **kwargs)
    assert np.all(np.isfinite(per_eps)) and np.all(np.isfinite(family))
    for j in range(per_eps.shape[1]):
        assert_uniform(per_eps[:, j], f"eps {j}")
    assert_uniform(family, "family-wise")
    assert np.all(family >= per_eps.min(axis=1) - 1e-6)
    # The family-wise p is a p-value over the sweep, not the smallest one: it is larger somewhere.
    assert np.any(family > per_eps.min(axis=1) + 1e-6)


def test_sweep_calibration_pm_orthonormal_n64():
    check_calibration(pm_basis(jax.random.key(7), 64), num_draws=300, num_samples=40)


def test_sweep_calibration_thompson_n64():
    basis = srm_jax.thompson_basis(jax.random.key(8), 12, 64, steps=300)
    check_calibration(basis, num_draws=300, num_samples=40)


@pytest.mark.slow
def test_sweep_calibration_pm_orthonormal_n384():
    # 20 draws give loose bounds (0-4 rejections at 5 %) that K = 19's conservative min-p
    # also meets; each rotation is a 384 × 384 QR.
    check_calibration(pm_basis(jax.random.key(9), 384), num_draws=20, num_samples=40,
                      num_resamples=19, num_planes=128, num_angles=16, epsilons=(0.1, 0.15, 0.2))


def clustered(key, num_samples, n, scale=0.35):
    """Rows near a random ``±e_i``: aligned with the standard basis, radius ≈ 0.6–0.8."""
    k1, k2, k3 = jax.random.split(key, 3)
    axis = jax.random.randint(k1, (num_samples,), 0, n)
    sign = jnp.where(jax.random.bernoulli(k2, 0.5, (num_samples,)), 1.0, -1.0)
    return (sign[:, None] * jax.nn.one_hot(axis, n)
            + scale * jax.random.normal(k3, (num_samples, n)) / jnp.sqrt(n / 4))


def test_sweep_equals_scalar_tests_with_the_same_rotations():
    n = 8
    basis = jnp.concatenate([jnp.eye(n), -jnp.eye(n)])
    x = clustered(jax.random.key(1), 60, n)
    key = jax.random.key(2)
    sweep = srm_jax.alignment_test(key, x, basis, epsilon=jnp.asarray([0.3, 0.6]),
                                   num_resamples=9, alternative="two-sided")
    assert sweep.score.shape == (2,) and sweep.null_scores.shape == (9, 2)
    assert sweep.p_value.shape == (2,) and sweep.lit_share.shape == (2,)
    for j, eps in enumerate((0.3, 0.6)):
        one = srm_jax.alignment_test(key, x, basis, epsilon=eps, num_resamples=9,
                                     alternative="two-sided")
        assert one.family_wise_p_value is None and one.lit_share is None
        np.testing.assert_allclose(sweep.score[j], one.score, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(sweep.null_scores[:, j], one.null_scores, rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(sweep.p_value[j], one.p_value)


def test_sweep_with_measure_measures_each_rotation_once():
    n = 6
    basis = jnp.concatenate([jnp.eye(n), -jnp.eye(n)])
    x = clustered(jax.random.key(3), 40, n)
    key = jax.random.key(4)
    sweep = srm_jax.alignment_test(key, x, basis, epsilon=np.array([0.3, 0.5, 0.7]),
                                   num_resamples=7, measure=_first_moment)
    assert sweep.null_measured.shape == (7, n)
    one = srm_jax.alignment_test(key, x, basis, epsilon=0.5, num_resamples=7,
                                 measure=_first_moment)
    np.testing.assert_allclose(sweep.null_measured, one.null_measured, rtol=1e-6)
    np.testing.assert_allclose(sweep.null_scores[:, 1], one.null_scores, rtol=1e-5, atol=1e-7)


def _first_moment(rotated, _):
    return jnp.mean(rotated, axis=0)


def test_planted_signal_at_one_epsilon_is_found_family_wise():
    n = 16
    basis = jnp.concatenate([jnp.eye(n), -jnp.eye(n)])
    x = clustered(jax.random.key(5), 300, n)
    sweep = srm_jax.alignment_test(jax.random.key(6), x, basis,
                                   epsilon=jnp.asarray([0.5, 0.95, 0.99]), num_resamples=39)
    # Nothing lights the top thresholds; the signal is at 0.5 only.
    assert float(sweep.lit_share[0]) > 0.9 and float(sweep.lit_share[2]) == 0.0
    assert float(sweep.p_value[0]) == pytest.approx(1 / 40)
    assert float(sweep.family_wise_p_value) <= 0.05 + 1e-6
    assert float(sweep.family_wise_p_value) >= float(jnp.nanmin(sweep.p_value)) - 1e-6


def test_lit_share_pm_basis_is_the_top_two_coordinates():
    n = 12
    q = significance.haar_rotation(jax.random.key(10), n)
    basis = jnp.concatenate([q, -q])
    x = np.array(jax.random.normal(jax.random.key(11), (500, n)))
    x[3] = np.nan
    i, j = np.triu_indices(2 * n, k=1)
    pairs = jnp.asarray(np.stack([i, j], axis=1), jnp.int32)
    eps = jnp.asarray([-0.2, 0.0, 0.3, 0.5, 0.7])
    got = np.asarray(significance.lit_share(x, basis, pairs, epsilon=eps, plane_chunk=50))
    finite = x[np.all(np.isfinite(x), axis=1)]
    z2 = np.sort((finite / np.linalg.norm(finite, axis=1, keepdims=True) @ np.asarray(q).T) ** 2)
    radius = np.sqrt(z2[:, -1] + z2[:, -2])
    want = [1.0 if e <= 0 else np.mean(radius >= e) for e in np.asarray(eps)]
    np.testing.assert_allclose(got, want, atol=1e-6)
    directions = significance.pm_directions(basis)
    assert directions.shape == (n, n)
    np.testing.assert_allclose(significance.lit_share_pm(x, directions, eps), want, atol=1e-6)
    # planes="comb" (the default) of this ± basis is every spanning pair: the same shares.
    np.testing.assert_allclose(significance.lit_share(x, basis, epsilon=eps), want, atol=1e-6)
    assert float(significance.lit_share(x, basis, epsilon=0.3)) == pytest.approx(want[2])
    assert significance.pm_directions(srm_jax.thompson_basis(jax.random.key(1), 5, 4)) is None


def test_min_p_value_by_hand():
    observed = jnp.asarray([3.0, 0.0])
    null = jnp.asarray([[1.0, 5.0], [2.0, 1.0], [0.0, 0.5]])
    # Per-ε p in the set of 4: member 0 (observed): (1/4, 4/4) -> 1/4; member 1: (3/4, 1/4);
    # member 2: (2/4, 2/4); member 3: (4/4, 3/4). min-p 1/4, 1/4, 2/4, 3/4: one tie.
    assert float(significance.min_p_value(observed, null)) == pytest.approx(2 / 4)
    assert float(significance.min_p_value(observed, null, "less")) == pytest.approx(2 / 4)


@pytest.mark.parametrize("alternative", ["greater", "two-sided"])
def test_sequential_decision_equals_the_full_tests(alternative):
    n = 6
    basis = jnp.concatenate([jnp.eye(n), -jnp.eye(n)])
    num_resamples, level = 59, 0.05
    stopped = 0
    for seed in range(6):
        scale = 0.35 if seed % 2 else 3.0  # clustered (a signal) or near isotropic
        x = clustered(jax.random.key(20 + seed), 80, n, scale=scale)
        key = jax.random.key(40 + seed)
        full = srm_jax.alignment_test(key, x, basis, epsilon=0.6, num_resamples=num_resamples,
                                      alternative=alternative)
        seq = srm_jax.alignment_test(key, x, basis, epsilon=0.6, num_resamples=num_resamples,
                                     alternative=alternative, sequential_level=level,
                                     map_batch_size=4)
        drawn = int(seq.num_drawn)
        assert (float(seq.p_value) <= level) == (float(full.p_value) <= level)
        np.testing.assert_allclose(seq.null_scores[:drawn], full.null_scores[:drawn],
                                   rtol=1e-5, atol=1e-7)
        assert np.all(np.isnan(np.asarray(seq.null_scores[drawn:])))
        if drawn == num_resamples:
            assert float(seq.p_value) == pytest.approx(float(full.p_value))
        else:
            stopped += 1
            assert float(seq.p_value) > level
    assert stopped >= 1
    assert full.num_drawn is None


def test_sequential_sweep_decides_as_the_full_sweep():
    """Sequential rotations over a sweep stop only once every ε's decision is "no evidence", so
    the family-wise decision is the full test's on the same rotation stream (math §6.2)."""
    n = 6
    basis = jnp.concatenate([jnp.eye(n), -jnp.eye(n)])
    num_resamples, level = 59, 0.05
    sweep = jnp.asarray([0.4, 0.6, 0.8])
    stopped = 0
    for seed in range(6):
        scale = 0.35 if seed % 2 else 3.0  # clustered (a signal) or near isotropic
        x = clustered(jax.random.key(60 + seed), 80, n, scale=scale)
        key = jax.random.key(80 + seed)
        full = srm_jax.alignment_test(key, x, basis, epsilon=sweep, num_resamples=num_resamples)
        seq = srm_jax.alignment_test(key, x, basis, epsilon=sweep, num_resamples=num_resamples,
                                     sequential_level=level, map_batch_size=4)
        drawn = int(seq.num_drawn)
        assert seq.p_value.shape == (3,) and seq.null_scores.shape == (num_resamples, 3)
        family = float(seq.family_wise_p_value)
        assert (family <= level) == (float(full.family_wise_p_value) <= level)
        np.testing.assert_allclose(seq.null_scores[:drawn], full.null_scores[:drawn],
                                   rtol=1e-5, atol=1e-7)
        if drawn == num_resamples:
            assert family == pytest.approx(float(full.family_wise_p_value))
            np.testing.assert_allclose(seq.p_value, full.p_value)
        else:
            stopped += 1
            assert family > level and np.all(np.asarray(seq.p_value) > level)
    assert stopped >= 1


def test_explicit_every_plane_takes_the_top_two_lit_share():
    n = 10
    basis = jnp.eye(n)
    i, j = np.triu_indices(n, k=1)
    every = np.stack([i, j], axis=1)
    shuffled = np.random.default_rng(0).permutation(every)
    shuffled[::3] = shuffled[::3, ::-1]  # either orientation names the same plane
    assert significance.covers_every_plane(jnp.asarray(shuffled, jnp.int32), None, basis)
    assert significance.covers_every_plane("comb", None, basis)
    assert not significance.covers_every_plane("comb", 5, basis)
    assert not significance.covers_every_plane(jnp.asarray(every[:-1], jnp.int32), None, basis)
    repeated = every.copy()
    repeated[-1] = repeated[0]  # as many pairs, one plane missing
    assert not significance.covers_every_plane(jnp.asarray(repeated, jnp.int32), None, basis)
    # A ± basis: its antipodal pairs span no plane, so the spanning pairs (the report's) are all.
    pm = jnp.concatenate([basis, -basis])
    spanning = srm_jax.spanning_planes(pm)
    assert spanning.shape[0] == 2 * n * (2 * n - 1) // 2 - n
    assert significance.covers_every_plane(spanning, None, pm)
    assert not significance.covers_every_plane(spanning[1:], None, pm)
    x = clustered(jax.random.key(12), 80, n)
    eps = jnp.asarray([0.3, 0.5, 0.8])
    key = jax.random.key(13)
    explicit = srm_jax.alignment_test(key, x, basis, epsilon=eps, num_resamples=9,
                                      planes=jnp.asarray(every, jnp.int32),
                                      measure=_first_moment)
    by_name = srm_jax.alignment_test(key, x, basis, epsilon=eps, num_resamples=9,
                                     measure=_first_moment)
    want = significance.lit_share(x, basis, jnp.asarray(every, jnp.int32), epsilon=eps)
    np.testing.assert_allclose(explicit.lit_share, want, atol=1e-6)
    np.testing.assert_array_equal(explicit.lit_share, by_name.lit_share)
    np.testing.assert_array_equal(explicit.null_scores, by_name.null_scores)
    on_pm = [srm_jax.alignment_test(key, x, pm, epsilon=eps, num_resamples=9, planes=p,
                                    measure=_first_moment) for p in (spanning, "comb")]
    np.testing.assert_array_equal(on_pm[0].lit_share, on_pm[1].lit_share)
    np.testing.assert_allclose(on_pm[0].lit_share, want, atol=1e-6)


@pytest.mark.parametrize("sequential", [False, True])
def test_given_rotations_are_the_drawn_ones(sequential):
    n = 8
    basis = jnp.concatenate([jnp.eye(n), -jnp.eye(n)])
    x = clustered(jax.random.key(14), 70, n)
    eps = jnp.asarray([0.3, 0.6])
    key = jax.random.key(15)
    extra = {"sequential_level": 0.2} if sequential else {"measure": _first_moment}
    drawn = srm_jax.alignment_test(key, x, basis, epsilon=eps, num_resamples=11, **extra)
    rotations = significance.haar_rotations(key, n, 11, map_batch_size=1)
    np.testing.assert_array_equal(
        rotations, significance.haar_rotations(key, n, 11, map_batch_size=None))
    given = srm_jax.alignment_test(key, x, basis, epsilon=eps, num_resamples=11,
                                   rotations=rotations, **extra)
    np.testing.assert_array_equal(given.null_scores, drawn.null_scores)
    np.testing.assert_array_equal(given.p_value, drawn.p_value)
    if not sequential:
        np.testing.assert_array_equal(given.null_measured, drawn.null_measured)
    # Other rotations give another null: the argument is used, not ignored.
    other = significance.haar_rotations(jax.random.key(16), n, 11)
    moved = srm_jax.alignment_test(key, x, basis, epsilon=eps, num_resamples=11,
                                   rotations=other, **extra)
    assert not np.array_equal(moved.null_scores, drawn.null_scores)
    with pytest.raises(ValueError, match="rotations must be"):
        srm_jax.alignment_test(key, x, basis, epsilon=eps, num_resamples=10,
                               rotations=rotations, **extra)


def _fields(test):
    return {f: np.asarray(getattr(test, f)) for f in
            ("score", "null_scores", "p_value", "family_wise_p_value", "lit_share")
            if getattr(test, f) is not None}


@pytest.mark.parametrize("epsilon,planes,method", [
    ((0.3, 0.5, 0.8), "comb", "sample_major"), ((0.3, 0.5, 0.8), "pairs", "sample_major"),
    ((0.3, 0.5, 0.8), "comb", "auto"), ((0.5,), "comb", "sample_major"),
    (0.5, "comb", "auto")])
def test_a_subset_tested_in_the_same_loop_equals_its_own_test(epsilon, planes, method):
    """alignment_test(subset=): the subset's test from the layer's loop (one product per
    rotation; with the sample-major kernel, one enumeration with the subset as a group, else
    the subset's rows counted apart) equals the test of those rows alone with the same key,
    and the test of every row is unchanged."""
    n = 12
    basis = jnp.concatenate([jnp.eye(n), -jnp.eye(n)])
    x = np.array(clustered(jax.random.key(17), 160, n))
    x[:9] = 0.0
    x[np.arange(9), np.arange(9) % n] = 4.0  # massive rows, left out of the subset
    subset = np.arange(9, x.shape[0])
    eps = epsilon if isinstance(epsilon, float) else jnp.asarray(epsilon)
    pairs = spanning_pairs(basis, 40) if planes == "pairs" else "comb"
    kwargs = dict(epsilon=eps, num_resamples=13, planes=pairs, measure=_first_moment,
                  method=method)
    key = jax.random.key(18)
    if method == "sample_major":  # the subset is a group of the copies' one enumeration
        planned = significance._plan_rotation_test(
            key, x, basis, np.reshape(np.asarray(epsilon, np.float32), -1), sweep=True,
            num_resamples=13, angles=None, planes=pairs, method=method, max_planes=None,
            chunk_size=None, map_batch_size=1, measure=_first_moment, level=None)
        assert planned.setup.fused is not None and planned.setup.shared is not None
    both = srm_jax.alignment_test(key, x, basis, subset=subset, **kwargs)
    alone = srm_jax.alignment_test(key, x[subset], basis, **kwargs)
    every = srm_jax.alignment_test(key, x, basis, **kwargs)
    assert both.subset_test is not None and every.subset_test is None
    for got, want in ((both, every), (both.subset_test, alone)):
        expected = _fields(want)
        assert _fields(got).keys() == expected.keys()
        for name, value in _fields(got).items():
            np.testing.assert_array_equal(value, expected[name], err_msg=name)
        np.testing.assert_allclose(got.null_measured, want.null_measured, rtol=1e-6, atol=1e-7)
    assert not np.array_equal(both.subset_test.null_measured, both.null_measured)


def test_a_subset_is_checked():
    n = 6
    basis = jnp.eye(n)
    x = clustered(jax.random.key(19), 30, n)
    key = jax.random.key(20)
    for bad in (np.array([0, 30]), np.array([1, 1]), np.array([], int), np.zeros((2, 2), int),
                np.array([0.0, 1.0])):
        with pytest.raises(ValueError, match="subset"):
            srm_jax.alignment_test(key, x, basis, epsilon=0.5, num_resamples=5, subset=bad)
    with pytest.raises(ValueError, match="subset"):
        srm_jax.alignment_test(key, x, basis, epsilon=0.5, num_resamples=5, subset=np.arange(4),
                               sequential_level=0.2)
