"""srm-jax: the Spotlight Resonance Method in JAX.

Reference: G. Bird, "The Spotlight Resonance Method: Resolving the Alignment of Embedded
Activations" (SRM). The mathematics (planes, rotation, spotlight, SRM / signed SRM /
self-SRM, the arc form, significance, generalised tanh, Thompson bases) is derived in
docs/math.md; docstrings cite its sections as ``math §N``.
"""

# --- engine (math §1-5) ---
from srm_jax.alignment import alignment_score
from srm_jax.planes import angle_grid, num_planes, plane_pairs, spanning_planes
# Deprecated name of plane_pairs (one release; not in __all__). srm_jax.planes stays this
# function, as before: the submodule is reached by `import srm_jax.planes` / `from srm_jax.planes
# import ...`.
from srm_jax.planes import planes
from srm_jax.resonance import SRMResult, combine_results, self_srm, spotlight_resonance
from srm_jax.summaries import SRMSummary, combine_summaries, resonance_summary
from srm_jax.rotation import (
    normalise_rows,
    plane_coordinates,
    plane_frame,
    rotation_matrix,
    spotlight,
)
# --- bases and activations (math §7-8) ---
from srm_jax.bases import (
    ThompsonInfo,
    orthoplex_basis,
    random_basis,
    random_orthogonal,
    simplex_basis,
    standard_basis,
    thompson_basis,
    thompson_energy,
)
from srm_jax.activations import (
    generalised_tanh,
    generalised_tanh_correction,
    isotropic_tanh,
    normalised_isotropic_tanh,
    positive_cosine_pairs,
)
from srm_jax.nn import (
    GeneralisedTanh,
    IsotropicTanh,
    NormalisedIsotropicTanh,
    PrivilegedBasis,
)
# --- analysis (math §6) ---
from srm_jax.significance import (
    AlignmentTest,
    NullBand,
    alignment_statistic,
    alignment_test,
    haar_rotation,
    haar_rotations,
    isotropic_expectation,
    lit_share,
    min_p_value,
    null_band,
    permutation_p_value,
)
from srm_jax.spectrum import (
    EpsilonSweep,
    SRMSpectrum,
    alignment_sweep,
    evaluate_spectrum,
    spectral_alignment_score,
    srm_spectrum,
)
from srm_jax.per_class import (
    Selectivity,
    class_selectivity,
    distinct_planes,
    per_class_srm,
    rank_selectivity,
    vector_firing,
)
from srm_jax.credits import LitCredits, lit_credits
from srm_jax.projection import (
    ProjectionDensity,
    isotropic_plane_density,
    plane_projection,
    projection_density,
)
from srm_jax.plotting import (
    plot_alignment_sweep,
    plot_alignment_test,
    plot_grandmother,
    plot_per_class,
    plot_projection_density,
    plot_srm,
)
# --- integration (layers, streaming, devices) ---
from srm_jax.streaming import (
    StreamingSRM,
    accumulate_srm,
    accumulate_summary,
    fixed_size_batches,
    streaming_srm,
)
from srm_jax.distributed import data_mesh, shard_samples, sharded_srm
from srm_jax.layers import (
    as_samples,
    capture_activations,
    collect_activations,
    find_basis,
    layer_activations,
    layer_srm,
)
from srm_jax.metrics import SRMAlignment, SRMMetric, SRMMetricState, srm_alignment, srm_metric

# Internals reachable from their modules, not exported here: srm_jax.streaming.add_batch (the
# pure update of streaming_srm), srm_jax.distributed.sharded_counts (the compiled sharded kernel)
# and srm_jax.nn.CorrectionPairs (the pair-list variable of GeneralisedTanh).

from srm_jax import bases as _bases  # its own __all__ lists the bases

__version__ = "0.2.0"

# The public API: what `from srm_jax import *` gives, and what tests/test_vocabulary.py checks
# (one name, one default, one annotation per keyword; docs/vocabulary.md).
__all__ = [
    # engine
    "SRMResult",
    "SRMSummary",
    "alignment_score",
    "angle_grid",
    "combine_results",
    "combine_summaries",
    "normalise_rows",
    "num_planes",
    "plane_coordinates",
    "plane_frame",
    "plane_pairs",
    "resonance_summary",
    "rotation_matrix",
    "self_srm",
    "spanning_planes",
    "spotlight",
    "spotlight_resonance",
    # bases and activations
    "GeneralisedTanh",
    "IsotropicTanh",
    "NormalisedIsotropicTanh",
    "PrivilegedBasis",
    "generalised_tanh",
    "generalised_tanh_correction",
    "isotropic_tanh",
    "normalised_isotropic_tanh",
    "positive_cosine_pairs",
    *_bases.__all__,
    # analysis
    "AlignmentTest",
    "EpsilonSweep",
    "LitCredits",
    "NullBand",
    "ProjectionDensity",
    "SRMSpectrum",
    "Selectivity",
    "alignment_statistic",
    "alignment_sweep",
    "alignment_test",
    "class_selectivity",
    "distinct_planes",
    "evaluate_spectrum",
    "haar_rotation",
    "haar_rotations",
    "isotropic_expectation",
    "isotropic_plane_density",
    "lit_credits",
    "lit_share",
    "min_p_value",
    "null_band",
    "per_class_srm",
    "permutation_p_value",
    "plane_projection",
    "plot_alignment_sweep",
    "plot_alignment_test",
    "plot_grandmother",
    "plot_per_class",
    "plot_projection_density",
    "plot_srm",
    "projection_density",
    "rank_selectivity",
    "spectral_alignment_score",
    "srm_spectrum",
    "vector_firing",
    # integration
    "SRMAlignment",
    "SRMMetric",
    "SRMMetricState",
    "StreamingSRM",
    "accumulate_srm",
    "accumulate_summary",
    "as_samples",
    "capture_activations",
    "collect_activations",
    "data_mesh",
    "find_basis",
    "fixed_size_batches",
    "layer_activations",
    "layer_srm",
    "shard_samples",
    "sharded_srm",
    "srm_alignment",
    "srm_metric",
    "streaming_srm",
]
