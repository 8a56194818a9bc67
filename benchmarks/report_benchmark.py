"""Memory and time of ``srm-jax report`` against the number of rows in the file (issue 13).

Writes files of ``N`` rows of isotropic Gaussian activations (``n`` features, float32; written in
chunks, never held whole), then runs ``python -m srm_jax report FILE`` on each in a fresh
process and records its wall time and peak resident set size (``ru_maxrss`` of that child, from
``os.wait4``). The report streams every row through :func:`srm_jax.accumulate_srm` (memory-mapped
``.npy`` windows, lazy safetensors slices) and analyses a fixed-size random subset, so the peak
memory should not grow with ``N``.

Run (it takes a few minutes; the 10^7-row .npy is 320 MB at n = 8)::

    nice -n 10 python -m benchmarks.report_benchmark --rows 1000000 10000000 \\
        --formats npy safetensors
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

import numpy as np

from benchmarks.srm_benchmark import cpu_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHUNK = 1 << 20


def write_file(path: str, rows: int, n: int, fmt: str, seed: int = 0, *,
               block: Callable[[int, int], np.ndarray] | None = None,
               chunk: int = CHUNK) -> None:
    """``rows × n`` float32 activations, generated and written ``chunk`` rows at a time.

    ``block(start, count)`` gives rows ``start…start + count`` (``(count, n)``, float32); by
    default standard-normal rows from one generator seeded with ``seed``.
    """
    if block is None:
        rng = np.random.default_rng(seed)

        def block(start: int, count: int) -> np.ndarray:
            return rng.standard_normal((count, n), dtype=np.float32)

    if fmt == "npy":
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, n))
        for start in range(0, rows, chunk):
            stop = min(rows, start + chunk)
            out[start:stop] = block(start, stop - start)
        out.flush()
        del out
        return
    # safetensors: header, then the raw little-endian rows (the format's layout, streamed).
    import json
    import struct

    nbytes = rows * n * 4
    header = json.dumps({"activations": {"dtype": "F32", "shape": [rows, n],
                                         "data_offsets": [0, nbytes]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(header)) + header)
        for start in range(0, rows, chunk):
            stop = min(rows, start + chunk)
            fh.write(np.asarray(block(start, stop - start), dtype="<f4").tobytes())


def _tail(fh) -> str:
    """The last non-empty line written to the (temporary) file ``fh``."""
    fh.seek(0)
    lines = [line.strip() for line in fh.read().decode(errors="replace").splitlines()]
    return next((line for line in reversed(lines) if line), "")


def run_report(path: str, out: str, args, extra: Sequence[str] = (), *,
               timeout: float | None = None, check: bool = True, root: str = ROOT) -> dict:
    """``python -m srm_jax report PATH --out OUT`` in a fresh process: its wall time and peak RSS.

    Passes ``--resamples args.resamples``, ``--max-samples args.max_samples`` (when ``args`` has
    it and it is not None) and ``--seed 0``, then ``extra`` (later options win). ``timeout``:
    seconds before the process (and its children) is killed. ``check``: raise on a non-zero exit
    or a timeout; otherwise the result says what happened (``returncode``, ``timed_out``,
    ``stderr_tail``: the last line of its standard error). ``root``: the checkout whose
    ``srm_jax`` runs (its working directory; default this one).
    """
    command = [sys.executable, "-m", "srm_jax", "report", path, "--out", out,
               "--resamples", str(args.resamples)]
    if getattr(args, "max_samples", None) is not None:
        command += ["--max-samples", str(args.max_samples)]
    command += ["--seed", "0", *extra]
    run = run_measured(command, timeout=timeout, cwd=root)
    if check and (run["timed_out"] or run["returncode"] != 0):
        why = f"timed out after {timeout} s" if run["timed_out"] else f"exit {run['returncode']}"
        raise RuntimeError(f"{' '.join(command)} failed ({why}): {run['printed']} "
                           f"{run['stderr_tail']}")
    printed = run.pop("printed")
    verdict = printed.split(". Report:")[0] if run["returncode"] == 0 else None
    return {**run, "verdict": verdict}


def run_measured(command: Sequence[str], *, timeout: float | None = None,
                 cwd: str = ROOT) -> dict:
    """Runs ``command`` in a fresh process (its own session): wall time, peak RSS (``ru_maxrss``
    from ``os.wait4``), exit code, whether it was killed at ``timeout`` seconds (with its
    children), its standard output (``printed``) and the last line of its standard error.

    ``ru_maxrss`` is at least this process's peak at the fork (Linux carries it into the
    child): a child that must be measured from a large parent reports its own
    (:func:`benchmarks.srm_benchmark.peak_rss_mib`)."""
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(command, cwd=cwd, stdout=stdout, stderr=stderr,
                                start_new_session=True)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if timeout is not None and time.perf_counter() - started > timeout:
                timed_out = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        stdout.seek(0)
        printed = stdout.read().decode(errors="replace").strip()
        stderr_tail = _tail(stderr)
    return {"seconds": seconds, "peak_rss_mib": usage.ru_maxrss / 1024, "printed": printed,
            "returncode": proc.returncode, "timed_out": timed_out, "stderr_tail": stderr_tail,
            "command": list(command)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report_benchmark",
        description="Peak memory and time of srm-jax report against the number of rows.",
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--n", type=int, default=8, help="features per row (default 8)")
    parser.add_argument("--formats", nargs="+", default=["npy"], choices=("npy", "safetensors"))
    parser.add_argument("--resamples", type=int, default=19)
    parser.add_argument("--max-samples", type=int, default=20_000)
    parser.add_argument("--dir", default=None, help="where to write the files (default: tmp)")
    args = parser.parse_args(argv)

    print(f"{time.strftime('%Y-%m-%d %H:%M')}; {cpu_model()} ({os.cpu_count()} cores, shared; "
          f"load average {os.getloadavg()[0]:.1f}); n = {args.n}, standard basis (m = "
          f"{2 * args.n}), ε = 0.9, --resamples {args.resamples}, --max-samples "
          f"{args.max_samples}. GPU: not measured.", flush=True)
    print("| format | rows | file size | wall time | peak RSS | verdict |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        for fmt in args.formats:
            for rows in args.rows:
                path = os.path.join(scratch, f"acts_{rows}.{fmt}")
                write_file(path, rows, args.n, fmt)
                size = os.path.getsize(path) / 2**20
                result = run_report(path, os.path.join(scratch, f"out_{fmt}_{rows}"), args)
                os.remove(path)
                print(f"| {fmt} | {rows:,} | {size:,.0f} MiB | {result['seconds']:.1f} s | "
                      f"{result['peak_rss_mib']:,.0f} MiB | {result['verdict']} |", flush=True)


if __name__ == "__main__":
    main()
