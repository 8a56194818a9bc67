"""Preset ``fig1`` (paper Fig. 1, Sec. 3)."""

from train.configs.default import Config


def get_config() -> Config:
    """The ``fig1`` preset (math §9)."""
    return Config(
        preset="fig1",
        description=(
            "Fig. 1: small MNIST autoencoder, n=24, m=48 (rotated elementwise tanh), eps=0.9, "
            "combination-SRM."
        ),
        size="small",
        latent_dim=24,
        num_basis=48,
        basis_kind="orthoplex",
        epsilon=0.9,
        paper_dataset="mnist",
    )
