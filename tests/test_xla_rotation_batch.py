"""A batch of a hundred Haar rotations on XLA:CPU (srm_jax.basis_measures.MAX_ROTATIONS_PER_BATCH).

The stall once blamed on large rotation batches is the QR inside ``jax.random.orthogonal``: its
LAPACK custom call (jaxlib's ``_lapack``, scipy's bundled OpenBLAS) runs on an XLA:CPU worker and
OpenBLAS splits each call over its own threads, which spin-wait for one another when other
processes hold the cores (https://github.com/OpenMathLib/OpenBLAS/issues/5517; jaxlib's batched
LAPACK and OpenBLAS threads: https://github.com/jax-ml/jax/issues/39292). It slows one rotation as
much as a batch. With OpenBLAS on one thread a batch of 108 rotations, applied together, runs to
the end and gives the rotations of smaller batches.
"""

from __future__ import annotations

import time

import pytest

from tests.conftest import run_python

_BATCH = """
import jax, numpy as np
import srm_jax
from srm_jax import basis_measures as bm
n, rotations = {n}, {rotations}
x = np.random.default_rng(0).standard_t(3, size=(48, n)).astype(np.float32)
basis, key = srm_jax.standard_basis(n), jax.random.key(7)
together = bm.measures_rotation_test(key, x, basis, rotations, map_batch_size=rotations)
capped = bm.measures_rotation_test(key, x, basis, rotations,
                                   map_batch_size=bm.MAX_ROTATIONS_PER_BATCH)
np.testing.assert_allclose(together.null, capped.null, rtol=1e-5)
assert together.rotations_per_batch == rotations and np.all(np.isfinite(together.null))
print("done", together.null.shape)
"""


@pytest.mark.slow
def test_hundred_rotations_together_finish_with_single_threaded_openblas():
    """108 rotations of width 256 drawn and applied in one batch (vmapped QR) finish, in a
    subprocess under a timeout, and equal the capped batches' rotations."""
    start = time.perf_counter()
    out = run_python(_BATCH.format(n=256, rotations=108), {"OPENBLAS_NUM_THREADS": "1"},
                     timeout=240)
    assert "done (108, 4)" in out, f"{out} after {time.perf_counter() - start:.0f} s"
