"""`ramer evaluate --noise`: every saved model of an experiment scored under noise
(`pipeline.evaluation.robustness`), unit by unit through the experiment's one iterator."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa

from pipeline.config import Settings
from pipeline.data.dataset import load_dataset
from pipeline.data.fingerprint import dataset_fingerprint
from pipeline.errors import RamerError
from pipeline.evaluation.robustness import (
    NOISE_COLUMNS,
    frame_stats,
    noise_rows,
    render_noise_report,
    train_stats,
)
from pipeline.evaluation.tables import write_parquet
from pipeline.experiment.differences import differences_lines
from pipeline.experiment.units import experiment_device, open_units
from pipeline.training.checkpoint import load_torch
from pipeline.training.config import ExperimentConfig
from pipeline.training.fold_run import FoldRun
from pipeline.training.systems import SystemSpec, experiment_systems
from pipeline.training.trainer import seed_everything

log = logging.getLogger(__name__)


def evaluate_noise(
    cfg: ExperimentConfig, settings: Settings, noises: Sequence[tuple[str, list[int]]], schedule: str = "linear",
    on_stage: Callable[[str], None] = lambda s: None,
) -> Path:
    """Every saved model of the experiment under every noise; writes the noise report."""
    t0 = time.perf_counter()
    ds = load_dataset(cfg.dataset)
    device = experiment_device(cfg, settings)
    systems = experiment_systems(cfg)
    runs_dir = settings.runs_dir / cfg.experiment
    rows: list[dict] = []
    for unit, fr in open_units(cfg, ds, device, runs_dir, dataset_fingerprint(cfg.dataset)):
        split, bank = fr.ctx.split, fr.ctx.bank
        stats = train_stats(bank, split.train)
        fstats = frame_stats(bank, split.train, stats)  # None unless the dataset keeps frames
        for system in systems:
            model = _saved_model(fr, system)
            if model is None:
                continue
            on_stage(f"fold {unit.fold} run {unit.run} · noise · {system.label}")
            test = split.test
            for r in noise_rows(model, bank, test, ds.y[test], fr.ctx.spec.task, noises, fr.ctx.seed, stats,
                                schedule, fstats):
                rows.append({"system": system.label, "fold": unit.fold, "run": unit.run, **r})
    if not rows:
        raise RamerError(f"{runs_dir}: no saved models to evaluate under noise (train first)")
    out = settings.results_dir / cfg.experiment
    out.mkdir(parents=True, exist_ok=True)
    write_parquet(pa.table({c: [r[c] for r in rows] for c in NOISE_COLUMNS}), out / "noise.parquet")
    labels = [s.label for s in systems]
    return render_noise_report(out, seconds=time.perf_counter() - t0, differences=differences_lines(out, labels))


def _saved_model(fr: FoldRun, system: SystemSpec):
    """The system's saved model of this unit (a selection's variant chosen on validation),
    set up to encode and retrieve noisy inputs; None, with a warning, when none was saved."""
    trained = fr.chosen(system, train=False)
    path = fr.ctx.run_dir / f"{(trained or system).slug}.pt"
    if trained is None or not path.is_file():
        log.warning("%s: no saved model, skipped", path)
        return None
    seed_everything(fr.ctx.seed(f"init-{trained.slug}"))
    model = fr.build_model(trained, inputs_as_stored=False)
    model.load_state_dict(load_torch(path))
    return model
