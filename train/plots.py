"""SRM ensemble figures in the style of the paper's Figs. 1, 2 and 5–9 (matplotlib, Agg).

Each panel shows one faint line per plane (an ensemble line plot), the mean over planes dashed,
and the x axis 0…2π with ticks at multiples of π/2.
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
    """Opacity of one plane's line: faint, fainter the more planes overlay."""
    return float(np.clip(20.0 / max(num_planes, 1), 0.06, 0.5))


def draw_srm_panel(ax, angles, values, *, title: str = "", color: str = "tab:blue") -> None:
    """One panel: ``values`` ``(P, T)`` against ``angles`` ``(T,)``, the mean dashed."""
    angles = np.asarray(angles, np.float64)
    values = np.asarray(values, np.float64)
    segments = np.stack([np.broadcast_to(angles, values.shape), values], axis=-1)
    ax.add_collection(
        LineCollection(segments, colors=color, linewidths=0.8, alpha=line_alpha(len(values)))
    )
    ax.plot(angles, np.nanmean(values, axis=0), "k--", linewidth=1.6, label="mean")
    ax.set_xlim(angles.min(), angles.max())
    top = np.nanmax(values) if np.isfinite(values).any() else 1.0
    ax.set_ylim(0.0, max(1e-3, 1.05 * top))
    ax.set_xticks(PI_TICKS, PI_LABELS)
    ax.set_xlabel(r"$\theta$")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.25, linewidth=0.5)


def srm_figure(
    angles,
    panels: Sequence[tuple[str, np.ndarray]],
    *,
    suptitle: str = "",
    ylabel: str = "SRM fraction",
):
    """A row of SRM ensemble panels, ``panels`` = ``[(title, values (P, T)), ...]``.

    Returns the matplotlib ``Figure`` (one axis per panel).
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    colors = ("tab:blue", "tab:green", "tab:red", "tab:purple")
    for i, (ax, (title, values)) in enumerate(zip(axes[0], panels, strict=True)):
        draw_srm_panel(ax, angles, values, title=title, color=colors[i % len(colors)])
    axes[0][0].set_ylabel(ylabel)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def save_srm_figure(path, angles, panels, *, suptitle: str = "", dpi: int = 120) -> str:
    """:func:`srm_figure` written to ``path`` (PNG); returns the path."""
    fig = srm_figure(angles, panels, suptitle=suptitle)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return str(path)


def fmt_alignment(score) -> str:
    """An alignment score for a panel title (``undefined`` for NaN/None)."""
    if score is None or not np.isfinite(score):
        return "undefined"
    return f"{score:+.2f}"
