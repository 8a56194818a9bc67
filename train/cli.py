"""The start shared by ``python -m train`` and ``python -m train.study``: the presets' help, the
run options, the parser, the configuration, the log lines and the errors a run reports.

Light: nothing here imports JAX (a rerun of a finished run answers before importing it).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from train import input_pipeline
from train.configs import PRESETS, Config, get_config, override

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


def new_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An argument parser with the presets listed after ``description`` and the run options
    (:func:`add_run_arguments`); each command adds its own."""
    presets = "\n".join(f"  {name:<10} {PRESET_HELP[name]}" for name in PRESETS)
    parser = argparse.ArgumentParser(
        prog=prog,
        description=f"{description}\n\npresets:\n{presets}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_arguments(parser)
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


def parse_config(parser: argparse.ArgumentParser, argv: list[str] | None,
                 check: Callable[[argparse.Namespace, Config], object] | None = None):
    """Parse ``argv`` and resolve the configuration; returns ``(args, config, checked)``.

    ``check(args, config)`` may validate more before anything runs (its result is ``checked``);
    a ``ValueError`` of the settings or of ``check`` exits through ``parser.error`` (status 2).
    """
    args = parser.parse_args(argv)
    try:
        config = resolve_config(args)
        checked = check(args, config) if check is not None else None
    except ValueError as err:
        parser.error(str(err))
    return args, config, checked


def stage_log(prefix: str, start: float | None = None) -> Callable[[str], None]:
    """``log(message)``: one line ``prefix: message [seconds since start]`` on stderr."""
    start = time.time() if start is None else start

    def log(message: str) -> None:
        print(f"{prefix}: {message} [{time.time() - start:.0f} s]", file=sys.stderr, flush=True)

    return log


def run_errors() -> tuple[type[Exception], ...]:
    """The errors a run reports as one line ``error: ...`` with exit status 1 (imports JAX)."""
    from train.checkpoints import IncompatibleRunError
    from train.guard import NonFiniteLossError

    return (NonFiniteLossError, IncompatibleRunError, input_pipeline.MissingDependencyError,
            input_pipeline.DatasetUnavailableError, ValueError)
