"""CMU-MOSI / CMU-MOSEI / CH-SIMS as MMSA's pickles (thuiar/MMSA), and the pickles
MMSA-FET writes (thuiar/MMSA-FET `src/MSA_FET/dataset.py`, `run_dataset`) -> a dataset.

Source: one pickle, {'train', 'valid', 'test'} -> dict with 'id', 'text' (N, L, Dt),
'audio' (N, La, Da), 'vision' (N, Lv, Dv) (numpy arrays, or torch tensors for MMSA-FET's
return_type='pt'), optional 'audio_lengths' / 'vision_lengths' (absent for aligned
features), 'regression_labels' (N,) in [-3, 3] (SIMS: [-1, 1]) and optional
'classification_labels' (MMSA-FET no longer writes them). Frames are mean-pooled over
the valid ones (within the lengths; text and unlengthed modalities: non-zero frames),
-inf counts as 0. MMSA-FET pads with zeros at the end (default) or, with
padding_location='start', at the start: then the valid frames are the last `length`
ones. `padding="auto"` reads that from the zeros the file holds (see `_padding_of`).
Task `regression` (default, the sentiment score) or `single_label`: the classification
labels, or where no split has them, the 3 classes of MMSA's documented rule on the
regression label (negative < 0, neutral = 0, positive > 0; thuiar/MMSA README).
A modality MMSA-FET was not asked to extract (its key is absent from every split, as
run_dataset drops empty features) is left out of the dataset. `official_split` keeps
MMSA's split as fixed folds 0 = train, 1 = valid, 2 = test (run with `--folds 2`). Every entry is checked for structure and dtype before use (one
DataError naming the file, the entry and the rule). The pickle is loaded whole (that is
the format); pooling runs chunk by chunk into preallocated float32 matrices.
`keep_sequences` also writes the valid frames of every modality to `sequences/` (padded
to the longest split's T; see `pipeline.data.sequences`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data.bounds import MAX_CLASSES
from pipeline.data.dataset import Dataset
from pipeline.data.importers._common import (
    Progress,
    check_finite,
    clean_frames,
    count_padding,
    feature_array,
    load_pickle,
    offenders,
    publish,
    require,
    sha256_file,
    store_frames,
)
from pipeline.data.importers.folds import FoldOptions
from pipeline.data.sequences import stage_sequences
from pipeline.errors import DataError

SPLITS = ("train", "valid", "test")
MODALITIES = {"audio": ("audio", "audio_lengths"), "visual": ("vision", "vision_lengths"), "text": ("text", None)}
PADDINGS = ("auto", "end", "start")
CLASSES_3 = ["negative", "neutral", "positive"]
CHUNK = 1024


@dataclass
class Split:
    """One split's entries, checked: ids, (N,) float32 targets, per modality its frames
    ((N, T, D) or (N, D), any numeric dtype) and (N,) int64 lengths or None."""

    ids: list[str]
    target: np.ndarray
    frames: dict[str, np.ndarray]
    lengths: dict[str, np.ndarray | None]


def _load(path: Path) -> dict:
    data = load_pickle(path, "pickle")
    if not isinstance(data, dict) or any(s not in data for s in SPLITS):
        raise DataError(f"{path}: expected a dict with {SPLITS}, found {sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__}")
    return data


def import_mmsa(
    src: str | Path, name: str, out: str | Path, task: str = "regression", official_split: bool = False,
    classes: list[str] | None = None, folds: int = 5, seed: int = 0, progress: Progress = None,
    keep_sequences: bool = False, fold_options: FoldOptions | None = None, padding: str = "auto",
) -> Dataset:
    src = require(Path(src).resolve(), "MMSA pickle")
    if task not in ("regression", "single_label"):
        raise DataError(f"{src}: --task must be regression or single_label, got {task}")
    if padding not in PADDINGS:
        raise DataError(f"{src}: --padding-location must be one of {', '.join(PADDINGS)}, got {padding}")
    data = _load(src)
    lab_key, derived = _label_key(data, task)
    mods = _modalities_in(src, data)
    parts = {s: _check_split(src, s, data[s], lab_key, mods) for s in SPLITS}
    sizes = {s: len(p.ids) for s, p in parts.items()}
    n = sum(sizes.values())
    dims, frames = _modality_shapes(src, parts)
    pads = {m: _padding_of(parts, m, padding) for m in mods}
    with stage_sequences(out, {m: (n, frames[m], d) for m, d in dims.items()}, keep_sequences) as stage:
        feats = {m: np.zeros((n, d), np.float32) for m, d in dims.items()}
        present = {m: np.zeros(n, bool) for m in dims}
        samples, split_of, target = _read_splits(parts, pads, feats, present, stage, progress)
        for m, mat in feats.items():
            check_finite(src, m, mat, samples)
        labeled = np.isfinite(target)
        if not labeled.all():
            raise DataError(f"{src}: NaN label for sample(s) {offenders(samples[~labeled])}")
        if derived:
            y, classes = _classes_from_scores(src, target, classes)
        elif task == "single_label":
            y, classes = _class_indices(src, target, samples, classes)
        else:
            y, classes = target, []
        prov = {"importer": "mmsa", "source": str(src), "sha256": sha256_file(src), "task": task,
                "labels": lab_key + (" -> negative (< 0) / neutral (0) / positive (> 0), MMSA's rule" if derived else ""),
                "sizes": sizes, "official_split": official_split,
                "modality_sources": {m: _source_text(m, parts, pads[m]) for m in mods},
                "pooling": "mean over valid frames (lengths; text: non-zero tokens); -inf -> 0"}
        if stage is not None:
            prov["sequences"] = "valid frames (as pooled), moved to the front; -inf -> 0"
        return publish(out, name=name, task=task, classes=classes, samples=samples, y=y, labeled=labeled,
                       feats=feats, present=present, folds=3 if official_split else folds, seed=seed,
                       provenance=prov, fixed_folds=split_of if official_split else None,
                       sequences=None if stage is None else stage.result(), fold_options=fold_options)


def _source_text(m: str, parts: dict[str, Split], pad: str) -> str:
    """Where modality `m` came from, for the manifest: the key, and how its valid frames were found."""
    key, len_key = MODALITIES[m]
    if any(p.lengths[m] is not None for p in parts.values()):
        return f"{key} (valid frames: {len_key}, padding at the {pad})"
    return f"{key} (valid frames: non-zero frames)"


def _label_key(data: dict, task: str) -> tuple[str, bool]:
    """The label entry the task reads, and whether the classes are derived from the
    regression labels (single_label on a file without classification_labels, as MMSA-FET
    writes since MMSA v2)."""
    if task == "regression":
        return "regression_labels", False
    has = [s for s in SPLITS if isinstance(data[s], dict) and "classification_labels" in data[s]]
    return ("classification_labels", False) if has else ("regression_labels", True)


def _modalities_in(src: Path, data: dict) -> list[str]:
    """The modalities whose key the file holds (MMSA-FET drops the key of a modality it was
    not asked to extract), in MODALITIES order; a key some splits lack is refused by
    `_check_split`."""
    mods = [m for m, (key, _) in MODALITIES.items() if any(isinstance(data[s], dict) and key in data[s] for s in SPLITS)]
    if not mods:
        raise DataError(f"{src}: no split holds 'audio', 'vision' or 'text' (rule: at least one modality's frames)")
    return mods


def _check_split(src: Path, s: str, part: object, lab_key: str, mods: list[str]) -> Split:
    """The split's entries checked for structure and dtype (one DataError naming the rule)."""
    if not isinstance(part, dict):
        raise DataError(f"{src}: split '{s}' is a {type(part).__name__}, not a dict of arrays")
    need = ["id", *[MODALITIES[m][0] for m in mods], lab_key]
    miss = [k for k in need if k not in part]
    if miss:
        mult = " (MulT's pickle layout: CARAT reads it with `ramer data import carat-mosei --unaligned`)" \
            if "labels" in part and lab_key in miss else ""
        raise DataError(f"{src}: split '{s}' lacks key(s) {miss} (has {sorted(map(str, part))}){mult}")
    raw_ids = part["id"]
    try:
        if isinstance(raw_ids, (str, bytes, dict)):
            raise TypeError
        ids = [i.decode() if isinstance(i, bytes) else str(i) for i in raw_ids]
    except (TypeError, UnicodeDecodeError):  # None, an int, a 0-d array or tensor, undecodable bytes
        raise DataError(f"{src}: '{s}/id' is a {type(raw_ids).__name__}, not a list of sample ids") from None
    n = len(ids)
    labels = feature_array(src, f"{s}/{lab_key}", part[lab_key], (1, 2, 3))
    if labels.size != n:
        raise DataError(f"{src}: '{s}/{lab_key}' has {labels.size} values for {n} ids (rule: one label per id)")
    frames, lengths = {}, {}
    for m in mods:
        key, len_key = MODALITIES[m]
        arr = feature_array(src, f"{s}/{key}", part[key], (2, 3))
        if arr.shape[0] != n:
            raise DataError(f"{src}: '{s}/{key}' has {arr.shape[0]} rows for {n} ids (rule: (N, T, D) aligned with 'id')")
        frames[m] = arr
        lengths[m] = None if len_key is None or len_key not in part else _lengths(src, f"{s}/{len_key}", part[len_key], n)
    return Split(ids, labels.reshape(n).astype(np.float32), frames, lengths)


