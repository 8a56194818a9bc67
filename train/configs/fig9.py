"""Preset ``fig9`` (paper Fig. 9, App. B.5)."""

from train.configs.default import Config


def get_config() -> Config:
    """The ``fig9`` preset (math §9)."""
    return Config(
        preset="fig9",
        description=(
            "Fig. 9 (App. B.5): large MNIST autoencoder, overcomplete Thompson basis n=24, m=96, "
            "eps=0.6, combination-SRM."
        ),
        size="large",
        latent_dim=24,
        num_basis=96,
        basis_kind="thompson",
        epsilon=0.6,
        hidden_widths=(256, 128),
        paper_dataset="mnist",
    )
