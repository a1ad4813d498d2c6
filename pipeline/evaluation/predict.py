"""`ramer predict`: a trained experiment applied to new samples with any modalities.

The model is the experiment's system for one fold (its last run, the one whose hidden
features the fold's Qdrant collection holds; for a selection system, the variant chosen
on that unit's validation). It is set up exactly as in stage 3 (`FoldRun.build_model`):
the fold's stage-0 scaling, its encoders and its database of the system's scale, so a
fill here equals the fill training computed for the same query. Missing modalities are
filled by retrieval from the fold's candidates only (train + unlabeled rows of the
scale, never val / test), queried live with the new sample's own encoding; a sample
already in the dataset (same name, i.e. the same point id) never retrieves itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from pipeline.config import Settings
from pipeline.data.bounds import require_parquet_memory
from pipeline.data.dataset import load_dataset
from pipeline.data.fingerprint import dataset_fingerprint
from pipeline.data.importers.parquet import ModalityReader, open_parquet, read_batches, string_cells
from pipeline.data.missing import condition_matrix
from pipeline.data.splits import make_split
from pipeline.errors import DataError, RamerError
from pipeline.models.base import Batch
from pipeline.training.checkpoint import load_json, load_torch
from pipeline.training.config import experiment_from_dict
from pipeline.training.fold_run import FoldRun
from pipeline.training.protocol import check_fingerprint, model_spec
from pipeline.training.stages import PREPROCESS_FILE, fold_context
from pipeline.training.systems import parse_system


def _read_input(path: Path, modalities: list[str], dims: list[int]) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Sample names, (N, D_m) float32 per modality (zeros where absent) and the (N, M)
    availability mask, read batch by batch with the importer's checks and memory bounds."""
    pf = open_parquet(path)
    schema = pf.schema_arrow
    if "sample" not in schema.names:
        raise DataError(f"{path}: missing column 'sample'")
    mods = [m for m in modalities if m in schema.names]
    if not mods:
        raise DataError(f"{path}: no modality column; expected some of {modalities}")
    for m in mods:
        t = schema.field(m).type
        if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
            raise DataError(f"{path}: column '{m}' has type {t} (rule: one list<float> column per modality)")
    n = pf.metadata.num_rows
    require_parquet_memory(path, pf.metadata, schema, ["sample", *mods])
    dim = dict(zip(modalities, dims))
    readers = {m: ModalityReader(path, m, n, dim[m]) for m in mods}
    samples = np.empty(n, object)
    start = 0
    for batch in read_batches(pf, path, ["sample", *mods]):
        b = batch.num_rows
        if start + b > n:
            raise DataError(f"{path}: more rows than the {n} its footer declares (corrupt metadata)")
        col = batch.column("sample")
        if col.null_count:
            i = start + int(np.argmin(col.is_valid().to_numpy(zero_copy_only=False)))
            raise DataError(f"{path}: row {i} has no sample name (rule: 'sample' is required)")
        samples[start : start + b] = string_cells(path, "sample", col, start)
        for m in mods:
            readers[m].add(batch.column(m), start, samples[start : start + b])
        start += b
    xs, avail = [], np.zeros((n, len(modalities)), bool)
    for i, (m, d) in enumerate(zip(modalities, dims)):
        r = readers.get(m)
        xs.append(r.mat if r is not None and r.mat is not None else np.zeros((n, d), np.float32))
        if r is not None:
            avail[:, i] = r.present
    none = ~avail.any(axis=1)
    if none.any():
        raise DataError(f"{path}: row {int(np.flatnonzero(none)[0])} has no modality at all")
    return samples.astype(str), xs, avail


