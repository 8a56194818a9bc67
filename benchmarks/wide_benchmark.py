"""SRM at language-model width (issue 16): the sample-major kernel against the arc kernel.

Workload ``llm768`` (:data:`benchmarks.workloads.LLM768`): n = 768, the ``±e_i`` basis, every
spanning comb plane (1,178,112), T = 100, ε = 0.9, heavy-tailed tokens with outlier channels.
Times are after compilation, best of ``--repeats``; the arc kernel and the sample-major kernel
run in the same process on the same data, so their ratio is a same-run ratio. The floor is one
read of the activations (a reduction over them: memory bandwidth).

Run::

    python -m benchmarks.wide_benchmark --rows 2000 20000 [--skip-arc-above 20000]
"""

from __future__ import annotations

import argparse
import datetime
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

import srm_jax
from benchmarks.srm_benchmark import cpu_model
from benchmarks.workloads import LLM768, make_wide_activations
from srm_jax import resonance, summaries


def _best(fn, repeats: int) -> float:
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times)


def measure(rows: int, repeats: int, arc: bool) -> dict:
    w = LLM768
    x = jnp.asarray(make_wide_activations(w.n, rows))
    basis = srm_jax.standard_basis(w.n)
    plan, pairs, angles = resonance.plan_measurement(x, basis, epsilon=w.epsilon)
    assert plan.sample_major is not None, "method='auto' must pick the sample-major kernel"
    # Arrays are arguments, never closed over: XLA would constant-fold million-row gathers.
    counts = jax.jit(lambda x, b, p, a: resonance.plan_counts(plan, x, b, p, a, w.epsilon)[0])
    sums = jax.jit(lambda x, b, p, a: summaries.plan_summaries(plan, x, b, p, a, w.epsilon)[0])
    args = (basis, pairs, angles)
    floor = jax.jit(lambda x: jnp.sum(x))
    out = {
        "rows": rows,
        "sample_major_counts_s": _best(lambda: counts(x, *args), repeats),
        "sample_major_summary_s": _best(lambda: sums(x, *args), repeats),
        "floor_read_s": _best(lambda: floor(x), repeats),
    }
    if arc:
        arc_plan = resonance.CountPlan(method="arc", grid=plan.grid, backend=plan.backend)
        arc_counts = jax.jit(
            lambda x, b, p, a: resonance.plan_counts(arc_plan, x, b, p, a, w.epsilon)[0])
        out["arc_counts_s"] = _best(lambda: arc_counts(x, *args), 1)
        same = np.array_equal(np.asarray(arc_counts(x, *args)), np.asarray(counts(x, *args)))
        out["counts_equal_arc"] = bool(same)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-arc-above", type=int, default=20000)
    args = parser.parse_args(argv)
    print(f"# {LLM768.describe()}")
    print(f"# {cpu_model()}, {os.cpu_count()} cores, {jax.default_backend()}, "
          f"{datetime.date.today()}")
    for rows in args.rows:
        r = measure(rows, args.repeats, rows <= args.skip_arc_above)
        line = (f"N={rows:,}: sample-major counts {r['sample_major_counts_s']:.2f} s, "
                f"summaries {r['sample_major_summary_s']:.2f} s, "
                f"floor (one read) {r['floor_read_s'] * 1e3:.2f} ms")
        if "arc_counts_s" in r:
            line += (f", arc {r['arc_counts_s']:.2f} s; ratios arc/counts "
                     f"{r['arc_counts_s'] / r['sample_major_counts_s']:.1f}x, arc/summaries "
                     f"{r['arc_counts_s'] / r['sample_major_summary_s']:.1f}x; counts equal: "
                     f"{r['counts_equal_arc']}")
        print(line, flush=True)


if __name__ == "__main__":
    main()