def _lengths(src: Path, where: str, value: object, n: int) -> np.ndarray:
    """(N,) int64 frame counts >= 0, one per id."""
    arr = feature_array(src, where, value, (1, 2))
    if arr.size != n:
        raise DataError(f"{src}: '{where}' has {arr.size} values for {n} ids (rule: one frame count per id)")
    arr = arr.reshape(n)
    if arr.dtype.kind == "f" and not np.array_equal(arr, np.round(arr)) or (arr < 0).any():
        raise DataError(f"{src}: '{where}' must hold whole frame counts >= 0, e.g. {offenders(arr[(arr < 0) | (arr != np.round(arr))])}")
    return arr.astype(np.int64)


def _modality_shapes(src: Path, parts: dict[str, Split]) -> tuple[dict[str, int], dict[str, int]]:
    """Per modality its feature dim (the same in every split) and the longest split's frames."""
    dims, frames = {}, {}
    for m in next(iter(parts.values())).frames:
        key = MODALITIES[m][0]
        shapes = {s: p.frames[m].shape for s, p in parts.items()}
        ds_ = {sh[-1] for sh in shapes.values()}
        if len(ds_) != 1:
            raise DataError(f"{src}: '{key}' feature dim differs across splits: {shapes}")
        dims[m] = ds_.pop()
        frames[m] = max(sh[1] if len(sh) == 3 else 1 for sh in shapes.values())
    return dims, frames


