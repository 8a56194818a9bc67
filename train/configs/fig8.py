"""Preset ``fig8`` (paper Fig. 8, App. B.5)."""

from train.configs.default import Config


def get_config() -> Config:
    """The ``fig8`` preset (math §9)."""
    return Config(
        preset="fig8",
        description=(
            "Fig. 8 (App. B.5): large MNIST autoencoder, overcomplete Thompson basis n=10, m=40, "
            "eps=0.8, combination-SRM."
        ),
        size="large",
        latent_dim=10,
        num_basis=40,
        basis_kind="thompson",
        epsilon=0.8,
        hidden_widths=(256, 128),
        paper_dataset="mnist",
    )
