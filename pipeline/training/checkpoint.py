"""Atomic checkpoint files: written to a temporary name, then renamed into place.

A run killed mid-write leaves either the previous file or none, never a torn one, so
`--resume` can trust whatever it finds.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import torch

from pipeline.errors import RamerError


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


def _replace(tmp: Path, path: Path, write) -> None:
    """`write(tmp)`, then rename it onto `path`; a failed write (a full disk) removes
    its temporary file instead of leaving megabytes of it behind."""
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_torch(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _replace(_tmp(path), path, lambda tmp: torch.save(obj, tmp))


def corrupt(path: Path, what: str) -> RamerError:
    """One line for a checkpoint that cannot be read, and how to get past it."""
    return RamerError(f"{path}: {what}; delete it (or its folder {path.parent.name}/ to re-run that unit) "
                      "or start the experiment over with --fresh")


def load_torch(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 (truncated zip, bad pickle, empty file: torch raises any of these)
        raise corrupt(path, f"unreadable checkpoint ({type(exc).__name__})") from None


def save_json(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, indent=2, default=str) + "\n"
    _replace(_tmp(path), path, lambda tmp: tmp.write_text(text))


def load_json(path: Path, kind: type | None = None) -> Any:
    """The file's JSON value; with `kind` (dict, list), one of that type or a RamerError."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise corrupt(path, f"not valid JSON ({exc})") from None
    if kind is not None and not isinstance(value, kind):
        raise corrupt(path, f"holds a JSON {type(value).__name__}, not the {kind.__name__} it was written as")
    return value
