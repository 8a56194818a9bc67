import jax
import jax.numpy as jnp
import numpy as np

import srm_jax
from srm_jax.per_class import shuffle_labels
from tests.conftest import reference_count_bounds, reference_dots, reference_pairs


def test_per_class_srm_matches_direct_numpy_per_class(rng):
    n, m, num, classes = 5, 4, 90, 3
    basis = rng.standard_normal((m, n))
    basis[2] += 0.9 * basis[1]  # non-orthogonal
    data = rng.standard_normal((num, n))
    labels = rng.integers(0, classes, num)
    labels[:4] = -1  # unlabelled: left out
    data[7] = np.inf  # left out
    angles = np.linspace(0, 2 * np.pi, 30)
    eps = 0.55
    result = srm_jax.per_class_srm(data, basis, labels, num_classes=classes, epsilon=eps,
                                   angles=angles)
    assert result.counts.shape == (classes, 6, 30) and result.signed
    pairs = reference_pairs(m, "comb")
    dots = reference_dots(data, basis, pairs, angles)
    for c in range(classes):
        members = dots[labels == c]
        for sign, got in ((1, result.counts[c]), (-1, result.negative_counts[c])):
            low, high, total = reference_count_bounds(members, eps, 1e-5, sign)
            got = np.asarray(got)
            assert np.all((low <= got) & (got <= high))
        assert int(result.num_samples[c]) == total
    values = np.asarray(result.values)
    finite = np.all(np.isfinite(data), axis=1)
    want = np.stack([
        np.mean(dots[(labels == c) & finite] >= eps, 0)
        - np.mean(dots[(labels == c) & finite] <= -eps, 0)
        for c in range(classes)
    ])
    np.testing.assert_allclose(values, want, atol=1.01 / 20)


def test_vector_firing_and_selectivity_match_numpy(rng):
    n, m, num, classes = 6, 7, 120, 4
    basis = rng.standard_normal((m, n))
    data = rng.standard_normal((num, n))
    labels = rng.integers(0, classes, num)
    eps = 0.4
    values, sizes = srm_jax.vector_firing(data, basis, labels, num_classes=classes, epsilon=eps)
    unit_b = basis / np.linalg.norm(basis, axis=1, keepdims=True)
    cos = (data / np.linalg.norm(data, axis=1, keepdims=True)) @ unit_b.T
    want = np.stack([
        np.mean(cos[labels == c] >= eps, 0) - np.mean(cos[labels == c] <= -eps, 0)
        for c in range(classes)
    ])
    np.testing.assert_allclose(np.asarray(values), want, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(sizes), np.bincount(labels, minlength=classes))
    # Selectivity: class-weighted RMS deviation from the pooled curve.
    w = np.bincount(labels, minlength=classes) / num
    pooled = w @ want
    expected = np.sqrt(w @ (want - pooled) ** 2)
    got = np.asarray(srm_jax.class_selectivity(values, sizes))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    # With an angle axis the squared deviation is averaged over angles.
    curves = rng.uniform(-1, 1, size=(classes, 3, 5))
    pooled = np.einsum("c,cpt->pt", w, curves)
    expected = np.sqrt(np.mean(np.einsum("c,cpt->pt", w, (curves - pooled) ** 2), axis=-1))
    got = np.asarray(srm_jax.class_selectivity(curves, np.bincount(labels, minlength=classes)))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # A perfect grandmother neuron for one class of weight w has S = sqrt(w (1 - w)).
    one_hot = np.zeros((classes, 1))
    one_hot[2] = 1.0
    np.testing.assert_allclose(
        np.asarray(srm_jax.class_selectivity(one_hot, np.bincount(labels, minlength=classes))),
        [np.sqrt(w[2] * (1 - w[2]))], rtol=1e-5,
    )


