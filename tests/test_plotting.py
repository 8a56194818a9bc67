import matplotlib

matplotlib.use("Agg")

import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import srm_jax  # noqa: E402

# The figures are drawn from hand-built pytrees (no SRM computation), so these tests check the
# drawing only; the numbers are tested in the other test files.
P, T, C, M = 6, 25, 3, 4
ANGLES = np.linspace(0, 2 * np.pi, T)
PAIRS = np.array([(a, b) for a in range(M) for b in range(a + 1, M)], np.int32)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _result(rng, classes=None, signed=False):
    shape = (P, T) if classes is None else (classes, P, T)
    counts = rng.integers(0, 50, shape)
    return srm_jax.SRMResult(
        counts=jnp.asarray(counts, jnp.int32),
        negative_counts=jnp.asarray(rng.integers(0, 50, shape), jnp.int32) if signed else None,
        num_samples=jnp.full(() if classes is None else (classes,), 100, jnp.int32),
        angles=jnp.asarray(ANGLES, jnp.float32),
        planes=jnp.asarray(PAIRS),
        epsilon=jnp.asarray(0.75, jnp.float32),
        signed=signed,
    )


def _null(rng):
    q = np.sort(rng.uniform(0, 0.5, (3, P, T)), axis=0)
    cq = np.sort(rng.uniform(0, 0.5, (3, T)), axis=0)
    return srm_jax.NullBand(
        mean=q[1], std=q[2] - q[0], quantiles=q, curve_mean=cq[1], curve_std=cq[2] - cq[0],
        curve_quantiles=cq, curve_sup_quantiles=np.array([0.01, 0.02, 0.03]),
        levels=np.array([0.025, 0.5, 0.975]), expectation=np.asarray(0.2), angles=ANGLES,
        planes=PAIRS, epsilon=np.asarray(0.75), num_samples=100, num_draws=10,
    )


def test_plot_srm_draws_planes_mean_band_and_expectation(rng):
    from matplotlib.collections import LineCollection

    result = _result(rng)
    ax = srm_jax.plot_srm(result, null=_null(rng))
    # The mean curve + the expectation line; the P plane curves are one LineCollection.
    assert len(ax.lines) == 2
    planes = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(planes) == 1
    drawn = np.stack([path.vertices for path in planes[0].get_paths()])
    np.testing.assert_allclose(drawn[..., 1], np.asarray(result.values), rtol=1e-6)
    np.testing.assert_allclose(drawn[..., 0], np.broadcast_to(ANGLES, (P, T)), rtol=1e-6)
    lo, hi = ax.get_ylim()  # the axes fit the plane curves
    assert lo <= float(np.min(result.values)) and hi >= float(np.max(result.values))
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(labels) == 4  # two bands, expectation, mean
    assert any("expectation" in s for s in labels)
    assert len(ax.collections) == 3  # the two null bands and the planes
    expectation_line = [ln for ln in ax.lines if "expectation" in ln.get_label()][0]
    np.testing.assert_allclose(expectation_line.get_ydata(), 0.2)
    # Without a null band the expectation comes from n (Eqn. 18).
    ax = srm_jax.plot_srm(_result(rng), n=10, show_planes=False)
    line = [ln for ln in ax.lines if "expectation" in ln.get_label()][0]
    np.testing.assert_allclose(line.get_ydata(), float(srm_jax.isotropic_expectation(10, 0.75)),
                               rtol=1e-6)
    assert len(ax.lines) == 2


def test_plot_per_class_one_line_per_class_with_legend(rng):
    result = _result(rng, classes=C, signed=True)
    ax = srm_jax.plot_per_class(result, (1, 3), class_names=["zero", "one", "two"])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["zero", "one", "two", "all"]
    # Lines: C classes, the pooled curve and the zero line.
    assert len(ax.lines) == C + 2
    p = int(np.nonzero(np.all(PAIRS == [1, 3], axis=1))[0][0])
    np.testing.assert_allclose(ax.lines[1].get_ydata(), np.asarray(result.values)[1, p])
    assert "(1, 3)" in ax.get_title()
    with pytest.raises(ValueError):
        srm_jax.plot_per_class(result, (3, 1))


