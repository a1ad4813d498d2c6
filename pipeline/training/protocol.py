"""The whole RAMER protocol: K folds x R runs x systems, resumable, with one progress bar.

Outputs (see README): results/<experiment>/{config.json, metrics.parquet,
precision.parquet, timings.json, report.md, summary.csv, *.png}; checkpoints in runs/<experiment>/.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pipeline.config import Settings, resolve_device
from pipeline.data.dataset import Dataset, load_dataset
from pipeline.data.fingerprint import dataset_fingerprint
from pipeline.data.missing import condition_matrix
from pipeline.data.splits import make_split
from pipeline.errors import RamerError
from pipeline.models.base import ModelSpec
from pipeline.models.registry import model_class
from pipeline.training.checkpoint import load_json, save_json
from pipeline.training.config import ExperimentConfig
from pipeline.training.fold_run import FoldRun
from pipeline.training.stages import FoldContext, fold_context, stage1_scores
from pipeline.training.systems import parse_system

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """What the protocol reports as it goes; the CLI renders it with rich."""

    on_start: Callable[[int], None] = lambda total: None  # total work units
    on_stage: Callable[[str], None] = lambda text: None  # "fold 1/5 run 2/3 · pretrain audio"
    on_epoch: Callable[[str, int, dict], None] = lambda stage, epoch, rec: None
    on_advance: Callable[[int], None] = lambda n: None


@dataclass
class RunOutputs:
    results_dir: Path
    records: list[dict] = field(default_factory=list)  # one per (system, fold, run)
    precision: list[dict] = field(default_factory=list)
    diagnostics: list[dict] = field(default_factory=list)  # per (fold, run, modality): stage 1 + DB health
    timings: dict[str, float] = field(default_factory=dict)


def model_spec(ds: Dataset) -> ModelSpec:
    man = ds.manifest
    n_out = 1 if man.task == "regression" else man.n_classes
    return ModelSpec(tuple(man.modality_names), tuple(man.dims), n_out, man.task)


def _check_resume(cfg: ExperimentConfig, runs_dir: Path, resume: bool, fingerprint: str) -> None:
    saved = runs_dir / "config.json"
    if saved.is_file():
        if not resume:
            raise RamerError(
                f"{runs_dir}: experiment '{cfg.experiment}' already has checkpoints; "
                "pass --resume to continue it or --fresh to start over"
            )
        check_fingerprint(load_json(saved), fingerprint, saved, cfg.dataset)
        _check_legacy_medium(load_json(saved), saved)
        if _resumable(load_json(saved), load_json_like(cfg)) != _resumable(load_json_like(cfg), load_json(saved)):
            raise RamerError(
                f"{saved}: --resume with a different config than the checkpoints were made with; "
                "use a new --experiment name or --fresh"
            )


def _check_legacy_medium(saved: dict, where: Path) -> None:
    """Checkpoints made before the paper's scale names (no `preset` in their config) used
    'medium' for train rows + half of the pool; today 'medium' is the paper's half of the
    pool only, so those checkpoints cannot be resumed under that name."""
    if "preset" in saved:
        return
    names = [saved.get("retrieval", {}).get("scale", ""), *saved.get("systems", [])]
    if any("medium" in str(n) for n in names):
        raise RamerError(f"{where}: made when DB scale 'medium' meant train rows + half of the pool (now "
                         "'train+half-pool'; 'medium' is the paper's half of the pool only); use a new "
                         "--experiment or --fresh")


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
    return _without_new_defaults(top, other, load_json_like(ExperimentConfig()))


def _without_new_defaults(cfg: dict, other: dict, defaults: dict) -> dict:
    out = {}
    for k, v in cfg.items():
        if k not in other and v == defaults.get(k):
            continue  # an option the other side predates, left at its default
        if isinstance(v, dict) and isinstance(other.get(k), dict):
            v = _without_new_defaults(v, other[k], defaults.get(k) or {})
        out[k] = v
    return out

def load_json_like(cfg: ExperimentConfig) -> dict:
    import json

    return json.loads(json.dumps(cfg.to_dict(), default=str))


def run_experiment(
    cfg: ExperimentConfig, settings: Settings, progress: Progress | None = None,
    resume: bool = False, fresh: bool = False, store_factory: Callable[[], object] | None = None,
    stop_after: str | None = None,
) -> RunOutputs:
    """Run stages 1-4 over folds x runs. `stop_after` in {pretrain, index, train} ends
    each (fold, run) early: the stage commands of the CLI; a later call resumes from there.
    `stop_after="sweep"` is `train` that also collects validation rows into `records` and
    skips everything that reads test rows (precision@K, stage 4): `ramer sweep`."""
    if stop_after not in (None, "pretrain", "index", "train", "sweep"):
        raise ValueError(f"stop_after={stop_after!r}")
    progress = progress or Progress()
    ds = load_dataset(cfg.dataset)
    from pipeline.extras import load_faiss
    from pipeline.training.validate import validate_experiment

    # Every option is checked before any directory is written (one line, nothing left behind).
    systems = [parse_system(s, cfg.retrieval, cfg.models) for s in _expand_strategies(cfg)]
    requested = cfg.device if cfg.device != "auto" else settings.device
    validate_experiment(cfg, ds.manifest.folds, ds.manifest.modality_names, systems, requested)
    if stop_after == "sweep":
        from pipeline.training.sweep import refuse_test_systems

        refuse_test_systems(systems)
    stray = [s.label for s in systems if s.m3s and s.strategy != "m3s"]
    if stray:
        raise RamerError(f"systems {stray}: M3S options (inner_lr, ...) need --strategy m3s")
    folds = cfg.folds if cfg.folds is not None else list(range(ds.manifest.folds))
    device = resolve_device(requested)
    torch.set_num_threads(max(1, settings.threads))
    load_faiss().omp_set_num_threads(max(1, settings.threads))
    runs_dir = settings.runs_dir / cfg.experiment
    results_dir = settings.results_dir / cfg.experiment
    if fresh:
        shutil.rmtree(runs_dir, ignore_errors=True)
    fingerprint = dataset_fingerprint(cfg.dataset)
    _check_resume(cfg, runs_dir, resume or stop_after is not None, fingerprint)
    runs_dir.mkdir(parents=True, exist_ok=True)
    save_json({**load_json_like(cfg), "data_fingerprint": fingerprint}, runs_dir / "config.json")
    spec = model_spec(ds)
    conds = condition_matrix(ds.manifest)
    out = RunOutputs(results_dir)
    units_per = 1 + len(systems)
    progress.on_start(len(folds) * cfg.runs * units_per)
    for fold in folds:
        for run in range(cfg.runs):
            split = make_split(ds.y, ds.labeled, ds.folds, fold, run, cfg.seed)
            ctx = fold_context(ds, split, spec, conds, device, runs_dir / f"f{fold}_r{run}", cfg.seed,
                               cfg.preprocess, fingerprint)
            where = f"fold {fold + 1}/{len(folds)} run {run + 1}/{cfg.runs}"
            fr = FoldRun(ctx, cfg, on_epoch=lambda st, e, rec, w=where: progress.on_epoch(f"{w} · {st}", e, rec))
            progress.on_stage(f"{where} · stages 1-2 (pretrain, index)")
            if stop_after == "pretrain":
                fr.encoders(fused=cfg.retrieval.db_source == "multimodal")
                progress.on_advance(units_per)
                continue
            needs_db = any(model_class(s.model).uses_stage1_encoders for s in systems)  # baselines need none
            if needs_db and stop_after != "sweep":  # precision@K is scored on test queries
                out.precision += _stage_index(fr, cfg, settings, ds, store_factory)
                out.diagnostics += _diagnostics(fr, cfg)
            progress.on_advance(1)
            for system in systems:
                progress.on_stage(f"{where} · train {system.label}")
                if stop_after == "train":
                    fr.train(system)
                elif stop_after == "sweep":
                    from pipeline.training.sweep import validation_rows

                    out.records += validation_rows(fr, system)
                elif stop_after is None:
                    out.records.append(fr.train_and_evaluate(system))
                progress.on_advance(1)
            for k, v in fr.timings.items():
                out.timings[k] = out.timings.get(k, 0.0) + v
    save_json(out.timings, runs_dir / "timings.json")
    return out


def _expand_strategies(cfg: ExperimentConfig) -> list[str]:
    """Systems x span strategies ('mmin' -> 'mmin+orig', 'mmin+m3s', ...); see strategies.py."""
    from pipeline.data.spans import parse_ranges
    from pipeline.training.strategies import expand_systems, split_strategy

    try:
        train_ranges = parse_ranges(cfg.missing_rate)
        if cfg.test_missing_rate is not None:
            parse_ranges(cfg.test_missing_rate)
    except ValueError as exc:
        raise RamerError(f"missing-rate ranges: {exc}") from None
    try:
        names = expand_systems(cfg.systems, cfg.strategy, train_ranges)
    except ValueError as exc:
        raise RamerError(f"--strategy: {exc}") from None
    if cfg.strategy == "none" and any(split_strategy(s)[1] != "none" for s in names):
        raise RamerError("systems with a +strategy suffix need --strategy (span-missing training and testing)")
    return names


def _stage_index(fr: FoldRun, cfg: ExperimentConfig, settings: Settings, ds: Dataset, store_factory) -> list[dict]:
    """Stages 1-2: encoders, hidden-feature DB, its Qdrant copy, and precision@K."""
    ctx = fr.ctx
    path = ctx.run_dir / "precision.json"
    if path.is_file():
        return load_json(path)
    db = fr.database(cfg.retrieval.db_source)
    if cfg.ingest:
        t0 = time.perf_counter()
        _ingest(db.vectors, ctx, cfg, settings, ds, store_factory)
        fr.timings["ingest"] = fr.timings.get("ingest", 0.0) + time.perf_counter() - t0
    rows = [
        {**r, "fold": ctx.split.fold, "run": ctx.split.run}
        for r in fr.retrieval_precision(sorted(set(cfg.precision_ks)))
    ]
    save_json(rows, path)
    return rows


def _diagnostics(fr: FoldRun, cfg: ExperimentConfig) -> list[dict]:
    """Per modality: the stage-1 validation score and the DB's health (cached per unit)."""
    path = fr.ctx.run_dir / "diagnostics.json"
    if not path.is_file():
        stage1 = {r["modality"]: r for r in stage1_scores(fr.ctx.run_dir)}
        rows = []
        for h in fr.database_health(cfg.retrieval.db_source):
            s1 = stage1.get(h["modality"], {})
            rows.append({**h, "stage1_val": s1.get("val_score", float("nan")),
                         "stage1_chance": s1.get("chance", float("nan"))})
        save_json(rows, path)
    return [{**r, "fold": fr.ctx.split.fold, "run": fr.ctx.split.run} for r in load_json(path)]


