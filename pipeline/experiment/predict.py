"""`ramer predict`: a trained experiment applied to new samples with any modalities.

The model is the experiment's system for one fold (its last run, the one whose hidden
features the fold's Qdrant collection holds; for a selection system, the variant chosen
on that unit's validation). It is set up exactly as in stage 3 (`FoldRun.build_model`),
through the unit iterator every stage uses: the fold's stage-0 scaling, its encoders and
its database of the system's scale, so a fill here equals the fill training computed for
the same query. Reading the input and writing the table: `pipeline.evaluation.predict`.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.config import Settings
from pipeline.data.dataset import load_dataset
from pipeline.data.fingerprint import dataset_fingerprint
from pipeline.data.importers.parquet import open_parquet
from pipeline.errors import RamerError
from pipeline.evaluation.predict import (
    check_finite,
    dataset_rows,
    decision_threshold,
    predict_logits,
    prediction_table,
    read_input,
    write_table,
)
from pipeline.experiment.resume import check_fingerprint
from pipeline.experiment.units import Unit, experiment_folds, open_unit
from pipeline.training.checkpoint import load_json, load_torch
from pipeline.training.config import ExperimentConfig, experiment_from_dict
from pipeline.training.fold_run import FoldRun
from pipeline.training.stages import PREPROCESS_FILE
from pipeline.training.systems import SystemSpec, parse_system


def predict_file(settings: Settings, experiment: str, input_path: Path, out: Path | None, fold: int,
                 system_name: str, explain: bool = False, overwrite: bool = False) -> tuple[Path, int]:
    """Predictions for every row of `input_path` with the experiment's `system_name`
    model of `fold` (its last run); with `explain`, the neighbours that filled each
    missing modality (sample names and scores) as extra columns. An existing output
    file is replaced only with `overwrite`, and the input never."""
    open_parquet(input_path)  # a missing or unreadable input says so before any model is built
    out = check_output(input_path, out or input_path.with_suffix(".preds.parquet"), overwrite)
    fr, system, chosen = trained_fold(settings, experiment, fold, system_name)
    ds, spec = fr.ctx.ds, fr.ctx.spec
    model = fr.build_model(chosen, inputs_as_stored=False)  # encode and retrieve the new inputs
    model.load_state_dict(load_torch(fr.ctx.run_dir / f"{chosen.slug}.pt"))
    model.eval()
    samples, xs, avail = read_input(input_path, list(spec.modalities), list(spec.dims))
    xs = [fr.ctx.scaler.transform(m, x, avail[:, i]) for i, (m, x) in enumerate(zip(spec.modalities, xs))]
    logits, sources = predict_logits(model, xs, avail, dataset_rows(ds.samples, samples), explain)
    check_finite(input_path, samples, logits)
    record = fr.ctx.run_dir / f"{system.slug}.json"
    threshold = decision_threshold(load_json(record, dict).get("metrics", []) if record.is_file() else [])
    table = prediction_table(ds.manifest, samples, avail, logits, threshold, ds.samples, sources if explain else None)
    return write_table(table, out), len(samples)


def check_output(input_path: Path, out: Path, overwrite: bool) -> Path:
    """The predictions' path, refused (one line) when it is the input itself, a folder,
    in a folder that does not exist, or an existing file without `overwrite`."""
    if out.exists() and input_path.exists() and os.path.samefile(out, input_path) or \
            out.resolve() == input_path.resolve():
        raise RamerError(f"--out {out}: is the input file; the predictions never replace their input")
    if out.is_dir():
        raise RamerError(f"--out {out}: is a folder, not a file")
    if not out.parent.is_dir():
        raise RamerError(f"--out {out}: folder {out.parent} does not exist")
    if out.exists() and not overwrite:
        raise RamerError(f"--out {out}: exists; pass --overwrite to replace it")
    return out


def _saved_config(settings: Settings, experiment: str) -> tuple[ExperimentConfig, str | None]:
    runs_dir = settings.runs_dir / experiment
    if not (runs_dir / "config.json").is_file():
        found = sorted(p.parent.name for p in settings.runs_dir.glob("*/config.json"))
        raise RamerError(f"--experiment '{experiment}': no such experiment in {settings.runs_dir} "
                         f"(experiments: {', '.join(found) or 'none'}; run `ramer run -e {experiment}` first)")
    saved = load_json(runs_dir / "config.json", dict)
    recorded = saved.pop("data_fingerprint", None)
    return experiment_from_dict(saved, str(runs_dir / "config.json")), recorded


def trained_fold(settings: Settings, experiment: str, fold: int,
                 system_name: str) -> tuple[FoldRun, SystemSpec, SystemSpec]:
    """(FoldRun of the fold's last run, the system, its variant chosen there) - the very
    set-up training used: stage-0 scaler, encoders, the system's DB scale and options."""
    cfg, recorded = _saved_config(settings, experiment)
    runs_dir = settings.runs_dir / experiment
    ds = load_dataset(cfg.dataset)
    check_fingerprint({"data_fingerprint": recorded}, dataset_fingerprint(cfg.dataset), runs_dir / "config.json",
                      cfg.dataset)
    folds = experiment_folds(cfg, ds)
    if fold not in folds:
        raise RamerError(f"--fold {fold}: experiment '{experiment}' trained fold(s) {', '.join(map(str, folds))}")
    unit = Unit(fold, cfg.runs - 1, f"fold {fold}")
    run_dir = unit.run_dir(runs_dir)
    trained = ", ".join(sorted(p.stem for p in run_dir.glob("*.pt") if p.stem != "encoders")) or "none"
    try:
        system = parse_system(system_name, cfg.retrieval, cfg.models)
    except RamerError as exc:
        raise RamerError(f"--system '{system_name}': {exc}; trained in {run_dir}: {trained}") from None
    if not (run_dir / PREPROCESS_FILE).is_file():
        raise RamerError(f"{run_dir / PREPROCESS_FILE}: no preprocessing statistics (train fold {fold} first)")
    fr = open_unit(cfg, ds, unit, "cpu", runs_dir, recorded)
    chosen = fr.chosen(system, train=False)
    if chosen is None or not (run_dir / f"{chosen.slug}.pt").is_file():
        raise RamerError(f"--system '{system.label}': no trained model for fold {fold} run {unit.run} in {run_dir} "
                         f"(trained: {trained})")
    return fr, system, chosen
