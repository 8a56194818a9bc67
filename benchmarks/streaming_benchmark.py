"""Streaming memory and in-training metric overhead (issue 7).

1. **Memory of streaming SRM vs number of samples.** For each ``N`` a fresh subprocess streams
   ``N`` samples (generated batch by batch, never all held) through
   :func:`srm_jax.accumulate_srm` and reports its peak resident set size (``VmHWM`` of
   ``/proc/self/status``, i.e. ``ru_maxrss``) before (after a warm-up stream that compiles and
   lets the allocator settle) and after. For contrast, the in-memory path (all ``N``
   samples materialised, then :func:`srm_jax.spotlight_resonance`) is measured the same way.
2. **Overhead of the in-training metric.** The paper's small autoencoder
   (``train.models.Autoencoder``) trained with SGD; time per step of the jitted train step
   without the metric, with :func:`srm_jax.srm_metric` on a step it skips, and on a step it
   measures (SRM of a held-out probe batch plus self-SRM).

Run: ``python -m benchmarks.streaming_benchmark [--sizes 10000 100000 1000000] [--json out]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MEMORY_CHILD = r"""
import resource, sys, time
import numpy as np
import jax, jax.numpy as jnp
import srm_jax

mode = sys.argv[1]
total, batch, n, m = (int(v) for v in sys.argv[2:6])
basis = np.random.default_rng(0).standard_normal((m, n)).astype(np.float32)

def batches():
    for i, start in enumerate(range(0, total, batch)):
        rows = min(batch, total - start)
        yield np.random.default_rng(i + 1).standard_normal((rows, n)).astype(np.float32)

def hwm_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

# Warm up: compile, and let the allocator and XLA's thread pools reach their steady state
# (RSS settles within a few dozen batches), so that the baseline holds the fixed costs.
warm_batches = (np.random.default_rng(10**6 + i).standard_normal((batch, n)).astype(np.float32)
                for i in range(int(sys.argv[6])))
warm = srm_jax.accumulate_srm(warm_batches, basis, epsilon=0.8)
jax.block_until_ready(warm.counts)
baseline = hwm_kib()
start = time.perf_counter()
if mode == "stream":
    result = srm_jax.accumulate_srm(batches(), basis, epsilon=0.8)
else:
    data = np.concatenate(list(batches()))
    result = jax.jit(srm_jax.spotlight_resonance)(data, basis, epsilon=0.8)
jax.block_until_ready(result.counts)
seconds = time.perf_counter() - start
print("RESULT", baseline, hwm_kib(), int(result.num_samples), seconds)
"""


def memory_run(mode: str, total: int, batch: int, n: int, m: int, warmup: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, mode, str(total), str(batch), str(n), str(m),
         str(warmup)],
        env=env, capture_output=True, text=True, check=True,
    )
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    _, baseline, peak, num, seconds = line.split()
    return {
        "mode": mode, "samples": int(num), "baseline_mib": int(baseline) / 1024,
        "peak_mib": int(peak) / 1024, "growth_mib": (int(peak) - int(baseline)) / 1024,
        "seconds": float(seconds), "samples_per_s": int(num) / float(seconds),
    }


def overhead(steps: int, every: int, probe: int, repeats: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import nnx

    import srm_jax
    from train.models import Autoencoder

    d, n = 784, 24  # the paper's Fig. 1 model: MNIST, n = 24, m = 48
    rng = np.random.default_rng(0)
    x_train = rng.uniform(-1, 1, (4096, d)).astype(np.float32)
    probe_x = jnp.asarray(rng.uniform(-1, 1, (probe, d)).astype(np.float32))

    def build():
        model = Autoencoder(d, latent_dim=n, num_basis=2 * n, size="small",
                            hidden_widths=(128,), basis_kind="orthoplex", rngs=nnx.Rngs(0))
        return model, nnx.Optimizer(model, optax.sgd(0.08, momentum=0.9), wrt=nnx.Param)

    model, _ = build()
    basis = model.latent_basis
    # planes="comb" skips the orthoplex's antipodal pairs (they span no plane).
    metric = srm_jax.srm_metric(basis, every=every, epsilon=0.9)

    @nnx.jit
    def plain_step(model, optimizer, x):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - x) ** 2))(model)
        optimizer.update(model, grads)
        return loss

    @nnx.jit
    def metric_step(model, optimizer, metric_state, step, x):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - x) ** 2))(model)
        optimizer.update(model, grads)
        return loss, metric.update(metric_state, lambda: model.encode(probe_x), step)

    def interleaved():
        # Both models train in lockstep, one step each in turn, so that both timings see the
        # same machine load (the 2 cores are shared).
        plain_model, plain_opt = build()
        model, optimizer = build()
        state = metric.init()
        times = {"plain": [], "skipped": [], "measured": []}
        for step in range(steps):
            x = x_train[(step * 24) % 4072 : (step * 24) % 4072 + 24]
            t = time.perf_counter()
            jax.block_until_ready(plain_step(plain_model, plain_opt, x))
            plain = time.perf_counter() - t
            t = time.perf_counter()
            loss, state = metric_step(model, optimizer, state, step, x)
            jax.block_until_ready((loss, state))
            with_metric = time.perf_counter() - t
            if step >= every:  # the first `every` steps include compilation
                times["plain"].append(plain)
                times["measured" if step % every == 0 else "skipped"].append(with_metric)
        return times

    out = {"plain": [], "skipped": [], "measured": []}
    for _ in range(repeats):
        for label, values in interleaved().items():
            out[label].extend(values)
    med = {k: float(np.median(v)) * 1e3 for k, v in out.items() if v}
    return {
        "model": f"small autoencoder d={d}, hidden 128, n={n}, m={2 * n} (orthoplex), batch 24",
        "planes": int(srm_jax.spanning_planes(basis).shape[0]), "angles": 100, "probe": probe,
        "every": every,
        "steps": steps, "repeats": repeats,
        "median_ms": med,
        "counts": {k: len(v) for k, v in out.items()},
        "measured_overhead_ms": med["measured"] - med["plain"],
        "skipped_overhead_ms": med["skipped"] - med["plain"],
        "amortised_overhead_pct": 100 * ((med["measured"] - med["plain"]) / every
                                         + (med["skipped"] - med["plain"]) * (every - 1) / every)
        / med["plain"],
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+",
                        default=[10_000, 100_000, 1_000_000, 3_000_000])
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--m", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=50, help="warm-up batches per process")
    parser.add_argument("--in-memory", action="store_true", help="also run the in-memory path")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--probe", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--json", default=None)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)

    import jax

    from benchmarks.srm_benchmark import cpu_model, provenance

    report = {
        "provenance": provenance("benchmarks.streaming_benchmark", argv),
        "date": time.strftime("%Y-%m-%d"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_average": os.getloadavg(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
    }
    if not args.skip_memory:
        rows = []
        modes = ["stream"] + (["memory"] if args.in_memory else [])
        for total in args.sizes:
            for mode in modes:
                row = memory_run(mode, total, args.batch, args.n, args.m, args.warmup)
                rows.append(row)
                print(json.dumps(row), flush=True)
        report["memory"] = {"n": args.n, "m": args.m, "batch": args.batch, "epsilon": 0.8,
                            "angles": 100, "warmup_batches": args.warmup, "rows": rows}
    if not args.skip_overhead:
        report["overhead"] = overhead(args.steps, args.every, args.probe, args.repeats)
        print(json.dumps(report["overhead"]), flush=True)
    report["load_average_end"] = os.getloadavg()
    print(report["provenance"], flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