def test_shuffle_labels_permutes_only_valid_samples(rng):
    labels = jnp.asarray(rng.integers(0, 3, 50))
    valid = jnp.asarray(rng.uniform(size=50) > 0.3)
    shuffled = np.asarray(shuffle_labels(jax.random.key(0), labels, valid))
    v = np.asarray(valid)
    np.testing.assert_array_equal(np.sort(shuffled[v]), np.sort(np.asarray(labels)[v]))
    assert not np.array_equal(shuffled[v], np.asarray(labels)[v])


N, DIM, M, CLASSES = 240, 6, 9, 4
ANGLES = np.linspace(0, 2 * np.pi, 24)


def _finder(key, data, basis, labels):
    return srm_jax.rank_selectivity(key, data, basis, labels, num_classes=CLASSES, epsilon=0.75,
                                    angles=ANGLES, num_resamples=99, method="direct")


def test_finder_ranks_planted_grandmother_neuron_first(rng):
    basis = rng.standard_normal((M, DIM))
    basis[3] += 0.6 * basis[4]  # non-orthogonal
    unit = basis / np.linalg.norm(basis, axis=1, keepdims=True)
    labels = rng.integers(0, CLASSES, N)
    data = rng.standard_normal((N, DIM))
    planted = 5
    # Class 0 fires +b_5, class 1 fires -b_5; the other classes are isotropic.
    for c, sign in ((0, 1.0), (1, -1.0)):
        rows = labels == c
        data[rows] = sign * unit[planted] + 0.2 * rng.standard_normal((rows.sum(), DIM))
    result = _finder(jax.random.key(1), data, basis, labels)
    assert int(result.vector_order[0]) == planted
    assert planted in np.asarray(result.top_planes[0])
    # Every plane through the planted neuron outranks every other plane.
    through = np.any(np.asarray(result.per_class.planes) == planted, axis=1)
    ranked = through[np.asarray(result.plane_order)]
    assert np.all(ranked[: through.sum()])
    assert float(result.vector_p_adjusted[planted]) <= 0.01 + 1e-6
    assert float(np.min(result.plane_p_adjusted)) <= 0.01 + 1e-6
    # The per-class signed firing of the planted vector has the planted signs.
    firing = np.asarray(result.vector_values)[:, planted]
    assert firing[0] > 0.8 and firing[1] < -0.8


def test_finder_finds_nothing_in_isotropic_data(rng):
    basis = rng.standard_normal((M, DIM))
    data = rng.standard_normal((N, DIM))
    labels = rng.integers(0, CLASSES, N)
    result = _finder(jax.random.key(2), data, basis, labels)
    # Nothing ranks out of the null band (family-wise), and per-item p-values are spread.
    assert float(np.min(result.plane_p_adjusted)) > 0.01
    assert float(np.min(result.vector_p_adjusted)) > 0.01
    assert 0.25 < float(np.mean(result.plane_p_values)) < 0.75
    scores = np.asarray(result.plane_scores)
    assert np.max(scores) <= np.quantile(np.asarray(result.plane_null_max), 0.99)


def test_distinct_planes_merges_orientations_of_one_plane(rng):
    n = 4
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    orthoplex = np.concatenate([q, -q])  # rows ±q_k: m = 2n
    pairs = np.array([(a, b) for a in range(2 * n) for b in range(a + 1, 2 * n) if b != a + n])
    kept = srm_jax.distinct_planes(orthoplex, pairs)
    assert len(kept) == n * (n - 1) // 2  # one per coordinate plane of q
    spans = {frozenset({int(pairs[k, 0]) % n, int(pairs[k, 1]) % n}) for k in kept}
    assert len(spans) == len(kept)
    # The order is respected: the first index of `order` is always kept.
    order = rng.permutation(len(pairs))
    assert srm_jax.distinct_planes(orthoplex, pairs, order)[0] == order[0]
    # A generic basis has no repeated spans.
    generic = rng.standard_normal((5, 4))
    assert len(srm_jax.distinct_planes(generic, reference_pairs(5, "comb"))) == 10
