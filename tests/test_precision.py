"""The precision policy (SPEC §1): exact on GPUs (TF32) and TPUs (bfloat16), proven on the CPU.

XLA:CPU multiplies float32 exactly whatever a dot asks for, so these tests make the reduced
precision visible two ways (``benchmarks/precision.py``): every public entry point's jaxpr is
walked for float dots that do not ask for ``HIGHEST``, and ``dot_general`` is wrapped so that
such a dot rounds its operands to bfloat16 (TPU) or TF32 (GPU), as the accelerators would.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import srm_jax
from benchmarks.precision import (
    emulate_reduced_precision,
    float_dots,
    float_dots_without_highest,
    round_to_bfloat16,
    round_to_tf32,
)
from srm_jax import resonance, significance

# Dots that may stay at the backend's default precision, each with the reason it cannot change a
# count, an index or a bin. Anything else that srm-jax issues must ask for HIGHEST.
ALLOWED = {
    # The layer's forward pass: it computes the activations that are measured, as the model
    # computes them in training (a user picks that precision with jax.default_matmul_precision).
    "activations.py:_generalised_tanh": "model forward pass",
    "activations.py:_normalised_isotropic_tanh": "model forward pass",
}




def _plan(method, backend, angles):
    """A signed count plan on ``backend``'s kernel ops (the backend override of the tests)."""
    return resonance.CountPlan(signed=True, method=method, grid=resonance.angle_layout(angles),
                               backend=backend)


def _clustered(rng, num, basis, spread=0.35):
    """Samples near the basis vectors (many lit pairs), a few zero and NaN rows among them."""
    idx = rng.integers(0, basis.shape[0], num)
    sign = rng.choice([-1.0, 1.0], num)[:, None]
    x = sign * basis[idx] + spread * rng.standard_normal((num, basis.shape[1]))
    x[:3] = 0.0
    x[3] = np.nan
    return x.astype(np.float32)


# --- the tools themselves can fail --------------------------------------------------------------


def test_tf32_and_bf16_rounding_match_an_independent_reference(rng):
    x = (rng.standard_normal(4096) * 10.0 ** rng.uniform(-6, 6, 4096)).astype(np.float32)
    bits = x.view(np.uint32).astype(np.uint64)
    # Round to nearest, ties to even, at mantissa bit 13 (TF32) and bit 16 (bfloat16).
    for shift, fn in ((13, round_to_tf32), (16, round_to_bfloat16)):
        half, keep = 1 << (shift - 1), ~np.uint64((1 << shift) - 1)
        odd = (bits >> np.uint64(shift)) & np.uint64(1)
        expect = ((bits + np.uint64(half - 1) + odd) & keep).astype(np.uint32).view(np.float32)
        np.testing.assert_array_equal(np.asarray(fn(jnp.asarray(x))), expect)


@pytest.mark.parametrize("mode", ["bf16", "tf32"])
def test_emulation_rounds_default_dots_and_spares_highest(rng, mode):
    a = jnp.asarray(rng.standard_normal((64, 48)), jnp.float32)
    b = jnp.asarray(rng.standard_normal((48, 32)), jnp.float32)
    exact = np.asarray(a, np.float64) @ np.asarray(b, np.float64)
    with emulate_reduced_precision(mode):
        default = np.asarray(jax.jit(lambda a, b: a @ b)(a, b))
        highest = np.asarray(jax.jit(
            lambda a, b: jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST))(a, b))
    err_default = np.max(np.abs(default - exact))
    err_highest = np.max(np.abs(highest - exact))
    assert err_highest < 1e-4
    assert err_default > 100 * err_highest  # the emulation really rounds


def test_jaxpr_walker_finds_default_precision_dots_and_names_their_function():
    basis = jnp.asarray(np.random.default_rng(0).standard_normal((6, 4)), jnp.float32)
    x = jnp.ones((3, 4), jnp.float32)
    found = float_dots_without_highest(lambda x: srm_jax.generalised_tanh(x, basis), x)
    assert len(found) >= 2  # inside jit: z = x @ bᵀ and the output's coefficients @ b
    assert {d.location for d in found} == {"activations.py:_generalised_tanh"}
    found = float_dots_without_highest(lambda b: b @ b.T, basis)
    assert [d.location for d in found] == ["outside srm_jax"]


