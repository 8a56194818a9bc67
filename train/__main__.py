"""Command line: ``python -m train <preset> [--dataset NAME] [--epochs N] [--out DIR] [--seed S]``.

Runs one preset of the paper's experiments (SPEC §9) and writes into ``DIR`` (default
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

from train import input_pipeline
from train.configs import PRESETS, get_config, override

# What each preset reproduces, in a user's words (shown by --help).
PRESET_HELP = {
    "fig1": "Fig. 1: small MNIST autoencoder, 24-d latent on a 48-vector (elementwise tanh) "
            "basis; the paper: trained latents align with the basis",
    "fig2": "Fig. 2: the same on n=10, SRM on a random, the standard and the privileged basis; "
            "the paper: only the privileged basis shows structure",
    "fig5": "Fig. 5: large CIFAR-10 autoencoder (needs --dataset cifar10 or an embedded set)",
    "fig6": "Fig. 6: large MNIST autoencoder, 10-d latent, eps=0.8",
    "fig7": "Fig. 7: small autoencoder on simplex bases (24-d latent, 25 vectors); the paper: "
            "anti-alignment",
    "fig8": "Fig. 8: large MNIST autoencoder, overcomplete Thompson basis (n=10, m=40)",
    "fig9": "Fig. 9: large MNIST autoencoder, overcomplete Thompson basis (n=24, m=96), eps=0.6",
    "isotropic": "control: the Fig. 1 model with isotropic tanh everywhere; expected: no "
                 "alignment with the (unused) reference basis",
}


def parse_seeds(text: str) -> list[int]:
    """``--seeds``: ``K`` (seeds 0 … K−1) or a comma-separated list (``0,3,7``)."""
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        else:
            seeds = list(range(int(text)))
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"--seeds takes a count K or a list like 0,3,7, got {text!r}") from err
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds must name distinct seeds, got {text!r}")
    return seeds


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options shared by ``python -m train`` and ``python -m train.study``."""
    parser.add_argument("preset", choices=PRESETS, metavar="PRESET",
                        help="the experiment to run (listed above)")
    parser.add_argument(
        "--dataset", choices=input_pipeline.DATASETS,
        help="data set: mnist5k (default, 5,000 real MNIST digits, no download), digits "
             "(scikit-learn 8x8), mnist, cifar10 (need a prepared TFDS directory)",
    )
    parser.add_argument("--epochs", type=int, help="number of epochs (paper: 100)")
    parser.add_argument("--measure-every", type=int, help="measure SRM every K epochs (10)")
    parser.add_argument("--data-dir", help="TFDS data directory (mnist, cifar10)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="change any setting, e.g. --set hidden_widths=256,128 --set epsilon=0.8 "
             "--set bias_init=torch (python -m train PRESET --print-config lists them)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m train`` argument parser."""
    presets = "\n".join(f"  {name:<10} {PRESET_HELP[name]}" for name in PRESETS)
    parser = argparse.ArgumentParser(
        prog="python -m train",
        description="Train one of the paper's autoencoders and measure SRM on its latent "
                    "layer.\n\npresets:\n" + presets,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_arguments(parser)
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


def resolve_config(args: argparse.Namespace):
    """The preset's config with the command-line overrides applied."""
    config = get_config(args.preset)
    flags = {
        "dataset": args.dataset,
        "epochs": args.epochs,
        "seed": getattr(args, "seed", None),
        "measure_every": args.measure_every,
        "data_dir": args.data_dir,
    }
    config = config.replace(**{k: v for k, v in flags.items() if v is not None})
    return override(config, args.set)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    start = time.time()
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
    from train.finished import finished_summary

    done = finished_summary(out, config, args.seeds)
    if done is not None:
        print(already_complete(config.preset, done, out))
        return 0
    _stderr(f"{config.preset}: starting (importing JAX) ...")
    from train.train import IncompatibleRunError, NonFiniteLossError, train_and_evaluate

    def log(message: str) -> None:
        _stderr(f"{config.preset}: {message} [{time.time() - start:.0f} s]")

    try:
        summary = train_and_evaluate(config, out, seeds=args.seeds,
                                     progress=not args.no_progress, log=log)
    except NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (
        IncompatibleRunError,
        input_pipeline.MissingDependencyError,
        input_pipeline.DatasetUnavailableError,
        ValueError,
    ) as err:
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


if __name__ == "__main__":
    sys.exit(main())
