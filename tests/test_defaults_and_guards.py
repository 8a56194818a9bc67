"""The library's own bases work with the defaults (SPEC §2), and settings that used to give a
silent wrong answer are now refused or right (issue 12, items 2 and 5)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import srm_jax
from srm_jax.per_class import shuffle_labels
from srm_jax.streaming import add_batch, fixed_size_batches
from tests.conftest import reference_count_bounds, reference_dots, reference_pairs

ANGLES = np.linspace(0, 2 * np.pi, 12)
N_DIM = 3


def spanning_reference(basis, kind):
    """Pairs of ``kind`` with |cos| < 1 − 1e-6 in float64, in itertools order (SPEC §2)."""
    b = np.asarray(basis, np.float64)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    pairs = reference_pairs(b.shape[0], kind)
    cos = np.abs(np.sum(b[pairs[:, 0]] * b[pairs[:, 1]], axis=1))
    return pairs[cos < 1 - 1e-6]


def library_bases(seed=0, n=N_DIM):
    key = jax.random.key(seed)
    return {
        "orthoplex": srm_jax.orthoplex_basis(key, n),
        "standard": srm_jax.standard_basis(n),
        "plus_minus_random": jnp.concatenate(
            [b := srm_jax.random_basis(key, 3, n), -b, b[:1]]  # repeated and antipodal rows
        ),
    }


@pytest.mark.parametrize("name", ["orthoplex", "standard", "plus_minus_random"])
@pytest.mark.parametrize("kind", ["comb", "perm"])
def test_defaults_work_with_plus_minus_bases(rng, name, kind):
    basis = np.asarray(library_bases(int(rng.integers(1000)))[name])
    x = rng.standard_normal((80, N_DIM)).astype(np.float32)
    result = srm_jax.spotlight_resonance(
        x, basis, epsilon=0.6, angles=ANGLES, planes=kind, method="direct"
    )
    expected = spanning_reference(basis, kind)
    assert len(expected) < len(reference_pairs(basis.shape[0], kind))  # something was skipped
    np.testing.assert_array_equal(np.asarray(result.planes), expected)
    dots = reference_dots(x, basis, expected, ANGLES)
    low, high, total = reference_count_bounds(dots, 0.6, 5e-5)
    counts = np.asarray(result.counts)
    assert int(result.num_samples) == total
    assert np.all((low <= counts) & (counts <= high))
    # The arc kernel measures the same planes.
    arc = srm_jax.spotlight_resonance(x, basis, epsilon=0.6, angles=ANGLES, planes=kind,
                                      method="arc")
    np.testing.assert_array_equal(np.asarray(arc.planes), expected)
    assert np.all((low <= np.asarray(arc.counts)) & (np.asarray(arc.counts) <= high))


def test_explicit_degenerate_pair_still_raises_naming_it():
    basis = srm_jax.orthoplex_basis(jax.random.key(0), 3)  # rows q_0, q_1, q_2, -q_0, ...
    with pytest.raises(ValueError, match=r"pair \(1, 4\) spans no plane"):
        srm_jax.spotlight_resonance(
            np.ones((4, 3)), basis, epsilon=0.5, planes=np.array([[0, 1], [1, 4]])
        )
    with pytest.raises(ValueError, match="no pair"):
        srm_jax.spotlight_resonance(np.ones((4, 3)), np.array([[1.0, 0, 0], [-1, 0, 0]]),
                                    epsilon=0.5)


def test_max_planes_draws_among_spanning_planes(rng):
    basis = srm_jax.orthoplex_basis(jax.random.key(int(rng.integers(1000))), 4)
    spanning = {tuple(p) for p in spanning_reference(basis, "perm")}
    seen = set()
    for seed in range(20):
        pairs = np.asarray(srm_jax.spanning_planes(basis, "perm", max_planes=7,
                                                   key=jax.random.key(seed)))
        assert len(pairs) == 7 and len({tuple(p) for p in pairs}) == 7
        assert {tuple(p) for p in pairs} <= spanning
        seen |= {tuple(p) for p in pairs}
    assert len(seen) > 7
    # The engine draws the same way; asking for more than there are gives every spanning pair.
    key = jax.random.key(3)
    result = srm_jax.spotlight_resonance(np.ones((4, 4)), basis, epsilon=0.5, planes="perm",
                                         max_planes=7, key=key, angles=ANGLES)
    np.testing.assert_array_equal(
        result.planes, srm_jax.spanning_planes(basis, "perm", max_planes=7, key=key)
    )
    every = srm_jax.spanning_planes(basis, "perm", max_planes=1000, key=key)
    assert {tuple(p) for p in np.asarray(every)} == spanning


def test_traced_basis_keeps_every_pair_as_documented(rng):
    basis = srm_jax.random_basis(jax.random.key(int(rng.integers(1000))), 5, N_DIM)
    x = rng.standard_normal((30, N_DIM)).astype(np.float32)
    jitted = jax.jit(lambda b: srm_jax.spotlight_resonance(x, b, epsilon=0.5, angles=ANGLES))
    np.testing.assert_array_equal(jitted(basis).planes, reference_pairs(5, "comb"))
    with pytest.raises(ValueError, match="concrete basis"):
        jax.jit(srm_jax.spanning_planes)(basis)


def test_every_entry_point_measures_the_spanning_planes(rng):
    """Streaming, metric, sharded, per-class, significance, spectrum and layers: defaults work."""
    basis = srm_jax.orthoplex_basis(jax.random.key(int(rng.integers(1000))), N_DIM)
    expected = spanning_reference(basis, "comb")
    x = rng.standard_normal((40, N_DIM)).astype(np.float32)
    labels = rng.integers(0, 2, 40)
    kw = dict(epsilon=0.5, angles=ANGLES, method="direct")
    reference = srm_jax.spotlight_resonance(x, basis, **kw)
    np.testing.assert_array_equal(reference.planes, expected)

    results = {
        "accumulate_srm": srm_jax.accumulate_srm([x[:25], x[25:]], basis, **kw),
        "sharded_srm": srm_jax.sharded_srm(x, basis, **kw),
        "per_class_srm": srm_jax.per_class_srm(x, basis, labels, num_classes=2, **kw),
    }
    acc = srm_jax.streaming_srm(basis, **kw)
    results["streaming_srm"] = acc.update(acc.init(), x)
    metric = srm_jax.srm_metric(basis, every=1, keep_result=True, **kw)
    results["srm_metric"] = metric.update(metric.init(), x, 0).result
    for name, result in results.items():
        np.testing.assert_array_equal(result.planes, expected, err_msg=name)
    for name in ("accumulate_srm", "sharded_srm", "streaming_srm", "srm_metric"):
        np.testing.assert_array_equal(results[name].counts, reference.counts, err_msg=name)
    np.testing.assert_array_equal(results["per_class_srm"].counts.sum(0), reference.counts)

    band = srm_jax.null_band(jax.random.key(0), 20, basis, num_resamples=3, **kw)
    np.testing.assert_array_equal(band.planes, expected)
    sweep = srm_jax.alignment_sweep(x, basis, np.array([0.3, 0.6]), angles=ANGLES,
                                    method="direct")
    np.testing.assert_array_equal(sweep.planes, expected)
    test = srm_jax.alignment_test(jax.random.key(0), x, basis, num_resamples=3, **kw)
    assert np.isfinite(float(test.p_value))
    spectrum = srm_jax.srm_spectrum(x, basis, epsilon=0.5, order=4)
    np.testing.assert_array_equal(spectrum.planes, expected)
    selectivity = srm_jax.rank_selectivity(jax.random.key(0), x, basis, labels, num_classes=2,
                                           num_resamples=3, **kw)
    np.testing.assert_array_equal(selectivity.per_class.planes, expected)
    values, _ = srm_jax.vector_firing(x, basis, labels, num_classes=2, epsilon=0.5)
    assert values.shape == (2, basis.shape[0])

    class Model(nnx.Module):
        def __init__(self):
            self.linear = nnx.Linear(N_DIM, N_DIM, rngs=nnx.Rngs(0))

        def __call__(self, inputs):
            return self.linear(inputs)

    model = Model()
    layer = srm_jax.layer_srm(model, "linear", [x[:25], x[25:]], basis=basis, **kw)
    np.testing.assert_array_equal(layer.planes, expected)
    np.testing.assert_array_equal(
        layer.counts, srm_jax.spotlight_resonance(model(x), basis, **kw).counts
    )


def _method_calls(basis, x, labels):
    kw = dict(epsilon=0.5, angles=ANGLES, method="arcs")
    key = jax.random.key(0)
    pairs = srm_jax.plane_pairs(basis.shape[0])
    state = srm_jax.streaming_srm(basis, epsilon=0.5, angles=ANGLES).init()
    return {
        "spotlight_resonance": lambda: srm_jax.spotlight_resonance(x, basis, **kw),
        "null_band": lambda: srm_jax.null_band(key, 10, basis, num_resamples=2, **kw),
        "alignment_sweep": lambda: srm_jax.alignment_sweep(x, basis, np.array([0.5]),
                                                           method="arcs"),
        "alignment_test": lambda: srm_jax.alignment_test(key, x, basis, num_resamples=2, **kw),
        "per_class_srm": lambda: srm_jax.per_class_srm(x, basis, labels, num_classes=2, **kw),
        "rank_selectivity": lambda: srm_jax.rank_selectivity(
            key, x, basis, labels, num_classes=2, num_resamples=2, **kw),
        "srm_alignment": lambda: srm_jax.srm_alignment(x, basis, planes=pairs, **kw),
        "srm_metric": lambda: srm_jax.srm_metric(basis, every=1, **kw),
        "streaming_srm": lambda: srm_jax.streaming_srm(basis, **kw),
        "add_batch": lambda: add_batch(state, x, basis=basis, method="arcs"),
        "accumulate_srm": lambda: srm_jax.accumulate_srm([x], basis, **kw),
        "sharded_srm": lambda: srm_jax.sharded_srm(x, basis, **kw),
    }


@pytest.mark.parametrize(
    "name",
    ["spotlight_resonance", "null_band", "alignment_sweep", "alignment_test", "per_class_srm",
     "rank_selectivity", "srm_alignment", "srm_metric", "streaming_srm", "add_batch",
     "accumulate_srm", "sharded_srm"],
)
def test_method_typo_is_rejected_everywhere(rng, name):
    basis = rng.standard_normal((4, N_DIM)).astype(np.float32)
    x = rng.standard_normal((10, N_DIM)).astype(np.float32)
    call = _method_calls(basis, x, rng.integers(0, 2, 10))[name]
    with pytest.raises(ValueError, match="method must be one of"):
        call()


def test_alignment_score_flatness_is_relative():
    """One lit sample at one of 10 angles, mean over 190 planes: the same curve whatever N."""
    reference = np.cos(np.linspace(0, 2 * np.pi, 10))
    scores = []
    for num in (1_000, 10_000):
        curve = np.zeros(10)
        curve[0] = 1.0 / (num * 190)  # one count out of N samples, averaged over 190 planes
        scores.append(float(srm_jax.alignment_score(curve, reference)))
        scores.append(float(srm_jax.alignment_score(curve * 1e6, reference)))
        scores.append(float(srm_jax.alignment_score(curve, reference * 1e-6)))
    curve = np.eye(10)[0]
    want = np.corrcoef(curve, reference)[0, 1]
    np.testing.assert_allclose(scores, want, rtol=1e-5)
    # A flat curve is flat at any scale (float rounding included), and an all-zero curve too.
    for scale in (1e-9, 1.0, 1e9):
        flat = np.float32(scale) * np.full(10, 0.3, np.float32) * np.float32(1 / 3) * 3
        assert np.isnan(srm_jax.alignment_score(flat, reference))
    assert np.isnan(srm_jax.alignment_score(np.zeros(10), reference))


def test_shuffle_labels_moves_no_label_between_valid_and_invalid_rows(rng):
    n = 60
    labels = jnp.asarray(rng.integers(-1, 4, n))
    valid = jnp.asarray(rng.uniform(size=n) > 0.4)
    v = np.asarray(valid)
    for seed in range(5):
        shuffled = np.asarray(shuffle_labels(jax.random.key(seed), labels, valid))
        # Invalid rows (e.g. NaN rows that carry a class) keep their own label ...
        np.testing.assert_array_equal(shuffled[~v], np.asarray(labels)[~v])
        # ... and the valid rows are a permutation of the valid labels.
        np.testing.assert_array_equal(np.sort(shuffled[v]), np.sort(np.asarray(labels)[v]))


def test_spectrum_sum_refuses_different_epsilon_or_planes(rng):
    basis = rng.standard_normal((4, N_DIM)).astype(np.float32)
    x = rng.standard_normal((20, N_DIM)).astype(np.float32)
    a = srm_jax.srm_spectrum(x, basis, epsilon=0.5, order=3)
    b = srm_jax.srm_spectrum(x, basis, epsilon=0.7, order=3)
    c = srm_jax.srm_spectrum(x, basis, epsilon=0.5, order=3, planes=np.array(
        [p for p in reference_pairs(4, "perm") if p[0] > p[1]]))
    with pytest.raises(ValueError, match="epsilon"):
        a + b
    with pytest.raises(ValueError, match="planes"):
        a + c
    total = a + a
    np.testing.assert_allclose(total.coefficients, a.coefficients, rtol=1e-6)


def test_fixed_size_batches_skips_an_empty_first_batch(rng):
    x = rng.standard_normal((6, 3))
    out = list(fixed_size_batches([x[:0], x]))
    assert len(out) == 1
    piece, mask = out[0]
    np.testing.assert_array_equal(piece, x)
    assert mask.all()
    basis = rng.standard_normal((4, 3)).astype(np.float32)
    result = srm_jax.accumulate_srm([x[:0], x, x[:2]], basis, epsilon=0.3, angles=ANGLES)
    assert int(result.num_samples) == 8


def test_distinct_planes_skips_antipodal_pairs(rng):
    n = 4
    basis = np.asarray(srm_jax.orthoplex_basis(jax.random.key(int(rng.integers(1000))), n))
    pairs = reference_pairs(2 * n, "comb")  # includes the n antipodal pairs (k, k + n)
    with np.errstate(all="raise"):
        kept = srm_jax.distinct_planes(basis, pairs)
    assert len(kept) == n * (n - 1) // 2
    assert all(pairs[k, 1] - pairs[k, 0] != n for k in kept)
    order = rng.permutation(len(pairs))
    kept = srm_jax.distinct_planes(basis, pairs, order)
    assert len(kept) == n * (n - 1) // 2


def test_map_batch_size_means_the_same_everywhere_and_batch_size_still_works(rng):
    """``map_batch_size``: 1 one at a time, k together, None all at once; same numbers."""
    basis = rng.standard_normal((4, N_DIM)).astype(np.float32)
    x = rng.standard_normal((30, N_DIM)).astype(np.float32)
    key = jax.random.key(int(rng.integers(1000)))
    kw = dict(epsilon=0.5, angles=ANGLES, method="direct", num_resamples=4)
    bands = [srm_jax.null_band(key, 20, basis, map_batch_size=k, **kw) for k in (1, 3, None)]
    for band in bands[1:]:
        np.testing.assert_allclose(band.mean, bands[0].mean, rtol=1e-6)
    with pytest.warns(DeprecationWarning, match="map_batch_size"):
        old = srm_jax.null_band(key, 20, basis, batch_size=None, **kw)  # None: one at a time
    np.testing.assert_allclose(old.mean, bands[0].mean, rtol=1e-6)
    with pytest.raises(TypeError, match="both"):
        srm_jax.null_band(key, 20, basis, batch_size=2, map_batch_size=3, **kw)

    eps = np.array([0.3, 0.6, 0.8])
    sweep = srm_jax.alignment_sweep(x, basis, eps, angles=ANGLES, method="direct")
    one = srm_jax.alignment_sweep(x, basis, eps, angles=ANGLES, method="direct",
                                  map_batch_size=1)
    np.testing.assert_allclose(one.mean_curves, sweep.mean_curves, rtol=1e-6)
    with pytest.warns(DeprecationWarning):
        old = srm_jax.alignment_sweep(x, basis, eps, angles=ANGLES, method="direct",
                                      batch_size=2)
    np.testing.assert_allclose(old.mean_curves, sweep.mean_curves, rtol=1e-6)

    test_kw = dict(epsilon=0.5, angles=ANGLES, method="direct", num_resamples=5)
    new = srm_jax.alignment_test(key, x, basis, map_batch_size=None, **test_kw)
    with pytest.warns(DeprecationWarning):
        old = srm_jax.alignment_test(key, x, basis, batch_size=None, **test_kw)
    np.testing.assert_allclose(old.null_scores, new.null_scores, rtol=1e-5, atol=1e-6)
    labels = rng.integers(0, 2, 30)
    sel_kw = dict(num_classes=2, epsilon=0.5, angles=ANGLES, method="direct", num_resamples=4)
    new = srm_jax.rank_selectivity(key, x, basis, labels, map_batch_size=2, **sel_kw)
    with pytest.warns(DeprecationWarning):
        old = srm_jax.rank_selectivity(key, x, basis, labels, batch_size=None, **sel_kw)
    np.testing.assert_allclose(old.plane_null_max, new.plane_null_max, rtol=1e-6)


def test_pairs_renamed_where_it_meant_something_else(rng):
    """``planes`` are SRM planes; ``correction_pairs`` the generalised tanh's pair list."""
    basis = np.asarray(srm_jax.random_basis(jax.random.key(0), 8, N_DIM))
    x = rng.standard_normal((5, N_DIM)).astype(np.float32)
    pairs = srm_jax.positive_cosine_pairs(basis)
    new = srm_jax.generalised_tanh(x, basis, correction_pairs=pairs)
    with pytest.warns(DeprecationWarning, match="correction_pairs"):
        old = srm_jax.generalised_tanh(x, basis, pairs=pairs)
    np.testing.assert_array_equal(old, new)
    with pytest.warns(DeprecationWarning):
        module = srm_jax.GeneralisedTanh(basis, pairs=pairs)
    np.testing.assert_array_equal(module.correction_pairs[...], pairs)
    with pytest.warns(DeprecationWarning):
        old = srm_jax.generalised_tanh_correction(np.ones(3), basis, pairs=pairs)
    np.testing.assert_array_equal(
        old, srm_jax.generalised_tanh_correction(np.ones(3), basis, correction_pairs=pairs)
    )
    orthoplex = np.asarray(srm_jax.orthoplex_basis(jax.random.key(1), N_DIM))
    comb = reference_pairs(2 * N_DIM, "comb")
    new = srm_jax.distinct_planes(orthoplex, planes=comb)
    with pytest.warns(DeprecationWarning):
        old = srm_jax.distinct_planes(orthoplex, pairs=comb)
    np.testing.assert_array_equal(old, new)
    np.testing.assert_array_equal(srm_jax.distinct_planes(orthoplex, comb), new)


