"""SRM as a metric inside your own jitted training step: the alignment as training goes.

The paper (Sec. 5) suggests the alignment of a layer with its activation's privileged basis as
a signal to watch during training, e.g. for early stopping. Here the paper's *small* autoencoder
(``train.models.Autoencoder``: no activation before the latent layer, generalised tanh on a
randomly rotated orthoplex basis acting on the latent) trains on scikit-learn's digits with the
paper's optimiser (SGD, momentum 0.9, learning rate 0.08, batch 24) in a train step written
here, and :func:`srm_jax.srm_metric` measures the latent layer every ``--every`` steps *inside*
that compiled step:

* a ``lax.cond`` on ``step % every == 0`` chooses between measuring and carrying the last
  measurement, so the step compiles once and the score never leaves the device until logged;
* the measured activations are a fixed held-out probe batch, encoded only on measured steps
  (``lambda: model.encode(probe)``).

Run from the repository root (``train`` is not installed with the package):
``python -m examples.train_with_srm_metric [--steps 1500 --every 100 --out curve.png]``.
"""

from __future__ import annotations

import argparse
import time

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import srm_jax
from train.input_pipeline import load_digits
from train.models import Autoencoder


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--latent", type=int, default=8, help="n")
    parser.add_argument("--epsilon", type=float, default=0.8)
    parser.add_argument("--probe", type=int, default=256, help="held-out samples measured")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="save the score-vs-step plot here")
    args = parser.parse_args(argv)

    data = load_digits()
    model = Autoencoder(
        data.num_features, latent_dim=args.latent, num_basis=2 * args.latent, size="small",
        hidden_widths=(32,), basis_kind="orthoplex", rngs=nnx.Rngs(args.seed),
    )
    optimizer = nnx.Optimizer(model, optax.sgd(0.08, momentum=0.9), wrt=nnx.Param)
    basis = model.latent_basis  # the basis of the generalised tanh acting on the latent
    # planes="comb" (the default) skips the orthoplex's antipodal pairs, which span no plane.
    metric = srm_jax.srm_metric(basis, every=args.every, epsilon=args.epsilon)
    probe = jnp.asarray(data.test_x[: args.probe])

    @nnx.jit
    def train_step(model, optimizer, metric_state, step, x):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - x) ** 2))(model)
        optimizer.update(model, grads)
        # Measured on steps 0, every, 2·every, ...: SRM of the probe's latent activations.
        metric_state = metric.update(metric_state, lambda: model.encode(probe), step)
        return loss, metric_state

    rng = np.random.default_rng(args.seed)
    metric_state = metric.init()
    history = []
    start = time.perf_counter()
    for step in range(args.steps + 1):
        batch = data.train_x[rng.integers(0, len(data.train_x), 24)]
        loss, metric_state = train_step(model, optimizer, metric_state, step, batch)
        if step % args.every == 0:  # log: the only host read of the score
            record = {"step": step, "loss": float(loss), "alignment": float(metric_state.score)}
            history.append(record)
            print(f"step {step:5d}  loss {record['loss']:.4f}  "
                  f"alignment {record['alignment']:+.3f}", flush=True)
    print(f"{args.steps} steps in {time.perf_counter() - start:.1f}s")
    scores = np.array([r["alignment"] for r in history])
    if np.isfinite(scores).any():
        top = int(np.nanargmax(np.abs(scores)))
        print(f"alignment: {scores[0]:+.3f} at step 0, {scores[-1]:+.3f} at the end; strongest "
              f"(|score|) {scores[top]:+.3f} at step {history[top]['step']}")

    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.2))
        steps = [r["step"] for r in history]
        ax.plot(steps, [r["alignment"] for r in history], "o-", label="alignment (probe)")
        ax.set_xlabel("step")
        ax.set_ylabel("alignment with self-SRM")
        ax2 = ax.twinx()
        ax2.plot(steps, [r["loss"] for r in history], color="0.5", linestyle=":", label="loss")
        ax2.set_ylabel("minibatch MSE")
        fig.tight_layout()
        fig.savefig(args.out, dpi=110)
        print(f"figure written to {args.out}")
    return history


if __name__ == "__main__":
    main()
