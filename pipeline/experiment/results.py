"""results/<experiment>/: the resolved config, raw metrics, precision, diagnostics, fits,
timings, the report and its plots - written once every unit is done (the fold views,
rendered during the run into runs/<experiment>/views/, are moved in then)."""

from __future__ import annotations

import errno
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pipeline.config import Settings
from pipeline.data.dataset import publish_dir
from pipeline.data.fingerprint import dataset_fingerprint
from pipeline.errors import RamerError
from pipeline.experiment.resume import config_dict
from pipeline.experiment.units import experiment_device
from pipeline.training.checkpoint import save_json
from pipeline.training.config import ExperimentConfig

log = logging.getLogger(__name__)


@dataclass
class RunOutputs:
    results_dir: Path
    records: list[dict] = field(default_factory=list)  # one per (system, fold, run)
    precision: list[dict] = field(default_factory=list)
    diagnostics: list[dict] = field(default_factory=list)  # per (fold, run, modality): stage 1 + DB health
    timings: dict[str, float] = field(default_factory=dict)
    jobs: int = 1  # processes the units ran on
    threads: int = 1  # torch / FAISS threads of each


def _fit_row(record: dict) -> dict:
    """One row of fits.parquet: how a system's training went on one (fold, run)."""
    keys = ("system", "fold", "run", "val_score", "val_chance", "best_epoch", "epochs_run", "seconds",
            "epochs_budget", "patience_budget", "passes_per_epoch", "steps_per_epoch")  # TrainConfig.min_epoch_steps
    return {k: record.get(k, float("nan")) for k in keys}


def staged_view(runs_dir: Path, collection: str) -> Path:
    """Where the parent renders a fold's view during the run (runs/<experiment>/views/)."""
    from pipeline.evaluation.explore import VIEWS_DIR

    return runs_dir / VIEWS_DIR / f"{collection}.html"


def stage_view(store, collection: str, path: Path, cfg: ExperimentConfig) -> None:
    """The view of a collection just written, with the experiment's DB scale and K,
    written whole or not at all (a temporary file renamed)."""
    from pipeline.evaluation.explore import render_view

    try:
        html = render_view(store, collection, scale=cfg.retrieval.scale, k=cfg.retrieval.k)
    except RamerError as exc:
        log.warning("no view of %s: %s", collection, exc)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)


def _write_views(cfg: ExperimentConfig, settings: Settings, folds: list[int], d: Path) -> None:
    """The report links these: the views staged during the run are moved in, the others
    rendered now. A store that cannot be reached now costs the links, not the results."""
    from pipeline.data.schema import MANIFEST, Manifest
    from pipeline.evaluation.explore import VIEWS_DIR, write_experiment_views
    from pipeline.store.ingest import collection_name

    dataset = Manifest.load(Path(cfg.dataset) / MANIFEST).name
    missing = []
    for fold in folds:
        name = collection_name(dataset, cfg.experiment, fold)
        staged = staged_view(settings.runs_dir / cfg.experiment, name)
        if staged.is_file():
            (d / VIEWS_DIR).mkdir(parents=True, exist_ok=True)
            shutil.move(staged, d / VIEWS_DIR / staged.name)
        else:
            missing.append(fold)
    if not missing:
        return
    try:
        write_experiment_views(settings, Path(cfg.dataset), cfg.experiment, missing, d,
                               scale=cfg.retrieval.scale, k=cfg.retrieval.k)
    except RamerError as exc:
        log.warning("no collection views in the report: %s", exc)


def write_results(out: RunOutputs, cfg: ExperimentConfig, settings: Settings) -> Path:
    """results/<experiment>/: config, raw metrics, precision, timings, report + plots,
    written whole or not at all: staged in a hidden sibling folder and renamed into place
    once complete, so a full or read-only disk leaves the previous results as they were
    (one RamerError line) and no temporary folder behind. Returns the report's path."""
    final = out.results_dir
    staging = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        _check_writable(final)
        remove_stale_staging(final)
        staging.mkdir(parents=True)
        report = _write_into(staging, out, cfg, settings)
        _carry_over(final, staging)
        publish_dir(staging, final)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise RamerError(f"{final}: cannot write the results ({exc.strerror or exc}); "
                         "the previous results there, if any, are unchanged") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final / report.name


