"""Matplotlib figures for SRM analysis: null bands, per-class SRM, projections (host-side only).

Every function takes the pytrees of :mod:`srm_jax.significance`, :mod:`srm_jax.per_class`,
:mod:`srm_jax.projection` and :mod:`srm_jax.spectrum`, converts them to NumPy, and draws on a
given ``ax`` (or a new figure). Matplotlib is imported lazily, so ``import srm_jax`` does not
need it. Nothing here is differentiable or jit-able; it is the end of the pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from srm_jax.significance import isotropic_expectation

_PI_TICKS = (
    [0, np.pi / 2, np.pi, 3 * np.pi / 2, 2 * np.pi],
    ["0", r"$\pi/2$", r"$\pi$", r"$3\pi/2$", r"$2\pi$"],
)


def _axes(ax, **subplot_kwargs):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(**subplot_kwargs)
    return ax


def _angle_axis(ax, angles):
    lo, hi = float(np.min(angles)), float(np.max(angles))
    if lo >= -1e-6 and hi <= 2 * np.pi + 1e-6:
        ax.set_xticks(*_PI_TICKS)
    ax.set_xlabel(r"rotation angle $\theta$")


def _plane_index(result, plane) -> int:
    if np.ndim(plane) == 0:
        return int(plane)
    pairs = np.asarray(result.planes)
    hits = np.nonzero(np.all(pairs == np.asarray(plane)[None, :], axis=1))[0]
    if hits.size == 0:
        raise ValueError(f"plane {tuple(np.asarray(plane))} is not among the measured planes.")
    return int(hits[0])


def _plane_curves(ax, angles: np.ndarray, values: np.ndarray, color: str) -> None:
    """Every plane's curve, thin: one :class:`matplotlib.collections.LineCollection` (a thousand
    ``Line2D`` cost seconds to draw, and ``legend(loc="best")`` tests every one of them)."""
    from matplotlib.collections import LineCollection

    segments = np.stack([np.broadcast_to(angles, values.shape), values], axis=-1)
    ax.add_collection(LineCollection(segments, colors=color, linewidths=0.6,
                                     alpha=max(0.15, min(0.6, 8.0 / len(values)))))
    ax.update_datalim(segments.reshape(-1, 2))
    ax.autoscale_view()


def plot_srm(
    result,
    *,
    null=None,
    n: int | None = None,
    ax=None,
    show_planes: bool = True,
    title: str | None = None,
    color: str = "C0",
    curves=None,
):
    """SRM ensemble plot: every plane's curve, the mean curve, the isotropic null band and the
    isotropic expectation (paper Fig. 1 style, math §6).

    Args:
      result: an :class:`srm_jax.SRMResult` (``(P, T)`` counts), or an
        :class:`srm_jax.SRMSummary` (its mean curve; the plane curves drawn are ``curves``).
      null: an optional :class:`srm_jax.NullBand` of the same planes and angles; draws the band
        of one plane's value (lighter, ``levels[0]``–``levels[-1]`` averaged over planes, whose
        marginals are identical; absent from a band of the mean curve only) and the band of the
        mean curve (darker).
      n: dimension, for the isotropic expectation when no ``null`` is given (signed SRM: 0).
      ax: axes to draw on; default a new figure.
      show_planes: draw each plane's curve (thin).
      title: axes title.
      color: colour of the plane curves.
      curves: an :class:`srm_jax.SRMResult` whose plane curves are drawn (default ``result``
        when it holds counts; for a summary, for instance the top planes' exact curves).

    Returns:
      The axes.
    """
    ax = _axes(ax, figsize=(5, 3.5))
    angles = np.asarray(result.angles)
    curves = curves if curves is not None else (result if hasattr(result, "values") else None)
    if show_planes and curves is not None:
        _plane_curves(ax, angles, np.asarray(curves.values).reshape(-1, angles.shape[0]), color)
    if null is not None:
        levels = np.asarray(null.levels)
        if null.quantiles is not None:
            q = np.asarray(null.quantiles)
            label = f"isotropic null, one plane ({100 * levels[0]:g}–{100 * levels[-1]:g}%)"
            ax.fill_between(np.asarray(null.angles), q[0].mean(0), q[-1].mean(0), color="0.6",
                            alpha=0.25, linewidth=0, label=label)
        cq = np.asarray(null.curve_quantiles)
        ax.fill_between(np.asarray(null.angles), cq[0], cq[-1], color="0.3", alpha=0.35,
                        linewidth=0, label="isotropic null, mean curve")
        expectation = float(null.expectation)
    elif result.signed:
        expectation = 0.0
    elif n is not None:
        expectation = float(isotropic_expectation(int(n), float(result.epsilon)))
    else:
        expectation = None
    if expectation is not None:
        ax.axhline(expectation, color="k", linestyle=":", linewidth=1.0,
                   label=f"isotropic expectation ({expectation:.3g})")
    ax.plot(angles, np.asarray(result.mean_curve), color="k", linestyle="--", linewidth=1.5,
            label="mean over planes")
    _angle_axis(ax, angles)
    ax.set_ylabel("signed SRM" if result.signed else "SRM")
    ax.set_title(title or f"SRM, $\\epsilon$ = {float(result.epsilon):g}")
    ax.legend(fontsize="small", loc="best")
    return ax


def plot_per_class(
    result,
    plane,
    *,
    class_names: Sequence[str] | None = None,
    ax=None,
    show_pooled: bool = True,
    title: str | None = None,
    cmap: str = "tab10",
):
    """One plane's (signed) SRM per class, coloured by class, with a legend (App. B.2, Figs. 3–4).

    Args:
      result: per-class :class:`srm_jax.SRMResult` (counts ``(C, P, T)``) from
        :func:`srm_jax.per_class_srm` or ``Selectivity.per_class``.
      plane: index into the planes, or an ``(α, β)`` pair.
      class_names: legend labels (default ``"0"``, ``"1"``, …).
      show_pooled: also draw the curve of all classes together (black dashed).
      title: default ``"plane (α, β)"``.

    Returns:
      The axes.
    """
    import matplotlib.pyplot as plt

    ax = _axes(ax, figsize=(5, 3.5))
    p = _plane_index(result, plane)
    angles = np.asarray(result.angles)
    values = np.asarray(result.values)[:, p]  # (C, T)
    sizes = np.asarray(result.num_samples).astype(np.float64)
    num_classes = values.shape[0]
    names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
    colours = plt.get_cmap(cmap)
    for c in range(num_classes):
        ax.plot(angles, values[c], color=colours(c % colours.N), linewidth=1.2, label=names[c])
    if show_pooled and sizes.sum() > 0:
        pooled = np.nansum(values * sizes[:, None], axis=0) / sizes.sum()
        ax.plot(angles, pooled, color="k", linestyle="--", linewidth=1.0, label="all")
    ax.axhline(0.0, color="0.5", linewidth=0.5)
    _angle_axis(ax, angles)
    ax.set_ylabel("signed SRM" if result.signed else "SRM")
    alpha, beta = np.asarray(result.planes)[p]
    ax.set_title(title or f"plane ({int(alpha)}, {int(beta)})")
    ax.legend(fontsize="x-small", ncol=2, loc="best")
    return ax


def plot_grandmother(
    selectivity,
    *,
    top: int = 3,
    class_names: Sequence[str] | None = None,
    level: float = 0.95,
    plane_indices: Sequence[int] | None = None,
    figsize=None,
):
    """The grandmother-neuron figure: per-class signed SRM of the ``top`` most selective planes,
    and the ranked plane scores against the shuffled-label null (App. B.2, Figs. 3–4).

    Args:
      selectivity: a :class:`srm_jax.Selectivity` from :func:`srm_jax.rank_selectivity`.
      top: number of planes shown.
      class_names: legend labels.
      level: the null-band line is the ``level`` quantile of the largest shuffled-label score
        (scores above it are selective at family-wise level ``1 − level``).
      plane_indices: the planes to show, in order (default the ranking,
        ``selectivity.plane_order``; e.g. :func:`srm_jax.distinct_planes` of it).

    Returns:
      The figure (``top + 1`` axes).
    """
    import matplotlib.pyplot as plt

    order = np.asarray(selectivity.plane_order)
    shown = order if plane_indices is None else np.asarray(plane_indices)
    rank_of = {int(p): r for r, p in enumerate(order)}
    top = int(min(top, shown.shape[0]))
    fig, axes = plt.subplots(1, top + 1, figsize=figsize or (4.2 * (top + 1), 3.6))
    axes = np.atleast_1d(axes)
    scores = np.asarray(selectivity.plane_scores)
    p_adj = np.asarray(selectivity.plane_p_adjusted)
    for i in range(top):
        p = int(shown[i])
        alpha, beta = np.asarray(selectivity.per_class.planes)[p]
        plot_per_class(
            selectivity.per_class, p, class_names=class_names, ax=axes[i],
            title=f"#{rank_of[p] + 1}: plane ({int(alpha)}, {int(beta)})\n"
            f"S = {scores[p]:.3f}, p_FWER = {p_adj[p]:.3g}",
        )
        if i > 0:
            axes[i].get_legend().remove()
    ax = axes[-1]
    ranked = scores[order]
    ax.plot(np.arange(1, ranked.size + 1), ranked, "o", markersize=3, label="planes (ranked)")
    threshold = float(np.quantile(np.asarray(selectivity.plane_null_max), level))
    ax.axhline(threshold, color="k", linestyle=":",
               label=f"shuffled labels, max ({100 * level:g}%)")
    ax.set_xscale("log")
    ax.set_xlabel("rank")
    ax.set_ylabel("class selectivity S")
    ax.set_title("plane ranking vs null")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def plot_projection_density(
    density,
    plane: int = 0,
    *,
    ax=None,
    log: bool = True,
    vmax: float | None = None,
    show_basis: bool = True,
    min_expected: float = 1.0,
    title: str | None = None,
):
    """Density of the samples close to a plane relative to isotropic data (math §3, §5).

    Draws ``log2(counts / expected)`` (or the plain ratio) of a :class:`srm_jax.ProjectionDensity`
    with a diverging colour map centred on "as isotropic", a colour bar, the unit circle, the
    ``r = ε`` circle and the directions ``±b̂_α`` and ``±b̂_β``. Bins where isotropic data
    would put fewer than ``min_expected`` samples are blank (the ratio is noise there); empty
    bins elsewhere take the lowest colour.

    Returns:
      The axes (the colour bar adds a second axes to the figure).
    """
    ax = _axes(ax, figsize=(4.6, 4))
    counts = np.asarray(density.counts)[plane].astype(np.float64)
    expected = np.asarray(density.expected).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(expected >= min_expected, counts / expected, np.nan)
        image = np.log2(ratio) if log else ratio
    finite = image[np.isfinite(image)]
    if log:
        limit = vmax or (float(np.max(np.abs(finite))) if finite.size else 1.0)
        vmin, vmax_ = -limit, limit
    else:
        vmin, vmax_ = 0.0, vmax or (float(np.max(finite)) if finite.size else 2.0)
    # An empty bin where isotropic data would put samples is "as depleted as shown": saturate it.
    image = np.where(np.isneginf(image), vmin, image)
    edges = np.asarray(density.edges)
    mesh = ax.imshow(image, origin="lower", extent=(edges[0], edges[-1], edges[0], edges[-1]),
                     cmap="RdBu_r", vmin=vmin, vmax=vmax_, interpolation="nearest")
    ax.figure.colorbar(mesh, ax=ax, label="log2(density / isotropic)" if log else
                       "density / isotropic")
    t = np.linspace(0, 2 * np.pi, 256)
    ax.plot(np.cos(t), np.sin(t), color="k", linewidth=0.6)
    eps = float(density.epsilon)
    if eps > 0:
        ax.plot(eps * np.cos(t), eps * np.sin(t), color="k", linewidth=0.6, linestyle=":")
    alpha, beta = np.asarray(density.planes)[plane]
    if show_basis:
        c = float(np.asarray(density.cosines)[plane])
        s = float(np.sqrt(max(0.0, 1 - c * c)))
        for (vx, vy), name in (((1.0, 0.0), rf"$b_{{{int(alpha)}}}$"),
                               ((c, s), rf"$b_{{{int(beta)}}}$")):
            for sign in (1, -1):
                ax.plot([0, sign * vx], [0, sign * vy], color="k", linewidth=0.8,
                        linestyle="-" if sign > 0 else "--")
            ax.annotate(name, (0.88 * vx, 0.88 * vy), ha="center", va="center",
                        bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.7))
    ax.set_xlabel(r"$\hat d\cdot\hat b_\alpha$")
    ax.set_ylabel(r"$\hat d\cdot\hat u$")
    ax.set_aspect("equal")
    ax.set_title(title or f"plane ({int(alpha)}, {int(beta)}), r ≥ {eps:g}")
    return ax


def plot_alignment_sweep(sweep, *, ax=None, title: str | None = None):
    """Alignment score against ε (:func:`srm_jax.alignment_sweep`), best ε marked."""
    ax = _axes(ax, figsize=(4.5, 3.2))
    eps = np.asarray(sweep.epsilons)
    scores = np.asarray(sweep.scores)
    ax.plot(eps, scores, "o-", markersize=3, label="alignment score")
    if np.any(np.isfinite(scores)):
        best = float(np.asarray(sweep.best_epsilon))
        ax.axvline(best, color="k", linestyle=":", label=rf"best $\epsilon$ = {best:.3g}")
    ax.axhline(0.0, color="0.5", linewidth=0.5)
    ax.set_xlabel(r"$\epsilon$")
    ax.set_ylabel("corr(mean SRM, mean self-SRM)")
    ax.set_title(title or "alignment over the ε sweep")
    ax.legend(fontsize="small")
    return ax


def _score_span(null: np.ndarray, score: float) -> tuple[float, float] | None:
    """The histogram's range: the null scores and the score, 5 % apart at each end. NumPy's
    default for equal values is ``±0.5`` around them, which hides a score of 1e-5 (a wide
    layer's rotated copies often light nothing: every null score is 0)."""
    values = np.append(null, score)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    lo, hi = float(values.min()), float(values.max())
    pad = 0.05 * (hi - lo) if hi > lo else 0.05 * max(abs(hi), 1e-12)
    return lo - pad, hi + pad


def plot_alignment_test(test, *, ax=None, bins: int = 30, title: str | None = None):
    """Histogram of the rotated-basis scores with the real basis' score (:func:`alignment_test`)."""
    ax = _axes(ax, figsize=(4.5, 3.2))
    null = np.asarray(test.null_scores, np.float64)
    # The correlation lies in [-1, 1]; the projection statistic is in SRM units, often ~1e-5.
    span = (-1, 1) if test.statistic == "correlation" else _score_span(null, float(test.score))
    ax.hist(null, bins=bins, range=span, color="0.6",
            label=f"random rotations (K = {null.shape[0]})")
    ax.axvline(float(test.score), color="C3", linewidth=2,
               label=f"privileged basis (p = {float(test.p_value):.3g})")
    ax.set_xlabel("alignment score" if test.statistic == "correlation"
                  else f"{test.statistic} statistic")
    ax.set_ylabel("count")
    ax.set_title(title or f"rotation test ({test.alternative})")
    ax.legend(fontsize="small")
    return ax


def plot_neuron_map(image, *, neurons=None, labelled=(), ax=None, title: str | None = None,
                    fontsize="x-small"):
    """The neuron × neuron map of per-plane resonance of a ``±`` basis
    (:func:`srm_jax.neurons.neuron_map`) on a log colour scale; unmeasured cells blank.

    Args:
      image: ``(K, K)`` per-neuron-pair values (NaN where no plane was measured), or a
        sub-map of it (the rows and columns of some neurons, in their order).
      neurons: ``(K,)`` neuron labels of the rows (default ``0 … K−1``).
      labelled: slots to mark on both axes (the top neurons).
      fontsize: size of the neuron labels (small for a map labelled on every row).
    """
    from matplotlib.colors import LogNorm

    ax = _axes(ax, figsize=(5.5, 4.8))
    image = np.asarray(image, np.float64)
    k = image.shape[0]
    neurons = np.arange(k) if neurons is None else np.asarray(neurons)
    positive = image[np.isfinite(image) & (image > 0)]
    shown = np.where(np.isfinite(image) & (image > 0), image, np.nan)
    norm = (LogNorm(vmin=positive.min(), vmax=max(positive.max(), positive.min() * 1.0001))
            if positive.size else None)
    handle = ax.imshow(shown, norm=norm, cmap="viridis", interpolation="nearest")
    ax.figure.colorbar(handle, ax=ax, label="mean SRM of the planes (log scale)")
    slots = [int(s) for s in labelled]
    ax.set_xticks(slots, [str(int(neurons[s])) for s in slots], rotation=90, fontsize=fontsize)
    ax.set_yticks(slots, [str(int(neurons[s])) for s in slots], fontsize=fontsize)
    ax.set_xlabel("neuron")
    ax.set_ylabel("neuron")
    ax.set_title(title or "per-plane resonance by neuron pair")
    return ax


def plot_neuron_shares(shares, *, neurons=None, top: int = 50, ax=None, title: str | None = None):
    """Bar chart of the ``top`` largest shares of the lit counts, one bar a neuron (or basis
    vector), best first (:func:`srm_jax.neurons.neuron_shares`)."""
    shares = np.asarray(shares, np.float64)
    neurons = np.arange(shares.shape[0]) if neurons is None else np.asarray(neurons)
    order = np.argsort(-np.nan_to_num(shares, nan=-1.0), kind="stable")[:int(top)]
    ax = _axes(ax, figsize=(max(4.0, 0.16 * len(order) + 1.5), 3.2))
    ax.bar(np.arange(len(order)), shares[order], color="C0")
    ax.axhline(1.0 / shares.shape[0], color="k", linestyle=":", linewidth=1,
               label=f"uniform (1/{shares.shape[0]})")
    ax.set_xticks(np.arange(len(order)), [str(int(neurons[i])) for i in order], rotation=90,
                  fontsize="x-small")
    ax.set_xlabel("neuron")
    ax.set_ylabel("share of the lit counts")
    ax.set_title(title or f"top {len(order)} neurons by share of SRM")
    ax.legend(fontsize="small")
    return ax


def plot_mean_curve(angles, mean_curve, *, expectation: float | None = None, ax=None,
                    title: str | None = None, color: str = "k", ylabel: str = "SRM"):
    """One mean SRM curve over θ (solid) with the isotropic expectation (dashed), e.g. the
    mean curve of a group of rows (math §6).

    Args:
      angles: ``(T,)`` rotation angles.
      mean_curve: ``(T,)`` the mean SRM over planes at each angle.
      expectation: the isotropic expectation at the curve's ε (Eqn. 18); not drawn when None.
      title: axes title.

    Returns:
      The axes.
    """
    ax = _axes(ax, figsize=(4.5, 3.2))
    angles = np.asarray(angles, np.float64)
    ax.plot(angles, np.asarray(mean_curve, np.float64), color=color, linewidth=1.5,
            label="mean over planes")
    if expectation is not None and np.isfinite(expectation):
        ax.axhline(float(expectation), color="0.3", linestyle="--", linewidth=1.0,
                   label=f"isotropic expectation ({float(expectation):.3g})")
    _angle_axis(ax, angles)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small", loc="best")
    return ax


def plot_labelled_shares(shares, labels: Sequence[str], *, ax=None, title: str | None = None,
                         xlabel: str = "share of the lit counts"):
    """Horizontal bar chart of ``shares`` (``(k,)``, drawn in the given order, the first on
    top), one bar a label (e.g. the tokens of the rows carrying SRM).

    Returns:
      The axes.
    """
    shares = np.asarray(shares, np.float64)
    ax = _axes(ax, figsize=(5, 0.3 * shares.shape[0] + 1.2))
    slots = np.arange(shares.shape[0])
    ax.barh(slots, shares, color="C0")
    ax.set_yticks(slots, list(labels), fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title)
    return ax
