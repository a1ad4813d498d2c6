"""CARAT's CMU-MOSEI files (chengzju/CARAT `dataloaders/cmu_dataloader.py`) -> a
multi-label dataset.

Aligned (`AlignedMoseiDataset`): `train_valid_test.pt`, a torch-saved dict {'train',
'valid', 'test'} of dicts with 'src-text' (N x (60, 300) GloVe), 'src-visual'
(N x (60, 35) FACET), 'src-audio' (N x (60, 74) COVAREP) and 'tgt': per sample a token
list [<s>=2, ids..., </s>=3] whose ids 4..9 are happy, sad, anger, surprise, disgust,
fear. A sample without an emotion id is labeled with the empty set (MOSEI's "None").
Unaligned (`UnAlignedMoseiDataset`, `unaligned=`): the frames come from MulT's pickle
`mosei_senti_data_noalign.pkl` (yaohungt/Multimodal-Transformer `src/dataset.py`:
{'train', 'valid', 'test'} -> 'vision' (N, 500, 35), 'audio' (N, 500, 74), 'text'
(N, 50, 300), 'labels' (N, 1, 1), 'id' (N, 3)), the labels from the same .pt's 'tgt',
row by row. Frames are mean-pooled over the non-padding (not all-zero) ones (-inf -> 0,
as CARAT's loader). `official_split`: folds 0/1/2 = train / valid / test (run with
`--folds 2`). `keep_sequences` also writes the non-padding frames to `sequences/`,
moved to the front (the file pads on the left; see `pipeline.data.sequences`). The same
reader serves M3ED's `m3ed_data_60.pt` (ids 4..10, seven emotions, its keys swapped
back; see `m3ed.py`). Every entry is checked for structure and dtype before use.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data.dataset import Dataset
from pipeline.data.importers._common import (
    Progress,
    check_finite,
    clean_frames,
    feature_array,
    load_pickle,
    offenders,
    publish,
    require,
    sha256_file,
    store_frames,
    warn_known_dims,
)
from pipeline.data.importers.folds import FoldOptions
from pipeline.data.sequences import stage_sequences
from pipeline.errors import DataError

EMOTIONS = ["happy", "sad", "anger", "surprise", "disgust", "fear"]  # tgt ids 4..9
SPLITS = ("train", "valid", "test")
KEYS = {"audio": "src-audio", "visual": "src-visual", "text": "src-text"}
MULT_KEYS = {"audio": "audio", "visual": "vision", "text": "text"}  # MulT's mosei_senti_data_noalign.pkl
FIRST_ID = 4  # ids 0..3 are <blank>, <unk>, <s>, </s>
CHUNK = 1024


def load_pt(path: Path) -> dict:
    import torch

    try:  # the file holds numpy arrays: full unpickling, so import only files you trust
        data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise DataError(f"{path}: not a readable torch file ({type(exc).__name__}: {exc})") from None
    return _split_dict(path, data)


def _split_dict(path: Path, data: object) -> dict:
    if not isinstance(data, dict) or any(s not in data for s in SPLITS):
        raise DataError(f"{path}: expected a dict with {SPLITS}, found {sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__}")
    bad = [f"'{s}' is a {type(data[s]).__name__}" for s in SPLITS if not isinstance(data[s], dict)]
    if bad:
        raise DataError(f"{path}: {', '.join(bad)} (rule: each split is a dict of per-sample entries)")
    return data


def _sized(path: Path, where: str, value: object) -> int:
    """len() of a per-sample list / array, or one DataError."""
    try:
        if isinstance(value, (str, bytes, dict)):
            raise TypeError
        return len(value)  # type: ignore[arg-type]
    except TypeError:  # an int, None, a 0-d array or tensor
        raise DataError(f"{path}: '{where}' is a {type(value).__name__}, not one entry per sample") from None


def _shape(x: object) -> tuple | None:
    """The shape of one sample's entry; None for ragged nesting."""
    try:
        return tuple(np.shape(x))
    except (ValueError, TypeError):
        return None


def _stack(path: Path, split: str, key: str, seqs, start: int, stop: int) -> np.ndarray:
    """(k, T, D) frames of samples start..stop, checked: one (T, D) (or (D,)) numeric array each."""
    part = seqs[start:stop]
    shapes = sorted({_shape(s) for s in part}, key=str)
    if len(shapes) != 1 or shapes[0] is None:
        raise DataError(f"{path}: '{split}/{key}' sequences have different shapes {offenders(shapes)}")
    if len(shapes[0]) not in (1, 2):
        raise DataError(f"{path}: '{split}/{key}' holds entries of shape {shapes[0]} "
                        "(rule: (T, D) frames or a (D,) vector per sample)")
    arr = part if isinstance(part, np.ndarray) else [np.asarray(s) for s in part]
    return feature_array(path, f"{split}/{key}", arr, (2, 3))


