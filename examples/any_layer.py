"""SRM of any layer of a Flax NNX model that srm-jax knows nothing about.

A small classifier MLP with elementwise ``tanh`` is written here, trained for a few hundred steps
on scikit-learn's 8×8 digits, and the layer that its last ``tanh`` acts on is measured, before
and after training, named in the two ways srm-jax supports:

* ``"hidden/1"``, a module path: the output of the second ``nnx.Linear``. Nothing in the model
  changes to measure it.
* ``"preact"``, a value the model sows with ``self.sow(nnx.Intermediate, "preact", h)``.

Both name the same activations, so their counts are identical.

Elementwise ``tanh`` privileges the standard basis ``±e_i`` (``m = 2n``; the paper's Eqn. 5), so
that is the basis given. Antipodal pairs ``(e_i, −e_i)`` span no plane (math §2.2) and are left out
of the planes. The alignment score is the Pearson correlation of the mean SRM curve with the mean
self-SRM curve (+1: the layer's activations cluster on the basis directions).

Run: ``python examples/any_layer.py [--steps 300] [--out figure.png]``.
"""

from __future__ import annotations

import argparse

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from sklearn.datasets import load_digits

import srm_jax
from srm_jax.bases import standard_basis


class MLP(nnx.Module):
    """64 → 32 → 16 → 10 with tanh; sows the 16 pre-activations of its last tanh as "preact"."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.hidden = nnx.List([nnx.Linear(64, 32, rngs=rngs), nnx.Linear(32, 16, rngs=rngs)])
        self.head = nnx.Linear(16, 10, rngs=rngs)

    def __call__(self, x):
        x = jnp.tanh(self.hidden[0](x))
        h = self.hidden[1](x)
        self.sow(nnx.Intermediate, "preact", h)
        return self.head(jnp.tanh(h))


def load_data(seed: int = 0):
    digits = load_digits()
    x = (digits.data / 8.0 - 1.0).astype(np.float32)  # [0, 16] → [−1, 1]
    y = digits.target.astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(x))
    test, train = order[:400], order[400:]
    return x[train], y[train], x[test], y[test]


def train(model: MLP, x, y, *, steps: int, batch_size: int = 64, seed: int = 0) -> float:
    optimizer = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, xb, yb):
        def loss_fn(model):
            # Flax 0.12 runs `sow` inside nnx.capture; the captured values are dropped here.
            logits, _ = nnx.capture(model, nnx.Intermediate)(xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    rng = np.random.default_rng(seed)
    loss = np.nan
    for _ in range(steps):
        idx = rng.integers(0, len(x), batch_size)
        loss = float(step(model, optimizer, x[idx], y[idx]))
    return loss


def batches(x, size: int):
    """Any iterator works: here NumPy slices (the last one ragged)."""
    for start in range(0, len(x), size):
        yield x[start : start + size]


def measure(model, x, *, basis, epsilon, reference) -> tuple[dict, dict]:
    """SRM of the last tanh's input, named by module path and by sown value."""
    results, scores = {}, {}
    for name in ("hidden/1", "preact"):
        results[name] = srm_jax.layer_srm(
            model, name, batches(x, 128), basis=basis, epsilon=epsilon
        )
        scores[name] = float(srm_jax.alignment_score(results[name], reference))
    assert np.array_equal(results["hidden/1"].counts, results["preact"].counts)
    return results, scores


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--epsilon", type=float, default=0.6)
    parser.add_argument("--out", default=None, help="save the SRM figure here")
    args = parser.parse_args(argv)

    x_train, y_train, x_test, y_test = load_data()
    model = MLP(rngs=nnx.Rngs(0))
    basis = standard_basis(16)  # ±e_i: the privileged basis of elementwise tanh
    # planes="comb" (the default) skips the antipodal pairs (e_i, -e_i), which span no plane.
    reference = srm_jax.self_srm(basis, epsilon=args.epsilon)
    kw = dict(basis=basis, epsilon=args.epsilon, reference=reference)

    before, before_scores = measure(model, x_test, **kw)
    loss = train(model, x_train, y_train, steps=args.steps)
    logits, _ = nnx.capture(model, nnx.Intermediate)(x_test)
    accuracy = float(np.mean(np.argmax(logits, -1) == y_test))
    print(f"trained {args.steps} steps: loss {loss:.3f}, test accuracy {accuracy:.3f}")
    after, after_scores = measure(model, x_test, **kw)
    result = after["hidden/1"]
    print(f"SRM of 'hidden/1' (= sown 'preact'): {int(result.num_samples)} test samples, "
          f"{result.counts.shape[0]} planes, eps = {args.epsilon}")
    print(f"alignment with ±e_i: before training {before_scores['hidden/1']:+.3f}, "
          f"after {after_scores['hidden/1']:+.3f}")

    # The same activations in memory (fine for small data): identical counts.
    acts = srm_jax.collect_activations(model, "hidden/1", batches(x_test, 128))
    direct = srm_jax.spotlight_resonance(acts, basis, epsilon=args.epsilon)
    assert np.array_equal(direct.counts, result.counts)

    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
        srm_jax.plot_srm(reference, ax=axes[0], title="self-SRM of ±e_i")
        srm_jax.plot_srm(before["hidden/1"], n=16, ax=axes[1],
                         title=f"before training: {before_scores['hidden/1']:+.2f}")
        srm_jax.plot_srm(result, n=16, ax=axes[2],
                         title=f"after training: {after_scores['hidden/1']:+.2f}")
        fig.tight_layout()
        fig.savefig(args.out, dpi=110)
        print(f"figure written to {args.out}")
    return {"before": before_scores["hidden/1"], "after": after_scores["hidden/1"]}


if __name__ == "__main__":
    main()
