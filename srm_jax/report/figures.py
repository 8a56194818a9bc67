"""The report's figures (``srm.png``, ``epsilon_sweep.png``, ...), drawn from a :class:`Report`."""

from __future__ import annotations

import math
import os

import numpy as np

from srm_jax import neurons as _neurons
from srm_jax import plotting
from srm_jax.report.compose import Report
from srm_jax.report.defaults import CHART_NEURONS, FIGURES, MAP_NEURONS
from srm_jax.summaries import SRMSummary


def _pyplot():
    """``matplotlib.pyplot`` on the Agg backend, loaded when figures are drawn: the backend is
    chosen before pyplot loads, and importing :mod:`srm_jax.report` leaves a notebook's alone."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _srm_title(report: Report) -> str | None:
    """The SRM figure's title when every plane is measured through summaries."""
    result = report.result
    if not isinstance(result, SRMSummary):
        return None
    return (f"SRM, ε = {float(result.epsilon):g}: mean over {result.planes.shape[0]:,} planes,\n"
            f"the {report.peaks.counts.shape[0]:,} with most lit counts drawn")


def _srm_figure(plt, report: Report, save) -> None:
    """SRM with its null band; with a bulk analysed, the carriers' and the bulk's mean curves
    side by side, each at its own ε with its isotropic expectation."""
    groups = getattr(report, "group_curves", None) or {}
    if "carriers" in groups and "bulk" in groups:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        for ax, name in zip(axes, ("carriers", "bulk"), strict=True):
            group = groups[name]
            plotting.plot_mean_curve(
                group.angles, group.mean_curve, expectation=float(group.expectation), ax=ax,
                title=f"{name}: {int(group.num_rows):,} rows, ε = {float(group.epsilon):g}")
        save("srm", fig)
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    summaries = isinstance(report.result, SRMSummary)
    plotting.plot_srm(report.result, null=report.band, ax=ax,
                      curves=report.peaks if summaries else None, title=_srm_title(report))
    save("srm", fig)


def _rotation_test_figure(plt, report: Report, save) -> None:
    """The rotation test at the headline ε (the one the verdict names) when the test is a
    sweep; the test itself otherwise."""
    s = report.summary
    headline = getattr(report, "headline_test", None)
    p_value = s.get("family_wise_p_value", s["p_value"])
    num_tested = len(s.get("test_epsilons") or ())
    if headline is not None and s.get("headline_epsilon") is not None:
        where = f"rotation test at ε = {s['headline_epsilon']:g} (headline; legend: 1-sided p)"
    else:
        headline, where = report.test, "rotation test (legend: one-sided p for alignment)"
    if not math.isfinite(p_value):
        title = None
    elif num_tested > 1:
        title = f"{where}\nfamily-wise two-sided p = {p_value:.2g} over {num_tested} ε"
    else:
        title = f"{where}\ntwo-sided p = {p_value:.2g}"
    fig, ax = plt.subplots(figsize=(5.8, 3.6))
    plotting.plot_alignment_test(headline, ax=ax, title=title)
    # The projection statistic is in SRM units, often ~1e-4: a common factor keeps ticks apart.
    ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 3))
    save("rotation_test", fig)


def _analysis_figures(plt, report: Report, save) -> None:
    """SRM with its null band, the ε sweep, the rotation test, per-class SRM and projection."""
    _srm_figure(plt, report, save)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    plotting.plot_alignment_sweep(report.sweep, ax=ax)
    save("epsilon_sweep", fig)
    _rotation_test_figure(plt, report, save)
    if report.selectivity is not None:
        fig = plotting.plot_grandmother(report.selectivity, top=1,
                                        plane_indices=report.distinct)
        save("per_class", fig)
    fig, ax = plt.subplots(figsize=(5, 4.3))
    plotting.plot_projection_density(report.density, ax=ax, min_expected=0.2)
    save("projection", fig)


def _token_label(token: dict) -> str:
    """A token's text as written (quoted, escapes visible), or its id without text; ``$``
    escaped so that matplotlib does not read it as mathematics."""
    if token.get("text") is None:
        return str(token["token"])
    return repr(token["text"]).replace("$", r"\$")


def _token_figure(plt, report: Report, save) -> None:
    """The carriers' tokens by share of the lit counts (only when the summary has them)."""
    carriers = report.summary.get("carriers") or {}
    tokens = carriers.get("tokens")
    if not tokens:
        return
    fig, ax = plt.subplots(figsize=(6, 0.32 * len(tokens) + 1.3))
    epsilon = carriers.get("epsilon")
    plotting.plot_labelled_shares(
        [t["share"] for t in tokens], [_token_label(t) for t in tokens], ax=ax,
        title="tokens of the rows carrying SRM" + (
            f", ε = {epsilon:g}" if epsilon is not None else ""))
    save("carrier_tokens", fig)


