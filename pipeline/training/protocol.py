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
from pipeline.data.splits import FoldSplit, make_split
from pipeline.errors import RamerError
from pipeline.models.base import ModelSpec
from pipeline.models.registry import model_class
from pipeline.training.checkpoint import load_json, save_json
from pipeline.training.config import ExperimentConfig
from pipeline.training.fold_run import FoldRun
from pipeline.training.stages import fold_context, stage1_scores
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
    jobs: int = 1  # processes the units ran on
    threads: int = 1  # torch / FAISS threads of each


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
    stop_after: str | None = None, jobs: int = 1,
) -> RunOutputs:
    """Run stages 1-4 over folds x runs. `stop_after` in {pretrain, index, train} ends
    each (fold, run) early: the stage commands of the CLI; a later call resumes from there.
    `stop_after="sweep"` is `train` that also collects validation rows into `records` and
    skips everything that reads test rows (precision@K, stage 4): `ramer sweep`.
    `jobs` > 1 runs the (fold, run) units in that many processes (`parallel.py`), with
    the same numbers as one process."""
    if stop_after not in (None, "pretrain", "index", "train", "sweep"):
        raise ValueError(f"stop_after={stop_after!r}")
    if jobs < 1:
        raise RamerError(f"--jobs {jobs}: must be >= 1")
    progress = progress or Progress()
    ds = load_dataset(cfg.dataset)
    from pipeline.training.parallel import set_threads, threads_per_job
    from pipeline.training.validate import validate_experiment

    # Every option is checked before any directory is written (one line, nothing left behind).
    systems = _systems(cfg)
    requested = cfg.device if cfg.device != "auto" else settings.device
    validate_experiment(cfg, ds.manifest.folds, ds.manifest.modality_names, systems, requested)
    if stop_after == "sweep":
        from pipeline.training.sweep import refuse_test_systems

        refuse_test_systems(systems)
    folds = cfg.folds if cfg.folds is not None else list(range(ds.manifest.folds))
    device = resolve_device(requested)
    units = [(fold, run) for fold in folds for run in range(cfg.runs)]
    jobs = min(jobs, len(units))
    threads = threads_per_job(settings, jobs)
    set_threads(threads)
    runs_dir = settings.runs_dir / cfg.experiment
    if fresh:
        shutil.rmtree(runs_dir, ignore_errors=True)
    fingerprint = dataset_fingerprint(cfg.dataset)
    _check_resume(cfg, runs_dir, resume or stop_after is not None, fingerprint)
    runs_dir.mkdir(parents=True, exist_ok=True)
    save_json({**load_json_like(cfg), "data_fingerprint": fingerprint}, runs_dir / "config.json")
    out = RunOutputs(settings.results_dir / cfg.experiment, jobs=jobs, threads=threads)
    units_per = 1 + len(systems)
    progress.on_start(len(units) * units_per)
    tasks = [UnitTask(cfg, settings, f, r, f"fold {folds.index(f) + 1}/{len(folds)} run {r + 1}/{cfg.runs}",
                      device, fingerprint, stop_after, runs_dir) for f, r in units]
    finish = _Finisher(tasks, out, ds, settings, store_factory)
    if jobs == 1:
        for i, task in enumerate(tasks):
            finish(i, run_unit(task, ds, progress))
    else:
        from pipeline.training.parallel import run_parallel

        log.info("%d units on %d jobs x %d threads", len(tasks), jobs, threads)

        def done(i: int, result: UnitResult) -> None:
            progress.on_advance(units_per)  # first, so the line shows the new count
            progress.on_stage(f"{tasks[i].where} · done")
            finish(i, result)

        run_parallel(run_unit, tasks, [t.where for t in tasks], jobs, threads, done)
    save_json(out.timings, runs_dir / "timings.json")
    return out


def _systems(cfg: ExperimentConfig) -> list:
    systems = [parse_system(s, cfg.retrieval, cfg.models) for s in _expand_strategies(cfg)]
    stray = [s.label for s in systems if s.m3s and s.strategy != "m3s"]
    if stray:
        raise RamerError(f"systems {stray}: M3S options (inner_lr, ...) need --strategy m3s")
    return systems


@dataclass
class UnitTask:
    """One (fold, run) as a worker process gets it: no dataset, no open store."""

    cfg: ExperimentConfig
    settings: Settings
    fold: int
    run: int
    where: str  # "fold 1/5 run 2/3", for progress and errors
    device: str
    fingerprint: str
    stop_after: str | None
    runs_dir: Path

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / f"f{self.fold}_r{self.run}"


@dataclass
class UnitResult:
    """What one (fold, run) hands back to the parent, which alone writes the store."""

    records: list[dict] = field(default_factory=list)
    precision: list[dict] = field(default_factory=list)
    diagnostics: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    vectors: dict[str, np.ndarray] | None = None  # m -> (N, H) hidden vectors still to ingest


_DATASETS: dict[str, Dataset] = {}  # per worker process: read once, reused by its units


def _dataset(path: str) -> Dataset:
    if path not in _DATASETS:
        _DATASETS[path] = load_dataset(path)
    return _DATASETS[path]


