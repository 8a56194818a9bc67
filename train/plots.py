"""SRM ensemble figures in the style of the paper's Figs. 1, 2 and 5–9 (matplotlib, Agg).

Each panel shows one line per plane (an ensemble line plot, visible on white), the mean over
planes dashed, optionally the isotropic expectation and the isotropic null band of the mean
curve, a legend, and the x axis 0…2π with ticks at multiples of π/2. A panel whose SRM is 0
everywhere says so (no sample inside any spotlight cone) instead of showing an empty axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402

PI_TICKS = (0.0, np.pi / 2, np.pi, 3 * np.pi / 2, 2 * np.pi)
PI_LABELS = ("0", r"$\pi/2$", r"$\pi$", r"$3\pi/2$", r"$2\pi$")


def line_alpha(num_planes: int) -> float:
    """Opacity of one plane's line: lighter the more planes overlay, but visible on white
    (never below 0.45)."""
    return float(np.clip(60.0 / max(num_planes, 1), 0.45, 0.8))


def draw_srm_panel(
    ax,
    angles,
    values,
    *,
    title: str = "",
    color: str = "tab:blue",
    expectation: float | None = None,
    band: tuple[np.ndarray, np.ndarray] | None = None,
    empty_note: str = "SRM is 0 everywhere: no sample inside any spotlight cone",
) -> None:
    """One panel: ``values`` ``(P, T)`` against ``angles`` ``(T,)``, the mean dashed.

    ``expectation``: the isotropic SRM value (a dotted line); ``band``: ``(low, high)`` ``(T,)``
    of the isotropic null band of the mean curve (shaded). A panel whose values are all 0 shows
    ``empty_note`` in its middle.
    """
    angles = np.asarray(angles, np.float64)
    values = np.asarray(values, np.float64)
    segments = np.stack([np.broadcast_to(angles, values.shape), values], axis=-1)
    ax.add_collection(
        LineCollection(segments, colors=color, linewidths=0.7, alpha=line_alpha(len(values)),
                       label=f"{len(values)} planes")
    )
    mean = np.nanmean(values, axis=0)
    ax.plot(angles, mean, "k--", linewidth=1.6, label="mean over planes")
    tops = [np.nanmax(values) if np.isfinite(values).any() else 0.0]
    if 0 < np.nanmax(mean) < 0.2 * tops[0]:
        # The mean is dwarfed by a few lit planes: repeat it on its own scale (right axis).
        twin = ax.twinx()
        twin.plot(angles, mean, color="k", linewidth=1.2)
        twin.set_ylim(0.0, 1.1 * np.nanmax(mean))
        twin.set_ylabel("mean over planes (solid, right axis)", fontsize=7)
        twin.tick_params(labelsize=7)
    if band is not None:
        low, high = (np.asarray(b, np.float64) for b in band)
        ax.fill_between(angles, low, high, color="0.5", alpha=0.35, linewidth=0,
                        label="isotropic null band (95 %, mean)")
        tops.append(float(np.max(high)))
    if expectation is not None:
        ax.axhline(expectation, color="tab:orange", linestyle=":", linewidth=1.6,
                   label="isotropic expectation")
        tops.append(float(expectation))
    ax.set_xlim(angles.min(), angles.max())
    top = max(tops)
    ax.set_ylim(0.0, 1.08 * top if top > 0 else 1.0)
    if not np.any(values):
        ax.text(0.5, 0.5, empty_note, transform=ax.transAxes, ha="center", va="center",
                fontsize=9, wrap=True, bbox=dict(facecolor="white", edgecolor="0.6"))
    ax.set_xticks(PI_TICKS, PI_LABELS)
    ax.set_xlabel(r"$\theta$")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.25, linewidth=0.5)
    ax.legend(fontsize=6.5, loc="best", framealpha=0.85)


def srm_figure(
    angles,
    panels: Sequence[tuple[str, np.ndarray]],
    *,
    suptitle: str = "",
    ylabel: str = "SRM fraction",
    expectation: float | None = None,
    band: tuple[np.ndarray, np.ndarray] | None = None,
    empty_note: str = "SRM is 0 everywhere: no sample inside any spotlight cone",
):
    """A row of SRM ensemble panels, ``panels`` = ``[(title, values (P, T)), ...]``.

    ``expectation`` and ``band`` (isotropic value and null band of the mean curve) are drawn on
    every panel. Returns the matplotlib ``Figure`` (one axis per panel).
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.9), squeeze=False)
    colors = ("tab:blue", "darkgreen", "firebrick", "indigo")
    for i, (ax, (title, values)) in enumerate(zip(axes[0], panels, strict=True)):
        draw_srm_panel(ax, angles, values, title=title, color=colors[i % len(colors)],
                       expectation=expectation, band=band, empty_note=empty_note)
    axes[0][0].set_ylabel(ylabel)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    return fig


