"""SRM at language-model width (issue 16): the sample-major kernel against the arc kernel.

Workload ``llm768`` (:data:`benchmarks.workloads.LLM768`): n = 768, the ``±e_i`` basis, every
spanning comb plane (1,178,112), T = 100, ε = 0.9, heavy-tailed tokens with outlier channels.
Times are after compilation, best of ``--repeats``; the arc kernel and the sample-major kernel
run in the same process on the same data, so their ratio is a same-run ratio. The floor is one
read of the activations (a reduction over them: memory bandwidth, nothing allocated).

Sections (each optional):

- ``--rows``: full counts and summaries against ``"arc"`` (counts compared entry by entry);
- ``--epsilons``: summaries over ε at the first ``--rows`` size, with the tile kernel's time
  at the same size (its cost does not depend on ε) and the choice of ``method="auto"``;
- ``--rotations``: the rotation test over every plane (:func:`srm_jax.alignment_test`), and its
  floor: the same number of Haar rotations and ``(N, n) × (n, n)`` products alone;
- ``--stream-rows``: ``llm768`` files of that many rows written as ``.npy``, each streamed through
  :func:`srm_jax.accumulate_summary` in a fresh process (wall time with compilation, that
  process's peak memory, ``VmHWM``: flat in N when the stream holds nothing but its batches),
  beside one read of the same file (the floor); ``--llm3072-rows``: the same for ``llm3072``;
- ``--fig1-base``: fig1 (``method="auto"``) timed with that revision's ``srm_jax`` and with the
  working tree, alternating in fresh processes (:mod:`benchmarks.compare_revisions`).

Run (the issue's figures, in one run; about 20 minutes on 2 cores, 4 GB of scratch files)::

    python -m benchmarks.wide_benchmark --rows 2000 20000 \\
        --epsilons 0.1 0.2 0.3 0.5 0.7 0.9 0.95 -0.5 --rotations 199 \\
        --stream-rows 100000 1000000 --llm3072-rows 100000 --fig1-base 4ce0595^ --scratch DIR
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import statistics
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

import srm_jax
from benchmarks import compare_revisions
from benchmarks.report_benchmark import run_measured, write_file
from benchmarks.srm_benchmark import ROOT, cpu_model, peak_rss_mib
from benchmarks.workloads import LLM768, LLM3072, make_wide_activations, spread_tokens
from srm_jax import resonance, summaries
from srm_jax._precision import exact_matmul
from srm_jax.report import ArraySource
from srm_jax.significance import haar_rotation


def _best(fn, repeats: int) -> float:
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times)


def _kernels(plan, epsilon):
    # Arrays are arguments, never closed over: XLA would constant-fold million-row gathers.
    counts = jax.jit(lambda x, b, p, a: resonance.plan_counts(plan, x, b, p, a, epsilon)[0])
    sums = jax.jit(lambda x, b, p, a: summaries.plan_summaries(plan, x, b, p, a, epsilon)[0])
    return counts, sums


def measure(x, basis, repeats: int, arc: bool, epsilon: float) -> dict:
    plan, pairs, angles = resonance.plan_measurement(x, basis, epsilon=epsilon)
    assert plan.sample_major is not None, "method='auto' must pick the sample-major kernel"
    counts, sums = _kernels(plan, epsilon)
    args = (basis, pairs, angles)
    floor = jax.jit(lambda x: jnp.sum(x))
    out = {
        "rows": x.shape[0],
        "sample_major_counts_s": _best(lambda: counts(x, *args), repeats),
        "sample_major_summary_s": _best(lambda: sums(x, *args), repeats),
        "floor_read_s": _best(lambda: floor(x), repeats),
    }
    if arc:
        arc_plan = resonance.CountPlan(method="arc", grid=plan.grid, backend=plan.backend)
        arc_counts, _ = _kernels(arc_plan, epsilon)
        out["arc_counts_s"] = _best(lambda: arc_counts(x, *args), 1)
        same = np.array_equal(np.asarray(arc_counts(x, *args)), np.asarray(counts(x, *args)))
        out["counts_equal_arc"] = bool(same)
    return out


def epsilon_sweep(x, basis, epsilons, repeats: int) -> list[dict]:
    """Summaries over ε with the sample-major kernel, on the ``llm768`` tokens ``x`` and on as
    many :func:`benchmarks.workloads.spread_tokens` (its worst case), and what ``method="auto"``
    picks (the tile kernel's cost does not depend on ε or the data: timed in :func:`measure`)."""
    out = []
    for eps in epsilons:
        plan, pairs, angles = resonance.plan_measurement(x, basis, epsilon=eps,
                                                         method="sample_major")
        auto, *_ = resonance.plan_measurement(x, basis, epsilon=eps)
        _, sums = _kernels(plan, eps)
        spread = jnp.asarray(spread_tokens(x.shape[1], x.shape[0], eps))
        out.append({"epsilon": eps, "leaders": plan.sample_major.leaders,
                    "summary_s": _best(functools.partial(sums, x, basis, pairs, angles),
                                       repeats),
                    "spread_summary_s": _best(
                        functools.partial(sums, spread, basis, pairs, angles), repeats),
                    "auto": "sample_major" if auto.sample_major is not None else "arc"})
    return out


def rotation_test(x, basis, num_rotations: int, epsilon: float) -> dict:
    """The rotation test over every plane, and its floor (rotations and products alone)."""
    key = jax.random.key(0)
    start = time.perf_counter()
    result = srm_jax.alignment_test(key, x, basis, epsilon=epsilon,
                                    num_resamples=num_rotations)
    jax.block_until_ready(result.p_value)
    total = time.perf_counter() - start

    @jax.jit
    def products(key, x):
        def one(carry, k):
            q = haar_rotation(k, x.shape[1], x.dtype)
            y = exact_matmul(x, q.T)
            return carry + jnp.sum(y * y), None
        return jax.lax.scan(one, jnp.float32(0), jax.random.split(key, num_rotations))[0]

    floor = _best(lambda: products(key, x), 1)
    return {"rotations": num_rotations, "test_s": total, "floor_s": floor,
            "p_value": float(result.p_value)}


# Rows a streamed batch holds (59 MB at 768 units, 246 MB at 3,072), and a written block.
STREAM_BATCH = 20_000


def stream_child(path: str, epsilon: float) -> dict:
    """In a fresh process: one read of the ``.npy`` file ``path`` (the floor), then its summaries
    streamed through :func:`srm_jax.accumulate_summary` (with compilation), and this process's
    peak memory (:func:`benchmarks.srm_benchmark.peak_rss_mib`: ``VmHWM``, not ``os.wait4``'s
    ``ru_maxrss``, which carries the parent's peak at the fork)."""
    # The report's reader: a fresh memory map per block, so pages read do not stay resident.
    source = ArraySource(path, None)
    rows, n = source.shape
    start = time.perf_counter()
    total = 0.0
    for block in source.rows(STREAM_BATCH):
        total += float(np.sum(block))
    read = time.perf_counter() - start
    basis = srm_jax.standard_basis(n)
    start = time.perf_counter()
    summary = srm_jax.accumulate_summary(source.rows(STREAM_BATCH), basis, epsilon=epsilon,
                                         batch_size=STREAM_BATCH)
    curve = np.asarray(summary.mean_curve)
    return {"rows": int(rows), "n": int(n), "read_s": read, "peak_rss_gib": peak_rss_mib() / 1024,
            "stream_s": time.perf_counter() - start, "num_samples": int(summary.num_samples),
            "num_planes": int(summary.plane_totals.shape[0]), "mean_curve_max": float(curve.max())}


def stream(workload, rows: int, folder: str) -> dict:
    """Writes ``rows`` of ``workload`` to an ``.npy`` file and measures :func:`stream_child` on
    it in a fresh process (peak RSS of that process alone)."""
    path = os.path.join(folder, f"{workload.name}_{rows}.npy")
    write_file(path, rows, workload.n, "npy", chunk=STREAM_BATCH,
               block=lambda start, count: make_wide_activations(workload.n, count, start=start))
    run = run_measured([sys.executable, "-m", "benchmarks.wide_benchmark", "--child-stream",
                        path, "--epsilon", str(workload.epsilon)], cwd=ROOT)
    os.remove(path)
    if run["returncode"] != 0:
        raise RuntimeError(f"stream child failed: {run['stderr_tail']}")
    result = json.loads(run["printed"].splitlines()[-1])
    return {**result, "process_s": run["seconds"]}


def fig1_same_run(base: str, rounds: int = 3) -> dict:
    """fig1's median time per call with ``base``'s ``srm_jax`` and with the working tree
    (:func:`benchmarks.compare_revisions.alternate`)."""
    commit, samples = compare_revisions.alternate(base, ["fig1"], rounds)
    return {"commit": commit,
            "base_s": statistics.median(r["median_s"] for r in samples["fig1", "base"]),
            "tree_s": statistics.median(r["median_s"] for r in samples["fig1", "tree"])}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="*", default=[2000, 20000])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-arc-above", type=int, default=20000)
    parser.add_argument("--epsilons", type=float, nargs="*", default=[])
    parser.add_argument("--rotations", type=int, default=0)
    parser.add_argument("--rotation-rows", type=int, default=20000)
    parser.add_argument("--stream-rows", type=int, nargs="*", default=[])
    parser.add_argument("--llm3072-rows", type=int, nargs="*", default=[])
    parser.add_argument("--scratch", default=None, help="folder for the streamed files")
    parser.add_argument("--fig1-base", default=None)
    parser.add_argument("--fig1-rounds", type=int, default=5)
    parser.add_argument("--child-stream", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--epsilon", type=float, default=LLM768.epsilon, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_stream:
        print(json.dumps(stream_child(args.child_stream, args.epsilon)))
        return
    w = LLM768
    print(f"# {w.describe()}")
    print(f"# {cpu_model()}, {os.cpu_count()} cores, {jax.default_backend()}, "
          f"{datetime.date.today()}")
    basis = srm_jax.standard_basis(w.n)
    first = None
    for rows in args.rows:
        x = jnp.asarray(make_wide_activations(w.n, rows))
        r = measure(x, basis, args.repeats, rows <= args.skip_arc_above, w.epsilon)
        first = first or r
        line = (f"N={rows:,}: sample-major counts {r['sample_major_counts_s']:.3f} s, "
                f"summaries {r['sample_major_summary_s']:.3f} s, "
                f"floor (one read) {r['floor_read_s'] * 1e3:.2f} ms")
        if "arc_counts_s" in r:
            line += (f", arc {r['arc_counts_s']:.2f} s; ratios arc/counts "
                     f"{r['arc_counts_s'] / r['sample_major_counts_s']:.1f}x, arc/summaries "
                     f"{r['arc_counts_s'] / r['sample_major_summary_s']:.1f}x; counts equal: "
                     f"{r['counts_equal_arc']}")
        print(line, flush=True)
    if args.epsilons:
        rows = args.rows[0] if args.rows else 2000
        arc = first.get("arc_counts_s") if first and first["rows"] == rows else None
        x = jnp.asarray(make_wide_activations(w.n, rows))
        for r in epsilon_sweep(x, basis, args.epsilons, args.repeats):
            line = (f"eps={r['epsilon']}: N={rows:,} summaries {r['summary_s']:.3f} s, spread "
                    f"tokens {r['spread_summary_s']:.3f} s (L={r['leaders']}), auto picks "
                    f"{r['auto']}")
            if arc:
                line += (f"; arc / sample-major {arc / r['summary_s']:.1f}x, spread "
                         f"{arc / r['spread_summary_s']:.2f}x")
            print(line, flush=True)
    if args.rotations:
        x = jnp.asarray(make_wide_activations(w.n, args.rotation_rows))
        r = rotation_test(x, basis, args.rotations, w.epsilon)
        print(f"rotation test, {r['rotations']} rotations, every plane, "
              f"N={args.rotation_rows:,}: {r['test_s']:.1f} s with compilation "
              f"(p = {r['p_value']:.3f}); floor ({r['rotations']} Haar rotations and products) "
              f"{r['floor_s']:.1f} s; ratio {r['test_s'] / r['floor_s']:.2f}", flush=True)
    streamed = [(LLM768, rows) for rows in args.stream_rows]
    streamed += [(LLM3072, rows) for rows in args.llm3072_rows]
    if streamed:
        with tempfile.TemporaryDirectory(dir=args.scratch) as folder:
            for workload, rows in streamed:
                r = stream(workload, rows, folder)
                print(f"{workload.name} streamed from .npy, N={rows:,} (n={r['n']}, "
                      f"P={r['num_planes']:,}): summaries {r['stream_s']:.1f} s with "
                      f"compilation ({r['num_samples']:,} samples counted; mean-curve peak "
                      f"{r['mean_curve_max']:.3g}), process {r['process_s']:.1f} s, peak RSS "
                      f"{r['peak_rss_gib']:.2f} GiB; floor (one read of the file) "
                      f"{r['read_s']:.2f} s, ratio {r['stream_s'] / r['read_s']:.1f}", flush=True)
    if args.fig1_base:
        r = fig1_same_run(args.fig1_base, args.fig1_rounds)
        print(f"fig1 (auto), median per call over {args.fig1_rounds} alternating fresh "
              f"processes: base {r['commit']} {r['base_s'] * 1e3:.2f} ms, "
              f"working tree {r['tree_s'] * 1e3:.2f} ms, "
              f"ratio (tree / base) {r['tree_s'] / r['base_s']:.2f}", flush=True)


if __name__ == "__main__":
    main()