def _ingest(vectors, ctx: FoldContext, cfg: ExperimentConfig, settings: Settings, ds: Dataset, store_factory) -> None:
    from pipeline.data.scales import candidate_mask
    from pipeline.store.ingest import collection_name, ingest_hidden
    from pipeline.store.qdrant_store import HiddenFeatureStore

    cand = candidate_mask(ds.samples, ds.labeled, ctx.split.train, cfg.retrieval.scale)
    rows = np.flatnonzero(cand | ds.labeled)  # the scale's DB plus this fold's val/test (filtered by split)
    name = collection_name(ds.manifest.name, cfg.experiment, ctx.split.fold)
    opener = store_factory or (lambda: HiddenFeatureStore.open(settings))
    with opener() as store:
        ingest_hidden(store, name, ds, ctx.split, vectors, rows=rows, progress=False)


def _fit_row(record: dict) -> dict:
    """One row of fits.parquet: how a system's training went on one (fold, run)."""
    keys = ("system", "fold", "run", "val_score", "val_chance", "best_epoch", "epochs_run", "seconds")
    return {k: record.get(k, float("nan")) for k in keys}


def _write_views(cfg: ExperimentConfig, settings: Settings, folds: list[int], d: Path) -> None:
    """The report links these; a store that cannot be reached now costs the links, not the results."""
    from pipeline.evaluation.explore import write_experiment_views

    try:
        write_experiment_views(settings, Path(cfg.dataset), cfg.experiment, folds, d,
                               scale=cfg.retrieval.scale, k=cfg.retrieval.k)
    except RamerError as exc:
        log.warning("no collection views in the report: %s", exc)


