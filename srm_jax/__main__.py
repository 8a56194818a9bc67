"""``python -m srm_jax report ...``: the ``srm-jax`` command line (:mod:`srm_jax.report.cli`)."""

import sys

from srm_jax.report.cli import main

if __name__ == "__main__":
    sys.exit(main())
