"""The engine's speed at a git revision against the working tree, measured in the same run.

    python -m benchmarks.compare_revisions --base REV [--workloads fig1,fig1-dense,large]
                                           [--rounds 3] [--method auto]

``srm_jax/`` of ``REV`` is exported (``git archive``) to a temporary folder; each round times
every workload once with that copy and once with the working tree, alternating, each in a fresh
process (:func:`benchmarks.srm_benchmark.run_child`), so that drifting load on a shared machine
falls on both sides alike. Reported: the median over rounds of each side's median wall time and
CPU time per call, and their ratio (working tree / base). It prints a Markdown block headed by
its own provenance line, ready for ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile

from benchmarks import srm_benchmark, workloads

ROOT = srm_benchmark.ROOT


def export_revision(revision: str, folder: str) -> str:
    """Writes ``srm_jax/`` of ``revision`` into ``folder``; returns the resolved commit."""
    commit = subprocess.run(["git", "rev-parse", "--short", revision], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()
    archive = subprocess.run(["git", "archive", commit, "srm_jax"], cwd=ROOT, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    return commit


def _child(workload, method: str, source: str | None) -> dict:
    env = dict(os.environ)
    if source is not None:  # the base revision's srm_jax first on the path
        env["PYTHONPATH"] = source + os.pathsep + ROOT
    else:
        env["PYTHONPATH"] = ROOT
    command = [sys.executable, "-m", "benchmarks.srm_benchmark", "--child", "engine",
               "--workload-json", json.dumps(dataclasses.asdict(workload)),
               "--kwargs-json", json.dumps({"method": method})]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=source or ROOT, env=env,
                          timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def alternate(base: str, names: list[str], rounds: int, method: str = "auto", *,
              verbose: bool = False) -> tuple[str, dict]:
    """Each workload of ``names`` timed ``rounds`` times with ``base``'s ``srm_jax`` and with the
    working tree, alternating (and alternating which goes first), each in a fresh process.

    Returns the resolved base commit and ``{(name, "base" | "tree"): [child results]}``.
    """
    with tempfile.TemporaryDirectory() as folder:
        commit = export_revision(base, folder)
        # The base copy must import its own srm_jax, not the working tree's: run children from
        # the temporary folder, which holds only srm_jax/, with the repo after it on the path.
        samples = {(name, side): [] for name in names for side in ("base", "tree")}
        for round_ in range(rounds):
            for name in names:
                workload = workloads.WORKLOADS[name]
                for side in ("base", "tree") if round_ % 2 == 0 else ("tree", "base"):
                    result = _child(workload, method, folder if side == "base" else None)
                    samples[name, side].append(result)
                    if verbose:
                        print(f"round {round_ + 1} {name} {side}: "
                              f"{result['median_s'] * 1e3:.3g} ms", flush=True)
    return commit, samples


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare_revisions",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--workloads", default="fig1,fig1-dense,large")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--method", default="auto")
    args = parser.parse_args(argv)
    names = args.workloads.split(",")
    commit, samples = alternate(args.base, names, args.rounds, args.method, verbose=True)
    command = (f"python -m benchmarks.compare_revisions --base {args.base} --workloads "
               f"{args.workloads} --rounds {args.rounds} --method {args.method}")
    lines = [
        f"_Measured {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} with `{command}` "
        f"(base = {commit}) on {srm_benchmark.cpu_model()} ({os.cpu_count()} cores, shared; "
        f"load average at start {os.getloadavg()[0]:.1f}). GPU: not measured._",
        "",
        "| workload | base: wall / CPU per call | working tree: wall / CPU per call |"
        " ratio (tree / base), wall / CPU |",
        "|---|---|---|---|",
    ]
    for name in names:
        row = {}
        for side in ("base", "tree"):
            row[side] = (statistics.median(r["median_s"] for r in samples[name, side]),
                         statistics.median(r["cpu_s"] for r in samples[name, side]))
        lines.append(
            f"| {name} | {row['base'][0] * 1e3:.3g} / {row['base'][1] * 1e3:.3g} ms | "
            f"{row['tree'][0] * 1e3:.3g} / {row['tree'][1] * 1e3:.3g} ms | "
            f"{row['tree'][0] / row['base'][0]:.2f} / {row['tree'][1] / row['base'][1]:.2f} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
