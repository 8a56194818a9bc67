"""The in-training SRM metric: correct values, measured every k steps, no recompilation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import srm_jax
from srm_jax.layers import layer_activations
from srm_jax.metrics import srm_alignment, srm_metric
from tests.conftest import SRM, CompileCounter, pearson

ANGLES = np.linspace(0, 2 * np.pi, 16)


def test_srm_alignment_matches_engine_and_direct_correlation(rng):
    basis = rng.standard_normal((6, 4)).astype(np.float32)
    x = rng.standard_normal((50, 4)).astype(np.float32) + 2.0 * basis[0]
    pairs = np.asarray(srm_jax.plane_pairs(6))
    measured = jax.jit(
        lambda x, b: srm_alignment(x, b, epsilon=0.5, planes=pairs, angles=ANGLES,
                                   method="direct")
    )(x, basis)
    assert isinstance(measured, srm_jax.SRMAlignment)
    score, result = measured.score, measured.result
    full = SRM(x, basis, epsilon=0.5, angles=ANGLES)
    reference = SRM(basis, basis, epsilon=0.5, angles=ANGLES)  # self-SRM
    np.testing.assert_array_equal(result.counts, full.counts)
    # Pearson correlation of the mean curves, from the counts, in float64.
    curve = np.asarray(full.counts, np.float64).mean(0) / 50
    self_curve = np.asarray(reference.counts, np.float64).mean(0) / 6
    np.testing.assert_allclose(score, pearson(curve, self_curve), rtol=1e-5, atol=1e-6)


class AE(nnx.Module):
    def __init__(self, rngs):
        self.encoder = nnx.Linear(6, 3, rngs=rngs)
        self.decoder = nnx.Linear(3, 6, rngs=rngs)

    def __call__(self, x):
        return self.decoder(jnp.tanh(self.encoder(x)))


def _train_setup(rng, every):
    model = AE(nnx.Rngs(int(rng.integers(1 << 30))))
    optimizer = nnx.Optimizer(model, optax.sgd(0.05, momentum=0.9), wrt=nnx.Param)
    basis = rng.standard_normal((5, 3)).astype(np.float32)
    metric = srm_metric(basis, every=every, epsilon=0.3, angles=ANGLES, keep_result=True)

    @nnx.jit
    def train_step(model, optimizer, metric_state, step, x):
        def loss_fn(model):
            y, h = layer_activations(model, "encoder", x)
            return jnp.mean((y - x) ** 2), h

        (loss, h), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
        optimizer.update(model, grads)
        return loss, h, metric.update(metric_state, h, step)

    return model, optimizer, basis, metric, train_step


def test_metric_in_train_step_every_k_without_recompilation(rng):
    every = 3
    model, optimizer, basis, metric, train_step = _train_setup(rng, every)
    state = metric.init()
    assert int(state.step) == -1 and np.isnan(state.score)
    xs = rng.standard_normal((8, 16, 6)).astype(np.float32)
    measured = {}
    _, h, state = train_step(model, optimizer, state, 0, xs[0])  # compiles
    measured[0] = np.asarray(h)
    history = [(int(state.step), float(state.score))]
    with CompileCounter() as counter:
        for step in range(1, 8):
            _, h, state = train_step(model, optimizer, state, step, xs[step])
            if step % every == 0:
                measured[step] = np.asarray(h)
            history.append((int(state.step), float(state.score)))
        jax.block_until_ready(state)
    assert counter.count == 0  # neither measured nor skipped steps recompile
    # The last measurement is carried between measured steps.
    assert [s for s, _ in history] == [0, 0, 0, 3, 3, 3, 6, 6]
    # Each measured score equals the engine's alignment on that step's activations.
    reference = SRM(basis, basis, epsilon=0.3, angles=ANGLES)  # self-SRM
    for step in (0, 3, 6):
        result = SRM(measured[step], basis, epsilon=0.3, angles=ANGLES)
        expected = float(srm_jax.alignment_score(result, reference))
        np.testing.assert_allclose(history[step][1], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(state.result.counts, result.counts)
    np.testing.assert_allclose(state.mean_curve, np.asarray(result.counts).mean(0) / 16,
                               rtol=1e-6)
    # Without keep_result the state carries only the score, step and mean curve.
    light = srm_metric(basis, every=every, epsilon=0.3, angles=ANGLES).init()
    assert light.result is None and light.mean_curve.shape == (16,)


def test_metric_basis_override_and_errors(rng):
    basis = rng.standard_normal((5, 3)).astype(np.float32)
    metric = srm_metric(basis, every=2, epsilon=0.3, angles=ANGLES, method="direct",
                        keep_result=True)
    x = rng.standard_normal((16, 3)).astype(np.float32)
    other = rng.standard_normal((5, 3)).astype(np.float32)
    update = jax.jit(metric.update)
    state = update(metric.init(), x, 4, other)
    expected = srm_jax.alignment_score(
        SRM(x, other, epsilon=0.3, angles=ANGLES), SRM(other, other, epsilon=0.3, angles=ANGLES)
    )
    np.testing.assert_allclose(state.score, expected, rtol=1e-5, atol=1e-6)
    assert int(state.step) == 4
    skipped = update(state, x * 0 + 1, 5, other)
    assert int(skipped.step) == 4 and float(skipped.score) == float(state.score)
    # Activations as a function: evaluated on measured steps only (SRM ignores the scale).
    lazy = jax.jit(lambda st, step: metric.update(st, lambda: x * 3.0, step, other))
    again = lazy(metric.init(), 6)
    np.testing.assert_array_equal(again.result.counts, state.result.counts)
    assert int(lazy(metric.init(), 7).step) == -1
    with pytest.raises(ValueError, match="every"):
        srm_metric(basis, every=0, epsilon=0.3)
    with pytest.raises(ValueError, match="shape"):
        metric.update(metric.init(), x, 0, basis[:4])
