"""srm-jax: the Spotlight Resonance Method in JAX.

Reference: G. Bird, "The Spotlight Resonance Method: Resolving the Alignment of Embedded
Activations" (SRM). The mathematical contract is the project's SPEC (planes, rotation, spotlight,
SRM / signed SRM / self-SRM, generalised tanh, Thompson bases).
"""

# --- engine (SPEC §1-5) ---
from srm_jax.alignment import alignment_score
from srm_jax.planes import angle_grid, num_planes, planes
from srm_jax.resonance import SRMResult, combine_results, self_srm, spotlight_resonance
from srm_jax.rotation import (
    normalise_rows,
    plane_coordinates,
    plane_frame,
    rotation_matrix,
    spotlight,
)
# --- bases and activations (SPEC §7-8) ---
# --- analysis (SPEC §6) ---
# --- integration (layers, streaming, devices) ---

__version__ = "0.1.0"