def predict_file(settings: Settings, experiment: str, input_path: Path, out: Path | None, fold: int,
                 system_name: str, explain: bool = False) -> tuple[Path, int]:
    """Predictions for every row of `input_path` with the experiment's `system_name`
    model of `fold` (its last run); with `explain`, the neighbours that filled each
    missing modality (sample names and scores) as extra columns."""
    if out is not None and not out.parent.is_dir():
        raise RamerError(f"--out {out}: folder {out.parent} does not exist")
    open_parquet(input_path)  # a missing or unreadable input says so before any model is built
    fr, system, chosen = _trained_fold(settings, experiment, fold, system_name)
    ds, spec = fr.ctx.ds, fr.ctx.spec
    model = fr.build_model(chosen, inputs_as_stored=False)  # encode and retrieve the new inputs
    model.load_state_dict(load_torch(fr.ctx.run_dir / f"{chosen.slug}.pt"))
    model.eval()
    samples, xs, avail = _read_input(input_path, list(spec.modalities), list(spec.dims))
    xs = [fr.ctx.scaler.transform(m, x, avail[:, i]) for i, (m, x) in enumerate(zip(spec.modalities, xs))]
    rows = _dataset_rows(ds.samples, samples)  # a known sample is excluded from its own neighbours
    logits, sources = [], []
    with torch.no_grad():
        for i in range(0, len(samples), 512):
            sl = slice(i, i + 512)
            b = Batch(x=[torch.as_tensor(x[sl]) for x in xs], avail=torch.as_tensor(avail[sl]),
                      rows=torch.as_tensor(rows[sl]))
            logits.append(model(b).logits.float())
            if explain:
                sources.append((len(b.rows), _sources(model, b)))
    letters = [m.letter for m in ds.manifest.modalities]
    cols = {"sample": pa.array(samples),
            "available": pa.array(["".join(letters[j] for j in np.flatnonzero(a)) for a in avail])}
    cols.update(_outputs(ds.manifest.task, ds.manifest.classes, torch.cat(logits),
                         _threshold(fr.ctx.run_dir / f"{system.slug}.json")))
    if explain:
        cols.update(_explain_columns(ds.samples, list(spec.modalities), sources))
    table = pa.table(cols)
    out = out or input_path.with_suffix(".preds.parquet")
    tmp = out.with_name(f".{out.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(out)
    return out, len(samples)


def _trained_fold(settings: Settings, experiment: str, fold: int, system_name: str):
    """(FoldRun of the fold's last run, the system, its variant chosen there) - the very
    set-up training used: stage-0 scaler, encoders, the system's DB scale and options."""
    runs_dir = settings.runs_dir / experiment
    if not (runs_dir / "config.json").is_file():
        found = sorted(p.parent.name for p in settings.runs_dir.glob("*/config.json"))
        raise RamerError(f"--experiment '{experiment}': no such experiment in {settings.runs_dir} "
                         f"(experiments: {', '.join(found) or 'none'}; run `ramer run -e {experiment}` first)")
    saved = load_json(runs_dir / "config.json")
    recorded = saved.pop("data_fingerprint", None)
    cfg = experiment_from_dict(saved, str(runs_dir / "config.json"))
    ds = load_dataset(cfg.dataset)
    check_fingerprint({"data_fingerprint": recorded}, dataset_fingerprint(cfg.dataset), runs_dir / "config.json", cfg.dataset)
    folds = cfg.folds if cfg.folds is not None else list(range(ds.manifest.folds))
    if fold not in folds:
        raise RamerError(f"--fold {fold}: experiment '{experiment}' trained fold(s) {', '.join(map(str, folds))}")
    run = cfg.runs - 1
    run_dir = runs_dir / f"f{fold}_r{run}"
    trained = ", ".join(sorted(p.stem for p in run_dir.glob("*.pt") if p.stem != "encoders")) or "none"
    try:
        system = parse_system(system_name, cfg.retrieval, cfg.models)
    except RamerError as exc:
        raise RamerError(f"--system '{system_name}': {exc}; trained in {run_dir}: {trained}") from None
    if not (run_dir / PREPROCESS_FILE).is_file():
        raise RamerError(f"{run_dir / PREPROCESS_FILE}: no preprocessing statistics (train fold {fold} first)")
    split = make_split(ds.y, ds.labeled, ds.folds, fold, run, cfg.seed)
    ctx = fold_context(ds, split, model_spec(ds), condition_matrix(ds.manifest), "cpu", run_dir,
                       cfg.seed, cfg.preprocess, recorded)
    fr = FoldRun(ctx, cfg)
    chosen = fr.chosen(system, train=False)
    if chosen is None or not (run_dir / f"{chosen.slug}.pt").is_file():
        raise RamerError(f"--system '{system.label}': no trained model for fold {fold} run {run} in {run_dir} "
                         f"(trained: {trained})")
    return fr, system, chosen


def _dataset_rows(known: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """(n,) dataset row of each input sample (the same name, i.e. the same point id), -1
    for new ones: retrieval then never returns a sample as its own neighbour."""
    index = {s: i for i, s in enumerate(known.tolist())}
    return np.array([index.get(s, -1) for s in samples.tolist()], dtype=np.int64)


def _sources(model, batch: Batch) -> list:
    """Per modality, the neighbours that filled it for this batch (None: no fill)."""
    filler = getattr(model, "filler", None)
    if filler is None:
        return [None] * len(batch.x)
    queries = batch.x if getattr(model, "query_features", True) else model.encode_batch(batch).unbind(1)
    return filler.sources([q.float().numpy() for q in queries], batch.avail.numpy(), batch.rows.numpy())


def _explain_columns(known: np.ndarray, modalities: list[str], batches: list[tuple[int, list]]) -> dict[str, pa.Array]:
    """fill_<m> (neighbour sample names) and fill_<m>_score per modality, from
    (batch size, per-modality sources) pairs: empty lists where m was given or nothing
    filled it."""
    cols = {}
    for i, m in enumerate(modalities):
        names, scores = [], []
        for n, per_mod in batches:
            src = per_mod[i]
            if src is None:
                names += [[] for _ in range(n)]
                scores += [[] for _ in range(n)]
                continue
            for r, sc in zip(src.rows, src.scores):
                names.append(known[r[r >= 0]].tolist())
                scores.append(sc[r >= 0].astype(float).tolist())
        cols[f"fill_{m}"] = pa.array(names, pa.list_(pa.string()))
        cols[f"fill_{m}_score"] = pa.array(scores, pa.list_(pa.float32()))
    return cols


def _threshold(record_path: Path) -> float:
    """Multi-label decision threshold chosen on validation for this model (metric 'thr')."""
    if record_path.is_file():
        for m in load_json(record_path).get("metrics", []):
            if m["metric"] == "thr":
                return float(m["value"])
    return 0.5


def _outputs(task: str, classes: list[str], logits: torch.Tensor, threshold: float) -> dict[str, pa.Array]:
    """Prediction columns per task: class + probabilities, label set + probabilities, or value."""
    if task == "regression":
        return {"pred": pa.array(logits[:, 0].numpy())}
    if task == "multi_label":
        p = torch.sigmoid(logits).numpy()
        sets = [[c for c, on in zip(classes, row) if on] for row in p >= threshold]
        return {"pred": pa.array(sets, pa.list_(pa.string())),
                **{f"p_{c}": pa.array(p[:, j]) for j, c in enumerate(classes)}}
    p = torch.softmax(logits, dim=-1).numpy()
    return {"pred": pa.array([classes[i] for i in p.argmax(1)]),
            "pred_index": pa.array(p.argmax(1).astype(np.int32)),
            **{f"p_{c}": pa.array(p[:, j]) for j, c in enumerate(classes)}}
