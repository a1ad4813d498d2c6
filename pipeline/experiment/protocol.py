"""The whole RAMER protocol: K folds x R runs x systems, resumable, with one progress bar.

Outputs (docs/cli.md): results/<experiment>/{config.json, metrics.parquet,
precision.parquet, timings.json, report.md, summary.csv, *.png}; checkpoints in runs/<experiment>/.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace

from pipeline.config import Settings, resolve_device
from pipeline.data.dataset import Dataset, load_dataset
from pipeline.data.fingerprint import dataset_fingerprint
from pipeline.errors import RamerError
from pipeline.experiment.finish import Finisher, stage_index, unit_diagnostics
from pipeline.experiment.fold_eval import train_and_evaluate
from pipeline.experiment.lock import experiment_lock, remove_stale_temporaries
from pipeline.experiment.memory import require_run_memory
from pipeline.experiment.parallel import run_parallel, set_threads, threads_per_job
from pipeline.experiment.results import RunOutputs
from pipeline.experiment.resume import check_resume, config_dict
from pipeline.experiment.units import (
    UnitResult,
    UnitTask,
    experiment_units,
    open_unit,
    requested_device,
)
from pipeline.models.registry import model_class
from pipeline.training.checkpoint import save_json
from pipeline.training.config import ExperimentConfig
from pipeline.training.systems import SystemSpec, experiment_systems
from pipeline.training.validate import check_neighbours, validate_experiment

log = logging.getLogger(__name__)
STOPS = (None, "pretrain", "index", "train", "sweep")


@dataclass
class Progress:
    """What the protocol reports as it goes; the CLI renders it with rich."""

    on_start: Callable[[int], None] = lambda total: None  # total work units
    on_stage: Callable[[str], None] = lambda text: None  # "fold 1/5 run 2/3 · pretrain audio"
    on_epoch: Callable[[str, int, dict], None] = lambda stage, epoch, rec: None
    on_advance: Callable[[int], None] = lambda n: None


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
    if stop_after not in STOPS:
        raise ValueError(f"stop_after={stop_after!r}")
    if jobs < 1:
        raise RamerError(f"--jobs {jobs}: must be >= 1")
    progress = progress or Progress()
    ds = load_dataset(cfg.dataset)
    systems, device = _checked(cfg, settings, ds, stop_after)  # nothing is written before this
    if store_factory is None and cfg.ingest and stop_after not in ("pretrain", "sweep"):
        from pipeline.store.qdrant_store import HiddenFeatureStore

        HiddenFeatureStore.check(settings)  # a locked or unreachable store is said now, not after a unit trained
    with experiment_lock(settings.runs_dir, cfg.experiment):
        return _locked_run(cfg, settings, ds, systems, device, progress, resume, fresh, store_factory,
                           stop_after, jobs)


def _locked_run(cfg: ExperimentConfig, settings: Settings, ds: Dataset, systems: list[SystemSpec], device: str,
                progress: Progress, resume: bool, fresh: bool, store_factory: Callable[[], object] | None,
                stop_after: str | None, jobs: int) -> RunOutputs:
    """`run_experiment` once the experiment is this process's alone."""
    units = experiment_units(cfg, ds)
    jobs = min(jobs, len(units))
    require_run_memory(ds, jobs, cfg.encoder.hidden, cfg.retrieval.k)  # one line now, not an OOM kill later
    threads = threads_per_job(settings, jobs)
    set_threads(threads)
    runs_dir = settings.runs_dir / cfg.experiment
    if fresh:
        shutil.rmtree(runs_dir, ignore_errors=True)
    remove_stale_temporaries(runs_dir)  # a killed run's half-written checkpoints
    fingerprint = dataset_fingerprint(cfg.dataset)
    check_resume(cfg, runs_dir, resume or stop_after is not None, fingerprint)
    runs_dir.mkdir(parents=True, exist_ok=True)
    save_json({**config_dict(cfg), "data_fingerprint": fingerprint}, runs_dir / "config.json")
    out = RunOutputs(settings.results_dir / cfg.experiment, jobs=jobs, threads=threads)
    progress.on_start(len(units) * (1 + len(systems)))
    tasks = [UnitTask(cfg, settings, u, device, fingerprint, stop_after, runs_dir) for u in units]
    _run_units(tasks, Finisher(tasks, out, ds, settings, store_factory), ds, progress, jobs, threads,
               1 + len(systems))
    save_json(out.timings, runs_dir / "timings.json")
    return out


def _checked(cfg: ExperimentConfig, settings: Settings, ds: Dataset,
             stop_after: str | None) -> tuple[list[SystemSpec], str]:
    """Every option checked (one line, nothing left behind): the systems and the device."""
    systems = experiment_systems(cfg)
    requested = requested_device(cfg, settings)
    validate_experiment(cfg, ds.manifest.folds, ds.manifest.modality_names, systems, requested)
    check_neighbours(systems, lambda scale: fewest_candidates(ds, cfg, scale))
    if stop_after == "sweep":
        from pipeline.experiment.sweep import refuse_test_systems

        refuse_test_systems(systems)
    return systems, resolve_device(requested)