# --- every entry point asks for HIGHEST ---------------------------------------------------------

M, N_FEATURES = 9, 5


def _inputs():
    rng = np.random.default_rng(1)
    basis = rng.standard_normal((M, N_FEATURES)).astype(np.float32)
    x = _clustered(rng, 400, basis)
    labels = rng.integers(0, 3, 400)
    return jnp.asarray(x), jnp.asarray(basis), jnp.asarray(labels)


class _Model(nnx.Module):
    def __init__(self, basis):
        self.basis = srm_jax.PrivilegedBasis(basis)
        self.act = srm_jax.GeneralisedTanh(basis)

    def __call__(self, x):
        return self.act(x)


def _entry_points():
    x, basis, labels = _inputs()
    key = jax.random.key(0)
    pairs = srm_jax.plane_pairs(M)
    ang = jnp.linspace(0.1, 6.0, 23)
    srm = srm_jax.spotlight_resonance
    points = {}
    for method in ("direct", "arc"):
        for signed in (False, True):
            points[f"srm-{method}-signed={signed}"] = (
                functools.partial(srm, basis=basis, epsilon=0.5, method=method, signed=signed),
                (x,))
        # Traced angles: the grid layout is decided inside the kernel.
        points[f"srm-{method}-traced-angles"] = (
            lambda a, method=method: srm(x, basis, epsilon=0.5, angles=a, method=method), (ang,))
        points[f"srm-{method}-irregular-angles"] = (
            lambda method=method: srm(x, basis, epsilon=0.5, angles=np.sort(np.random.default_rng(
                2).uniform(0, 7, 17)), method=method), ())
        for backend in ("cpu", "gpu", "tpu"):
            points[f"grouped-{method}-{backend}"] = (
                lambda method=method, backend=backend: resonance.plan_counts(
                    _plan(method, backend, srm_jax.angle_grid()), x, basis, pairs,
                    srm_jax.angle_grid(), 0.5, groups=labels, num_groups=3), ())
    points["self_srm"] = (lambda: srm_jax.self_srm(basis, epsilon=0.3), ())
    # The sample-major kernel (issue 16), on a rotated ± basis (its projection is a matmul).
    rotated = srm_jax.orthoplex_basis(jax.random.key(3), basis.shape[1])
    for signed in (False, True):
        points[f"srm-sample_major-signed={signed}"] = (
            functools.partial(srm, basis=rotated, epsilon=0.5, method="sample_major",
                              signed=signed), (x,))
    points["summary-sample_major"] = (
        lambda: srm_jax.resonance_summary(x, rotated, epsilon=-0.5, signed=True,
                                          method="sample_major"), ())
    points["lit_credits-direct"] = (
        functools.partial(srm_jax.lit_credits, basis=basis, epsilon=0.4), (x,))
    points["lit_credits-sample_major"] = (
        lambda: srm_jax.lit_credits(x, rotated, epsilon=0.5, method="sample_major"), ())

    def streaming():
        acc = srm_jax.streaming_srm(basis, epsilon=0.4)
        return acc.update(acc.update(acc.init(), x[:200]), x[200:])
    points["streaming"] = (streaming, ())
    points["accumulate_srm"] = (
        lambda: srm_jax.accumulate_srm([x[:150], x[150:]], basis, epsilon=0.4), ())

    def metric():
        m = srm_jax.srm_metric(basis, every=1, epsilon=0.4)
        return m.update(m.init(), x, jnp.int32(0))
    points["srm_metric"] = (metric, ())
    points["srm_alignment"] = (lambda: srm_jax.srm_alignment(
        x, basis, epsilon=0.4, planes=pairs, angles=srm_jax.angle_grid()), ())
    points["sharded_srm"] = (lambda: srm_jax.sharded_srm(x, basis, epsilon=0.4), ())
    points["per_class_srm"] = (lambda: srm_jax.per_class_srm(
        x, basis, labels, num_classes=3, epsilon=0.4), ())
    points["vector_firing"] = (lambda: srm_jax.vector_firing(
        x, basis, labels, num_classes=3, epsilon=0.4), ())
    points["rank_selectivity"] = (lambda: srm_jax.rank_selectivity(
        key, x, basis, labels, num_classes=3, epsilon=0.4, num_resamples=3), ())
    points["srm_spectrum"] = (lambda: srm_jax.evaluate_spectrum(
        srm_jax.srm_spectrum(x, basis, epsilon=0.4), srm_jax.angle_grid()), ())
    points["alignment_sweep"] = (lambda: srm_jax.alignment_sweep(
        x, basis, jnp.array([0.2, 0.6])), ())
    points["null_band"] = (lambda: srm_jax.null_band(
        key, 100, basis, epsilon=0.4, num_resamples=3), ())
    points["alignment_test"] = (lambda: srm_jax.alignment_test(
        key, x, basis, epsilon=0.4, num_resamples=3), ())
    points["alignment_test_sweep"] = (lambda: srm_jax.alignment_test(
        key, x, basis, epsilon=np.array([0.2, 0.6]), num_resamples=3), ())
    points["lit_share"] = (lambda: significance.lit_share(
        x, basis, pairs, epsilon=jnp.array([0.2, 0.6])), ())
    points["plane_projection"] = (lambda: srm_jax.plane_projection(x, basis, pairs[:4]), ())
    points["projection_density"] = (lambda: srm_jax.projection_density(
        key, x, basis, pairs[:4], num_reference=4096), ())
    points["layer_srm"] = (lambda: srm_jax.layer_srm(
        _Model(basis), "act", [x[:200], x[200:]], epsilon=0.4), ())
    points["thompson_energy"] = (srm_jax.thompson_energy, (basis,))
    points["thompson_basis"] = (lambda: srm_jax.thompson_basis(key, 7, 3, steps=20), ())
    points["simplex_basis"] = (lambda: srm_jax.simplex_basis(key, 4), ())
    points["orthoplex_basis"] = (lambda: srm_jax.orthoplex_basis(key, 4), ())
    return points


