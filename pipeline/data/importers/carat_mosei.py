"""CARAT's aligned CMU-MOSEI file (`train_valid_test.pt`) -> a multi-label dataset.

Source (chengzju/CARAT, data/): a torch-saved dict {'train', 'valid', 'test'} of dicts with
'src-text' (N x (60, 300) GloVe), 'src-visual' (N x (60, 35) FACET), 'src-audio'
(N x (60, 74) COVAREP) and 'tgt': per sample a token list [<s>=2, ids..., </s>=3] whose
ids 4..9 are happy, sad, anger, surprise, disgust, fear. A sample without an emotion id
is labeled with the empty set (MOSEI's "None"). Frames are mean-pooled over the
non-padding ones (-inf -> 0, as CARAT's loader). `official_split`: folds 0/1/2 = train /
valid / test (run with `--folds 2`). `keep_sequences` also writes the non-padding
frames to `sequences/`, moved to the front (the file pads on the left; see
`pipeline.data.sequences`). The same reader serves M3ED's `m3ed_data_60.pt`
(ids 4..10, seven emotions; see `m3ed.py`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

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

EMOTIONS = ["happy", "sad", "anger", "surprise", "disgust", "fear"]  # tgt ids 4..9
SPLITS = ("train", "valid", "test")
KEYS = {"audio": "src-audio", "visual": "src-visual", "text": "src-text"}
FIRST_ID = 4  # ids 0..3 are <blank>, <unk>, <s>, </s>
CHUNK = 1024


def load_pt(path: Path) -> dict:
    import torch

    try:  # the file holds numpy arrays: full unpickling, so import only files you trust
        data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise DataError(f"{path}: not a readable torch file ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or any(s not in data for s in SPLITS):
        raise DataError(f"{path}: expected a dict with {SPLITS}, found {sorted(data) if isinstance(data, dict) else type(data).__name__}")
    return data


def _stack(path: Path, split: str, key: str, seqs, start: int, stop: int) -> np.ndarray:
    part = seqs[start:stop]
    try:
        return np.stack([np.asarray(s, np.float32) for s in part])
    except ValueError:
        shapes = sorted({np.shape(s) for s in part})
        raise DataError(f"{path}: '{split}/{key}' sequences have different shapes {offenders(shapes)}") from None


def _split_sizes(src: Path, data: dict) -> dict[str, int]:
    """Samples per split, once every split has the modality keys and 'tgt', all of one length."""
    for s in SPLITS:
        miss = [k for k in (*KEYS.values(), "tgt") if k not in data[s]]
        if miss:
            raise DataError(f"{src}: split '{s}' lacks key(s) {miss} (has {sorted(data[s])})")
        lens = {k: len(data[s][k]) for k in (*KEYS.values(), "tgt")}
        if len(set(lens.values())) != 1:
            raise DataError(f"{src}: split '{s}' has unequal lengths {lens}")
    return {s: len(data[s]["tgt"]) for s in SPLITS}


def _multi_hot(tgts, split: str, n_classes: int, y: np.ndarray, bad_ids: list[str]) -> None:
    """Set the (k, C) rows `y` from one split's token lists; emotion ids beyond the classes
    are collected in `bad_ids` (reported once every split is read)."""
    for i, tgt in enumerate(tgts):
        for t in tgt:
            t = int(t)
            if FIRST_ID <= t < FIRST_ID + n_classes:
                y[i, t - FIRST_ID] = 1.0
            elif t >= FIRST_ID:
                bad_ids.append(f"{split}[{i}]: {t}")


def import_tgt_file(
    src: str | Path, name: str, out: str | Path, classes: list[str], importer: str,
    official_split: bool = False, folds: int = 5, seed: int = 0, progress: Progress = None,
    keep_sequences: bool = False, fold_options: FoldOptions | None = None,
) -> Dataset:
    """Shared reader of CARAT-style (src-*, tgt) torch files; `classes` = emotions of ids 4, 5, ..."""
    src = require(Path(src).resolve(), "CARAT data file")
    data = load_pt(src)
    sizes = _split_sizes(src, data)
    n = sum(sizes.values())
    dims = {m: int(np.shape(data["train"][k][0])[-1]) for m, k in KEYS.items()}
    shapes = {}
    if keep_sequences:  # (n, T, D) with T the longest sample's frames
        frames = {m: max(np.shape(x)[0] if np.ndim(x) == 2 else 1 for s in SPLITS for x in data[s][k])
                  for m, k in KEYS.items()}
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
            part, k = data[s], sizes[s]
            _multi_hot(part["tgt"], s, len(classes), y[start : start + k], bad_ids)
            samples[start : start + k] = [f"{s}_{i:05d}" for i in range(k)]
            split_of[start : start + k] = si
            for m, key in KEYS.items():
                for c in range(0, k, CHUNK):
                    arr = _stack(src, s, key, part[key], c, c + CHUNK)
                    if arr.shape[-1] != dims[m]:
                        raise DataError(f"{src}: '{s}/{key}' has dim {arr.shape[-1]}, train has {dims[m]}")
                    store_frames(feats, present, stage, m, start + c, *clean_frames(arr))
            start += k
            if progress is not None:
                progress(k)
        if bad_ids:
            raise DataError(f"{src}: label id(s) outside {FIRST_ID}..{FIRST_ID + len(classes) - 1} ({classes}): {offenders(bad_ids)}")
        for m, mat in feats.items():
            check_finite(src, m, mat, samples)
        prov = {"importer": importer, "source": str(src), "sha256": sha256_file(src), "sizes": sizes,
                "official_split": official_split, "label_ids": {c: FIRST_ID + i for i, c in enumerate(classes)},
                "pooling": "mean over non-padding frames; -inf -> 0"}
        if stage is not None:
            prov["sequences"] = "non-padding frames, moved to the front; -inf -> 0"
        return publish(out, name=name, task="multi_label", classes=list(classes), samples=samples, y=y,
                       labeled=np.ones(n, bool), feats=feats, present=present,
                       folds=3 if official_split else folds, seed=seed, provenance=prov,
                       fixed_folds=split_of if official_split else None,
                       sequences=None if stage is None else stage.result(), fold_options=fold_options)


def import_carat_mosei(src: str | Path, name: str, out: str | Path, official_split: bool = False,
                       folds: int = 5, seed: int = 0, progress: Progress = None,
                       keep_sequences: bool = False, fold_options: FoldOptions | None = None) -> Dataset:
    return import_tgt_file(src, name, out, EMOTIONS, "carat-mosei", official_split, folds, seed, progress,
                           keep_sequences, fold_options)