def _split_sizes(src: Path, data: dict, keys: dict[str, str]) -> dict[str, int]:
    """Samples per split, once every split has the modality keys and 'tgt', all of one length."""
    for s in SPLITS:
        miss = [k for k in (*keys.values(), "tgt") if k not in data[s]]
        if miss:
            raise DataError(f"{src}: split '{s}' lacks key(s) {miss} (has {sorted(map(str, data[s]))})")
        lens = {k: _sized(src, f"{s}/{k}", data[s][k]) for k in (*keys.values(), "tgt")}
        if len(set(lens.values())) != 1:
            raise DataError(f"{src}: split '{s}' has unequal lengths {lens}")
    sizes = {s: len(data[s]["tgt"]) for s in SPLITS}
    if not sizes["train"]:
        raise DataError(f"{src}: the train split is empty (rule: every split of the source has samples to train on)")
    return sizes


def _token_ids(src: Path, where: str, tgt: object) -> np.ndarray:
    """One sample's tgt as (L,) int64 token ids, or one DataError."""
    try:
        arr = None if isinstance(tgt, (str, bytes)) or not hasattr(tgt, "__len__") else np.asarray(tgt)
    except (ValueError, TypeError):  # ragged nesting
        arr = None
    if arr is None or arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise DataError(f"{src}: '{where}' is {type(tgt).__name__} {str(tgt)[:40]!r}, not a list of token ids "
                        "(rule: [2, emotion ids..., 3])")
    return arr.astype(np.int64)


def _multi_hot(src: Path, tgts, split: str, n_classes: int, y: np.ndarray, bad_ids: list[str]) -> None:
    """Set the (k, C) rows `y` from one split's token lists; emotion ids beyond the classes
    are collected in `bad_ids` (reported once every split is read)."""
    for i, tgt in enumerate(tgts):
        for t in _token_ids(src, f"{split}/tgt[{i}]", tgt).tolist():
            if FIRST_ID <= t < FIRST_ID + n_classes:
                y[i, t - FIRST_ID] = 1.0
            elif t >= FIRST_ID:
                bad_ids.append(f"{split}[{i}]: {t}")


def _mult_frames(path: Path, sizes: dict[str, int]) -> dict:
    """MulT's unaligned pickle, checked: per split (N, T, D) numeric 'audio' / 'vision' /
    'text' whose N is the .pt's tgt count of that split."""
    data = _split_dict(path, load_pickle(path, "MulT pickle"))
    frames = {}
    for s in SPLITS:
        miss = [k for k in MULT_KEYS.values() if k not in data[s]]
        if miss:
            raise DataError(f"{path}: split '{s}' lacks key(s) {miss} (has {sorted(map(str, data[s]))})")
        frames[s] = {k: feature_array(path, f"{s}/{k}", data[s][k], (3,)) for k in MULT_KEYS.values()}
        rows = {k: a.shape[0] for k, a in frames[s].items()}
        if set(rows.values()) != {sizes[s]}:
            raise DataError(f"{path}: split '{s}' has rows {rows} but the .pt has {sizes[s]} tgt lists "
                            "(rule: the pickle and the .pt list the same samples in the same order)")
    return frames


def _source_dims(src: Path, frames: dict, keys: dict[str, str]) -> dict[str, int]:
    """Per modality the feature dim of the first sample (every other one is checked against it)."""
    first = next(s for s in SPLITS if len(frames[s][keys["text"]]))
    dims = {}
    for m, k in keys.items():
        shape = _shape(frames[first][k][0])
        if shape is None or len(shape) not in (1, 2):
            raise DataError(f"{src}: '{first}/{k}' holds entries of shape {shape} "
                            "(rule: (T, D) frames or a (D,) vector per sample)")
        dims[m] = int(shape[-1])
    return dims


