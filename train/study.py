"""A reproduction study: variants × seeds of a preset, each paired with the isotropic control.

``python -m train.study <preset> --seeds K [--vary name=v1,v2 ...] [--out DIR]`` (plus the
options of ``python -m train``: ``--dataset``, ``--epochs``, ``--set``).

Every variant (one point of the grid of ``--vary`` axes; ``;`` separates values that contain
commas, e.g. ``--vary "hidden_widths=none;128;256,128;512"``) is trained as an ensemble of the
K seeds (``python -m train --seeds``: vmapped, one compiled epoch), and so is its **isotropic
control**: the same settings with isotropic tanh in every layer, on the same seeds — the same
initial weights, the same reference basis, the same data order. Each pair of runs lives in
``DIR/<variant>/{model,control}/`` (a rerun resumes or returns at once). The study writes:

* ``study.json`` — per variant and arm (model, control): test MSE, alignment before and after
  training, mean SRM at the preset ε, median largest |cos| of the latents with the basis and
  its isotropic value (each the mean over seeds with a 95 % Student-t interval), the fraction of
  seeds whose rotation test (:func:`srm_jax.alignment_test`, statistic ``"projection"``,
  ``num_rotations`` ≥ 99) is significant at 0.05 in the direction the paper claims, the same
  alignment over the ε sweep, and the paired model − control differences;
* ``study.md`` — the table, and what each column means;
* ``study.png`` — per variant: the trained mean SRM curves of model and control (mean over
  seeds) and the per-seed alignment and rotation statistics.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
import typing
from pathlib import Path

import numpy as np

from train.configs import Config
from train.configs.default import override, split_setting

ARMS = ("model", "control")


def parse_vary(items: list[str]) -> list[tuple[str, list[str]]]:
    """``["name=v1,v2", ...]`` → ``[(name, [v1, v2]), ...]`` (``;`` separates values that hold
    commas; ``none`` is the empty tuple for ``hidden_widths``)."""
    hints = typing.get_type_hints(Config)
    axes = []
    for item in items:
        name, values = split_setting(item, "--vary")
        parts = values.split(";") if ";" in values else values.split(",")
        parts = [p.strip() for p in parts if p.strip()]
        if "tuple" in str(hints[name]):
            parts = ["" if p.lower() == "none" else p for p in parts]
        if not parts:
            raise ValueError(f"--vary {name} has no values.")
        axes.append((name, parts))
    return axes


def variant_name(assignment: list[tuple[str, str]]) -> str:
    """A directory name for one grid point (``base`` when nothing varies)."""
    if not assignment:
        return "base"
    return "__".join(f"{k}={v.replace(',', '-') or 'none'}" for k, v in assignment)


def variants(config: Config, axes) -> list[tuple[str, list[tuple[str, str]], Config]]:
    """Every grid point: ``(name, [(setting, value), ...], config)``."""
    out = []
    names = [a[0] for a in axes]
    for values in itertools.product(*[a[1] for a in axes]):
        assignment = list(zip(names, values, strict=True))
        out.append((variant_name(assignment), assignment,
                    override(config, [f"{k}={v}" for k, v in assignment])))
    return out


def control_config(config: Config) -> Config:
    """The isotropic control of ``config``: isotropic tanh everywhere, all else the same (the
    test keeps the direction of the preset's claim)."""
    return config.replace(activation="isotropic_tanh")


def _stat(summary: dict, name: str) -> dict:
    return summary["intervals"].get(name, {"mean": None, "low": None, "high": None, "n": 0})


def arm_statistics(summary: dict) -> dict:
    """The per-variant statistics of one ensemble run (its ``summary.json``)."""
    from train.summary import SIGNIFICANCE_LEVEL, mean_interval

    per_seed = summary["per_seed"]
    out = {name: _stat(summary, name) for name in (
        "final_test_loss", "alignment_before", "alignment_after", "srm_mean_before",
        "srm_mean_after", "median_max_abs_cos", "isotropic_median_max_abs_cos",
        "random_alignment_after", "standard_alignment_after") if name in summary["intervals"]}
    rotation = summary.get("rotation_test")
    if rotation:
        out["rotation_test"] = {
            "statistic": rotation["statistic"],
            "alternative": rotation["alternative"],
            "num_rotations": rotation["num_rotations"],
            "fraction_significant": rotation["fraction_significant"],
            "p_values": rotation["p_values"],
            "score": rotation["score"],
        }
    sweep = [s.get("epsilon_sweep") for s in per_seed]
    if all(sweep):
        eps = sweep[0]["epsilon"]
        out["epsilon_sweep"] = {
            "epsilon": eps,
            "alignment_after": [mean_interval([s["alignment_after"][i] for s in sweep])
                                for i in range(len(eps))],
            "srm_mean_after": [mean_interval([s["srm_mean_after"][i] for s in sweep])
                               for i in range(len(eps))],
        }
        if all("rotation_p_value" in s for s in sweep):
            out["epsilon_sweep"]["fraction_significant"] = [
                float(np.mean([s["rotation_p_value"][i] is not None
                               and s["rotation_p_value"][i] <= SIGNIFICANCE_LEVEL
                               for s in sweep]))
                for i in range(len(eps))]
    out["isotropic_expectation"] = summary["isotropic_expectation"]
    out["frozen_seeds"] = summary.get("frozen_seeds", [])
    out["per_seed"] = [{
        "seed": s["seed"],
        "final_test_loss": s["final_test_loss"],
        "alignment_before": s["alignment_before"],
        "alignment_after": s["alignment_after"],
        "srm_mean_after": s["srm_mean_after"],
        "rotation_score": (s.get("rotation_test") or {}).get("score"),
        "rotation_p_value": (s.get("rotation_test") or {}).get("p_value"),
        "median_max_abs_cos": s["median_max_abs_cos"],
    } for s in per_seed]
    return out


def paired_differences(model: dict, control: dict) -> dict:
    """Model − control, seed by seed (same seeds, data order, initial weights): mean and 95 %
    interval of the differences of the alignment, the rotation statistic and the mean SRM."""
    from train.summary import mean_interval

    out = {}
    for name in ("alignment_after", "rotation_score", "srm_mean_after", "median_max_abs_cos"):
        diffs = []
        for a, b in zip(model["per_seed"], control["per_seed"], strict=True):
            if a[name] is not None and b[name] is not None:
                diffs.append(a[name] - b[name])
        out[name] = mean_interval(diffs)
    return out


def fmt_ci(stat: dict | None, digits: int = 3, scale: float = 1.0) -> str:
    """``mean [low, high]`` (or ``n/a``)."""
    if not stat or stat.get("mean") is None:
        return "n/a"
    m = stat["mean"] * scale
    if stat.get("low") is None:
        return f"{m:.{digits}g}"
    return f"{m:.{digits}g} [{stat['low'] * scale:.{digits}g}, {stat['high'] * scale:.{digits}g}]"


def write_markdown(path: Path, study: dict) -> None:
    """``study.md``: one table row per variant and arm, then the paired differences."""
    lines = [
        f"# Study: {study['preset']} on {study['dataset']}",
        "",
        f"{len(study['seeds'])} seeds ({', '.join(map(str, study['seeds']))}), "
        f"{study['epochs']} epochs ({study['optimizer_steps']} optimiser steps per model), "
        f"ε = {study['epsilon']}; claim tested: {study['claim']} "
        f"(rotation test alternative `{study['alternative']}`, statistic `projection`, "
        f"{study['num_rotations']} rotations, level 0.05). Wall time "
        f"{study['wall_time_s']:.0f} s. Every cell: mean over seeds [95 % t-interval].",
        "",
        "| variant | arm | test MSE | alignment before | alignment after | significant "
        "| mean SRM after (iso.) | median max abs cos (iso.) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for v in study["variants"]:
        for arm in ARMS:
            s = v[arm]
            rot = s.get("rotation_test")
            sig = "n/a" if not rot else (
                f"{round(rot['fraction_significant'] * len(rot['p_values']))}/"
                f"{len(rot['p_values'])}")
            iso_cos = s["isotropic_median_max_abs_cos"]["mean"]
            lines.append(
                f"| {v['name']} | {arm} | {fmt_ci(s['final_test_loss'])} | "
                f"{fmt_ci(s['alignment_before'], 2)} | {fmt_ci(s['alignment_after'], 2)} | "
                f"{sig} | {fmt_ci(s['srm_mean_after'])} ({s['isotropic_expectation']:.3g}) | "
                f"{fmt_ci(s['median_max_abs_cos'])} ({iso_cos:.3g}) |"
            )
    lines += ["", "Paired differences, model − control (same seeds):", "",
              "| variant | alignment after | rotation statistic | mean SRM after |",
              "|---|---|---|---|"]
    for v in study["variants"]:
        d = v.get("paired_difference")
        if d:
            lines.append(f"| {v['name']} | {fmt_ci(d['alignment_after'], 2)} | "
                         f"{fmt_ci(d['rotation_score'])} | {fmt_ci(d['srm_mean_after'])} |")
    sweep_rows = [v for v in study["variants"] if "epsilon_sweep" in v["model"]]
    if sweep_rows:
        eps = sweep_rows[0]["model"]["epsilon_sweep"]["epsilon"]
        lines += ["", "Alignment after training over the ε sweep (mean over seeds):", "",
                  "| variant | arm | " + " | ".join(f"ε={e:g}" for e in eps) + " |",
                  "|---|---|" + "---|" * len(eps)]
        for v in sweep_rows:
            for arm in ARMS:
                sw = v[arm]["epsilon_sweep"]["alignment_after"]
                lines.append(f"| {v['name']} | {arm} | "
                             + " | ".join(fmt_ci(s, 2) for s in sw) + " |")
        if all("fraction_significant" in v["model"]["epsilon_sweep"] for v in sweep_rows):
            k = len(study["seeds"])
            lines += ["", "Seeds whose rotation test is significant (0.05, claimed direction) "
                      "over the ε sweep:", "",
                      "| variant | arm | " + " | ".join(f"ε={e:g}" for e in eps) + " |",
                      "|---|---|" + "---|" * len(eps)]
            for v in sweep_rows:
                for arm in ARMS:
                    fr = v[arm]["epsilon_sweep"]["fraction_significant"]
                    lines.append(f"| {v['name']} | {arm} | "
                                 + " | ".join(f"{round(f * k)}/{k}" for f in fr) + " |")
    lines += [
        "",
        "Columns: *alignment* is the Pearson correlation over θ of the mean SRM curve with the "
        "mean self-SRM curve (+1 aligned, −1 anti-aligned; undefined when a curve is flat, "
        "left out of the mean); *significant* counts seeds whose rotation test is significant "
        "at 0.05 in the claimed direction; *iso.* is the isotropic value (the SRM expectation "
        "of Eqn. 18; the median largest |cos| of isotropic directions with the same basis).",
        "",
        "![study](study.png)",
    ]
    path.write_text("\n".join(lines) + "\n")


def save_figure(path: Path, study: dict, curves: dict) -> None:
    """``study.png``: per variant the mean trained SRM curve of model and control and the
    per-seed rotation statistics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from train.plots import PI_LABELS, PI_TICKS

    rows = len(study["variants"])
    fig, axes = plt.subplots(rows, 2, figsize=(10, 3.0 * rows), squeeze=False)
    for row, v in enumerate(study["variants"]):
        ax = axes[row][0]
        for arm, color in zip(ARMS, ("tab:red", "tab:gray"), strict=True):
            angles, mean_curves = curves[v["name"]][arm]
            for c in mean_curves:
                ax.plot(angles, c, color=color, linewidth=0.5, alpha=0.5)
            ax.plot(angles, mean_curves.mean(axis=0), color=color, linewidth=2.0,
                    label=f"{arm} (mean of {len(mean_curves)} seeds)")
        ax.axhline(v["model"]["isotropic_expectation"], color="tab:orange", linestyle=":",
                   label="isotropic expectation")
        ax.set_xticks(PI_TICKS, PI_LABELS)
        ax.set_ylabel("mean SRM (trained)")
        ax.set_title(f"{v['name']}: mean SRM curve per seed", fontsize=9)
        ax.legend(fontsize=7)
        ax = axes[row][1]
        for i, (arm, color) in enumerate(zip(ARMS, ("tab:red", "tab:gray"), strict=True)):
            seeds = v[arm]["per_seed"]
            score = [np.nan if s["rotation_score"] is None else s["rotation_score"]
                     for s in seeds]
            sig = [s["rotation_p_value"] is not None and s["rotation_p_value"] <= 0.05
                   for s in seeds]
            x = i + np.linspace(-0.2, 0.2, len(seeds))
            ax.scatter(x, score, c=color, edgecolors=["k" if g else "none" for g in sig],
                       label=f"{arm} (black edge: p <= 0.05)")
        ax.axhline(0, color="k", linewidth=0.6)
        ax.set_xticks([0, 1], list(ARMS))
        ax.set_ylabel("rotation-test statistic (projection)")
        ax.set_title(f"{v['name']}: in-phase amplitude per seed", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(f"{study['preset']} on {study['dataset']}: model vs isotropic control, "
                 f"{len(study['seeds'])} seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run_study(config: Config, seeds: list[int], axes, out: Path, *, control: bool = True,
              progress: bool = True, log=None, dataset=None) -> dict:
    """Train every variant × seed (and its control) and write ``study.json``, ``study.md``
    and ``study.png`` into ``out``; returns the study dict."""
    from train.configs import check_srm_method
    from train.train import train_and_evaluate

    start = time.time()
    grid = variants(config, axes)
    for _, _, cfg in grid:  # every variant's method, before the first one trains
        check_srm_method(cfg)
    results, curves = [], {}
    summary = None
    for name, assignment, cfg in grid:
        entry = {"name": name, "settings": dict(assignment)}
        curves[name] = {}
        for arm in ARMS if control else ARMS[:1]:
            arm_config = cfg if arm == "model" else control_config(cfg)
            workdir = out / name / arm
            if log:
                log(f"variant {name}, {arm}: {len(seeds)} seeds -> {workdir}")
            summary = train_and_evaluate(arm_config, workdir, seeds=seeds, dataset=dataset,
                                         progress=progress, log=log)
            entry[arm] = arm_statistics(summary)
            entry[arm]["wall_time_s"] = summary.get("wall_time_s")
            with np.load(workdir / "srm.npz") as f:
                curves[name][arm] = (f["angles"], f["srm_after"].mean(axis=-2))
        if control:
            entry["paired_difference"] = paired_differences(entry["model"], entry["control"])
        results.append(entry)
    first = json.loads((out / grid[0][0] / "model" / "config.json").read_text())
    cfg = Config.from_dict(first["config"])
    rotation = results[0]["model"].get("rotation_test") or {}
    study = {
        "preset": config.preset,
        "dataset": first["dataset"]["name"],
        "seeds": seeds,
        "epochs": cfg.epochs,
        "optimizer_steps": summary["steps_per_epoch"] * cfg.epochs,
        "epsilon": cfg.epsilon,
        "claim": cfg.claim,
        "alternative": rotation.get("alternative"),
        "num_rotations": cfg.num_rotations,
        "vary": {k: v for k, v in axes},
        "base_config": config.to_dict(),
        "variants": results,
        "wall_time_s": round(time.time() - start, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    from train.run_files import write_json

    write_json(out / "study.json", study)
    write_markdown(out / "study.md", study)
    if control:
        save_figure(out / "study.png", study, curves)
    return study


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m train.study`` argument parser."""
    from train.cli import new_parser, parse_seeds

    parser = new_parser(
        "python -m train.study",
        "Reproduction study: variants x seeds of a preset, each paired with the isotropic-tanh "
        "control on the same seeds and data order.",
    )
    parser.add_argument("--seeds", type=parse_seeds, default=list(range(4)),
                        metavar="K|S1,S2,...", help="seeds: K (0..K-1) or a list (default 4)")
    parser.add_argument("--vary", action="append", default=[], metavar="NAME=V1,V2",
                        help="a grid axis, e.g. --vary bias_init=zero,torch --vary "
                             "\"hidden_widths=none;128;256,128\"")
    parser.add_argument("--out", type=Path, help="output directory (default study/<preset>)")
    parser.add_argument("--no-control", action="store_true", help="skip the isotropic control")
    return parser


def _grid_axes(args: argparse.Namespace, config: Config):
    """The ``--vary`` axes, every grid point validated before anything trains."""
    axes = parse_vary(args.vary)
    variants(config, axes)
    return axes


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    from train.cli import parse_config, run_errors, stage_log

    start = time.time()
    parser = build_parser()
    args, config, axes = parse_config(parser, argv, _grid_axes)
    out = args.out or Path("study") / config.preset
    log = stage_log(f"study {config.preset}", start)
    log("starting (importing JAX) ...")
    try:
        study = run_study(config, args.seeds, axes, out, control=not args.no_control,
                          progress=not args.no_progress, log=log)
    except run_errors() as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print((out / "study.md").read_text())
    print(f"outputs in {out}/: study.json, study.md" + (", study.png" if not args.no_control
                                                          else ""))
    del study
    return 0


if __name__ == "__main__":
    sys.exit(main())
