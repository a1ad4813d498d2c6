"""Imports every built-in model module so their registrations run (one line each)."""

from pipeline.models import (
    ae,  # noqa: F401
    carat,  # noqa: F401
    cif_mmin,  # noqa: F401
    cra,  # noqa: F401
    if_mmin,  # noqa: F401
    linear,  # noqa: F401
    mmin,  # noqa: F401
    nmer,  # noqa: F401
    ramer,  # noqa: F401
)
