"""Resuming an experiment: its checkpoints belong to this data and this configuration."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.errors import RamerError
from pipeline.training.checkpoint import load_json
from pipeline.training.config import ExperimentConfig


def check_resume(cfg: ExperimentConfig, runs_dir: Path, resume: bool, fingerprint: str) -> None:
    saved = runs_dir / "config.json"
    if saved.is_file():
        if not resume:
            raise RamerError(
                f"{runs_dir}: experiment '{cfg.experiment}' already has checkpoints; "
                "pass --resume to continue it or --fresh to start over"
            )
        recorded = load_json(saved, dict)
        check_fingerprint(recorded, fingerprint, saved, cfg.dataset)
        then, now = _resumable(recorded, config_dict(cfg)), _resumable(config_dict(cfg), recorded)
        if then != now:
            changed = ", ".join(f"{k} {a!r} -> {b!r}" for k, a, b in _changes(then, now)[:4])
            raise RamerError(
                f"{saved}: --resume with a different config than the checkpoints were made with ({changed}); "
                "use a new --experiment name or --fresh"
            )


def check_fingerprint(saved: dict, fingerprint: str, where: Path, dataset: str) -> None:
    """Refuse checkpoints made from other data than `dataset` holds now."""
    recorded = saved.get("data_fingerprint")
    if recorded != fingerprint:
        raise RamerError(
            f"{where}: made from other data than {dataset} holds now (fingerprint {recorded} vs "
            f"{fingerprint}): it was regenerated or re-imported; use a new --experiment or --fresh"
        )


def _resumable(cfg: dict, other: dict) -> dict:
    """The part of a config that checkpoints depend on. Systems are checkpointed one by one,
    so adding systems to a finished experiment reuses its encoders and earlier systems, and
    checkpoints are per (fold, run), so folds and runs can be added later too; an option
    that a newer version added (at any depth) counts only when it differs from its default."""
    top = {k: v for k, v in cfg.items() if k not in ("systems", "precision_ks", "folds", "runs", "data_fingerprint")}
    retrieval = top.get("retrieval")
    if isinstance(retrieval, dict) and not retrieval.get("finetune_encoders", False):
        # frozen encoders never refresh a list: the setting (whose default changed) is moot
        top["retrieval"] = {k: v for k, v in retrieval.items() if k != "refresh_every"}
    return _without_new_defaults(top, other, config_dict(ExperimentConfig()))


def _changes(a: dict, b: dict, prefix: str = "") -> list[tuple[str, object, object]]:
    """(dotted key, value in a, value in b) where two config dicts differ."""
    out = []
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if isinstance(x, dict) and isinstance(y, dict):
            out += _changes(x, y, f"{prefix}{k}.")
        elif x != y:
            out.append((f"{prefix}{k}", x, y))
    return out


def _without_new_defaults(cfg: dict, other: dict, defaults: dict) -> dict:
    out = {}
    for k, v in cfg.items():
        if k not in other and v == defaults.get(k):
            continue  # an option the other side predates, left at its default
        if isinstance(v, dict) and isinstance(other.get(k), dict):
            v = _without_new_defaults(v, other[k], defaults.get(k) or {})
        out[k] = v
    return out


def config_dict(cfg: ExperimentConfig) -> dict:
    """The config as JSON holds it (tuples as lists, paths as strings)."""
    return json.loads(json.dumps(cfg.to_dict(), default=str))