def write_results(out: RunOutputs, cfg: ExperimentConfig, settings: Settings) -> Path:
    """results/<experiment>/: config, raw metrics, precision, timings, report + plots."""
    from pipeline.evaluation.report import render_report
    from pipeline.evaluation.tables import records_to_table, rows_to_table, write_parquet

    d = out.results_dir
    d.mkdir(parents=True, exist_ok=True)
    resolved = {
        "experiment": load_json_like(cfg),
        "data_fingerprint": dataset_fingerprint(cfg.dataset),
        "settings": {
            "device": resolve_device(cfg.device if cfg.device != "auto" else settings.device),
            "threads": settings.threads, "store": settings.qdrant_url or str(settings.store_path),
            "engine": "server" if settings.qdrant_url else settings.qdrant_engine,
        },
        "seeds": sorted({(r["fold"], r["run"], r.get("seed")) for r in out.records}),
        "torch": torch.__version__,
    }
    save_json(resolved, d / "config.json")
    save_json(out.timings, d / "timings.json")
    write_parquet(records_to_table(out.records), d / "metrics.parquet")
    if out.precision:
        write_parquet(rows_to_table(out.precision), d / "precision.parquet")
    if out.diagnostics:
        write_parquet(rows_to_table(out.diagnostics), d / "diagnostics.parquet")
    write_parquet(rows_to_table([_fit_row(r) for r in out.records]), d / "fits.parquet")
    if cfg.ingest and out.precision:  # RAMER wrote its collections: one browsable view per fold
        _write_views(cfg, settings, sorted({r["fold"] for r in out.precision}), d)
    report = render_report(d, title=f"{cfg.experiment}: {Path(cfg.dataset).name}")
    if cfg.strategy != "none":  # M3S tables + paired significance tests, appended
        from pipeline.evaluation.strategy_report import append_strategy_report

        append_strategy_report(d)
    return report
