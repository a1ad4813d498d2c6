"""CMU-MOSI / CMU-MOSEI / CH-SIMS as MMSA's pickles (thuiar/MMSA) -> a dataset.

Source: one pickle, {'train', 'valid', 'test'} -> dict with 'id', 'text' (N, L, Dt),
'audio' (N, La, Da), 'vision' (N, Lv, Dv), optional 'audio_lengths' / 'vision_lengths',
'regression_labels' (N,) in [-3, 3] (SIMS: [-1, 1]) and optional
'classification_labels'. Frames are mean-pooled over the valid ones (within the
lengths; text: non-zero tokens), -inf counts as 0. Task `regression` (default, the
sentiment score) or `single_label` (the classification labels). `official_split`
keeps MMSA's split as fixed folds 0 = train, 1 = valid, 2 = test (run with `--folds 2`).
The pickle is loaded whole (that is the format); pooling runs chunk by chunk into
preallocated float32 matrices. `keep_sequences` also writes the valid frames of every
modality to `sequences/` (padded to the longest split's T; see `pipeline.data.sequences`).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from pipeline.data.bounds import MAX_CLASSES
from pipeline.data.dataset import Dataset
from pipeline.data.importers._common import (
    Progress,
    check_finite,
    clean_frames,
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
CHUNK = 1024


def _load(path: Path) -> dict:
    try:
        with path.open("rb") as fh:
            data = pickle.load(fh)
    except Exception as exc:  # noqa: BLE001 - a corrupt pickle raises almost any type (MemoryError too)
        raise DataError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or any(s not in data for s in SPLITS):
        raise DataError(f"{path}: expected a dict with {SPLITS}, found {sorted(data) if isinstance(data, dict) else type(data).__name__}")
    return data


def import_mmsa(
    src: str | Path, name: str, out: str | Path, task: str = "regression", official_split: bool = False,
    classes: list[str] | None = None, folds: int = 5, seed: int = 0, progress: Progress = None,
    keep_sequences: bool = False, fold_options: FoldOptions | None = None,
) -> Dataset:
    src = require(Path(src).resolve(), "MMSA pickle")
    if task not in ("regression", "single_label"):
        raise DataError(f"{src}: --task must be regression or single_label, got {task}")
    data = _load(src)
    lab_key = "regression_labels" if task == "regression" else "classification_labels"
    sizes = _split_sizes(src, data, lab_key)
    n = sum(sizes.values())
    dims, frames = _modality_shapes(src, data, sizes)
    with stage_sequences(out, {m: (n, frames[m], d) for m, d in dims.items()}, keep_sequences) as stage:
        feats = {m: np.zeros((n, d), np.float32) for m, d in dims.items()}
        present = {m: np.zeros(n, bool) for m in dims}
        samples, split_of, target = _read_splits(data, sizes, lab_key, feats, present, stage, progress)
        for m, mat in feats.items():
            check_finite(src, m, mat, samples)
        labeled = np.isfinite(target)
        if not labeled.all():
            raise DataError(f"{src}: NaN label for sample(s) {offenders(samples[~labeled])}")
        if task == "single_label":
            y, classes = _class_indices(src, target, samples, classes)
        else:
            y, classes = target, []
        prov = {"importer": "mmsa", "source": str(src), "sha256": sha256_file(src), "task": task,
                "sizes": sizes, "official_split": official_split,
                "pooling": "mean over valid frames (lengths; text: non-zero tokens); -inf -> 0"}
        if stage is not None:
            prov["sequences"] = "valid frames (as pooled), moved to the front; -inf -> 0"
        return publish(out, name=name, task=task, classes=classes, samples=samples, y=y, labeled=labeled,
                       feats=feats, present=present, folds=3 if official_split else folds, seed=seed,
                       provenance=prov, fixed_folds=split_of if official_split else None,
                       sequences=None if stage is None else stage.result(), fold_options=fold_options)


def _split_sizes(src: Path, data: dict, lab_key: str) -> dict[str, int]:
    """Rows per split, once every split has the ids, the modalities and the task's labels."""
    need = ["id", *[k for k, _ in MODALITIES.values()], lab_key]
    for s in SPLITS:
        miss = [k for k in need if k not in data[s]]
        if miss:
            raise DataError(f"{src}: split '{s}' lacks key(s) {miss} (has {sorted(data[s])})")
    return {s: len(data[s]["id"]) for s in SPLITS}


def _modality_shapes(src: Path, data: dict, sizes: dict[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """Per modality its feature dim (the same in every split) and the longest split's frames."""
    dims, frames = {}, {}
    for m, (key, _) in MODALITIES.items():
        shapes = {s: np.shape(data[s][key]) for s in SPLITS}
        bad = [f"{s} {sh}" for s, sh in shapes.items() if len(sh) not in (2, 3) or sh[0] != sizes[s]]
        if bad:
            raise DataError(f"{src}: '{key}' must be (N, T, D) aligned with 'id', found {offenders(bad)}")
        ds_ = {sh[-1] for sh in shapes.values()}
        if len(ds_) != 1:
            raise DataError(f"{src}: '{key}' feature dim differs across splits: {shapes}")
        dims[m] = ds_.pop()
        frames[m] = max(sh[1] if len(sh) == 3 else 1 for sh in shapes.values())
    return dims, frames


def _read_splits(
    data: dict, sizes: dict[str, int], lab_key: str, feats: dict[str, np.ndarray],
    present: dict[str, np.ndarray], stage, progress: Progress,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pool every split's frames into `feats` / `present` (and `stage`), chunk by chunk, in
    SPLITS order; returns the (N,) sample names, split indices and float32 targets."""
    n = sum(sizes.values())
    samples = np.empty(n, dtype=object)
    split_of = np.empty(n, np.int8)
    target = np.zeros(n, np.float32)
    start = 0
    for si, s in enumerate(SPLITS):
        part = data[s]
        k = sizes[s]
        samples[start : start + k] = [str(i) for i in part["id"]]
        split_of[start : start + k] = si
        target[start : start + k] = np.asarray(part[lab_key], np.float32).reshape(k)
        for m, (key, len_key) in MODALITIES.items():
            lengths = np.asarray(part[len_key]) if len_key and len_key in part else None
            for c in range(0, k, CHUNK):
                seq, valid = clean_frames(part[key][c : c + CHUNK], None if lengths is None else lengths[c : c + CHUNK])
                store_frames(feats, present, stage, m, start + c, seq, valid)
        start += k
        if progress is not None:
            progress(k)
    return samples, split_of, target


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