def test_plot_grandmother_has_top_panels_and_ranking(rng):
    scores = rng.uniform(size=P)
    order = np.argsort(-scores)
    selectivity = srm_jax.Selectivity(
        per_class=_result(rng, classes=C, signed=True), plane_scores=scores,
        plane_z=scores, plane_p_values=scores, plane_p_adjusted=scores,
        plane_null_max=rng.uniform(size=20), plane_order=order,
        vector_values=rng.uniform(size=(C, M)), vector_scores=rng.uniform(size=M),
        vector_z=np.zeros(M), vector_p_values=np.ones(M), vector_p_adjusted=np.ones(M),
        vector_null_max=np.ones(20), vector_order=np.arange(M), class_counts=np.ones(C),
        num_shuffles=20,
    )
    fig = srm_jax.plot_grandmother(selectivity, top=2)
    assert len(fig.axes) == 3
    assert fig.axes[0].get_legend() is not None and fig.axes[1].get_legend() is None
    a, b = PAIRS[order[0]]
    assert f"({a}, {b})" in fig.axes[0].get_title()
    np.testing.assert_allclose(fig.axes[-1].lines[0].get_ydata(), scores[order])
    # Explicit planes (e.g. distinct spans) keep their rank in the title.
    fig = srm_jax.plot_grandmother(selectivity, top=2, plane_indices=order[[2, 4]])
    assert fig.axes[0].get_title().startswith("#3:") and fig.axes[1].get_title().startswith("#5:")


def test_plot_projection_density_image_colorbar_and_basis(rng):
    bins = 10
    density = srm_jax.ProjectionDensity(
        counts=rng.integers(0, 6, (2, bins, bins)),
        expected=rng.uniform(0.5, 10, (bins, bins)),
        edges=np.linspace(-1, 1, bins + 1),
        num_samples=np.asarray(100),
        planes=PAIRS[:2],
        epsilon=np.asarray(0.3),
        cosines=np.array([0.2, -0.4]),
    )
    ax = srm_jax.plot_projection_density(density, plane=1)
    assert len(ax.figure.axes) == 2  # image + colour bar
    image = np.ma.filled(ax.get_images()[0].get_array(), np.nan)
    counts, expected = density.counts[1], density.expected
    shown = (expected >= 1) & (counts > 0)
    np.testing.assert_allclose(image[shown], np.log2(counts[shown] / expected[shown]), rtol=1e-6)
    assert np.all(np.isnan(image[expected < 1]))
    # Empty bins take the lowest colour.
    empty = (expected >= 1) & (counts == 0)
    np.testing.assert_allclose(image[empty], ax.get_images()[0].norm.vmin)
    # Unit circle, eps circle, ±b_alpha, ±b_beta.
    assert len(ax.lines) == 6
    assert "(0, 2)" in ax.get_title()


def test_plot_alignment_sweep_and_test(rng):
    sweep = srm_jax.EpsilonSweep(
        epsilons=np.linspace(0.1, 0.9, 5), scores=np.array([0.1, 0.5, np.nan, 0.9, 0.3]),
        mean_curves=np.zeros((5, T)), self_mean_curves=np.zeros((5, T)), angles=ANGLES,
        planes=PAIRS,
    )
    ax = srm_jax.plot_alignment_sweep(sweep)
    assert len(ax.get_legend().get_texts()) == 2
    assert "0.7" in ax.get_legend().get_texts()[1].get_text()
    # The drawn curve is the scores over ε (a NaN score is a gap, not a zero).
    curve = ax.lines[0]
    np.testing.assert_allclose(curve.get_xdata(), sweep.epsilons)
    np.testing.assert_allclose(np.asarray(curve.get_ydata(), float), sweep.scores)
    null = rng.uniform(-1, 1, 50)
    test = srm_jax.AlignmentTest(score=np.asarray(0.8), null_scores=null,
                                 p_value=np.asarray(0.02))
    ax = srm_jax.plot_alignment_test(test)
    assert len(ax.get_legend().get_texts()) == 2
    # The histogram holds every null score, each in the bin that contains it.
    heights = np.array([p.get_height() for p in ax.patches])
    edges = np.array([p.get_x() for p in ax.patches] + [ax.patches[-1].get_x()
                                                         + ax.patches[-1].get_width()])
    assert heights.sum() == pytest.approx(null.size)
    np.testing.assert_array_equal(heights, np.histogram(null, bins=edges)[0])
    assert "0.02" in " ".join(t.get_text() for t in ax.get_legend().get_texts())
    # A wide layer's rotated copies may light nothing (every null score 0) against a score of
    # 1e-5: the axis spans the two, not NumPy's ±0.5 around equal values.
    flat = srm_jax.AlignmentTest(score=np.asarray(1e-5), null_scores=np.zeros(99),
                                 p_value=np.asarray(0.01), statistic="projection")
    ax = srm_jax.plot_alignment_test(flat)
    lo, hi = ax.get_xlim()
    assert lo < 0 < 1e-5 < hi and hi - lo < 1e-4
    assert sum(p.get_height() for p in ax.patches) == 99
    assert max(p.get_height() for p in ax.patches) == 99  # every null score in one bin, at 0
