"""The fold x run units of an experiment: one iterator for training, noise evaluation and
predict, so each sets a unit up the same way (split, stage-0 scaler, bank, checkpoints)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.config import Settings, resolve_device
from pipeline.data.dataset import Dataset
from pipeline.data.missing import condition_matrix
from pipeline.data.splits import make_split
from pipeline.training.config import ExperimentConfig
from pipeline.training.fold_run import FoldRun, Hook
from pipeline.training.stages import fold_context, model_spec


@dataclass(frozen=True)
class Unit:
    fold: int
    run: int
    where: str  # "fold 1/5 run 2/3", for progress lines and errors

    def run_dir(self, runs_dir: Path) -> Path:
        return runs_dir / f"f{self.fold}_r{self.run}"


def requested_device(cfg: ExperimentConfig, settings: Settings) -> str:
    """The experiment's device, else the settings' (RAMER_DEVICE); may be 'auto'."""
    return cfg.device if cfg.device != "auto" else settings.device


def experiment_device(cfg: ExperimentConfig, settings: Settings) -> str:
    """The device the experiment runs on: 'auto' resolved ('cuda' when torch sees a GPU)."""
    return resolve_device(requested_device(cfg, settings))


def experiment_folds(cfg: ExperimentConfig, ds: Dataset) -> list[int]:
    return cfg.folds if cfg.folds is not None else list(range(ds.manifest.folds))


def experiment_units(cfg: ExperimentConfig, ds: Dataset) -> list[Unit]:
    """Every (fold, run) in the serial order: fold-major, runs within a fold."""
    folds = experiment_folds(cfg, ds)
    return [Unit(f, r, f"fold {i + 1}/{len(folds)} run {r + 1}/{cfg.runs}")
            for i, f in enumerate(folds) for r in range(cfg.runs)]


def open_unit(cfg: ExperimentConfig, ds: Dataset, unit: Unit, device: str, runs_dir: Path,
              fingerprint: str | None, on_epoch: Hook | None = None) -> FoldRun:
    """The unit's FoldRun: its split, its stage-0 scaler and bank, its checkpoint folder
    (whose data fingerprint must match, when given)."""
    split = make_split(ds.y, ds.labeled, ds.folds, unit.fold, unit.run, cfg.seed)
    ctx = fold_context(ds, split, model_spec(ds), condition_matrix(ds.manifest), device, unit.run_dir(runs_dir),
                       cfg.seed, cfg.preprocess, fingerprint)
    return FoldRun(ctx, cfg, on_epoch=on_epoch)


def open_units(cfg: ExperimentConfig, ds: Dataset, device: str, runs_dir: Path,
               fingerprint: str | None) -> Iterator[tuple[Unit, FoldRun]]:
    """(unit, FoldRun) for every unit of the experiment, in the serial order."""
    for unit in experiment_units(cfg, ds):
        yield unit, open_unit(cfg, ds, unit, device, runs_dir, fingerprint)


@dataclass
class UnitTask:
    """One (fold, run) as a worker process gets it: no dataset, no open store."""

    cfg: ExperimentConfig
    settings: Settings
    unit: Unit
    device: str
    fingerprint: str
    stop_after: str | None
    runs_dir: Path

    @property
    def fold(self) -> int:
        return self.unit.fold

    @property
    def run(self) -> int:
        return self.unit.run

    @property
    def where(self) -> str:
        return self.unit.where

    @property
    def run_dir(self) -> Path:
        return self.unit.run_dir(self.runs_dir)


@dataclass
class UnitResult:
    """What one (fold, run) hands back to the parent, which alone writes the store."""

    records: list[dict] = field(default_factory=list)
    precision: list[dict] = field(default_factory=list)
    diagnostics: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    vectors: dict[str, np.ndarray] | None = None  # m -> (N, H) hidden vectors still to ingest
