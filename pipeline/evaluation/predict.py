"""`ramer predict`: a trained experiment applied to new samples with any modalities.

The model is the experiment's chosen system for one fold (its last run, the one whose
hidden features the fold's Qdrant collection holds). Missing modalities are filled by
retrieval from that collection's train + unlabeled points, queried live with the
model's own encoders, exactly as in stage 3.
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
from pipeline.data.importers.parquet import ModalityReader, open_parquet, read_batches, string_cells
from pipeline.data.preprocess import Scaler
from pipeline.errors import DataError, RamerError
from pipeline.models.base import Batch
from pipeline.models.registry import create_model
from pipeline.retrieval.fill import RetrievalFiller
from pipeline.retrieval.retriever import ModalityRetriever
from pipeline.store.ingest import collection_name
from pipeline.store.qdrant_store import HiddenFeatureStore
from pipeline.training.checkpoint import load_json, load_torch
from pipeline.training.config import experiment_from_dict
from pipeline.training.protocol import model_spec
from pipeline.training.stages import PREPROCESS_FILE
from pipeline.training.systems import System, parse_system


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


def _stored_db(store: HiddenFeatureStore, collection: str, modalities: list[str]):
    """Aligned (R, H) matrices per modality of the allowed points, + presence masks."""
    mats = {m: store.fetch_matrix(collection, m, splits=("train", "unlabeled")) for m in modalities}
    names = sorted({s for mat in mats.values() for s in mat.samples})
    index = {s: i for i, s in enumerate(names)}
    values, present = {}, {}
    for m, mat in mats.items():
        rows = np.array([index[s] for s in mat.samples], dtype=np.int64)
        v = np.zeros((len(names), mat.vectors.shape[1]), np.float32)
        v[rows] = mat.vectors
        p = np.zeros(len(names), bool)
        p[rows] = True
        values[m], present[m] = v, p
    return values, present


def _trained_system(runs_dir: Path, fold: int, run: int, system_name: str, base) -> tuple[System, Path]:
    """The parsed system and its checkpoint; a name without one lists those that exist."""
    run_dir = runs_dir / f"f{fold}_r{run}"
    trained = sorted(p.stem for p in run_dir.glob("*.pt") if p.stem != "encoders")
    try:
        system = parse_system(system_name, base)
    except RamerError:
        system = None
    if system is None or not (run_dir / f"{system.slug}.pt").is_file():
        raise RamerError(f"--system '{system_name}': no trained model of that name for fold {fold} run {run} "
                         f"in {run_dir} (trained: {', '.join(trained) or 'none'})")
    return system, run_dir / f"{system.slug}.pt"


def predict_file(settings: Settings, experiment: str, input_path: Path, out: Path | None, fold: int, system_name: str) -> tuple[Path, int]:
    runs_dir = settings.runs_dir / experiment
    if not (runs_dir / "config.json").is_file():
        found = sorted(p.parent.name for p in settings.runs_dir.glob("*/config.json"))
        raise RamerError(f"--experiment '{experiment}': no such experiment in {settings.runs_dir} "
                         f"(experiments: {', '.join(found) or 'none'}; run `ramer run -e {experiment}` first)")
    if out is not None and not out.parent.is_dir():
        raise RamerError(f"--out {out}: folder {out.parent} does not exist")
    saved = load_json(runs_dir / "config.json")
    cfg = experiment_from_dict(saved, str(runs_dir / "config.json"))
    ds = load_dataset(cfg.dataset)
    spec = model_spec(ds)
    folds = cfg.folds if cfg.folds is not None else list(range(ds.manifest.folds))
    if fold not in folds:
        raise RamerError(f"--fold {fold}: experiment '{experiment}' trained fold(s) {', '.join(map(str, folds))}")
    run = cfg.runs - 1
    system, state_path = _trained_system(runs_dir, fold, run, system_name, cfg.retrieval)
    samples, xs, avail = _read_input(input_path, list(spec.modalities), list(spec.dims))  # before the model
    scaler = _fold_scaler(runs_dir / f"f{fold}_r{run}", spec)
    xs = [scaler.transform(m, x, avail[:, i]) for i, (m, x) in enumerate(zip(spec.modalities, xs))]
    e, r = cfg.encoder, system.retrieval or cfg.retrieval
    kwargs = {"d_model": e.d_model, "hidden": e.hidden, "layers": e.layers, "heads": e.heads, "ff": e.ff,
              "encoder_classifier": tuple(e.classifier), "dropout": e.dropout,
              "retrieval": system.use_retrieval, "finetune_encoders": r.finetune_encoders} if system.model == "ramer" else {}
    model = create_model(system.model, spec, **kwargs, **system.overrides)
    model.load_state_dict(load_torch(state_path))
    model.eval()
    if system.model == "ramer" and system.use_retrieval:
        with HiddenFeatureStore.open(settings) as store:
            values, present = _stored_db(store, collection_name(ds.manifest.name, experiment, fold), list(spec.modalities))
        retr = ModalityRetriever(k=r.k, metric=r.metric).fit(values, present, np.ones(len(next(iter(values.values()))), bool))
        model.filler = RetrievalFiller(retr, list(spec.modalities), values, present, k=r.k, rule=r.two_rule, keys=None)
    logits = []
    with torch.no_grad():
        for i in range(0, len(samples), 512):
            sl = slice(i, i + 512)
            b = Batch(x=[torch.as_tensor(x[sl]) for x in xs], avail=torch.as_tensor(avail[sl]),
                      rows=torch.full((len(samples[sl]),), -1, dtype=torch.long))
            logits.append(model(b).logits.float())
    letters = [m.letter for m in ds.manifest.modalities]
    cols = {"sample": pa.array(samples),
            "available": pa.array(["".join(letters[j] for j in np.flatnonzero(a)) for a in avail])}
    cols.update(_outputs(ds.manifest.task, ds.manifest.classes, torch.cat(logits),
                         _threshold(runs_dir / f"f{fold}_r{run}" / f"{system.slug}.json")))
    table = pa.table(cols)
    out = out or input_path.with_suffix(".preds.parquet")
    tmp = out.with_name(f".{out.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(out)
    return out, len(samples)



def _fold_scaler(run_dir: Path, spec) -> Scaler:
    """The stage-0 scaling the model was trained with (saved beside its checkpoints)."""
    path = run_dir / PREPROCESS_FILE
    if not path.is_file():
        raise RamerError(f"{path}: no preprocessing statistics (the experiment predates stage 0; rerun it)")
    return Scaler.load(path, spec.modalities, spec.dims)


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
