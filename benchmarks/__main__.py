"""Runs srm-jax's benchmark suite and prints one table.

    python -m benchmarks                  # everything: fig1, fig1-dense, large, sweeps, auto
                                          # crossover, training throughput (~15 min on 2 cores)
    python -m benchmarks --quick          # a smoke run of every part (small sizes, ~2 min)
    python -m benchmarks --only fig1      # one part (comma-separated: fig1, fig1-dense, large,
                                          # sweeps, crossover, training, others)
    python -m benchmarks --write          # also update benchmarks/RESULTS.md and sweeps.png

Columns: median wall time of repeated calls after compilation; CPU time of the process per call
(all threads; insensitive to other load on the machine); the first call, compilation included;
peak resident memory of the whole process (``ru_maxrss``, a fresh process per measurement);
speed-up over the vectorised NumPy baseline (median wall time, and CPU time: all threads of
each, so the CPU-time ratio is the one that other load on the machine leaves alone) and over the
paper's App. A algorithm as published (timed on a few planes and scaled by P); and the ratio to
the floor (reading the activations and projecting them on the basis at the device's measured
peak rates).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from benchmarks import srm_benchmark, workloads

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "RESULTS.md")
PLOT = os.path.join(HERE, "sweeps.png")
PARTS = ("fig1", "fig1-dense", "large", "sweeps", "crossover", "training", "others")
BEGIN, END = "<!-- srm-benchmark:begin -->", "<!-- srm-benchmark:end -->"


def _ms(seconds) -> str:
    if seconds is None:
        return "—"
    if seconds >= 100:
        return f"{seconds:,.0f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1e3:.3g} ms"


def _ratio(numerator, denominator) -> str:
    if numerator is None or denominator is None:
        return "—"
    value = numerator / denominator
    return f"{value:,.0f}×" if value >= 100 else f"{value:.3g}×"


def _mib(value) -> str:
    return "—" if value is None else f"{value:,.0f} MiB"


def measure_workload(workload, quick: bool, rates: dict) -> dict:
    repeats = 3 if quick else 9
    engine = srm_benchmark.run_child("engine", workload, repeats=repeats)
    heavy = workload.num_samples * workload.num_planes > 50_000_000
    vectorised = srm_benchmark.run_child(
        "vectorised", workload, repeats=1 if (quick or heavy) else 3
    )
    published = srm_benchmark.run_child(
        "published", workload, planes=1 if quick else (2 if heavy else 3)
    )
    two_step = srm_benchmark.run_child(
        "published", workload, planes=1 if quick else 3, form="two-step"
    )
    return {
        "workload": workload, "engine": engine, "vectorised": vectorised,
        "published": published, "two_step": two_step,
        "floor_s": srm_benchmark.floor_seconds(workload, rates),
    }


def workload_table(rows: list[dict]) -> list[str]:
    lines = [
        "| workload | backend | median | CPU time / call | first call (compile) | "
        "recompiles on new values | peak RSS | vs vectorised NumPy | vs vectorised NumPy, CPU "
        "time | vs published App. A | vs App. A two-step | vs floor |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        w, e, v, p = row["workload"], row["engine"], row["vectorised"], row["published"]
        lines.append(
            f"| {w.name} ({w.describe()}) | {e['backend']} | {_ms(e['median_s'])} | "
            f"{_ms(e['cpu_s'])} | {_ms(e['first_call_s'])} | {'yes' if e['recompiled'] else 'no'}"
            f" | {_mib(e['peak_rss_mib'])} | {_ratio(v['median_s'], e['median_s'])} | "
            f"{_ratio(v['cpu_s'], e['cpu_s'])} | {_ratio(p['median_s'], e['median_s'])} | "
            f"{_ratio(row['two_step']['median_s'], e['median_s'])} | "
            f"{_ratio(e['median_s'], row['floor_s'])} |"
        )
    lines += [
        "",
        "| workload | baseline | median | CPU time / call | peak RSS | note |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        w, v = row["workload"], row["vectorised"]
        lines.append(
            f"| {w.name} | vectorised NumPy (float32) | {_ms(v['median_s'])} | "
            f"{_ms(v['cpu_s'])} | {_mib(v['peak_rss_mib'])} | {len(v['times_s'])} run(s) |"
        )
        for key, label in (("published", "published App. A: one einsum, as the authors' code"),
                           ("two_step", "App. A two-step: rotate, then one matmul")):
            p = row[key]
            per_plane = sorted(p["per_plane_s"])[len(p["per_plane_s"]) // 2]
            lines.append(
                f"| {w.name} | {label} (float64) | {_ms(p['median_s'])} | — | "
                f"{_mib(p['peak_rss_mib'])} | {_ms(per_plane)} per plane × {w.num_planes:,} "
                f"planes ({p['planes_timed']} timed) |"
            )
    return lines


def run_sweeps(quick: bool) -> dict:
    """Engine and baseline times along each sweep axis (in this process; no memory figures)."""
    import jax

    results = {}
    for axis in workloads.SWEEP_VALUES:
        points = []
        for workload in workloads.sweep(axis, quick):
            data = workloads.make_activations(workload)
            basis = workloads.make_basis(workload)
            srm = srm_benchmark.engine_srm(workload)
            jax.block_until_ready(srm(data, basis))
            engine, _ = srm_benchmark._median_time(
                lambda srm=srm, data=data, basis=basis: jax.block_until_ready(srm(data, basis)),
                3 if quick else 5,
            )
            # The vectorised baseline costs ~90 ns per (sample, plane) pair here: skip it where
            # one run would take over a minute.
            pairs = workload.num_samples * workload.num_planes
            vectorised = None
            if pairs <= 600_000_000 and not (quick and pairs > 20_000_000):
                vectorised = srm_benchmark.vectorised_run(workload, repeats=1)["median_s"]
            two_step = srm_benchmark.published_run(workload, 1, "two-step")["median_s"]
            # The published single einsum costs ~1.3 ns per N·T·n² per plane: time one plane
            # where that takes under 15 s.
            published = None
            if workload.num_samples * workload.num_angles * workload.n**2 * 1.3e-9 <= 15:
                published = srm_benchmark.published_run(workload, planes=1)["median_s"]
            points.append({
                "value": getattr(workload, axis), "engine_s": engine,
                "vectorised_s": vectorised, "published_s": published, "two_step_s": two_step,
            })
            print(f"  sweep {axis}={getattr(workload, axis)}: srm-jax {_ms(engine)}, "
                  f"vectorised {_ms(vectorised)}, published {_ms(published)}, "
                  f"two-step {_ms(two_step)}", flush=True)
        results[axis] = points
    return results


def sweep_table(results: dict) -> list[str]:
    lines = [
        "| swept | value | srm-jax | vectorised NumPy | published App. A (1 plane × P) | "
        "App. A two-step (1 plane × P) | vs vectorised | vs published | vs two-step |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    names = {"num_samples": "N", "m": "m", "num_angles": "T"}
    for axis, points in results.items():
        for p in points:
            lines.append(
                f"| {names[axis]} | {p['value']:,} | {_ms(p['engine_s'])} | "
                f"{_ms(p['vectorised_s']) if p['vectorised_s'] else 'skipped'} | "
                f"{_ms(p['published_s']) if p['published_s'] else 'skipped'} | "
                f"{_ms(p['two_step_s'])} | {_ratio(p['vectorised_s'], p['engine_s'])} | "
                f"{_ratio(p['published_s'], p['engine_s'])} | "
                f"{_ratio(p['two_step_s'], p['engine_s'])} |"
            )
    return lines


def plot_sweeps(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {"num_samples": "N (samples)", "m": "m (basis vectors)", "num_angles": "T (angles)"}
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for ax, (axis, points) in zip(axes, results.items(), strict=True):
        x = [p["value"] for p in points]
        for key, label, style in (
            ("engine_s", "srm-jax (arc)", "o-"),
            ("vectorised_s", "vectorised NumPy", "s--"),
            ("published_s", "published App. A (1 plane × P)", "^:"),
            ("two_step_s", "App. A two-step (1 plane × P)", "v:"),
        ):
            pts = [(xv, p[key]) for xv, p in zip(x, points, strict=True) if p[key]]
            if pts:
                ax.plot(*zip(*pts, strict=True), style, label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(labels[axis])
        ax.set_ylabel("seconds per SRM")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("SRM time, one axis swept around fig1 (N=10,000, m=48 comb, T=100, ε=0.9), "
                 "2 CPU cores")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(blocks: dict[str, list[str]]) -> None:
    """Replaces (or adds) each part's block inside this suite's section of RESULTS.md.

    The section is delimited by ``BEGIN``/``END``; each part by its own pair of markers, so that
    ``--only`` refreshes that part and keeps the others. Other sections of the file are kept.
    """
    if os.path.exists(RESULTS):
        with open(RESULTS) as fh:
            current = fh.read()
    else:
        current = "# srm-jax benchmark results\n"
    if BEGIN not in current or END not in current:
        current = current.rstrip() + "\n\n## SRM: srm-jax against the NumPy baselines (issue 5)"
        current += f"\n\n{BEGIN}\n{END}\n"
    head, rest = current.split(BEGIN, 1)
    section, tail = rest.split(END, 1)
    for name, lines in blocks.items():
        begin, end = f"<!-- srm-benchmark:{name}:begin -->", f"<!-- srm-benchmark:{name}:end -->"
        block = "\n".join([begin, *lines, end])
        if begin in section and end in section:
            before, after = section.split(begin, 1)
            section = before + block + after.split(end, 1)[1]
        else:
            section = section.rstrip("\n") + "\n" + block + "\n"
    with open(RESULTS, "w") as fh:
        fh.write(head + BEGIN + section + END + tail)


def run_others() -> list[str]:
    """Other helpers' benchmarks, when present (they write their own RESULTS sections)."""
    lines = []
    for module in ("activations_benchmark", "streaming_benchmark"):
        if not os.path.exists(os.path.join(HERE, module + ".py")):
            continue
        proc = subprocess.run(
            [sys.executable, "-m", f"benchmarks.{module}"], capture_output=True, text=True,
            cwd=os.path.dirname(HERE),
        )
        print(proc.stdout[-4000:], proc.stderr[-2000:] if proc.returncode else "")
        lines.append(f"- `python -m benchmarks.{module}`: exit {proc.returncode}")
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Times srm-jax's SRM engine against NumPy baselines (the paper's published "
        "algorithm and a vectorised NumPy form), and the Fig. 1 training loop, each measurement "
        "in a fresh process; prints one table.",
        epilog="parts: fig1 (Fig. 1 sizes), fig1-dense (the same, most samples lit), large "
        "(N=60,000, m=96, 9,120 planes), sweeps (time against N, m, T), crossover (where "
        "method='auto' switches), training (training steps/s, PyTorch if installed), others "
        "(the activation and streaming benchmarks). Default: all but 'others'.",
    )
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: small sizes and few repeats (~1.5 min)")
    parser.add_argument("--only", default=None, metavar="PARTS",
                        help="comma-separated parts to run, e.g. --only fig1,sweeps")
    parser.add_argument("--write", action="store_true",
                        help="also update benchmarks/RESULTS.md and benchmarks/sweeps.png")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    parts = args.only.split(",") if args.only else [p for p in PARTS if p != "others"]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {PARTS}")


    started = time.perf_counter()
    provenance = srm_benchmark.provenance("benchmarks", argv)
    print(provenance, flush=True)
    blocks = {}

    def emit(name: str, lines: list[str]) -> None:
        print("\n".join(lines), flush=True)
        blocks[name] = [provenance, "", *lines]

    rows = []
    for name in ("fig1", "fig1-dense", "large"):
        if name in parts:
            workload = workloads.WORKLOADS[name]
            if args.quick and name == "large":
                workload = workload.replace(name="large-quick", num_samples=6_000)
            print(f"measuring {workload.name}: {workload.describe()}", flush=True)
            if not rows:
                rates = srm_benchmark.measure_peak_rates()
            rows.append(measure_workload(workload, args.quick, rates))
    if rows:
        emit("workloads", [
            f"Measured peak rates (for the floor): {rates['flops'] / 1e9:.0f} GFLOP/s float32 "
            f"matmul, {rates['bytes_per_s'] / 1e9:.1f} GB/s memory.", "", *workload_table(rows),
        ])
    if "sweeps" in parts:
        print("measuring sweeps", flush=True)
        sweeps = run_sweeps(args.quick)
        emit("sweeps", ["Sweeps (one axis at a time around fig1; plot: `sweeps.png`):", "",
                        *sweep_table(sweeps)])
        if args.write:
            plot_sweeps(sweeps, PLOT)
    if "crossover" in parts:
        print("measuring the direct/arc crossover", flush=True)
        emit("crossover", srm_benchmark.crossover_table(args.quick))
    if "training" in parts:
        from benchmarks import training_benchmark

        print("measuring training throughput", flush=True)
        emit("training", training_benchmark.table(quick=args.quick))
    if "others" in parts:
        run_others()
    print(f"suite wall time: {time.perf_counter() - started:.0f} s")
    if args.write:
        write_results(blocks)
        print(f"wrote {RESULTS}" + (f" and {PLOT}" if "sweeps" in parts else ""))


if __name__ == "__main__":
    main()
