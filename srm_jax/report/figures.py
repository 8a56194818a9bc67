"""The report's figures (``srm.png``, ``epsilon_sweep.png``, ...), drawn from a :class:`Report`."""

from __future__ import annotations

import math
import os

import numpy as np

from srm_jax import neurons as _neurons
from srm_jax import plotting
from srm_jax.report.compose import Report
from srm_jax.report.defaults import CHART_NEURONS, FIGURES, MAP_LABELS
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
    return (f"SRM, ε = {float(result.epsilon):g}: mean over {result.planes.shape[0]:,} planes, "
            f"the {report.peaks.counts.shape[0]:,} with most lit counts drawn")


def _analysis_figures(plt, report: Report, save) -> None:
    """SRM with its null band, the ε sweep, the rotation test, per-class SRM and projection."""
    fig, ax = plt.subplots(figsize=(6, 4))
    summaries = isinstance(report.result, SRMSummary)
    plotting.plot_srm(report.result, null=report.band, ax=ax,
                      curves=report.peaks if summaries else None, title=_srm_title(report))
    save("srm", fig)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    plotting.plot_alignment_sweep(report.sweep, ax=ax)
    save("epsilon_sweep", fig)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    p_value = report.summary["p_value"]
    plotting.plot_alignment_test(
        report.test, ax=ax, title="rotation test (legend: one-sided p for alignment)\n"
        f"two-sided p = {p_value:.2g}" if math.isfinite(p_value) else None)
    save("rotation_test", fig)
    if report.selectivity is not None:
        fig = plotting.plot_grandmother(report.selectivity, top=1,
                                        plane_indices=report.distinct)
        save("per_class", fig)
    fig, ax = plt.subplots(figsize=(5, 4.3))
    plotting.plot_projection_density(report.density, ax=ax, min_expected=0.2)
    save("projection", fig)


def _neuron_figures(plt, report: Report, save) -> None:
    """The neuron map (a ``±`` orthonormal basis) and the per-neuron (or per-vector) shares."""
    neurons, pairs = report.neurons, np.asarray(report.result.planes)
    totals = report.plane_summaries.totals
    shares = _neurons.vector_shares(totals, pairs, neurons.direction.shape[0])
    labels = None
    if neurons.orthonormal:
        per_neuron = np.asarray(_neurons.neuron_shares(shares, neurons.direction,
                                                       neurons.num_directions))
        mean_srm = np.asarray(totals, np.float64) / max(
            int(report.result.angles.shape[0]) * int(report.result.num_samples), 1)
        image = _neurons.neuron_map(mean_srm, pairs, neurons.direction, neurons.num_directions)
        top = np.argsort(-np.nan_to_num(per_neuron, nan=-1.0), kind="stable")[:MAP_LABELS]
        fig, ax = plt.subplots(figsize=(6, 5.2))
        plotting.plot_neuron_map(image, neurons=neurons.neuron, labelled=top, ax=ax)
        save("neuron_map", fig)
        labels = neurons.neuron
    else:
        per_neuron = np.asarray(shares)
    shown = min(CHART_NEURONS, len(per_neuron))
    fig = plt.figure(figsize=(max(4.0, 0.16 * shown + 1.5), 3.4))
    plotting.plot_neuron_shares(
        per_neuron, neurons=labels, top=CHART_NEURONS, ax=fig.add_subplot(),
        title=None if neurons.orthonormal else f"top {shown} basis vectors by share of SRM")
    save("neuron_shares", fig)


def write_figures(report: Report, directory: str) -> dict[str, str]:
    """Draws the report's figures into ``directory``; returns ``{name: file name}``.

    SRM curves with the isotropic null band (:func:`srm_jax.plot_srm`), the ε sweep, the
    rotation test, the per-class SRM of the top plane (with labels), the projection density
    of the top plane, and which neurons carry the SRM.
    """
    plt = _pyplot()
    written = {}

    def save(name, fig):
        fig.tight_layout()
        fig.savefig(os.path.join(directory, FIGURES[name]), dpi=110)
        plt.close(fig)
        written[name] = FIGURES[name]

    _analysis_figures(plt, report, save)
    if report.neurons is not None and report.plane_summaries is not None:
        _neuron_figures(plt, report, save)
    return written
