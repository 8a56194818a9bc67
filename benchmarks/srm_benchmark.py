"""Timing of srm-jax's SRM against the two NumPy baselines (issue 5).

Each measurement of the fig1 and large workloads runs in a fresh subprocess, so that its first
call (compilation included) is cold and its peak resident memory (``ru_maxrss``) is that of the
whole process doing only this one thing. Steady-state figures are medians of repeated calls
after the first; every call is synchronised with ``block_until_ready``.

    python -m benchmarks.srm_benchmark --child engine --workload fig1   # one measurement, JSON
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

from benchmarks import baselines, workloads
from benchmarks.workloads import Workload

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def provenance(module: str, argv: list[str]) -> str:
    """The provenance line of a results block, written by the script that measured it.

    The exact command (``nice -n K`` included when the process runs niced), machine (CPU model,
    cores, load average at start), UTC date, JAX version and backend; ``GPU: not measured``
    unless the backend is a GPU.
    """
    import datetime
    import shlex

    import jax

    command = shlex.join(["python", "-m", module, *argv])
    niceness = os.nice(0)
    if niceness:
        command = f"nice -n {niceness} {command}"
    backend = jax.default_backend()
    device = "GPU: not measured" if backend != "gpu" else f"GPU: {jax.devices()[0].device_kind}"
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"_Measured {now} with `{command}` on {cpu_model()} ({os.cpu_count()} cores, shared; "
        f"load average at start {os.getloadavg()[0]:.1f}), JAX {jax.__version__}, backend "
        f"{backend}. {device}._"
    )


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB.

    ``VmHWM`` from ``/proc/self/status`` where available: the high-water mark of this process's
    address space. ``ru_maxrss`` reports the same peak but is inherited across fork + exec, so a
    child of a big parent would report the parent's peak; it is the fallback elsewhere.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _median_time(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def _median_cpu_time(fn, repeats: int) -> float:
    """Median CPU time of this process (all threads) per call: insensitive to other load."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


# ----------------------------------------------------------------------------- srm-jax


def engine_srm(workload: Workload, method: str = "auto"):
    """``f(activations, basis) -> counts``: jitted SRM of ``workload`` (the timed function)."""
    import jax

    import srm_jax

    angles = None if workload.num_angles == 100 else srm_jax.angle_grid(workload.num_angles)

    def srm(activations, basis):
        return srm_jax.spotlight_resonance(
            activations, basis, epsilon=workload.epsilon, angles=angles, planes=workload.kind,
            method=method,
        ).counts

    return jax.jit(srm)


def engine_run(workload: Workload, method: str = "auto", repeats: int = 7) -> dict:
    """First call (compilation included), recompilation check and median of ``repeats`` calls."""
    import jax

    basis = jax.device_put(workload_basis(workload))
    first_data = jax.device_put(workloads.make_activations(workload))
    srm = engine_srm(workload, method)
    start, cpu_start = time.perf_counter(), time.process_time()
    jax.block_until_ready(srm(first_data, basis))
    first_call = time.perf_counter() - start
    first_call_cpu = time.process_time() - cpu_start
    # New activation values of the same shape must reuse the compiled program.
    other = jax.device_put(workloads.make_activations(workload, seed_offset=1))
    cache_before = srm._cache_size()
    jax.block_until_ready(srm(other, basis))
    recompiled = srm._cache_size() != cache_before
    call = lambda: jax.block_until_ready(srm(first_data, basis))  # noqa: E731
    median, times = _median_time(call, repeats)
    return {
        "impl": "srm-jax",
        "method": method,
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0].device_kind),
        "median_s": median,
        "times_s": times,
        "cpu_s": _median_cpu_time(call, repeats),
        "first_call_s": first_call,
        "first_call_cpu_s": first_call_cpu,
        "recompiled": recompiled,
        "peak_rss_mib": peak_rss_mib(),
    }


def workload_basis(workload: Workload) -> np.ndarray:
    return workloads.make_basis(workload)


# ----------------------------------------------------------------------------- baselines


def vectorised_run(workload: Workload, repeats: int = 3) -> dict:
    data = workloads.make_activations(workload)
    basis, pairs, angles = (
        workloads.make_basis(workload), workloads.make_pairs(workload),
        workloads.make_angles(workload),
    )

    def run():
        return baselines.vectorised_counts(data, basis, pairs, angles, workload.epsilon)

    median, times = _median_time(run, repeats)
    return {
        "impl": "numpy-vectorised", "backend": "numpy", "median_s": median, "times_s": times,
        "cpu_s": _median_cpu_time(run, 1),
        "peak_rss_mib": peak_rss_mib(),
    }


def published_run(workload: Workload, planes: int = 3, form: str = "published") -> dict:
    """The App. A algorithm on ``planes`` planes spread over the list; time per plane × P."""
    data = workloads.make_activations(workload)
    basis, pairs, angles = (
        workloads.make_basis(workload), workloads.make_pairs(workload),
        workloads.make_angles(workload).astype(np.float64),
    )
    chosen = pairs[np.linspace(0, len(pairs) - 1, planes).astype(int)]
    per_plane = []
    for pair in chosen:
        start = time.perf_counter()
        baselines.published_counts(data, basis, pair[None], angles, workload.epsilon, form=form)
        per_plane.append(time.perf_counter() - start)
    median = statistics.median(per_plane)
    return {
        "impl": f"numpy-{form}", "backend": "numpy", "median_s": median * workload.num_planes,
        "per_plane_s": per_plane, "planes_timed": planes, "peak_rss_mib": peak_rss_mib(),
    }


