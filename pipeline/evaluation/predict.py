"""`ramer predict`'s evaluation half: read new samples with any modalities, predict with a
model set up by the experiment layer (`pipeline.experiment.predict`), write the table.

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

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from pipeline.data.bounds import require_parquet_memory
from pipeline.data.importers.parquet import ModalityReader, open_parquet, read_batches, string_cells
from pipeline.errors import DataError
from pipeline.models.base import Batch


def read_input(path: Path, modalities: list[str], dims: list[int]) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Sample names, (N, D_m) float32 per modality (zeros where absent) and the (N, M)
    availability mask, read batch by batch with the importer's checks and memory bounds."""
    pf = open_parquet(path)
    schema = pf.schema_arrow
    check_columns(path, schema, modalities)
    mods = [m for m in modalities if m in schema.names]
    n = pf.metadata.num_rows
    if n == 0:
        raise DataError(f"{path}: no rows to predict")
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
    check_unique(path, samples)
    return samples.astype(str), xs, avail


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def check_columns(path: Path, schema: pa.Schema, modalities: list[str]) -> None:
    """A 'sample' column, each name once, one list<float> column per modality of the
    experiment, and no other list column: a misspelled modality ('sound') would otherwise
    be read as that modality missing."""
    names = schema.names
    twice = sorted({c for c in names if names.count(c) > 1})
    if twice:
        raise DataError(f"{path}: column(s) {twice} appear more than once (rule: each column once)")
    if "sample" not in names:
        raise DataError(f"{path}: missing column 'sample'")
    unknown = [c for c in names if c not in modalities and _is_list(schema.field(c).type)]
    if unknown:
        raise DataError(f"{path}: feature column(s) {unknown} are not modalities of this experiment "
                        f"(expected some of {modalities})")
    mods = [m for m in modalities if m in names]
    if not mods:
        raise DataError(f"{path}: no modality column; expected some of {modalities}")
    for m in mods:
        t = schema.field(m).type
        if not _is_list(t) or not (pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)):
            raise DataError(f"{path}: column '{m}' has type {t} (rule: one list<float> column per modality)")


def check_unique(path: Path, samples: np.ndarray) -> None:
    """Each sample once: two rows of one name would share a point id and a dataset row."""
    names, counts = np.unique(samples.astype(str), return_counts=True)
    if (counts > 1).any():
        raise DataError(f"{path}: sample '{names[counts > 1][0]}' appears {int(counts.max())} times "
                        "(rule: one row per sample)")


def check_finite(path: Path, samples: np.ndarray, logits: torch.Tensor) -> None:
    """Predictions from values too large for the model (~1e25 overflows) are NaN: an
    error naming the rows, never a table of NaN probabilities."""
    bad = np.flatnonzero(~torch.isfinite(logits).all(dim=1).numpy())
    if len(bad):
        shown = ", ".join(f"{int(i)} '{samples[i]}'" for i in bad[:3])
        raise DataError(f"{path}: {len(bad)} row(s) give non-finite predictions (rows {shown}"
                        f"{', ...' if len(bad) > 3 else ''}): their feature values are too large for the model")


def predict_logits(model, xs: list[np.ndarray], avail: np.ndarray, rows: np.ndarray,
                   explain: bool = False) -> tuple[torch.Tensor, list[tuple[int, list]]]:
    """(n, n_out) logits of the scaled inputs `xs` (M x (n, D_m)) with availability
    `avail` (n, M); `rows`: each input's dataset row (-1 for a new sample), so a known
    sample never retrieves itself. With `explain`, the neighbours that filled each batch."""
    logits, sources = [], []
    with torch.no_grad():
        for i in range(0, len(avail), 512):
            sl = slice(i, i + 512)
            b = Batch(x=[torch.as_tensor(x[sl]) for x in xs], avail=torch.as_tensor(avail[sl]),
                      rows=torch.as_tensor(rows[sl]))
            logits.append(model(b).logits.float())
            if explain:
                sources.append((len(b.rows), _sources(model, b)))
    return torch.cat(logits), sources


def prediction_table(manifest, samples: np.ndarray, avail: np.ndarray, logits: torch.Tensor, threshold: float,
                     known: np.ndarray, sources: list[tuple[int, list]] | None) -> pa.Table:
    """One row per input: sample, available modalities (letters), the task's prediction
    columns and, with `sources`, the fill_<m> / fill_<m>_score columns."""
    letters = [m.letter for m in manifest.modalities]
    cols = {"sample": pa.array(samples),
            "available": pa.array(["".join(letters[j] for j in np.flatnonzero(a)) for a in avail])}
    cols.update(_outputs(manifest.task, manifest.classes, logits, threshold))
    if sources is not None:
        cols.update(_explain_columns(known, list(manifest.modality_names), sources))
    return pa.table(cols)


def write_table(table: pa.Table, out: Path) -> Path:
    """Written whole or not at all (a temporary file of this process renamed into place);
    a full or read-only disk is one line and leaves no temporary file."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp)
        tmp.replace(out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(f"{out}: cannot write the predictions ({exc.strerror or exc})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


def dataset_rows(known: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """(n,) dataset row of each input sample (the same name, i.e. the same point id), -1
    for new ones: retrieval then never returns a sample as its own neighbour."""
    index = {s: i for i, s in enumerate(known.tolist())}
    return np.array([index.get(s, -1) for s in samples.tolist()], dtype=np.int64)


def _sources(model, batch: Batch) -> list:
    """Per modality, the neighbours that filled it for this batch (None: no fill)."""
    filler = model.filler
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


def decision_threshold(metrics: list[dict]) -> float:
    """Multi-label decision threshold chosen on validation for this model (its metric
    row 'thr' in the unit's record); 0.5 when there is none."""
    for m in metrics:
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
