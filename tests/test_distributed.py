"""SRM across devices and processes: every way of splitting the samples gives the same counts.

Multi-device runs happen in subprocesses: ``XLA_FLAGS=--xla_force_host_platform_device_count``
must be set before JAX is imported, and the main pytest process keeps its single device.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

import srm_jax
from srm_jax.distributed import data_mesh, local_shard_count, shard_samples, sharded_srm

ROOT = Path(__file__).resolve().parents[1]

COMMON = """
import json, os, sys
import numpy as np
import jax
import srm_jax
from srm_jax.distributed import data_mesh, sharded_srm
from srm_jax.streaming import accumulate_srm

def data(path):
    arrays = np.load(path)
    return arrays["basis"], arrays["x"]

def as_lists(result):
    out = {"counts": np.asarray(result.counts).tolist(), "num": int(result.num_samples)}
    if result.signed:
        out["negative"] = np.asarray(result.negative_counts).tolist()
    return out

ANGLES = np.linspace(0, 2 * np.pi, 16)
"""

EIGHT_DEVICES = COMMON + """
from jax.sharding import NamedSharding, PartitionSpec as P
from flax import nnx
from srm_jax.layers import layer_srm

basis, x = data(sys.argv[1])
out = {"devices": jax.device_count()}
kw = dict(epsilon=0.4, angles=ANGLES, signed=True)
eager = srm_jax.spotlight_resonance(x, basis, **kw)
out["eager"] = as_lists(eager)
mesh = data_mesh()
# The engine itself under jit with sample-sharded input (the compiler partitions it).
sharded_x = jax.device_put(x, NamedSharding(mesh, P("data", None)))
jitted = jax.jit(srm_jax.spotlight_resonance, static_argnames=("signed",))(sharded_x, basis, **kw)
out["jit_sharded_input"] = as_lists(jitted)
out["input_devices"] = len(sharded_x.sharding.device_set)
# The plumbing below uses the engine's "direct" method (cheaper to compile): no sample lies
# within rounding of the threshold, so every method must give the eager counts exactly.
kw["method"] = "direct"
# shard_map + psum.
out["sharded"] = as_lists(sharded_srm(x, basis, mesh=mesh, **kw))
# Streaming over 10 batches of 100 rows, in memory and sharded over the 8 devices (each batch
# padded to 104 rows, a multiple of the devices).
batches = [x[i : i + 100] for i in range(0, 1000, 100)]
out["stream"] = as_lists(accumulate_srm(iter(batches), basis, **kw))
out["stream_sharded"] = as_lists(accumulate_srm(iter(batches), basis, mesh=mesh, **kw))

# A model's layer with batches sharded over the devices (ragged last batch: 1000 = 3 * 300 + 100).
# An identity kernel keeps the layer's output exactly the samples (NaN rows stay NaN).
class Encoder(nnx.Module):
    def __init__(self, rngs):
        self.lin = nnx.Linear(5, 5, rngs=rngs)

    def __call__(self, x):
        return jax.numpy.tanh(self.lin(x))

model = Encoder(nnx.Rngs(0))
model.lin.kernel[...] = np.eye(5, dtype=np.float32)
out["layer_sharded"] = as_lists(
    layer_srm(model, "lin", (x[i : i + 300] for i in range(0, 1000, 300)), basis=basis,
              mesh=mesh, **kw)
)

# The sample-major kernel (issue 16) on the ± standard basis, sharded and streamed sharded: the
# arc kernel's counts (both evaluate the same x, y; SPEC §5.1).
standard = srm_jax.standard_basis(5)
major_kw = dict(epsilon=0.6, angles=ANGLES, signed=True)
out["major_sharded"] = as_lists(sharded_srm(x, standard, mesh=mesh, method="sample_major",
                                            **major_kw))
out["major_stream_sharded"] = as_lists(accumulate_srm(
    iter(batches), standard, mesh=mesh, method="sample_major", **major_kw))
out["major_arc"] = as_lists(srm_jax.spotlight_resonance(x, standard, method="arc", **major_kw))

# Summaries streamed with the batches sharded over the devices: the in-memory summaries, for
# the sample-major kernel (its own sums; ε < 0 through the complement) and another method
# (its counts summed).
from srm_jax.streaming import accumulate_summary

def summary_lists(s):
    fields = ("curve_counts", "negative_curve_counts", "plane_totals", "negative_plane_totals",
              "num_samples")
    return {f: None if getattr(s, f) is None else np.asarray(getattr(s, f)).tolist()
            for f in fields}

for name, b, skw in (("major", standard, dict(major_kw, method="sample_major")),
                     ("complement", standard, dict(major_kw, epsilon=-0.6, signed=False,
                                                method="sample_major")),
                     ("direct", basis, kw)):
    out["summary_sharded_" + name] = summary_lists(
        accumulate_summary(iter(batches), b, mesh=mesh, **skw))
    out["summary_" + name] = summary_lists(srm_jax.resonance_summary(x, b, **skw))
out["summary_sharded_empty"] = summary_lists(
    accumulate_summary(iter([]), standard, mesh=mesh, **major_kw))
print("RESULT" + json.dumps(out))
"""

TWO_PROCESSES = COMMON + """
jax.config.update("jax_cpu_collectives_implementation", "gloo")
pid, port, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2,
                           process_id=pid)