def _at_headline(report: Report) -> str:
    """`` at ε = E`` (and ``, the bulk``) when the report ranks the map's neurons at a headline
    ε, else nothing."""
    where = report.summary.get("neuron_map")
    if where is None:
        return ""
    return f" at ε = {where['epsilon']:g}" + (", the bulk" if where["rows"] == "bulk" else "")


def map_neurons(report: Report, count: int = MAP_NEURONS) -> tuple[np.ndarray, np.ndarray]:
    """The neuron map's rows: the neuron × neuron map (mean SRM of each pair's planes,
    :func:`srm_jax.neurons.neuron_map`) of the top ``count`` neurons of a ``±`` orthonormal
    basis, ranked by credit summed per neuron (``report.vector_scores``; without it, the shares
    of the lit counts), in rank order; and their neuron labels. Returns ``(image, labels)``,
    ``image`` ``(c, c)`` with ``c = min(count, K)``.
    """
    neurons, pairs = report.neurons, np.asarray(report.result.planes)
    totals, measured = report.plane_summaries.totals, report.result
    scores = getattr(report, "vector_scores", None)
    if getattr(report, "map_summary", None) is not None:  # the ranking's rows and ε
        totals, measured = report.map_summary.lit_plane_totals, report.map_summary
        scores = report.map_scores
    if scores is None:
        scores = _neurons.vector_shares(totals, pairs, neurons.direction.shape[0])
    per_neuron = np.asarray(_neurons.neuron_shares(
        np.asarray(scores, np.float32), neurons.direction, neurons.num_directions), np.float64)
    top = np.argsort(-np.nan_to_num(per_neuron, nan=-np.inf), kind="stable")[:int(count)]
    mean_srm = np.asarray(totals, np.float64) / max(
        int(measured.angles.shape[0]) * int(measured.num_samples), 1)
    image = np.asarray(_neurons.neuron_map(mean_srm, pairs, neurons.direction,
                                           neurons.num_directions), np.float64)
    return image[np.ix_(top, top)], np.asarray(neurons.neuron)[top]


def _neuron_figures(plt, report: Report, save) -> None:
    """The neuron map (a ``±`` orthonormal basis) and the per-neuron (or per-vector) shares."""
    neurons, pairs = report.neurons, np.asarray(report.result.planes)
    scores = getattr(report, "vector_scores", None)
    if scores is None:
        shares, by = _neurons.vector_shares(report.plane_summaries.totals, pairs,
                                            neurons.direction.shape[0]), "share of SRM"
    else:  # the credit ranking of report.json, as shares (ties stay ties)
        total = float(np.sum(scores, dtype=np.float64))
        shares = np.asarray(scores, np.float64) / (total if total > 0 else 1.0)
        by = "share of the credit"
    labels = None
    if neurons.orthonormal:
        per_neuron = np.asarray(_neurons.neuron_shares(shares, neurons.direction,
                                                       neurons.num_directions))
        image, names = map_neurons(report)
        fig, ax = plt.subplots(figsize=(8.4, 7.2))
        plotting.plot_neuron_map(
            image, neurons=names, labelled=range(image.shape[0]), ax=ax, fontsize=5,
            title=f"top {image.shape[0]} neurons by {by}{_at_headline(report)}:\n"
            "mean SRM of each pair's planes")
        save("neuron_map", fig)
        labels = neurons.neuron
    else:
        per_neuron = np.asarray(shares)
    shown = min(CHART_NEURONS, len(per_neuron))
    fig = plt.figure(figsize=(max(4.0, 0.16 * shown + 1.5), 3.4))
    plotting.plot_neuron_shares(
        per_neuron, neurons=labels, top=CHART_NEURONS, ax=fig.add_subplot(),
        title=(f"top {shown} {'neurons' if neurons.orthonormal else 'basis vectors'} by {by}"))
    save("neuron_shares", fig)


def write_figures(report: Report, directory: str) -> dict[str, str]:
    """Draws the report's figures into ``directory``; returns ``{name: file name}``.

    SRM curves with the isotropic null band (:func:`srm_jax.plot_srm`), the ε sweep, the
    rotation test at the headline ε, the per-class SRM of the top plane (with labels), the
    projection density of the top plane, which neurons carry the SRM (the map of the top
    ``MAP_NEURONS`` by credit) and the carriers' tokens (when the summary has them).
    """
    plt = _pyplot()
    written = {}

    def save(name, fig):
        fig.tight_layout()
        fig.savefig(os.path.join(directory, FIGURES[name]), dpi=110)
        plt.close(fig)
        written[name] = FIGURES[name]

    _analysis_figures(plt, report, save)
    _token_figure(plt, report, save)
    if report.neurons is not None and report.plane_summaries is not None:
        _neuron_figures(plt, report, save)
    return written