def run_unit(task: UnitTask, ds: Dataset | None = None, progress: Progress | None = None) -> UnitResult:
    """Stages 1-4 of one (fold, run), every system; checkpoints under its run_dir.
    The same code in the parent (jobs=1) and in a worker, so both give the same numbers."""
    cfg, progress = task.cfg, progress or Progress()
    ds = ds if ds is not None else _dataset(cfg.dataset)
    systems = _systems(cfg)
    split = make_split(ds.y, ds.labeled, ds.folds, task.fold, task.run, cfg.seed)
    ctx = fold_context(ds, split, model_spec(ds), condition_matrix(ds.manifest), task.device, task.run_dir,
                       cfg.seed, cfg.preprocess, task.fingerprint)
    fr = FoldRun(ctx, cfg, on_epoch=lambda st, e, rec: progress.on_epoch(f"{task.where} · {st}", e, rec))
    res, units_per = UnitResult(), 1 + len(systems)
    progress.on_stage(f"{task.where} · stages 1-2 (pretrain, index)")
    if task.stop_after == "pretrain":
        fr.encoders(fused=cfg.retrieval.db_source == "multimodal")
        progress.on_advance(units_per)
        res.timings = dict(fr.timings)
        return res
    needs_db = any(model_class(s.model).uses_stage1_encoders for s in systems)  # baselines need none
    if needs_db and task.stop_after != "sweep":  # precision@K is scored on test queries
        res.precision, res.vectors = _stage_index(fr, cfg)
        res.diagnostics = _diagnostics(fr, cfg)
    progress.on_advance(1)
    for system in systems:
        progress.on_stage(f"{task.where} · train {system.label}")
        if task.stop_after == "train":
            fr.train(system)
        elif task.stop_after == "sweep":
            from pipeline.training.sweep import validation_rows

            res.records += validation_rows(fr, system)
        elif task.stop_after is None:
            res.records.append(fr.train_and_evaluate(system))
        progress.on_advance(1)
    res.timings = dict(fr.timings)
    return res


class _Finisher:
    """Takes unit results in any order and applies them in the serial (fold, run) order:
    the store gets each fold's vectors in the order a serial run writes them (the last
    run of a fold is what stays), and the outputs list the units as a serial run does."""

    def __init__(self, tasks: list[UnitTask], out: RunOutputs, ds: Dataset, settings: Settings, store_factory):
        self.tasks, self.out, self.ds, self.settings, self.store_factory = tasks, out, ds, settings, store_factory
        self.waiting: dict[int, UnitResult] = {}
        self.next = 0

    def __call__(self, i: int, result: UnitResult) -> None:
        self.waiting[i] = result
        while self.next in self.waiting:
            self._apply(self.tasks[self.next], self.waiting.pop(self.next))
            self.next += 1

    def _apply(self, task: UnitTask, res: UnitResult) -> None:
        timings = dict(res.timings)
        if res.vectors is not None:  # stage 2's store write, then its checkpoint
            t0 = time.perf_counter()
            split = make_split(self.ds.y, self.ds.labeled, self.ds.folds, task.fold, task.run, task.cfg.seed)
            _ingest(res.vectors, split, task.cfg, self.settings, self.ds, self.store_factory)
            timings["ingest"] = timings.get("ingest", 0.0) + time.perf_counter() - t0
            save_json(res.precision, task.run_dir / PRECISION_FILE)
        out = self.out
        out.records += res.records
        out.precision += res.precision
        out.diagnostics += res.diagnostics
        for k, v in timings.items():
            out.timings[k] = out.timings.get(k, 0.0) + v


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


PRECISION_FILE = "precision.json"  # written once stage 2 (store write included) is done


def _stage_index(fr: FoldRun, cfg: ExperimentConfig) -> tuple[list[dict], dict[str, np.ndarray] | None]:
    """Stages 1-2: encoders, hidden-feature DB and precision@K. Returns the precision
    rows and, when the store still needs them, the vectors: the caller writes the store
    and then the checkpoint (`_Finisher`), so a unit killed in between redoes the write."""
    path = fr.ctx.run_dir / PRECISION_FILE
    if path.is_file():
        return load_json(path), None
    db = fr.database(cfg.retrieval.db_source)
    split = fr.ctx.split
    rows = [{**r, "fold": split.fold, "run": split.run} for r in fr.retrieval_precision(sorted(set(cfg.precision_ks)))]
    if cfg.ingest:
        return rows, db.vectors
    save_json(rows, path)
    return rows, None


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


def _ingest(vectors, split: FoldSplit, cfg: ExperimentConfig, settings: Settings, ds: Dataset, store_factory) -> None:
    from pipeline.data.scales import candidate_mask
    from pipeline.store.ingest import collection_name, ingest_hidden
    from pipeline.store.qdrant_store import HiddenFeatureStore

    cand = candidate_mask(ds.samples, ds.labeled, split.train, cfg.retrieval.scale)
    rows = np.flatnonzero(cand | ds.labeled)  # the scale's DB plus this fold's val/test (filtered by split)
    name = collection_name(ds.manifest.name, cfg.experiment, split.fold)
    opener = store_factory or (lambda: HiddenFeatureStore.open(settings))
    with opener() as store:
        ingest_hidden(store, name, ds, split, vectors, rows=rows, progress=False)


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
            "threads": out.threads, "jobs": out.jobs, "store": settings.qdrant_url or str(settings.store_path),
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