def _check_writable(final: Path) -> None:
    """A results folder the user made read-only is not replaced behind their back (root
    could rename it away all the same)."""
    if final.exists() and not final.is_dir():
        raise OSError(errno.ENOTDIR, "a file is in the results folder's place")
    if final.is_dir() and (final.stat().st_mode & 0o222 == 0 or not os.access(final, os.W_OK)):
        raise OSError(errno.EACCES, "the folder is read-only")


def remove_stale_staging(final: Path) -> None:
    """Staging and replaced folders a killed writer left (only called under the
    experiment lock, so no live writer owns them)."""
    if not final.parent.is_dir():
        return
    for pattern in (f".{final.name}.tmp-*", f".{final.name}.old-*"):
        for stale in final.parent.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)


def _carry_over(final: Path, staging: Path) -> None:
    """Files of the previous results this write does not make (a sweep's validation.md,
    a noise report) stay in the folder, as they did when results were written in place."""
    if not final.is_dir():
        return
    for old in final.iterdir():
        new = staging / old.name
        if new.exists():
            continue
        if old.is_dir():
            shutil.copytree(old, new)
        else:
            shutil.copy2(old, new)


def _write_into(d: Path, out: RunOutputs, cfg: ExperimentConfig, settings: Settings) -> Path:
    """Every results file into folder `d`; -> the report's path."""
    from pipeline.evaluation.tables import records_to_table, rows_to_table, write_parquet

    resolved = {
        "experiment": config_dict(cfg),
        "data_fingerprint": dataset_fingerprint(cfg.dataset),
        "settings": {
            "device": experiment_device(cfg, settings),
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
    return render_results(d, title=f"{cfg.experiment}: {Path(cfg.dataset).name}")


def render_results(d: Path, title: str | None = None) -> Path:
    """report.md and its plots from the folder's saved files (`ramer run` and `ramer
    report` alike): the papers' differences from the saved config, the M3S tables when
    systems ran under a strategy. A metrics.parquet without this version's columns is
    refused before anything is written."""
    import pyarrow.parquet as pq

    from pipeline.evaluation.report import render_report
    from pipeline.evaluation.strategy_report import append_strategy_report
    from pipeline.evaluation.tables import require_columns
    from pipeline.experiment.differences import differences_lines

    require_columns(pq.read_schema(d / "metrics.parquet").names, d / "metrics.parquet")
    metrics = pq.read_table(d / "metrics.parquet", columns=["system", "strategy"])
    systems = list(dict.fromkeys(metrics.column("system").to_pylist()))
    report = render_report(d, title=title, differences=differences_lines(d, systems))
    if any(s != "none" for s in metrics.column("strategy").to_pylist()):  # M3S tables + paired tests
        append_strategy_report(d)
    return report


def report_folder(results: Path, merge: list[Path] | None = None) -> Path:
    """`ramer report`: optionally merge other results folders of the same protocol into
    `results` first, then re-render report.md (and noise_report.md when noise was
    evaluated) from the saved files."""
    from pipeline.evaluation.merge import merge_results
    from pipeline.evaluation.robustness import render_noise_report

    if merge:
        merge_results(list(merge), results)
    if not (results / "metrics.parquet").is_file():
        found = sorted(p.parent.name for p in results.parent.glob("*/metrics.parquet"))
        raise RamerError(f"{results}: no metrics.parquet (run `ramer run` first; results in "
                         f"{results.parent}: {', '.join(found) or 'none'})")
    path = render_results(results)
    if (results / "noise.parquet").is_file():
        import pyarrow.parquet as pq

        from pipeline.experiment.differences import differences_lines

        systems = list(dict.fromkeys(pq.read_table(results / "noise.parquet", columns=["system"])
                                     .column("system").to_pylist()))
        render_noise_report(results, differences=differences_lines(results, systems))
    return path
