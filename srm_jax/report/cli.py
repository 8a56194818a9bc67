"""The ``srm-jax`` command line: ``srm-jax report ACTIVATIONS ...`` (also ``python -m srm_jax``).

Parses the flags into :class:`srm_jax.report.ReportSettings` and calls
:func:`srm_jax.report.run_report`, which reads activations saved by any framework (``.npy``,
``.npz``, ``.safetensors``), streams them through :func:`srm_jax.accumulate_srm` (memory does not
grow with the number of rows) and writes ``report.json``, ``report.md`` and figures to ``--out``.
Several files (or a directory) are shards of one sample set, read in turn; several ``--key`` (or
``--key all``) report several layers, with a table across them.

A bad input ends with one line on stderr naming the problem and exit status 2, and nothing is
written. This is the one place where a library error becomes a message about a flag
(:func:`flag_message`).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import NoReturn

from srm_jax.planes import PLANE_KINDS
from srm_jax.report import defaults
from srm_jax.report.reading import FEATURES
from srm_jax.report.run import ReportSettings, run_report
from srm_jax.significance import STATISTICS

PROG = "srm-jax"
#: The flag that sets each keyword of the library (:class:`ReportSettings`, ``srm_report``).
FLAGS = {
    "key": "--key",
    "labels": "--labels",
    "tokens": "--tokens",
    "vocab": "--vocab",
    "center": "--center",
    "features": "--features",
    "epsilon": "--epsilon",
    "planes": "--planes",
    "statistic": "--statistic",
    "num_resamples": "--resamples",
    "max_samples": "--max-samples",
    "max_planes": "--max-planes",
    "top": "--top",
    "memory_budget": "--memory-budget",
    "out": "--out",
}
#: A keyword in a library message: ``name=`` (``name='value'``) anywhere, or ``name`` first.
_NAMES = "|".join(FLAGS)
_KEYWORD = re.compile(
    rf"^(?P<first>{_NAMES})\b(?!=)|\b(?P<name>{_NAMES})=(?:'(?P<value>[^']*)')?")


def flag_message(message: str) -> str:
    """A library message (:class:`srm_jax.report.ReportError`, ``ValueError``) in the words of
    the command line: each keyword it names becomes the flag that sets it
    (``"reduce max_samples="`` → ``"reduce --max-samples"``, ``"key='all'"`` → ``"--key all"``)."""
    def flag(match: re.Match) -> str:
        if match["first"]:
            return FLAGS[match["first"]]
        value = match["value"]
        return FLAGS[match["name"]] + ("" if value is None else f" {value}")

    return _KEYWORD.sub(flag, message)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The ``srm-jax`` argument parser."""
    parser = _Parser(
        prog=PROG,
        description="Spotlight Resonance Method (SRM) reports for activations from any "
        "framework.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    report = commands.add_parser(
        "report",
        help="is a layer aligned with a basis? SRM, a rotation test and figures",
        description="Measures SRM of saved activations about the planes of a privileged basis\n"
        "and writes report.json, report.md and figures: the alignment score, a rotation-test\n"
        "p-value and a one-sentence verdict; with labels, the most class-selective planes and\n"
        "basis vectors. Rows with NaN/Inf are excluded and counted. Bad input: one line on\n"
        "stderr, exit status 2, nothing written.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="basis: standard (±e_i, the basis of elementwise activations such as ReLU,\n"
        "  GELU, tanh: the default), orthoplex:SEED, simplex:SEED, thompson:M:SEED,\n"
        "  random:M:SEED, or the path of an (m, n) .npy file.\n"
        "example: srm-jax report acts.safetensors --key layer3 --labels labels.npy --out "
        "report/",
    )
    _add_input_arguments(report)
    _add_analysis_arguments(report)
    return parser


def _add_input_arguments(report: argparse.ArgumentParser) -> None:
    """The flags that say what to read: activations, layers, basis, labels, tokens, centring."""
    report.add_argument("activations", metavar="ACTIVATIONS", nargs="+",
                        help=".npy, .npz or .safetensors file(s) of (N, n) activations: several "
                        "files (or a directory of them) are shards, read one after another as "
                        "one sample set")
    report.add_argument("--key", action="append",
                        help="the array (layer) to read from multi-array .npz/.safetensors files; "
                        "repeat it for several layers, or 'all' for every array (one section "
                        "per layer and a table across layers)")
    report.add_argument("--basis", default="standard", metavar="SPEC",
                        help="privileged basis (see below; default: standard)")
    report.add_argument("--labels", metavar="PATH|KEY",
                        help="class labels: a .npy file, or an array of the activations' file")
    report.add_argument("--tokens", metavar="PATH|KEY",
                        help="the token id of every row: a .npy file, or an integer array of the "
                        "activations' file(s) (read from every shard, like --labels); the report "
                        "then names the tokens of the rows that carry the counts")
    report.add_argument("--vocab", metavar="PATH",
                        help="the tokens' texts (needs --tokens): a vocab.txt (line i is token i, "
                        "as BERT's WordPiece) or a Hugging Face tokenizer.json")
    report.add_argument("--center", action="store_true",
                        help="measure the rows less their mean (one more pass over the rows); "
                        "the report also tests the raw rows and says how much of the rows' "
                        "squared norm the mean carries")



def _add_analysis_arguments(report: argparse.ArgumentParser) -> None:
    """The flags that set the analysis and the outputs."""
    report.add_argument("--epsilon", type=float, default=None, metavar="E",
                        help="test this spotlight cosine ε in [-1, 1] alone (SRM curves and "
                        "figures at E too); default: the verdict tests the sweep ε = "
                        f"{', '.join(f'{e:g}' for e in defaults.DEFAULT_TEST_SWEEP)} as one "
                        "family (min-p) and names the ε with the strongest evidence; the curves "
                        f"are drawn at ε = {defaults.DEFAULT_EPSILON}")
    report.add_argument("--planes", choices=PLANE_KINDS, default="comb",
                        help="unordered (comb, default) or ordered (perm) pairs of basis vectors")
    report.add_argument("--features", choices=FEATURES,
                        help="for (N, ..., n) arrays: one sample per row (flatten) or per "
                        "position over the last axis (last)")
    report.add_argument("--seed", type=int, default=0,
                        help="seeds the rotations, label shuffles and subsets (default 0)")
    report.add_argument("--out", default="srm-report", metavar="DIR",
                        help="output directory (default srm-report/)")
    report.add_argument("--resamples", type=int, default=defaults.DEFAULT_RESAMPLES, metavar="K",
                        help="random rotations of the basis (and label shuffles) for the "
                        f"p-values (default {defaults.DEFAULT_RESAMPLES}: p down to 0.01)")
    report.add_argument("--statistic", choices=STATISTICS,
                        default=defaults.DEFAULT_STATISTIC,
                        help="rotation-test statistic: projection (default; the amplitude of the "
                        "mean SRM curve in phase with self-SRM) or correlation (the alignment "
                        "score)")
    report.add_argument("--max-samples", type=int, default=None, metavar="S",
                        help="the rotation tests, ε sweep, class selectivity and projection use "
                        "a random subset of this many samples (default "
                        f"{defaults.DEFAULT_MAX_SAMPLES:,}, fewer where the rotation tests' "
                        "products or their enumeration at the least ε tested would take longer "
                        f"than about 10-15 s, at least {defaults.MIN_MAX_SAMPLES:,}); SRM, the "
                        "neuron ranking and the measures' values count every sample")
    report.add_argument("--max-planes", type=int, default=None, metavar="P",
                        help="measure a random subset of this many planes (default: every "
                        "plane of a ± orthonormal basis, measured through summaries; "
                        f"otherwise {defaults.DEFAULT_SAMPLED_PLANES:,} when the basis has more)")
    report.add_argument("--top", type=int, default=None, metavar="K",
                        help="basis vectors and planes listed (default "
                        f"{defaults.DEFAULT_TOP}, or every plane when there are fewer)")
    report.add_argument("--memory-budget", type=float, default=defaults.DEFAULT_MEMORY_BUDGET_GIB,
                        metavar="GiB",
                        help="memory the report may hold at once; rotations are drawn and "
                        "applied in batches that fit (default "
                        f"{defaults.DEFAULT_MEMORY_BUDGET_GIB:g} GiB)")


def settings_from(args: argparse.Namespace) -> ReportSettings:
    """The library's settings of parsed ``srm-jax report`` flags."""
    return ReportSettings(
        basis=args.basis, labels=args.labels, keys=None if args.key is None else tuple(args.key),
        epsilon=args.epsilon, planes=args.planes, features=args.features, seed=args.seed,
        num_resamples=args.resamples, statistic=args.statistic, max_samples=args.max_samples,
        max_planes=args.max_planes, top=args.top, memory_budget_gib=args.memory_budget,
        tokens=args.tokens, vocab=args.vocab, center=args.center)


def _fail(message: str) -> int:
    print(f"{PROG} report: error: {message}", file=sys.stderr)
    return 2


def one_blas_thread() -> None:
    """Runs OpenBLAS on one thread for the rest of the process.

    Each Haar rotation of the rotation tests is a QR that jaxlib hands to SciPy's LAPACK
    (OpenBLAS). Threaded OpenBLAS inside XLA:CPU's own threads oversubscribes the cores and,
    under load, spin-waits: the draw of one rotation then costs many times one thread's
    (OpenMathLib/OpenBLAS#5517, jax-ml/jax#39292). SciPy's LAPACK is loaded first, so that the
    limit reaches it (threadpoolctl limits the libraries loaded when it is called).
    """
    import scipy.linalg  # noqa: F401  (loads SciPy's OpenBLAS, which jaxlib's QR calls)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``srm-jax`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    one_blas_thread()
    try:
        sentence = run_report(args.activations, settings_from(args), args.out)
    except ValueError as error:  # ReportError, or a library check of a setting
        return _fail(flag_message(str(error)))
    print(f"{sentence[0].upper()}{sentence[1:]}. Report: {os.path.join(args.out, 'report.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