ENTRY_POINTS = _entry_points()


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_every_float_dot_of_an_entry_point_asks_for_highest(name):
    fn, args = ENTRY_POINTS[name]
    dots = float_dots(fn, *args)
    inexact = [d for d in dots if not d.exact and d.location != "outside srm_jax"
               and d.location not in ALLOWED]
    assert inexact == []
    # The walk reached the computation: it holds the exact products that decide the result
    # (the orthoplex is ± a QR factor: no product at all).
    assert any(d.exact for d in dots) or name == "orthoplex_basis"


# --- the counts do not move under the accelerators' rounding ------------------------------------

# (name, n, m, epsilon, num_samples, num_angles): a fig1-like workload (n=24, m=48, ε=0.9), an
# ε=0.5 one (dense: most pairs lit), and m=256 (32,640 planes: the compaction's prefix sums span
# many 128-wide rows, whose offsets exceed 2**11, where TF32 and bfloat16 round).
WORKLOADS = [
    ("fig1", 24, 48, 0.9, 1500, 100),
    ("eps0.5", 10, 20, 0.5, 1500, 100),
    ("m256", 12, 256, 0.5, 200, 16),
    ("orthoplex", 32, 64, 0.6, 1500, 100),  # a rotated ± basis: the sample-major kernel
]


def _workload(name, n, m, eps, num, num_angles):
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    basis = rng.standard_normal((m, n)).astype(np.float32)
    if name == "orthoplex":
        q = np.linalg.qr(rng.standard_normal((n, n)))[0].astype(np.float32)
        basis = np.concatenate([q, -q])
    x = _clustered(rng, num, basis)
    angles = np.linspace(0, 2 * np.pi, num_angles).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(basis), jnp.asarray(angles), eps


def _all_counts(x, basis, angles, eps, methods=("direct", "arc")):
    out = {}
    for method in methods:
        for signed in (False, True):
            r = srm_jax.spotlight_resonance(x, basis, epsilon=eps, angles=angles, method=method,
                                            signed=signed)
            out[method, signed] = [np.asarray(r.counts), np.asarray(r.num_samples)]
            if signed:
                out[method, signed].append(np.asarray(r.negative_counts))
    return out