def save_srm_figure(path, angles, panels, *, suptitle: str = "", dpi: int = 110,
                    **kwargs) -> str:
    """:func:`srm_figure` written to ``path`` (PNG); returns the path."""
    fig = srm_figure(angles, panels, suptitle=suptitle, **kwargs)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return str(path)


def fmt_alignment(score) -> str:
    """An alignment score for a panel title (``undefined`` for NaN/None)."""
    if score is None or not np.isfinite(score):
        return "undefined"
    return f"{score:+.2f}"


def fmt_p(p) -> str:
    """A p-value for a title (``n/a`` when absent)."""
    return "n/a" if p is None else f"{p:.3g}"


def _null_band(priv, k: int, epsilon: float, num_samples: int, num_draws: int = 30):
    """Isotropic null band ``(low, high)`` of the mean curve of seed ``k``'s basis (Monte Carlo,
    :func:`srm_jax.null_band`), scaled like the mean curve when antipodal planes count as 0."""
    import jax

    import srm_jax

    basis = priv.basis[k] if priv.basis.ndim == 3 else priv.basis
    pairs = np.asarray(priv._span_pairs[k])
    band = srm_jax.null_band(
        jax.random.key(1), num_samples, basis, epsilon=epsilon, angles=priv.angles,
        planes=pairs, num_resamples=num_draws,
    )
    q = np.asarray(band.curve_quantiles) * priv.spanning_fraction
    return q[0], q[-1]


def save_run_figures(workdir, config, dataset_name: str, arrays: dict, priv, per_seed: list,
                     *, ensemble: bool, num_samples: int) -> list[str]:
    """The figures of a run: ``srm.png`` (untrained, self-SRM, trained; the first seed of an
    ensemble), ``bases.png`` with ``compare_bases``, and for an ensemble ``seeds.png`` (every
    seed's trained mean curve, alignment before/after, rotation-test statistic against its
    null). Titles state the claim tested and this run's verdict. Returns the file names."""
    from pathlib import Path

    workdir = Path(workdir)

    def first(name):
        a = np.asarray(arrays[name])
        return a[0] if ensemble else a

    seed = per_seed[0]
    expectation = seed["isotropic_expectation"]
    band = _null_band(priv, 0, config.epsilon, num_samples)
    test = seed.get("rotation_test")
    verdict = seed["claim"]["verdict"]
    what = f"seed {seed['seed']}" if ensemble else "this run"
    suptitle = (
        f"{config.preset} ({config.size} {config.activation}, n={config.latent_dim}, "
        f"m={config.num_basis} {config.basis_kind}, eps={config.epsilon}) on {dataset_name}, "
        f"{seed['epochs_completed']} epochs\nClaim tested: {seed['claim']['statement']}. "
        f"{what}: {verdict}."
    )
    empty = (f"no {config.measure_split} sample inside any eps = {config.epsilon:g} cone:\n"
             "SRM is 0 everywhere")
    align = first("alignment")
    trained = f"trained (align {fmt_alignment(align[-1])}"
    if test is not None:
        trained += f", rotation p = {fmt_p(test['p_value'])}"
    save_srm_figure(
        workdir / "srm.png",
        priv.angles,
        [
            (f"untrained (align {fmt_alignment(align[0])})", first("srm_before")),
            ("self-SRM (the basis itself)", first("self_srm")),
            (trained + ")", first("srm_after")),
        ],
        suptitle=suptitle, expectation=expectation, band=band, empty_note=empty,
    )
    figures = ["srm.png"]
    if config.compare_bases:
        save_srm_figure(
            workdir / "bases.png",
            priv.angles,
            [
                (f"random basis (align {fmt_alignment(first('random_alignment')[-1])})",
                 first("random_srm_after")),
                (f"standard basis (align {fmt_alignment(first('standard_alignment')[-1])})",
                 first("standard_srm_after")),
                (f"privileged basis (align {fmt_alignment(align[-1])})", first("srm_after")),
            ],
            suptitle=(f"trained {config.preset} model on {dataset_name}: SRM on three bases "
                      "(the paper: only the privileged basis shows structure)"),
            expectation=expectation, empty_note=empty,
        )
        figures.append("bases.png")
    if ensemble:
        save_seeds_figure(workdir / "seeds.png", config, dataset_name, arrays, priv.angles,
                          per_seed, expectation)
        figures.append("seeds.png")
    return figures


