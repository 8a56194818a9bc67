"""Command line: ``python -m train <preset> [--dataset NAME] [--epochs N] [--out DIR] [--seed S]``.

Runs one preset of the paper's experiments (SPEC §9) and writes into ``DIR`` (default
``runs/<preset>``): ``config.json``, ``metrics.jsonl``, ``srm.npz``, ``summary.json``,
``srm.png`` (``bases.png`` for fig2), plus ``checkpoints/`` and ``measurements/``. Rerunning
into the same ``DIR`` resumes from the newest checkpoint. Exit status 1 on a non-finite loss
(the message says which checkpoint was kept) or on unusable data/settings.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from train import input_pipeline
from train.configs import PRESETS, get_config, override
from train.train import IncompatibleRunError, NonFiniteLossError, train_and_evaluate


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m train`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m train",
        description="Train a paper autoencoder and measure SRM on its latent layer.",
    )
    parser.add_argument("preset", choices=PRESETS, help="experiment preset (train/configs/)")
    parser.add_argument(
        "--dataset", choices=input_pipeline.DATASETS, help="data set (default: mnist5k)"
    )
    parser.add_argument("--epochs", type=int, help="number of epochs (paper: 100)")
    parser.add_argument("--out", type=Path, help="output directory (default: runs/<preset>)")
    parser.add_argument("--seed", type=int, help="PRNG seed of model, bases and shuffling")
    parser.add_argument("--measure-every", type=int, help="SRM every K epochs (default 10)")
    parser.add_argument("--data-dir", help="TFDS data directory (mnist, cifar10)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override any config field, e.g. --set hidden_widths=256,128 --set epsilon=0.8",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="delete an existing run in --out first"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config and exit"
    )
    return parser


def resolve_config(args: argparse.Namespace):
    """The preset's config with the command-line overrides applied."""
    config = get_config(args.preset)
    flags = {
        "dataset": args.dataset,
        "epochs": args.epochs,
        "seed": args.seed,
        "measure_every": args.measure_every,
        "data_dir": args.data_dir,
    }
    config = config.replace(**{k: v for k, v in flags.items() if v is not None})
    return override(config, args.set)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = resolve_config(args)
    except ValueError as err:
        parser.error(str(err))
    if args.print_config:
        print(config.to_json())
        return 0
    out = args.out or Path("runs") / config.preset
    if args.overwrite and out.exists():
        if not (out / "config.json").exists():
            parser.error(f"--overwrite: {out} does not look like a run directory; not deleting.")
        shutil.rmtree(out)
    try:
        summary = train_and_evaluate(config, out, progress=not args.no_progress)
    except NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (
        IncompatibleRunError,
        input_pipeline.MissingDependencyError,
        input_pipeline.DatasetUnavailableError,
    ) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1

    def fmt(x):
        return "undefined" if x is None else f"{x:+.3f}"

    print(
        f"{config.preset} on {summary['dataset']}: {summary['epochs_completed']} epochs, "
        f"test MSE {summary['initial_test_loss']:.4f} -> {summary['final_test_loss']:.4f}; "
        f"alignment with self-SRM {fmt(summary['alignment_before'])} (untrained) -> "
        f"{fmt(summary['alignment_after'])} (trained)."
    )
    for name in ("random", "standard"):
        if f"{name}_alignment_after" in summary:
            print(f"  {name} basis alignment (trained): {fmt(summary[f'{name}_alignment_after'])}")
    print(f"outputs in {out}/: " + ", ".join(
        ["config.json", "metrics.jsonl", "srm.npz", "summary.json", *summary["figures"]]
    ))
    return 0


if __name__ == "__main__":
    sys.exit(main())
