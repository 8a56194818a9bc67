"""SRM and signed SRM against a direct float64 evaluation of Eqns. 2 and 4 (SPEC §1-5)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import srm_jax
from tests.conftest import (
    random_orthogonal,
    reference_count_bounds,
    reference_dots,
    reference_pairs,
)

# float32 cosines are within ~1e-6 of the float64 ones; the arc form adds the rounding of
# arctan2/arccos, which maps to ~1e-5 in d̂·s near the threshold.
TOL = 5e-5


def make_data(rng, num, n, m, *, clustered=True, zero_rows=0, nan_rows=0):
    """A non-orthogonal basis and activations (optionally clustered around it)."""
    basis = rng.standard_normal((m, n))
    basis[1:] += 0.5 * basis[:-1]
    if clustered:
        idx = rng.integers(0, m, num)
        unit = basis / np.linalg.norm(basis, axis=1, keepdims=True)
        data = 3 * unit[idx] * rng.choice([-1, 1], (num, 1)) + rng.standard_normal((num, n))
    else:
        data = rng.standard_normal((num, n))
    data[rng.choice(num, zero_rows + nan_rows, replace=False)] = 0.0
    if nan_rows:
        rows = rng.choice(np.nonzero(~data.any(axis=1))[0], nan_rows, replace=False)
        data[rows, rng.integers(0, n, nan_rows)] = rng.choice([np.nan, np.inf, -np.inf], nan_rows)
    return data.astype(np.float32), basis.astype(np.float32)


def assert_within_reference(result, data, basis, pairs, angles, epsilon, dots=None):
    if dots is None:
        dots = reference_dots(data, basis, pairs, angles)
    low, high, num = reference_count_bounds(dots, epsilon, TOL, +1)
    counts = np.asarray(result.counts)
    assert int(result.num_samples) == num
    assert np.all(counts >= low) and np.all(counts <= high), (
        f"{np.sum((counts < low) | (counts > high))} entries outside the float64 reference"
    )
    if result.signed:
        nlow, nhigh, _ = reference_count_bounds(dots, epsilon, TOL, -1)
        neg = np.asarray(result.negative_counts)
        assert np.all(neg >= nlow) and np.all(neg <= nhigh)
        values = np.asarray(result.values)
        assert np.all(values >= (low - nhigh) / num - 1e-6)
        assert np.all(values <= (high - nlow) / num + 1e-6)
    else:
        values = np.asarray(result.values)
        assert np.all(values >= low / num - 1e-6) and np.all(values <= high / num + 1e-6)
    # The bounds are tight: almost every entry is unambiguous.
    assert np.mean(low == high) > 0.9


@pytest.mark.parametrize("method", ["arc", "direct"])
@pytest.mark.parametrize("kind", ["comb", "perm"])
@pytest.mark.parametrize("epsilon", [-1.0, -0.55, 0.0, 0.35, 0.9, 1.0])
def test_srm_matches_float64_definition(rng, method, kind, epsilon):
    data, basis = make_data(rng, 300, 5, 6, zero_rows=4, nan_rows=3)
    angles = srm_jax.angle_grid(37)
    pairs = reference_pairs(6, kind)
    dots = reference_dots(data, basis, pairs, np.asarray(angles))
    for signed in (False, True):
        result = srm_jax.spotlight_resonance(
            data, basis, epsilon=epsilon, angles=angles, planes=kind, signed=signed, method=method
        )
        np.testing.assert_array_equal(np.asarray(result.planes), pairs)
        assert result.counts.shape == (len(pairs), 37)
        assert result.counts.dtype == jnp.int32
        assert_within_reference(result, data, basis, pairs, np.asarray(angles), epsilon, dots)


def test_arbitrary_angles_and_explicit_planes(rng):
    data, basis = make_data(rng, 200, 7, 5)
    angles = np.sort(rng.uniform(-10, 10, 23)).astype(np.float32)
    pairs = np.array([[4, 0], [1, 3], [2, 2 + 1]])
    result = srm_jax.spotlight_resonance(
        data, basis, epsilon=0.6, angles=angles, planes=pairs, signed=True
    )
    assert_within_reference(result, data, basis, pairs, angles.astype(np.float64), 0.6)


def test_direct_and_arc_agree_on_clustered_data(rng):
    data, basis = make_data(rng, 2000, 12, 10)
    kwargs = dict(epsilon=0.8, planes="perm", signed=True, angles=srm_jax.angle_grid(64))
    arc = srm_jax.spotlight_resonance(data, basis, method="arc", **kwargs)
    direct = srm_jax.spotlight_resonance(data, basis, method="direct", **kwargs)
    # They may differ only for samples within rounding of ±ε: a handful out of 2000.
    assert np.abs(np.asarray(arc.counts) - np.asarray(direct.counts)).max() <= 2
    assert np.abs(np.asarray(arc.negative_counts) - np.asarray(direct.negative_counts)).max() <= 2
    assert np.mean(np.asarray(arc.counts) == np.asarray(direct.counts)) > 0.99


def test_rotating_data_and_basis_together_leaves_srm_unchanged(rng):
    data, basis = make_data(rng, 400, 6, 7)
    q = random_orthogonal(rng, 6)
    rotated = srm_jax.spotlight_resonance(
        (data @ q.T).astype(np.float32), (basis @ q.T).astype(np.float32), epsilon=0.7,
        angles=srm_jax.angle_grid(41), signed=True,
    )
    assert_within_reference(
        rotated, data, basis, reference_pairs(7, "comb"), np.asarray(srm_jax.angle_grid(41)), 0.7
    )


def test_shuffling_samples_changes_nothing(rng):
    data, basis = make_data(rng, 1000, 8, 6, zero_rows=3, nan_rows=2)
    kwargs = dict(epsilon=0.75, planes="perm", signed=True)
    a = srm_jax.spotlight_resonance(data, basis, chunk_size=128, **kwargs)
    b = srm_jax.spotlight_resonance(data[rng.permutation(1000)], basis, chunk_size=128, **kwargs)
    np.testing.assert_array_equal(a.counts, b.counts)
    np.testing.assert_array_equal(a.negative_counts, b.negative_counts)
    assert int(a.num_samples) == int(b.num_samples) == 998


@pytest.mark.parametrize("method", ["arc", "direct"])
def test_batches_combine_to_the_whole(rng, method):
    data, basis = make_data(rng, 700, 6, 5, nan_rows=5)
    kwargs = dict(epsilon=0.5, signed=True, method=method)
    whole = srm_jax.spotlight_resonance(data, basis, **kwargs)
    first = srm_jax.spotlight_resonance(data[:333], basis, **kwargs)
    second = srm_jax.spotlight_resonance(data[333:], basis, **kwargs)
    for combined in (first + second, srm_jax.combine_results(first, second)):
        np.testing.assert_array_equal(combined.counts, whole.counts)
        np.testing.assert_array_equal(combined.negative_counts, whole.negative_counts)
        assert int(combined.num_samples) == int(whole.num_samples)
        np.testing.assert_allclose(combined.values, whole.values, rtol=1e-6)


def test_combining_mismatched_results_is_an_error(rng):
    data, basis = make_data(rng, 50, 4, 4)
    a = srm_jax.spotlight_resonance(data, basis, epsilon=0.5)
    with pytest.raises(ValueError, match="epsilon"):
        a + srm_jax.spotlight_resonance(data, basis, epsilon=0.6)
    with pytest.raises(ValueError, match="signed"):
        a + srm_jax.spotlight_resonance(data, basis, epsilon=0.5, signed=True)


def test_perm_result_holds_the_comb_rows(rng):
    data, basis = make_data(rng, 500, 6, 6)
    comb = srm_jax.spotlight_resonance(data, basis, epsilon=0.8, planes="comb")
    perm = srm_jax.spotlight_resonance(data, basis, epsilon=0.8, planes="perm")
    perm_pairs = [tuple(p) for p in np.asarray(perm.planes)]
    rows = [perm_pairs.index(tuple(p)) for p in np.asarray(comb.planes)]
    np.testing.assert_array_equal(np.asarray(perm.counts)[rows], comb.counts)


def test_self_srm_is_srm_of_the_basis(rng):
    _, basis = make_data(rng, 10, 5, 8)
    angles = srm_jax.angle_grid(33)
    a = srm_jax.self_srm(basis, epsilon=0.9, planes="perm", angles=angles)
    b = srm_jax.spotlight_resonance(basis, basis, epsilon=0.9, planes="perm", angles=angles)
    np.testing.assert_array_equal(a.counts, b.counts)
    assert_within_reference(a, basis, basis, reference_pairs(8, "perm"), np.asarray(angles), 0.9)
    # At θ = 0 the spotlight is b̂_α itself: every plane lights at least its own vector.
    assert np.all(np.asarray(a.counts)[:, 0] >= 1)


def test_jit_and_vmap_equal_eager(rng):
    data, basis = make_data(rng, 300, 6, 5)
    batch = np.stack([data, data[::-1] * 2, make_data(rng, 300, 6, 5)[0]])

    def measure(d, b, eps):
        return srm_jax.spotlight_resonance(d, b, epsilon=eps, planes="perm", signed=True)

    eager = [measure(d, basis, 0.7) for d in batch]
    jitted = jax.jit(measure)(batch[0], basis, 0.7)
    np.testing.assert_array_equal(jitted.counts, eager[0].counts)
    np.testing.assert_array_equal(jitted.negative_counts, eager[0].negative_counts)
    vmapped = jax.jit(jax.vmap(measure, in_axes=(0, None, None)))(batch, basis, 0.7)
    for i, e in enumerate(eager):
        np.testing.assert_array_equal(vmapped.counts[i], e.counts)
        np.testing.assert_array_equal(vmapped.negative_counts[i], e.negative_counts)
        np.testing.assert_allclose(vmapped.values[i], e.values)
    # A sweep over epsilon through vmap (epsilon traced).
    eps = jnp.array([0.2, 0.7, 0.95])
    swept = jax.vmap(measure, in_axes=(None, None, 0))(batch[0], basis, eps)
    np.testing.assert_array_equal(swept.counts[1], eager[0].counts)


def test_max_planes_subset_is_returned_and_measured(rng):
    data, basis = make_data(rng, 200, 6, 9)
    result = srm_jax.spotlight_resonance(
        data, basis, epsilon=0.8, planes="perm", max_planes=11, key=jax.random.key(3)
    )
    assert result.planes.shape == (11, 2)
    assert_within_reference(
        result, data, basis, np.asarray(result.planes), np.asarray(srm_jax.angle_grid()), 0.8
    )


def test_nan_and_zero_rows_follow_the_spec():
    basis = np.eye(3, dtype=np.float32)
    data = np.array([[1, 0, 0], [0, 0, 0], [np.nan, 1, 0], [np.inf, 0, 0]], np.float32)
    angles = np.array([0.0], np.float32)
    # ε = 0: the zero row has cosine 0 ≥ 0 and counts; NaN/Inf rows count nowhere.
    r = srm_jax.spotlight_resonance(data, basis, epsilon=0.0, angles=angles, planes=[[0, 1]])
    assert int(r.num_samples) == 2
    assert int(r.counts[0, 0]) == 2
    np.testing.assert_allclose(r.values, [[1.0]])
    r = srm_jax.spotlight_resonance(data, basis, epsilon=0.5, angles=angles, planes=[[0, 1]])
    assert int(r.counts[0, 0]) == 1
    # No valid sample at all: values are NaN (0 / 0), counts are zero.
    r = srm_jax.spotlight_resonance(data[2:], basis, epsilon=0.5, angles=angles, planes=[[0, 1]])
    assert int(r.num_samples) == 0 and np.isnan(np.asarray(r.values)).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(activations=np.ones((5, 4)), basis=np.eye(3)), "n=4 features"),
        (dict(basis=np.eye(3)[:1]), "at least 2 vectors"),
        (dict(epsilon=1.5), r"\[-1, 1\]"),
        (dict(epsilon=-1.01), r"\[-1, 1\]"),
        (dict(basis=np.array([[1.0, 0, 0], [0, 0, 0], [0, 1, 0]])), "zero vectors"),
        (
            dict(basis=np.array([[1.0, 0, 0], [-2.0, 0, 0], [0, 1, 0]]), planes=[[0, 2], [0, 1]]),
            r"\(0, 1\) spans no plane",
        ),
        (dict(max_planes=2), "needs a PRNG key"),
        (dict(activations=np.ones(3)), "2-D array"),
        (dict(method="fast"), "method must be"),
        (dict(planes=[[0, 0]]), "alpha == beta"),
        (dict(planes=[[0, 5]]), "indices must lie"),
        (dict(angles=np.zeros((2, 2))), "1-D"),
    ],
)
def test_bad_input_is_rejected_with_a_clear_message(kwargs, message):
    args = dict(activations=np.ones((5, 3)), basis=np.eye(3), epsilon=0.5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        srm_jax.spotlight_resonance(args.pop("activations"), args.pop("basis"), **args)


def test_alignment_score_is_pearson_correlation(rng):
    a = rng.random((4, 30))
    b = rng.random((6, 30))
    want = np.corrcoef(a.mean(0), b.mean(0))[0, 1]
    np.testing.assert_allclose(srm_jax.alignment_score(a, b), want, rtol=1e-5)
    np.testing.assert_allclose(srm_jax.alignment_score(a.mean(0), -a.mean(0)), -1, rtol=1e-6)
    assert np.isnan(srm_jax.alignment_score(np.ones(30), b))


def test_float64_when_x64_is_enabled(run_x64):
    out = run_x64(
        """
        import jax.numpy as jnp, numpy as np, srm_jax
        from tests.conftest import reference_dots, reference_count_bounds, reference_pairs
        rng = np.random.default_rng(SEED)
        data, basis = rng.standard_normal((300, 5)), rng.standard_normal((4, 5))
        angles = srm_jax.angle_grid(50)
        for method in ("arc", "direct"):
            r = srm_jax.spotlight_resonance(data, basis, epsilon=0.6, angles=angles, method=method)
            assert r.values.dtype == jnp.float64 and r.angles.dtype == jnp.float64
            dots = reference_dots(data, basis, reference_pairs(4, "comb"), np.asarray(angles))
            low, high, _ = reference_count_bounds(dots, 0.6, 1e-9)
            assert np.all((np.asarray(r.counts) >= low) & (np.asarray(r.counts) <= high))
        print("ok")
        """
    )
    assert out.strip().endswith("ok")


def test_sharded_over_eight_devices_equals_eager(rng):
    from tests.conftest import run_python

    out = run_python(
        """
        import jax, numpy as np, srm_jax
        from jax.sharding import Mesh, NamedSharding, PartitionSpec
        assert jax.device_count() == 8, jax.devices()
        rng = np.random.default_rng(0)
        data = rng.standard_normal((800, 6)).astype(np.float32)
        basis = rng.standard_normal((5, 6)).astype(np.float32)
        mesh = Mesh(np.array(jax.devices()), ("samples",))
        sharded = jax.device_put(data, NamedSharding(mesh, PartitionSpec("samples")))
        f = jax.jit(lambda d, b: srm_jax.spotlight_resonance(d, b, epsilon=0.5, signed=True))
        got = f(sharded, basis)
        want = srm_jax.spotlight_resonance(data, basis, epsilon=0.5, signed=True)
        np.testing.assert_array_equal(got.counts, want.counts)
        np.testing.assert_array_equal(got.negative_counts, want.negative_counts)
        print("ok")
        """,
        {"XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"},
    )
    assert out.strip().endswith("ok")
