"""Command line: ``python -m train <preset> [--dataset NAME] [--epochs N] [--out DIR] [--seed S]``.

Runs one preset of the paper's experiments (math §9) and writes into ``DIR`` (default
``runs/<preset>``): ``config.json``, ``metrics.jsonl``, ``srm.npz``, ``summary.json``,
``srm.png`` (``bases.png`` for fig2), plus ``checkpoints/`` and ``measurements/``.
``--seeds K`` (or ``--seeds 0,3,7``) trains one model per seed at once (vmapped) and adds
``seeds.png`` and ``per_seed`` to ``summary.json``. Rerunning into the same ``DIR`` resumes from
the newest checkpoint; rerunning a finished run says so and returns at once. Exit status 1 on a
non-finite loss (the message says which checkpoint was kept) or on unusable data/settings.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from train.cli import (
    PRESET_HELP,
    add_run_arguments,
    new_parser,
    parse_config,
    parse_seeds,
    resolve_config,
    run_errors,
    stage_log,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m train`` argument parser."""
    parser = new_parser(
        "python -m train",
        "Train one of the paper's autoencoders and measure SRM on its latent layer.",
    )
    parser.add_argument("--out", type=Path, help="output directory (default: runs/<preset>)")
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, help="seed of weights, bases and data order (0)")
    seeds.add_argument("--seeds", type=parse_seeds, metavar="K|S1,S2,...",
                       help="train one model per seed at once: K seeds 0..K-1, or a list")
    parser.add_argument(
        "--overwrite", action="store_true", help="delete an existing run in --out first"
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved settings and exit"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    start = time.time()
    parser = build_parser()
    args, config, _ = parse_config(parser, argv)
    if args.print_config:
        print(config.to_json())
        return 0
    out = args.out or Path("runs") / config.preset
    if args.overwrite and out.exists():
        if not (out / "config.json").exists():
            parser.error(f"--overwrite: {out} does not look like a run directory; not deleting.")
        shutil.rmtree(out)
    from train.finished import finished_summary

    done = finished_summary(out, config, args.seeds)
    if done is not None:
        print(already_complete(config.preset, done, out))
        return 0
    print(f"{config.preset}: starting (importing JAX) ...", file=sys.stderr, flush=True)
    from train.train import train_and_evaluate

    try:
        summary = train_and_evaluate(config, out, seeds=args.seeds,
                                     progress=not args.no_progress,
                                     log=stage_log(config.preset, start))
    except run_errors() as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if summary.get("already_complete"):
        print(already_complete(config.preset, summary, out))
        return 0
    print(describe(summary, out))
    return 0


def already_complete(preset: str, summary: dict, out: Path) -> str:
    """What a rerun of a finished run says."""
    return (f"{preset}: this run is already complete ({summary['epochs_completed']} epochs); "
            f"its outputs are in {out}/ (summary.json, {', '.join(summary.get('figures', []))})."
            " Use --epochs to train further or --overwrite to start afresh.")


def fmt(x) -> str:
    """A score for a printed line (``undefined`` for None)."""
    return "undefined" if x is None else f"{x:+.3f}"


def describe(summary: dict, out: Path) -> str:
    """The closing lines of a run: losses, alignment, the claim tested and the verdict."""
    lines = []
    if "per_seed" in summary:
        iv = summary["intervals"]

        def ci(name):
            s = iv.get(name, {})
            if s.get("mean") is None:
                return "undefined"
            if s.get("low") is None:
                return f"{s['mean']:+.3f}"
            return f"{s['mean']:+.3f} [95% {s['low']:+.3f}, {s['high']:+.3f}]"

        lines.append(
            f"{summary['preset']} on {summary['dataset']}, {len(summary['seeds'])} seeds, "
            f"{summary['epochs_completed']} epochs: test MSE {summary['final_test_loss']:.4f} "
            f"(mean); alignment {ci('alignment_before')} (untrained) -> "
            f"{ci('alignment_after')} (trained)."
        )
        if summary.get("frozen_seeds"):
            lines.append(f"  frozen seeds (non-finite loss): {summary['frozen_seeds']}")
        lines.append(f"  claim tested: {summary['claim']['statement']}; "
                     f"{summary['claim']['verdict'] or 'no rotation test'}.")
    else:
        lines.append(
            f"{summary['preset']} on {summary['dataset']}: {summary['epochs_completed']} epochs, "
            f"test MSE {summary['initial_test_loss']:.4f} -> {summary['final_test_loss']:.4f}; "
            f"alignment with self-SRM {fmt(summary['alignment_before'])} (untrained) -> "
            f"{fmt(summary['alignment_after'])} (trained)."
        )
        for name in ("random", "standard"):
            if f"{name}_alignment_after" in summary:
                lines.append(f"  {name} basis alignment (trained): "
                             f"{fmt(summary[f'{name}_alignment_after'])}")
        lines.append(f"  claim tested: {summary['claim']['statement']}; this run "
                     f"{summary['claim']['verdict']}.")
    lines.append(f"outputs in {out}/: " + ", ".join(
        ["config.json", "metrics.jsonl", "srm.npz", "summary.json", *summary["figures"]]
    ))
    return "\n".join(lines)


# The start shared with ``python -m train.study`` lives in train.cli; these names stay here too.
__all__ = ["PRESET_HELP", "add_run_arguments", "already_complete", "build_parser", "describe",
           "main", "parse_seeds", "resolve_config"]

if __name__ == "__main__":
    sys.exit(main())