@pytest.mark.parametrize("workload", WORKLOADS, ids=[w[0] for w in WORKLOADS])
@pytest.mark.parametrize("mode", ["bf16", "tf32"])
def test_counts_are_unchanged_under_emulated_accelerator_precision(workload, mode):
    x, basis, angles, eps = _workload(*workload)
    methods = ("arc",) if workload[0] == "m256" else ("direct", "arc")
    if workload[0] == "orthoplex":
        methods = ("arc", "sample_major")
    exact = _all_counts(x, basis, angles, eps, methods)
    with emulate_reduced_precision(mode):
        emulated = _all_counts(x, basis, angles, eps, methods)
    assert sum(int(v[0].sum()) for v in exact.values()) > 0  # something is lit
    for k in exact:
        for a, b in zip(exact[k], emulated[k], strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"{k} moved under {mode}")


@pytest.mark.parametrize("backend", ["gpu", "tpu"])
def test_every_kernel_branch_is_exact_under_its_backends_rounding(backend):
    """The portable ops that the GPU/TPU kernel takes, run on the CPU under that rounding."""
    x, basis, angles, eps = _workload("m256", 12, 64, 0.5, 600, 37)
    pairs = srm_jax.plane_pairs(64)
    groups = jnp.asarray(np.random.default_rng(3).integers(0, 3, x.shape[0]))

    def counts(backend):
        c, neg, num, _ = resonance.plan_counts(
            _plan("arc", backend, angles), x, basis, pairs, angles, eps, groups=groups,
            num_groups=3)
        return np.asarray(c), np.asarray(neg), np.asarray(num)

    cpu = counts("cpu")
    with emulate_reduced_precision("bf16" if backend == "tpu" else "tf32"):
        portable = counts(backend)
    # The branches differ only in atan2 (polynomial vs library): a sample within rounding of ±ε
    # may fall either way, nothing else may differ.
    for a, b in zip(cpu, portable, strict=True):
        assert np.abs(a.astype(np.int64) - b).sum() <= 2e-5 * a.sum() + 2


def test_every_kernel_branch_counts_within_float64_bounds(rng):
    from conftest import reference_count_bounds, reference_dots, reference_pairs

    m, n = 10, 6
    basis = rng.standard_normal((m, n)).astype(np.float32)
    x = _clustered(rng, 700, basis)
    angles = np.linspace(0, 2 * np.pi, 41).astype(np.float32)
    pairs = reference_pairs(m, "comb")
    dots = reference_dots(x, basis, pairs, angles)
    for eps in (0.6, -0.3):
        pos_lo, pos_hi, valid = reference_count_bounds(dots, eps, 1e-5)
        neg_lo, neg_hi, _ = reference_count_bounds(dots, eps, 1e-5, sign=-1)
        for backend in ("cpu", "gpu", "tpu"):
            c, neg, num, _ = resonance.plan_counts(
                _plan("arc", backend, angles), x, basis, jnp.asarray(pairs, jnp.int32), angles,
                eps)
            c, neg = np.asarray(c[0]), np.asarray(neg[0])
            assert int(num[0]) == valid
            assert np.all((pos_lo <= c) & (c <= pos_hi)), backend
            assert np.all((neg_lo <= neg) & (neg <= neg_hi)), backend


def test_bfloat16_inputs_count_as_their_float32_values_with_unrounded_epsilon_and_angles(rng):
    basis = jnp.asarray(rng.standard_normal((12, 8)), jnp.bfloat16)
    x = jnp.asarray(_clustered(rng, 800, np.asarray(basis, np.float32)), jnp.bfloat16)
    angles = jnp.asarray(np.sort(rng.uniform(0, 2 * np.pi, 30)), jnp.float32)
    for method in ("direct", "arc"):
        low = srm_jax.spotlight_resonance(x, basis, epsilon=0.9, angles=angles, method=method,
                                          signed=True)
        high = srm_jax.spotlight_resonance(x.astype(jnp.float32), basis.astype(jnp.float32),
                                           epsilon=0.9, angles=angles, method=method, signed=True)
        np.testing.assert_array_equal(np.asarray(low.counts), np.asarray(high.counts))
        np.testing.assert_array_equal(np.asarray(low.negative_counts),
                                      np.asarray(high.negative_counts))
        assert low.epsilon.dtype == jnp.float32 and float(low.epsilon) == np.float32(0.9)
        assert low.angles.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(low.angles), np.asarray(angles))
    default = srm_jax.spotlight_resonance(x, basis, epsilon=0.9)
    assert default.angles.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(default.angles), np.asarray(srm_jax.angle_grid()))
