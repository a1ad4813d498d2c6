"""User-facing errors.

Every failure caused by the user's input (a bad file, an unreachable server, a locked
folder) is raised as `RamerError` with one line that names the file and the rule broken.
The CLI prints that line and exits 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class RamerError(Exception):
    """A one-line, user-facing error: what went wrong, where, and which rule it broke."""


class DataError(RamerError):
    """Bad dataset input (manifest, parquet, importer source)."""


class StoreError(RamerError):
    """The vector store cannot be opened, reached or written."""
