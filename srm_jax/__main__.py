"""``python -m srm_jax report ...``: the ``srm-jax`` command line (see :mod:`srm_jax.cli`)."""

import sys

from srm_jax.cli import main

if __name__ == "__main__":
    sys.exit(main())
