"""One validated plan per measurement: eager calls of the same shapes compile once (issue 12)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import CompileCounter
from flax import nnx

import srm_jax
from srm_jax import resonance

M, N_FEATURES, N = 6, 4, 300


class _Model(nnx.Module):
    def __init__(self, basis):
        self.act = srm_jax.GeneralisedTanh(basis)

    def __call__(self, x):
        return self.act(x)


def _calls(basis):
    key = jax.random.key(0)
    pairs = srm_jax.plane_pairs(M)
    grid = srm_jax.angle_grid()
    stream = srm_jax.streaming_srm(basis, epsilon=0.4)
    labels = jnp.arange(N) % 3
    return {
        "spotlight_resonance": lambda x: srm_jax.spotlight_resonance(x, basis, epsilon=0.4),
        "spotlight_resonance arc, angles": lambda x: srm_jax.spotlight_resonance(
            x, basis, epsilon=0.4, method="arc", angles=jnp.linspace(0, 3, 17), signed=True),
        "self_srm": lambda x: srm_jax.self_srm(basis + x[:M] * 0, epsilon=0.4),
        "srm_alignment": lambda x: srm_jax.srm_alignment(
            x, basis, epsilon=0.4, planes=pairs, angles=grid),
        "streaming update": lambda x: stream.update(stream.init(), x),
        "accumulate_srm": lambda x: srm_jax.accumulate_srm([x[:200], x[200:]], basis,
                                                           epsilon=0.4),
        "sharded_srm": lambda x: srm_jax.sharded_srm(x, basis, epsilon=0.4),
        "per_class_srm": lambda x: srm_jax.per_class_srm(x, basis, labels, num_classes=3,
                                                         epsilon=0.4),
        "null_band": lambda x: srm_jax.null_band(key, 50, basis + x[:M] * 0, epsilon=0.4,
                                                 num_resamples=2),
        "alignment_test": lambda x: srm_jax.alignment_test(key, x, basis, epsilon=0.4,
                                                           num_resamples=3),
        "alignment_sweep": lambda x: srm_jax.alignment_sweep(x, basis, jnp.array([0.2, 0.6])),
        "layer_srm": lambda x: srm_jax.layer_srm(_Model(basis), "act", [x[:150], x[150:]],
                                                 epsilon=0.4),
    }


CALLS = sorted(_calls(jnp.asarray(np.random.default_rng(0).standard_normal((M, N_FEATURES)),
                                   jnp.float32)))


@pytest.mark.parametrize("name", CALLS)
def test_a_second_eager_call_with_new_values_compiles_nothing(rng, name):
    basis = jnp.asarray(rng.standard_normal((M, N_FEATURES)), jnp.float32)
    call = _calls(basis)[name]
    first = jnp.asarray(rng.standard_normal((N, N_FEATURES)), jnp.float32)
    second = jnp.asarray(rng.standard_normal((N, N_FEATURES)), jnp.float32)
    jax.block_until_ready(call(first))
    with CompileCounter() as counter:
        out = call(second)
        jax.block_until_ready(out)
    assert counter.count == 0, f"{name} compiled {counter.count} times on the second call"


def test_the_plan_keeps_the_static_grid_for_traced_angles_and_validates_once(rng):
    basis = jnp.asarray(rng.standard_normal((M, N_FEATURES)), jnp.float32)
    angles = jnp.linspace(0.0, 2 * np.pi, 37)
    plan, pairs, planned_angles = resonance.plan_measurement(
        None, basis, epsilon=0.3, angles=angles, signed=True, method="arc")
    assert plan.grid is not None and plan.grid.theta0 == 0.0 and plan.grid.period == 36
    assert plan.signed and plan.method == "arc"
    np.testing.assert_array_equal(np.asarray(pairs), np.asarray(srm_jax.plane_pairs(M)))
    # Under jit the angles are traced, but the plan made eagerly still knows their layout:
    # the counts equal the eager ones.
    x = jnp.asarray(rng.standard_normal((N, N_FEATURES)), jnp.float32)
    jitted = jax.jit(lambda x, a: resonance.plan_counts(plan, x, basis, pairs, a, 0.3))
    eager = srm_jax.spotlight_resonance(x, basis, epsilon=0.3, angles=angles, signed=True,
                                        method="arc")
    counts, negative, num, _ = jitted(x, planned_angles)
    np.testing.assert_array_equal(np.asarray(counts[0]), np.asarray(eager.counts))
    np.testing.assert_array_equal(np.asarray(negative[0]), np.asarray(eager.negative_counts))
    for bad in (dict(method="arcs"), dict(chunk_size=0), dict(epsilon=1.5)):
        settings = dict(epsilon=0.3) | bad
        with pytest.raises(ValueError):
            resonance.plan_measurement(x, basis, **settings)


def test_a_jax_arrays_value_key_is_digested_once_and_a_numpy_arrays_every_time(rng):
    """``_validation.array_key``: a ``jax.Array`` (immutable) keeps its digest while it lives and
    has the key of its NumPy copy; a NumPy array changed in place gets a new key."""
    from srm_jax import _validation

    values = rng.standard_normal((50, 3)).astype(np.float32)
    device = jnp.asarray(values)
    key = _validation.array_key(device)
    assert key == _validation.array_key(values)
    assert _validation._ARRAY_KEYS[id(device)][1] == key
    assert _validation.array_key(device) is key  # kept, not digested again
    assert _validation.array_key(device + 1) != key
    values[0, 0] += 1
    assert _validation.array_key(values) != key
    name = id(device)
    del device
    assert name not in _validation._ARRAY_KEYS


def test_a_kept_value_is_returned_while_other_threads_evict_it():
    """``_validation.kept`` from several threads (a report runs stages side by side): each call
    returns the value made for its key even when another thread evicts the entry at once (a
    one-entry cache, a thread switch every microsecond)."""
    import sys
    import threading

    from srm_jax import _validation

    cache: dict = {}
    errors: list = []

    def work(thread: int) -> None:
        try:
            for i in range(2000):
                name = (thread, i % 3)
                assert _validation.kept(cache, name, lambda name=name: name, 1) == name
        except Exception as error:  # noqa: BLE001 - any failure of a thread fails the test
            errors.append(error)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors[:3]
    assert len(cache) == 1


def test_planes_that_passed_are_kept_only_for_jax_arrays():
    """``_validation.check_planes`` keeps the planes of ``jax.Array`` inputs that passed (they
    cannot change) and checks failing planes, and NumPy planes, at every call."""
    from srm_jax import _validation

    basis = jnp.asarray(np.concatenate([np.eye(3), -np.eye(3)]), jnp.float32)
    good = jnp.asarray([[0, 1], [1, 5]], jnp.int32)
    _validation.check_planes(basis, good)
    assert (_validation.array_key(basis), _validation.array_key(good)) in \
        _validation._CHECKED_PLANES
    bad = jnp.asarray([[0, 1], [0, 3]], jnp.int32)  # e_0 and −e_0 span no plane
    for _ in range(2):
        with pytest.raises(ValueError, match="span"):
            _validation.check_planes(basis, bad)
    numpy_bad = np.array(bad)
    with pytest.raises(ValueError, match="span"):
        _validation.check_planes(np.asarray(basis), numpy_bad)
    numpy_bad[1] = [0, 2]
    _validation.check_planes(np.asarray(basis), numpy_bad)  # changed in place: checked again
