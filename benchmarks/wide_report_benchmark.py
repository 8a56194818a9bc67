"""``srm-jax report`` at language-model width (issue 17): every plane against 1,000 sampled.

Writes two ``.npy`` files (float32, chunk by chunk through :func:`numpy.lib.format.open_memmap`,
never more than ~40 MB in memory at once; :func:`benchmarks.report_benchmark.write_file`):

- ``llm768``: ``--rows768`` rows (default 20,000) × 768 of
  :func:`benchmarks.workloads.make_wide_activations` (Student-t(3) tokens whose
  :func:`~benchmarks.workloads.outlier_channels` are scaled ×30, the GPT-2 residual-stream
  shape of :data:`~benchmarks.workloads.LLM768`);
- ``llm3072``: ``--rows3072`` rows (default 50,000) × 3,072 (GPT-2 MLP width) of isotropic
  Student-t values (5 degrees of freedom, a seed-fixed NumPy generator).

Then, for each file and in a fresh process each (:func:`benchmarks.report_benchmark.run_report`),
runs ``python -m srm_jax report FILE --resamples 199 --seed 0`` in two modes: ``sampled``, the
report path before issue 17 (``--max-planes 1000``: a random 1,000 of the standard basis's
planes), and ``every``, the new default (no ``--max-planes``: every plane, 1,178,112 at n = 768).
Every other option is the CLI's default. It records the wall time of the whole process (import,
compilation, streaming every row, the analyses, the figures), its peak resident memory
(``ru_maxrss`` from ``os.wait4``), the exit code (the last line of standard error on failure),
and from ``report.json``: the verdict, p-value, number of planes and samples, the first five
``top_neurons`` and, for ``llm768``, whether the planted outlier channels are the top neurons.
It prints a Markdown block for ``benchmarks/RESULTS.md``, with the ratio of the two modes' wall
times measured in the same run.

Run (each report takes minutes on 2 CPU cores; ``--timeout`` bounds each run)::

    nice -n 10 python -m benchmarks.wide_report_benchmark

A smoke run at a tiny size::

    python -m benchmarks.wide_report_benchmark --workloads llm768 --rows768 300 \\
        --modes sampled --resamples 9
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from benchmarks.report_benchmark import run_report, write_file
from benchmarks.srm_benchmark import provenance
from benchmarks.workloads import (
    LLM768,
    LLM3072,
    NUM_OUTLIER_CHANNELS,
    OUTLIER_SCALE,
    make_wide_activations,
    outlier_channels,
)

MODULE = "benchmarks.wide_report_benchmark"
SEED = 0
#: Rows generated at a time (~38 MB with the float64 draw at n = 3,072). ``llm768``'s rows depend
#: on its block size (:func:`make_wide_activations` seeds each block by its first row).
BLOCK_ROWS = {LLM768.name: 4_096, LLM3072.name: 1_024}
#: Degrees of freedom of ``llm3072``'s isotropic Student-t values.
T_DF = 5
#: The report's options in each mode (besides ``--resamples`` and ``--seed``).
MODES = {"sampled": ["--max-planes", "1000"], "every": []}
#: ``before``: the report of another revision (``--before REV``, its default options), run from
#: a git worktree of it: the same-run baseline of the code before a change.
BEFORE = "before"
TOP_SHOWN = 5


@dataclasses.dataclass(frozen=True)
class ReportFile:
    """One benchmark file: ``rows × n`` float32 rows, ``block(start, count)`` at a time."""

    name: str
    rows: int
    n: int
    description: str
    block: Callable[[int, int], np.ndarray]
    outliers: np.ndarray | None = None


def llm768_file(rows: int) -> ReportFile:
    """``rows × 768`` heavy-tailed tokens with planted outlier channels."""
    n = LLM768.n

    def block(start: int, count: int) -> np.ndarray:
        return make_wide_activations(n, count, seed=SEED, start=start)

    return ReportFile(LLM768.name, rows, n,
                      f"Student-t(3) tokens, {NUM_OUTLIER_CHANNELS} outlier channels "
                      f"×{OUTLIER_SCALE:g} (`make_wide_activations`)",
                      block, outlier_channels(n, SEED))


def llm3072_file(rows: int) -> ReportFile:
    """``rows × 3,072`` isotropic Student-t values (GPT-2 MLP width)."""
    n = LLM3072.n
    rng = np.random.default_rng([SEED, n, T_DF])

    def block(start: int, count: int) -> np.ndarray:
        return rng.standard_t(T_DF, (count, n)).astype(np.float32)

    return ReportFile(LLM3072.name, rows, n, f"isotropic Student-t({T_DF})", block)


def write(spec: ReportFile, path: str) -> float:
    """Writes ``spec`` to the ``.npy`` file ``path``; returns the seconds it took."""
    started = time.perf_counter()
    write_file(path, spec.rows, spec.n, "npy", block=spec.block, chunk=BLOCK_ROWS[spec.name])
    return time.perf_counter() - started


def read_summary(out: str, outliers: np.ndarray | None) -> dict:
    """The figures of ``out/report.json`` that the benchmark records."""
    with open(os.path.join(out, "report.json")) as fh:
        report = json.load(fh)
    top = report.get("top_neurons")
    found = {
        "verdict": report.get("verdict"),
        "p_value": report.get("p_value"),
        "num_planes": report.get("num_planes"),
        "num_samples": report.get("num_samples"),
        "top_neurons": None if top is None else top[:TOP_SHOWN],
    }
    if outliers is not None:
        planted = {int(c) for c in outliers}
        leading = None if top is None else {int(t["neuron"]) for t in top[:len(planted)]}
        found["outlier_channels"] = sorted(planted)
        found["outliers_in_top"] = None if leading is None else len(leading & planted)
        found["outliers_on_top"] = None if leading is None else leading == planted
    return found


def measure(spec: ReportFile, path: str, scratch: str, mode: str, resamples: int,
            extra: Sequence[str], timeout: float, before_root: str | None = None) -> dict:
    """One fresh-process report of ``path`` in ``mode``: time, memory and its report's figures."""
    out = os.path.join(scratch, f"report_{spec.name}_{mode}")
    shutil.rmtree(out, ignore_errors=True)
    options = argparse.Namespace(resamples=resamples)
    flags = [] if mode == BEFORE else MODES[mode]
    root = {"root": before_root} if mode == BEFORE else {}
    run = run_report(path, out, options, [*flags, *extra], timeout=timeout, check=False, **root)
    result = {
        "mode": mode,
        "options": [*flags, *extra],
        "command": shlex.join(["python", *run["command"][1:]]),
        "seconds": run["seconds"],
        "peak_rss_gib": run["peak_rss_mib"] / 1024,
        "returncode": run["returncode"],
        "timed_out": run["timed_out"],
        "stderr_tail": None if run["returncode"] == 0 else run["stderr_tail"],
        "printed_verdict": run["verdict"],
    }
    if run["returncode"] == 0:
        result.update(read_summary(out, spec.outliers))
    return result