def fewest_candidates(ds: Dataset, cfg: ExperimentConfig, scale: str) -> int:
    """Retrieval candidates of DB scale `scale` on the experiment's smallest fold (run 0)."""
    from pipeline.data.scales import candidate_mask
    from pipeline.data.splits import make_split

    folds = cfg.folds if cfg.folds is not None else range(ds.manifest.folds)
    return min(int(candidate_mask(ds.samples, ds.labeled, make_split(ds.y, ds.labeled, ds.folds, f, 0, cfg.seed).train,
                                  scale).sum()) for f in folds)


def _run_units(tasks: list[UnitTask], finish: Finisher, ds: Dataset, progress: Progress, jobs: int,
               threads: int, units_per: int) -> None:
    """Every unit, in this process or on `jobs` worker processes; `finish` applies the
    results in the serial order either way."""
    if jobs == 1:
        for i, task in enumerate(tasks):
            finish(i, run_unit(task, ds, progress))
        return
    log.info("%d units on %d jobs x %d threads", len(tasks), jobs, threads)
    pool, unit_of, after = pool_tasks(tasks)
    stage1: dict[int, dict[str, float]] = {}  # unit -> its pretrain task's timings

    def done(j: int, result: UnitResult) -> None:
        i = unit_of[j]
        if pool[j].stop_after == "pretrain" and tasks[i].stop_after != "pretrain":
            stage1[i] = result.timings  # the unit's stage 1, done ahead of the rest
            progress.on_stage(f"{tasks[i].where} · stage 1 done")
            return
        for k, v in stage1.pop(i, {}).items():
            result.timings[k] = result.timings.get(k, 0.0) + v
        progress.on_advance(units_per)  # first, so the line shows the new count
        progress.on_stage(f"{tasks[i].where} · done")
        finish(i, result)

    run_parallel(run_unit, pool, [pool[j].where for j in range(len(pool))], jobs, threads, done, after)


def pool_tasks(tasks: list[UnitTask]) -> tuple[list[UnitTask], list[int], list[int | None]]:
    """The worker pool's tasks: each unit whose systems read stage-1 encoders becomes a
    stage-1 task (`stop_after="pretrain"`) and the rest of the unit, which loads those
    encoders from the checkpoint, as `--resume` does (the same numbers: every stage
    seeds itself). Ordered P0 P1 R0 P2 R1 ...: a unit's stage 1 runs beside the
    previous unit's rest, so the last units end close together instead of one of them
    running alone on one core (2 jobs x 15 units: ~45 s less wall time).
    Returns (tasks, the unit of each, the index each must wait for or None)."""
    split = [t.stop_after != "pretrain" and any(model_class(s.model).uses_stage1_encoders
                                                 for s in experiment_systems(t.cfg)) for t in tasks]
    pool: list[UnitTask] = []
    unit_of: list[int] = []
    after: list[int | None] = []
    first: dict[int, int] = {}  # unit -> index of its stage-1 task

    def add_stage1(i: int) -> None:
        if i < len(tasks) and split[i]:
            first[i] = len(pool)
            pool.append(replace(tasks[i], stop_after="pretrain"))
            unit_of.append(i)
            after.append(None)

    add_stage1(0)
    for i, task in enumerate(tasks):
        add_stage1(i + 1)  # the next unit's stage 1 is preferred to this unit's rest
        pool.append(task)
        unit_of.append(i)
        after.append(first.get(i))
    return pool, unit_of, after


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
    systems = experiment_systems(cfg)
    fr = open_unit(cfg, ds, task.unit, task.device, task.runs_dir, task.fingerprint,
                   on_epoch=lambda st, e, rec: progress.on_epoch(f"{task.where} · {st}", e, rec))
    res, units_per = UnitResult(), 1 + len(systems)
    progress.on_stage(f"{task.where} · stages 1-2 (pretrain, index)")
    if task.stop_after == "pretrain":
        fr.encoders(fused=cfg.retrieval.db_source == "multimodal")
        progress.on_advance(units_per)
        res.timings = dict(fr.timings)
        return res
    needs_db = any(model_class(s.model).uses_stage1_encoders for s in systems)  # baselines need none
    if needs_db and task.stop_after != "sweep":  # precision@K is scored on test queries
        res.precision, res.vectors = stage_index(fr, cfg)
        res.diagnostics = unit_diagnostics(fr, cfg)
    progress.on_advance(1)
    for system in systems:
        progress.on_stage(f"{task.where} · train {system.label}")
        if task.stop_after == "train":
            fr.train(system)
        elif task.stop_after == "sweep":
            from pipeline.experiment.sweep import validation_rows

            res.records += validation_rows(fr, system)
        elif task.stop_after is None:
            res.records.append(train_and_evaluate(fr, system))
        progress.on_advance(1)
    res.timings = dict(fr.timings)
    return res