def test_internals_are_not_exported():
    for name in ("sharded_counts", "add_batch", "CorrectionPairs"):
        assert not hasattr(srm_jax, name), name
    from srm_jax.distributed import sharded_counts  # noqa: F401  (still in their modules)
    from srm_jax.nn import CorrectionPairs  # noqa: F401
    from srm_jax.streaming import add_batch as _  # noqa: F401


def test_spectral_alignment_score_flatness_is_relative(rng):
    """The grid-free score, like alignment_score: a tiny curve is a curve, at any scale."""
    reference = np.zeros(5, complex)
    reference[0], reference[1] = 0.3, 0.1 + 0.05j
    curve = rng.standard_normal(5) + 1j * rng.standard_normal(5)
    curve[0] = curve[0].real
    want = float(srm_jax.spectral_alignment_score(curve, reference))
    assert np.isfinite(want)
    for scale in (1e-7, 1e6):  # 1e-7: Σ|c_k|² ~ 1e-14, "flat" for an absolute test
        got = float(srm_jax.spectral_alignment_score(scale * curve, reference))
        np.testing.assert_allclose(got, want, rtol=1e-5)
    flat = np.zeros(5, complex)
    flat[0] = 1e-9
    assert np.isnan(srm_jax.spectral_alignment_score(flat, reference))
