"""The paper's autoencoder experiments (SPEC §9), laid out like the Flax examples.

* :mod:`train.configs` — one config per preset (fig1, fig2, fig5–fig9, isotropic);
* :mod:`train.input_pipeline` — mnist5k, digits, and MNIST / CIFAR-10 through TFDS;
* :mod:`train.models` — the small and large reconstruction autoencoders (Flax NNX);
* :mod:`train.train` — the training loop, checkpoints, metrics and SRM measurements;
* :mod:`train.measure` — SRM of the latent layer and the alignment score;
* :mod:`train.plots` — the paper-style SRM ensemble figures;
* :mod:`train.study` — variants × seeds with the paired isotropic control (a reproduction study).

Run ``python -m train fig1 --dataset mnist5k --epochs 10 --out runs/fig1``; ``--seeds 8`` trains
eight seeds at once; ``python -m train.study fig1 --seeds 8 --vary bias_init=zero,torch``
compares variants against the isotropic control (docs/reproduction.md).
"""