def save_seeds_figure(path, config, dataset_name, arrays, angles, per_seed,
                      expectation: float) -> str:
    """An ensemble at a glance: each seed's trained mean SRM curve, its alignment before and
    after training, and its rotation-test statistic against the 95 % null interval."""
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 3.9))
    after = np.asarray(arrays["srm_after"]).mean(axis=-2)  # (K, T)
    cmap = plt.get_cmap("viridis")
    for k, s in enumerate(per_seed):
        axes[0].plot(angles, after[k], color=cmap(k / max(len(per_seed) - 1, 1)),
                     linewidth=1.0, label=f"seed {s['seed']}" if len(per_seed) <= 8 else None)
    axes[0].axhline(expectation, color="tab:orange", linestyle=":", linewidth=1.6,
                    label="isotropic expectation")
    axes[0].set_xticks(PI_TICKS, PI_LABELS)
    axes[0].set_xlabel(r"$\theta$")
    axes[0].set_ylabel("mean SRM over planes (trained)")
    axes[0].set_title("trained mean SRM curve of every seed", fontsize=9)
    if not np.any(after):
        axes[0].text(0.5, 0.5, f"SRM is 0 for every seed at eps = {config.epsilon:g}:\n"
                     "no sample inside any spotlight cone", transform=axes[0].transAxes,
                     ha="center", va="center", fontsize=9,
                     bbox=dict(facecolor="white", edgecolor="0.6"))
    axes[0].legend(fontsize=6, ncol=2)
    before = [s["alignment_before"] for s in per_seed]
    end = [s["alignment_after"] for s in per_seed]
    for b, a in zip(before, end, strict=True):
        if b is not None and a is not None:
            axes[1].plot([0, 1], [b, a], color="0.6", linewidth=0.8)
    axes[1].scatter(np.zeros(len(before)), [np.nan if b is None else b for b in before],
                    color="tab:blue", label="untrained")
    axes[1].scatter(np.ones(len(end)), [np.nan if a is None else a for a in end],
                    color="tab:red", label="trained")
    axes[1].axhline(0, color="k", linewidth=0.6)
    axes[1].set_xticks([0, 1], ["untrained", "trained"])
    axes[1].set_ylim(-1.05, 1.05)
    axes[1].set_ylabel("alignment with self-SRM (correlation)")
    axes[1].set_title("alignment score per seed (undefined ones left out)", fontsize=9)
    tests = [s.get("rotation_test") for s in per_seed]
    if all(t is not None for t in tests):
        x = np.arange(len(tests))
        q = np.asarray([[np.nan if v is None else v for v in t["null_quantiles_2.5_50_97.5"]]
                        for t in tests])
        axes[2].fill_between(x, q[:, 0], q[:, 2], color="0.5", alpha=0.35, step="mid",
                             label="rotated bases, 95 %")
        score = [np.nan if t["score"] is None else t["score"] for t in tests]
        sig = [t["p_value"] is not None and t["p_value"] <= 0.05 for t in tests]
        axes[2].scatter(x, score, c=["tab:red" if v else "tab:blue" for v in sig],
                        label="privileged basis (red: p <= 0.05)")
        axes[2].set_xticks(x, [str(s["seed"]) for s in per_seed], fontsize=7)
        axes[2].set_xlabel("seed")
        axes[2].set_ylabel("projection statistic")
        axes[2].set_title(f"rotation test ({tests[0]['num_rotations']} rotations, "
                          f"alternative {tests[0]['alternative']})", fontsize=9)
        axes[2].legend(fontsize=7)
    else:
        axes[2].text(0.5, 0.5, "rotation test not run (num_rotations = 0)",
                     transform=axes[2].transAxes, ha="center")
    fig.suptitle(f"{config.preset} on {dataset_name}: {len(per_seed)} seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)
