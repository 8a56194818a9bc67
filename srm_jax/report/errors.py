"""The report's one error type."""


class ReportError(ValueError):
    """A problem with the report's inputs, stated in one line for the user.

    Messages name the library's keywords as ``name=`` (``"reduce max_samples= ..."``): the
    command line (:mod:`srm_jax.report.cli`) turns each into the flag that sets it.
    """
