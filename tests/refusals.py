"""The shared check of a refused import: one DataError line that names the source file
and the rule, and no output directory left behind."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.errors import DataError


def assert_one_line_refusal(run: Callable[[], object], src: Path, out: Path, rule: str) -> None:
    """`run()` must raise one single-line DataError naming `src` and containing `rule`,
    and must not have created `out`."""
    with pytest.raises(DataError) as err:
        run()
    msg = str(err.value)
    assert "\n" not in msg and str(src) in msg and rule in msg, msg
    assert not out.exists()


def imported_or_one_line_refusal(run: Callable[[], object], names: str, out: Path) -> None:
    """A fuzzed source either imports (its output is removed for the next example) or is
    refused by one single-line DataError containing `names` (the source's file name) with
    `out` not created: never a traceback, never partial output."""
    try:
        run()
    except DataError as exc:
        assert "\n" not in str(exc) and names in str(exc), str(exc)
        assert not out.exists()
    else:
        shutil.rmtree(out)
