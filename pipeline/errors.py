"""User-facing errors.

Every failure caused by the user's input (a bad file, an unreachable server, a locked
folder) is raised as `RamerError` with one line that names the file and the rule broken.
The CLI prints that line and exits 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

# Every character `str.splitlines` breaks on, shown escaped ('\\n') instead.
_LINE_BREAKS = {ord(c): repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}


class RamerError(Exception):
    """A one-line, user-facing error: what went wrong, where, and which rule it broke.

    Messages quote values from the user's files (sample names, labels), which may hold
    line breaks: those are escaped here, so the message stays one line whatever it quotes."""

    def __init__(self, message: object = "") -> None:
        super().__init__(str(message).translate(_LINE_BREAKS))


class DataError(RamerError):
    """Bad dataset input (manifest, parquet, importer source)."""


class StoreError(RamerError):
    """The vector store cannot be opened, reached or written."""
