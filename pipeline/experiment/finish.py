"""After a unit: its store write and outputs, applied in the serial (fold, run) order.

Stage 2's vectors go to the fold's Qdrant collection from the parent process only (the
embedded store is one process's), then the unit's precision checkpoint is written, so a
unit killed in between redoes the write and nothing is written twice (point ids are
stable). A write that a later unit of the same command would overwrite is skipped
(`_superseded`). Right after a fold's last write the parent also renders the fold's
collection view into runs/<experiment>/views/ (`results.staged_view`), while the workers
go on with later units; `write_results` moves it into the results folder, so nothing is
left in results/ by a run that fails later, and the results phase does not wait for it."""

from __future__ import annotations

import time

import numpy as np

from pipeline.config import Settings
from pipeline.data.dataset import Dataset
from pipeline.data.splits import FoldSplit, make_split
from pipeline.experiment.results import RunOutputs, stage_view, staged_view
from pipeline.experiment.units import UnitResult, UnitTask
from pipeline.training.checkpoint import load_json, save_json
from pipeline.training.config import ExperimentConfig
from pipeline.training.fold_run import FoldRun
from pipeline.training.stages import stage1_scores


class Finisher:
    """Takes unit results in any order and applies them in the serial (fold, run) order:
    the store gets each fold's vectors in the order a serial run writes them (the last
    run of a fold is what stays), and the outputs list the units as a serial run does."""

    def __init__(self, tasks: list[UnitTask], out: RunOutputs, ds: Dataset, settings: Settings, store_factory):
        self.tasks, self.out, self.ds, self.settings, self.store_factory = tasks, out, ds, settings, store_factory
        self.waiting: dict[int, UnitResult] = {}
        self.next = 0
        self.superseded = _superseded(tasks)

    def __call__(self, i: int, result: UnitResult) -> None:
        self.waiting[i] = result
        while self.next in self.waiting:
            self._apply(self.tasks[self.next], self.waiting.pop(self.next))
            self.next += 1

    def _apply(self, task: UnitTask, res: UnitResult) -> None:
        timings = dict(res.timings)
        if res.vectors is not None:  # stage 2's store write, then its checkpoint
            if not self.superseded[self.next]:
                t0 = time.perf_counter()
                split = make_split(self.ds.y, self.ds.labeled, self.ds.folds, task.fold, task.run, task.cfg.seed)
                view = _ingest(res.vectors, split, task, self.settings, self.ds, self.store_factory)
                timings["ingest"] = timings.get("ingest", 0.0) + time.perf_counter() - t0 - view
                timings["view"] = timings.get("view", 0.0) + view
            save_json(res.precision, task.run_dir / PRECISION_FILE)
        out = self.out
        out.records += res.records
        out.precision += res.precision
        out.diagnostics += res.diagnostics
        for k, v in timings.items():
            out.timings[k] = out.timings.get(k, 0.0) + v


PRECISION_FILE = "precision.json"  # written once stage 2 (store write included) is done


def _superseded(tasks: list[UnitTask]) -> list[bool]:
    """Per task: a later task of this command writes the same fold's collection, so this
    task's write would be overwritten point for point (the same rows: labeled + the
    scale's pool, whatever the run) - skipped, its checkpoint still written. A serial run
    of 5 folds x 3 runs writes 5 collections once each instead of 15 times; if the
    command stops before that later write, `--resume` redoes it (its checkpoint is
    missing), so the collection still ends as the last run of its fold."""
    def writes(t: UnitTask) -> bool:
        return t.cfg.ingest and t.stop_after not in ("pretrain", "sweep") and not (t.run_dir / PRECISION_FILE).is_file()

    later = [writes(t) for t in tasks]
    return [any(later[j] and tasks[j].fold == t.fold for j in range(i + 1, len(tasks))) for i, t in enumerate(tasks)]


def stage_index(fr: FoldRun, cfg: ExperimentConfig) -> tuple[list[dict], dict[str, np.ndarray] | None]:
    """Stages 1-2: encoders, hidden-feature DB and precision@K. Returns the precision
    rows and, when the store still needs them, the vectors: the caller writes the store
    and then the checkpoint (`Finisher`), so a unit killed in between redoes the write."""
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


def unit_diagnostics(fr: FoldRun, cfg: ExperimentConfig) -> list[dict]:
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


def _ingest(vectors, split: FoldSplit, task: UnitTask, settings: Settings, ds: Dataset, store_factory) -> float:
    """The fold's collection, then (this being the fold's last write of the command) its
    view, staged; a staged view of an earlier write is removed first, so none is stale.
    Returns the seconds the view took."""
    from pipeline.data.scales import candidate_mask
    from pipeline.store.ingest import collection_name, ingest_hidden
    from pipeline.store.qdrant_store import HiddenFeatureStore

    cfg = task.cfg
    cand = candidate_mask(ds.samples, ds.labeled, split.train, cfg.retrieval.scale)
    rows = np.flatnonzero(cand | ds.labeled)  # the scale's DB plus this fold's val/test (filtered by split)
    name = collection_name(ds.manifest.name, cfg.experiment, split.fold)
    view = staged_view(task.runs_dir, name)
    view.unlink(missing_ok=True)
    opener = store_factory or (lambda: HiddenFeatureStore.open(settings))
    with opener() as store:
        by_row = {m: v[rows] for m, v in vectors.items()}  # (N, H) by dataset row -> (R, H)
        ingest_hidden(store, name, ds, split, by_row, rows=rows, progress=False)
        t0 = time.perf_counter()
        stage_view(store, name, view, cfg)
        return time.perf_counter() - t0