def import_tgt_file(
    src: str | Path, name: str, out: str | Path, classes: list[str], importer: str,
    official_split: bool = False, folds: int = 5, seed: int = 0, progress: Progress = None,
    keep_sequences: bool = False, fold_options: FoldOptions | None = None,
    keys: dict[str, str] = KEYS, sources: dict[str, str] | None = None, unaligned: str | Path | None = None,
    named: dict[str, str] | None = None,
) -> Dataset:
    """Shared reader of CARAT-style (src-*, tgt) torch files; `classes` = emotions of ids 4, 5, ...
    `keys`: modality -> the key holding its frames (`sources` says where each came from, for
    the manifest); `unaligned`: MulT's pickle holding the frames instead; `named`: modality
    -> the extractor the source implies (a contradicting dim warns)."""
    src = require(Path(src).resolve(), "CARAT data file")
    data = load_pt(src)
    sizes = _split_sizes(src, data, keys if unaligned is None else {})
    frame_src = src
    if unaligned is not None:
        frame_src = require(Path(unaligned).resolve(), "MulT unaligned pickle")
        frames_of, keys = _mult_frames(frame_src, sizes), MULT_KEYS
        sources = {m: f"{frame_src.name}: {k}" for m, k in keys.items()}
    else:
        frames_of = {s: {k: data[s][k] for k in keys.values()} for s in SPLITS}
    n = sum(sizes.values())
    dims = _source_dims(src, frames_of, keys)
    warnings = warn_known_dims(src, named or {}, dims)
    shapes = {}
    if keep_sequences:  # (n, T, D) with T the longest sample's frames
        frames = {m: max(sh[0] if sh is not None and len(sh) == 2 else 1
                         for s in SPLITS for sh in map(_shape, frames_of[s][k]))
                  for m, k in keys.items()}  # a wrong entry is refused by _stack below
        shapes = {m: (n, int(frames[m]), d) for m, d in dims.items()}
    with stage_sequences(out, shapes, keep_sequences) as stage:
        feats = {m: np.zeros((n, d), np.float32) for m, d in dims.items()}
        present = {m: np.zeros(n, bool) for m in dims}
        y = np.zeros((n, len(classes)), np.float32)
        samples = np.empty(n, dtype=object)
        split_of = np.empty(n, np.int8)
        bad_ids: list[str] = []
        start = 0
        for si, s in enumerate(SPLITS):
            k = sizes[s]
            _multi_hot(src, data[s]["tgt"], s, len(classes), y[start : start + k], bad_ids)
            samples[start : start + k] = [f"{s}_{i:05d}" for i in range(k)]
            split_of[start : start + k] = si
            for m, key in keys.items():
                for c in range(0, k, CHUNK):
                    arr = _stack(frame_src, s, key, frames_of[s][key], c, c + CHUNK)
                    if arr.shape[-1] != dims[m]:
                        raise DataError(f"{frame_src}: '{s}/{key}' has dim {arr.shape[-1]}, the first sample has {dims[m]}")
                    store_frames(feats, present, stage, m, start + c, *clean_frames(arr))
            start += k
            if progress is not None:
                progress(k)
        if bad_ids:
            raise DataError(f"{src}: label id(s) outside {FIRST_ID}..{FIRST_ID + len(classes) - 1} ({classes}): {offenders(bad_ids)}")
        for m, mat in feats.items():
            check_finite(frame_src, m, mat, samples)
        prov = {"importer": importer, "source": str(src), "sha256": sha256_file(src), "sizes": sizes,
                "official_split": official_split, "label_ids": {c: FIRST_ID + i for i, c in enumerate(classes)},
                "modality_sources": sources or dict(keys),
                "pooling": "mean over non-padding frames; -inf -> 0"}
        if unaligned is not None:
            prov.update(variant="unaligned (MulT pickle frames, .pt tgt)", frames_source=str(frame_src),
                        frames_sha256=sha256_file(frame_src))
        if warnings:
            prov["warnings"] = warnings
        if stage is not None:
            prov["sequences"] = "non-padding frames, moved to the front; -inf -> 0"
        return publish(out, name=name, task="multi_label", classes=list(classes), samples=samples, y=y,
                       labeled=np.ones(n, bool), feats=feats, present=present,
                       folds=3 if official_split else folds, seed=seed, provenance=prov,
                       fixed_folds=split_of if official_split else None,
                       sequences=None if stage is None else stage.result(), fold_options=fold_options)


def import_carat_mosei(src: str | Path, name: str, out: str | Path, official_split: bool = False,
                       folds: int = 5, seed: int = 0, progress: Progress = None,
                       keep_sequences: bool = False, fold_options: FoldOptions | None = None,
                       unaligned: str | Path | None = None) -> Dataset:
    """Aligned MOSEI from `src`; with `unaligned` (MulT's mosei_senti_data_noalign.pkl) the
    frames come from that pickle and only the labels ('tgt') from `src`."""
    return import_tgt_file(src, name, out, EMOTIONS, "carat-mosei", official_split, folds, seed, progress,
                           keep_sequences, fold_options, unaligned=unaligned)