# ----------------------------------------------------------------------------- floor


def measure_peak_rates() -> dict:
    """Measured peak rates of this machine's default JAX device: float32 matmul and copy."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((2048, 2048), jnp.float32)
    matmul = jax.jit(lambda a: a @ a)
    jax.block_until_ready(matmul(a))
    seconds, _ = _median_time(lambda: jax.block_until_ready(matmul(a)), 5)
    flops = 2 * 2048**3 / seconds
    x = jnp.ones(1 << 26, jnp.float32)  # 256 MiB
    copy = jax.jit(lambda x: x + 1)
    jax.block_until_ready(copy(x))
    seconds, _ = _median_time(lambda: jax.block_until_ready(copy(x)), 5)
    return {"flops": flops, "bytes_per_s": 2 * x.nbytes / seconds}


def floor_seconds(workload: Workload, rates: dict) -> float:
    """What any exact SRM must spend: read the activations once and project them on the basis.

    Every implementation must read the ``N × n`` activations and form each sample's ``m``
    projections ``d̂·b̂_k`` (``2·N·m·n`` flops; the plane coordinates follow from them), at this
    device's measured peak matmul and memory rates. The counting itself is not included, so
    the floor is optimistic.
    """
    bytes_ = 4 * workload.num_samples * workload.n
    flops = 2 * workload.num_samples * workload.m * workload.n
    return max(bytes_ / rates["bytes_per_s"], flops / rates["flops"])


# ----------------------------------------------------------------------------- crossover

CROSSOVER_GRID = {
    "num_samples": (64, 512, 4096),
    "m": (4, 8, 16, 32),
    "num_angles": (8, 32, 100),
}


def crossover_points(quick: bool = False) -> list[dict]:
    """Median time of ``method="direct"`` and ``"arc"`` on small problems (ε = 0.5, dense)."""
    import itertools

    import jax

    grid = {k: v[::2] for k, v in CROSSOVER_GRID.items()} if quick else CROSSOVER_GRID
    points = []
    for num_samples, m, num_angles in itertools.product(*grid.values()):
        workload = workloads.FIG1.replace(
            name="crossover", num_samples=num_samples, m=m, num_angles=num_angles,
            epsilon=0.5, dense=True,
        )
        data, basis = workloads.make_activations(workload), workloads.make_basis(workload)
        times = {}
        for method in ("direct", "arc"):
            srm = engine_srm(workload, method)
            jax.block_until_ready(srm(data, basis))
            times[method], _ = _median_time(
                lambda srm=srm, d=data, b=basis: jax.block_until_ready(srm(d, b)),
                5 if quick else 15,
            )
        points.append({
            "N": num_samples, "m": m, "P": workload.num_planes, "T": num_angles,
            "work": num_samples * workload.num_planes * num_angles, **times,
        })
    return points


def crossover_table(quick: bool = False) -> list[str]:
    import jax

    from srm_jax import resonance

    points = sorted(crossover_points(quick), key=lambda p: p["work"])
    lines = [
        f"Direct against arc on {jax.default_backend()} (median wall time, ε = 0.5; `auto` "
        f"takes direct when N·P·T ≤ {resonance.auto_direct_limit(100):,}, or "
        f"≤ {resonance.auto_direct_limit(32):,} when T ≤ 32):",
        "",
        "| N | m | P | T | N·P·T | direct | arc | faster | auto picks |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in points:
        faster = "direct" if p["direct"] < p["arc"] else "arc"
        picks = "direct" if p["work"] <= resonance.auto_direct_limit(p["T"]) else "arc"
        lines.append(
            f"| {p['N']:,} | {p['m']} | {p['P']} | {p['T']} | {p['work']:,} | "
            f"{p['direct'] * 1e3:.3g} ms | {p['arc'] * 1e3:.3g} ms | {faster} | {picks} |"
        )
    return lines


# ----------------------------------------------------------------------------- subprocesses


def run_child(kind: str, workload: Workload, timeout: float = 3600, **kwargs) -> dict:
    """Runs one measurement in a fresh interpreter and returns its JSON result."""
    command = [
        sys.executable, "-m", "benchmarks.srm_benchmark", "--child", kind,
        "--workload-json", json.dumps(dataclasses.asdict(workload)),
        "--kwargs-json", json.dumps(kwargs),
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


CHILDREN = {"engine": engine_run, "vectorised": vectorised_run, "published": published_run}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=sorted(CHILDREN), required=True)
    parser.add_argument("--workload", choices=sorted(workloads.WORKLOADS))
    parser.add_argument("--workload-json")
    parser.add_argument("--kwargs-json", default="{}")
    args = parser.parse_args(argv)
    if args.workload_json:
        workload = Workload(**json.loads(args.workload_json))
    else:
        workload = workloads.WORKLOADS[args.workload or "fig1"]
    result = CHILDREN[args.child](workload, **json.loads(args.kwargs_json))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