basis, x = data(path)
kw = dict(epsilon=0.4, angles=ANGLES, signed=True)
kw["method"] = "direct"  # cheaper to compile; no sample lies within rounding of the threshold
mine = x[:500] if pid == 0 else x[500:]  # each process holds half of the samples
out = {"processes": jax.process_count(), "devices": jax.device_count(),
       "local_devices": jax.local_device_count()}
out["sharded"] = as_lists(sharded_srm(mine, basis, **kw))
batches = [mine[i : i + 125] for i in range(0, 500, 125)]  # padded to 126 for 2 devices
out["stream_sharded"] = as_lists(accumulate_srm(iter(batches), basis, mesh=data_mesh(), **kw))
out["local_reference"] = as_lists(
    jax.jit(srm_jax.spotlight_resonance, static_argnames=("signed", "method"))(x, basis, **kw)
)
print("RESULT" + json.dumps(out), flush=True)
jax.distributed.shutdown()
"""


def _env(devices: int) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _result(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT")]
    assert lines, stdout
    return json.loads(lines[-1][len("RESULT"):])


def _write_data(rng, path: Path):
    """Random non-orthogonal basis and 1000 samples (9 with a NaN), none of them within float
    rounding of the threshold (where batch shapes may round either way), saved for the workers.

    Returns the float64 NumPy count bounds of Eqns. 2 and 4 (the independent reference).
    """
    from conftest import reference_count_bounds, reference_dots, reference_pairs

    basis = rng.standard_normal((7, 5)).astype(np.float32)
    x = rng.standard_normal((1000, 5)).astype(np.float32)
    angles = np.linspace(0, 2 * np.pi, 16)
    pairs = reference_pairs(7, "comb")
    for _ in range(100):
        near = np.any(np.abs(np.abs(reference_dots(x, basis, pairs, angles)) - 0.4) < 1e-4,
                      axis=(1, 2))
        if not near.any():
            break
        x[near] = rng.standard_normal((int(near.sum()), 5)).astype(np.float32)
    x[rng.choice(1000, 9, replace=False), 2] = np.nan  # left out everywhere (SPEC §1)
    np.savez(path, basis=basis, x=x)
    dots = reference_dots(x, basis, pairs, angles)
    return reference_count_bounds(dots, 0.4, 1e-5), reference_count_bounds(dots, 0.4, 1e-5, -1)


def test_eight_devices_stream_shard_and_memory_agree(tmp_path, rng):
    bounds = _write_data(rng, tmp_path / "data.npz")
    script = tmp_path / "eight.py"
    script.write_text(textwrap.dedent(EIGHT_DEVICES))
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "data.npz")], env=_env(8),
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = _result(proc.stdout)
    assert out["devices"] == 8 and out["input_devices"] == 8
    eager = out["eager"]
    for name in ("jit_sharded_input", "sharded", "stream", "stream_sharded", "layer_sharded"):
        assert out[name] == eager, name  # identical counts and sample totals
    assert eager["num"] == 991
    assert out["layer_sharded"] == eager
    assert out["major_sharded"] == out["major_arc"] == out["major_stream_sharded"]
    assert out["major_arc"]["num"] == 991 and np.sum(out["major_arc"]["counts"]) > 0
    for name in ("major", "complement", "direct"):  # accumulate_summary(..., mesh=)
        assert out["summary_sharded_" + name] == out["summary_" + name], name
        assert out["summary_" + name]["num_samples"] == 991
    assert out["summary_sharded_empty"]["num_samples"] == 0
    (low, high, _), (nlow, nhigh, _) = bounds
    counts, negative = np.asarray(eager["counts"]), np.asarray(eager["negative"])
    assert np.all((low <= counts) & (counts <= high))
    assert np.all((nlow <= negative) & (negative <= nhigh))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_jax_distributed(tmp_path, rng):
    _write_data(rng, tmp_path / "data.npz")
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(TWO_PROCESSES))
    port = str(_free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(pid), port, str(tmp_path / "data.npz")],
            env=_env(2),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        )
        for pid in (0, 1)
    ]
    outs = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=300)
            assert proc.returncode == 0, stderr[-4000:]
            outs.append(_result(stdout))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for out in outs:
        assert (out["processes"], out["devices"], out["local_devices"]) == (2, 4, 2)
        assert out["sharded"] == out["local_reference"]
        assert out["stream_sharded"] == out["local_reference"]
        assert out["sharded"]["num"] == 991


def test_single_device_helpers(rng):
    mesh = data_mesh()
    assert mesh.devices.size == jax.device_count() == local_shard_count(mesh)
    x = rng.standard_normal((9, 4)).astype(np.float32)
    placed = shard_samples(x, mesh)
    np.testing.assert_array_equal(np.asarray(placed)[:9], x)
    basis = rng.standard_normal((5, 4)).astype(np.float32)
    angles = np.linspace(0, 2 * np.pi, 16)
    result = sharded_srm(x, basis, epsilon=0.2, angles=angles, mesh=mesh, method="direct")
    full = jax.jit(srm_jax.spotlight_resonance, static_argnames="method")(
        x, basis, epsilon=0.2, angles=angles, method="direct"
    )
    np.testing.assert_array_equal(result.counts, full.counts)
    with pytest.raises(ValueError, match="axis"):
        sharded_srm(x, basis, epsilon=0.2, mesh=mesh, axis_name="model")