# --- the Markdown block ---------------------------------------------------------------------


def _cell(text: str, limit: int = 160) -> str:
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _number(value, fmt: str = ",") -> str:
    return "—" if value is None else format(value, fmt)


def _neurons(top: list[dict] | None) -> str:
    if not top:
        return "—"
    return ", ".join(
        f"{t['neuron']} ({t['share']:.3f})" if t.get("share") is not None else f"{t['neuron']}"
        for t in top
    )


def _outliers(run: dict) -> str:
    if "outliers_in_top" not in run or run["outliers_in_top"] is None:
        return "—"
    k = len(run["outlier_channels"])
    return f"{'yes' if run['outliers_on_top'] else 'no'} ({run['outliers_in_top']}/{k})"


def _status(run: dict, timeout: float) -> str:
    if run["timed_out"]:
        return f"killed after {timeout:g} s"
    if run["returncode"] != 0:
        return f"exit {run['returncode']}: `{_cell(run['stderr_tail'] or '(no stderr)')}`"
    return "0"


def ratio_line(runs: list[dict], timeout: float) -> str:
    """The every/sampled (and every/before) wall-time ratios of one workload's runs (same
    benchmark run)."""
    by_mode = {run["mode"]: run for run in runs}
    line = _every_over_sampled(by_mode, timeout)
    before, every = by_mode.get(BEFORE), by_mode.get("every")
    if before is not None and every is not None and every["returncode"] == 0:
        if before["returncode"] == 0 and not before["timed_out"]:
            line += (f" every / before (the previous revision's default report), same run: "
                     f"{every['seconds'] / before['seconds']:.2f}×.")
        else:
            line += f" The previous revision's report: {_status(before, timeout)}."
    return line