def _padding_of(parts: dict[str, Split], m: str, padding: str) -> str:
    """Where a lengthed modality's zero padding sits. "auto": at the start if some rows can
    only be padded at the start (zeros before their last `length` frames, not after the
    first) and none can only be padded at the end; else at the end, as MMSA and
    MMSA-FET's default write it."""
    if padding != "auto":
        return padding
    end_only = start_only = 0
    for p in parts.values():
        seq, lengths = p.frames[m], p.lengths[m]
        if lengths is None or seq.ndim != 3:
            continue
        for c in range(0, len(lengths), CHUNK):
            e, st = count_padding(seq[c : c + CHUNK], lengths[c : c + CHUNK])
            end_only, start_only = end_only + e, start_only + st
    return "start" if start_only and not end_only else "end"


def _read_splits(
    parts: dict[str, Split], pads: dict[str, str], feats: dict[str, np.ndarray],
    present: dict[str, np.ndarray], stage, progress: Progress,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pool every split's frames into `feats` / `present` (and `stage`), chunk by chunk, in
    SPLITS order; returns the (N,) sample names, split indices and float32 targets."""
    n = sum(len(p.ids) for p in parts.values())
    samples = np.empty(n, dtype=object)
    split_of = np.empty(n, np.int8)
    target = np.zeros(n, np.float32)
    start = 0
    for si, (s, part) in enumerate(parts.items()):
        k = len(part.ids)
        samples[start : start + k] = part.ids
        split_of[start : start + k] = si
        target[start : start + k] = part.target
        for m in part.frames:
            lengths = part.lengths[m]
            for c in range(0, k, CHUNK):
                seq, valid = clean_frames(part.frames[m][c : c + CHUNK],
                                          None if lengths is None else lengths[c : c + CHUNK], pads[m])
                store_frames(feats, present, stage, m, start + c, seq, valid)
        start += k
        if progress is not None:
            progress(k)
    return samples, split_of, target


def _classes_from_scores(src: Path, target: np.ndarray, classes: list[str] | None) -> tuple[np.ndarray, list[str]]:
    """MMSA's documented rule on the regression label: negative (< 0) = 0, neutral (0) = 1,
    positive (> 0) = 2 (thuiar/MMSA README, "regression_labels")."""
    names = classes or CLASSES_3
    if len(names) != 3:
        raise DataError(f"{src}: classes derived from regression_labels are 3 (negative, neutral, positive); "
                        f"--classes lists {len(names)}")
    return (np.sign(target).astype(np.int64) + 1), list(names)

def _class_indices(
    src: Path, target: np.ndarray, samples: np.ndarray, classes: list[str] | None,
) -> tuple[np.ndarray, list[str]]:
    """The classification labels as (N,) int64 class indices, and the class names."""
    y = target.astype(np.int64)
    if (y != target).any() or (y < 0).any():
        raise DataError(f"{src}: classification_labels must be class indices >= 0, e.g. {offenders(target[y != target])}")
    if y.max() >= MAX_CLASSES:  # before any list is sized by a label value
        j = int(np.argmax(y))
        raise DataError(f"{src}: classification label {y[j]} of sample '{samples[j]}' is out of range "
                        f"0..{MAX_CLASSES - 1} (rule: class indices, at most {MAX_CLASSES} classes)")
    n_cls = int(y.max()) + 1
    classes = classes or (["negative", "neutral", "positive"] if n_cls == 3 else [str(i) for i in range(n_cls)])
    if len(classes) < n_cls:
        raise DataError(f"{src}: {n_cls} classes in the labels but --classes lists {len(classes)}")
    return y, classes