def _every_over_sampled(by_mode: dict, timeout: float) -> str:
    if "every" not in by_mode or "sampled" not in by_mode:
        return "every / sampled wall time: — (one mode only in this run)."
    every, sampled = by_mode["every"], by_mode["sampled"]
    if sampled["returncode"] != 0 or sampled["timed_out"]:
        return "every / sampled wall time: — (the sampled run failed)."
    if every["timed_out"]:
        return (f"every / sampled wall time: > {every['seconds'] / sampled['seconds']:.2f}× "
                f"(every plane was killed after {timeout:g} s).")
    if every["returncode"] != 0:
        return "every / sampled wall time: — (the every-plane run failed)."
    same = (" Both measured the same number of planes: this CLI still samples planes when "
            "no --max-planes is given." if every.get("num_planes") == sampled.get("num_planes")
            else "")
    return (f"every / sampled wall time, same run: "
            f"{every['seconds'] / sampled['seconds']:.2f}× ({every['seconds']:.1f} s against "
            f"{sampled['seconds']:.1f} s).{same}")


def markdown(header: str, results: list[dict], args: argparse.Namespace) -> list[str]:
    """The block for ``benchmarks/RESULTS.md``: provenance, settings, a table per workload."""
    extra = f" {args.extra_args}" if args.extra_args else ""
    lines = [
        "## `srm-jax report` at language-model width (issue 17): every plane against 1,000",
        "",
        header,
        "",
        f"Each report runs in a fresh process, `python -m srm_jax report FILE --resamples "
        f"{args.resamples} --seed 0{extra}` with the CLI's defaults otherwise (standard basis, "
        "ε = 0.9, `--max-samples` at its default: `srm_jax.report.default_max_samples`); mode "
        "`sampled` adds `--max-planes 1000` (the report "
        "path before issue 17), `every` gives no `--max-planes` (the new default: every plane). "
        "Wall time is the whole process (import, compilation, streaming every row, analyses, "
        "figures); peak RSS its `ru_maxrss` (`os.wait4`); each run is killed after "
        f"{args.timeout:g} s.",
    ]
    for entry in results:
        lines += [
            "",
            f"### {entry['name']}: {entry['rows']:,} × {entry['n']:,}, {entry['description']} "
            f"({entry['file_mib']:,.0f} MiB)",
            "",
        ]
        if entry.get("outlier_channels") is not None:
            lines += [f"Planted outlier channels: {entry['outlier_channels']}.", ""]
        lines += [
            "| mode | wall time | peak RSS | exit | planes | samples | verdict | p | "
            f"top {TOP_SHOWN} neurons (share) | outliers on top |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for run in entry["runs"]:
            lines.append(
                f"| {run['mode']} | {run['seconds']:.1f} s | {run['peak_rss_gib']:.2f} GiB | "
                f"{_status(run, args.timeout)} | {_number(run.get('num_planes'))} | "
                f"{_number(run.get('num_samples'))} | {run.get('verdict') or '—'} | "
                f"{_number(run.get('p_value'), '.3g')} | {_neurons(run.get('top_neurons'))} | "
                f"{_outliers(run)} |"
            )
        lines += ["", ratio_line(entry["runs"], args.timeout)]
    return lines


# --- main -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _scratch(directory: str | None) -> Iterator[str]:
    """``directory`` (created, kept) or a temporary directory removed afterwards."""
    if directory:
        os.makedirs(directory, exist_ok=True)
        yield directory
        return
    with tempfile.TemporaryDirectory(prefix="wide-report-") as scratch:
        yield scratch


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog=f"python -m {MODULE}",
        description="Wall time and peak memory of srm-jax report at language-model width, "
        "every plane against 1,000 sampled planes (issue 17).",
    )
    parser.add_argument("--workloads", nargs="+", default=[LLM768.name, LLM3072.name],
                        choices=(LLM768.name, LLM3072.name))
    parser.add_argument("--rows768", type=int, default=20_000,
                        help="rows of the llm768 file (default 20,000)")
    parser.add_argument("--rows3072", type=int, default=50_000,
                        help="rows of the llm3072 file (default 50,000)")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=(*MODES, BEFORE))
    parser.add_argument("--before", default=None, metavar="REV",
                        help="git revision whose report the 'before' mode runs (its default "
                        "options), from a worktree of it")
    parser.add_argument("--resamples", type=int, default=199)
    parser.add_argument("--extra-args", default="", metavar="ARGS",
                        help="more options for every report, one string "
                        "(e.g. --extra-args='--epsilon 0.5')")
    parser.add_argument("--timeout", type=float, default=1200,
                        help="seconds before a report is killed (default 1200)")
    parser.add_argument("--dir", default=None,
                        help="where to write the files and reports (kept; default: a temporary "
                        "directory, removed at the end)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    extra = shlex.split(args.extra_args)
    makers = {LLM768.name: lambda: llm768_file(args.rows768),
              LLM3072.name: lambda: llm3072_file(args.rows3072)}

    header = provenance(MODULE, argv)
    _log(header)
    results = []
    if (BEFORE in args.modes) != (args.before is not None):
        parser.error("the 'before' mode and --before REV go together")
    with _scratch(args.dir) as scratch:
        before_root = None
        if args.before is not None:
            import subprocess

            from benchmarks.report_benchmark import ROOT

            before_root = os.path.join(scratch, "before")
            subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", before_root,
                            args.before], check=True, capture_output=True)
        for name in dict.fromkeys(args.workloads):
            spec = makers[name]()
            path = os.path.join(scratch, f"{name}_{spec.rows}.npy")
            seconds = write(spec, path)
            entry = {
                "name": name, "rows": spec.rows, "n": spec.n, "description": spec.description,
                "file": path, "file_mib": os.path.getsize(path) / 2**20, "write_s": seconds,
                "outlier_channels": None if spec.outliers is None else spec.outliers.tolist(),
                "runs": [],
            }
            _log(f"wrote {path} ({entry['file_mib']:,.0f} MiB) in {seconds:.1f} s")
            for mode in dict.fromkeys(args.modes):
                run = measure(spec, path, scratch, mode, args.resamples, extra, args.timeout,
                              before_root)
                entry["runs"].append(run)
                _log(f"{name} {mode}: {_status(run, args.timeout)}, {run['seconds']:.1f} s, "
                     f"{run['peak_rss_gib']:.2f} GiB, {run.get('num_planes')} planes, "
                     f"{run.get('verdict')} (p = {run.get('p_value')})")
            results.append(entry)
        if before_root is not None:
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", before_root],
                           check=False, capture_output=True)

    print("\n".join(markdown(header, results, args)), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"provenance": header, "argv": argv, "workloads": results}, fh, indent=2)


if __name__ == "__main__":
    main()
