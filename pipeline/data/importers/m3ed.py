"""M3ED (Zhao et al., ACL 2022) as CARAT reads it -> a dialogue-level multi-label dataset.

Two accepted sources (chengzju/CARAT `utils/m3ed_reader.py`):
- the feature pickle it reads (e.g. `Asent_avg_wav2vec_zh-Vsent_avg_affectdenseface-
  Lsent_avg_robert_base_wwm_chinese.pkl`): a list whose items [2] (dialogue id -> list of
  utterance emotion ids 0..6), [3] text (id -> (n_utt, 768)), [4] visual (n_utt, 1024),
  [5] audio (n_utt, 342) and [7] / [8] / [9] (train / val / test dialogue ids) are used;
- the file that reader writes (`m3ed_data_60.pt`): the CARAT-MOSEI layout with label ids
  4..10.
A sample is a dialogue; its label set is the union of its utterances' emotions
(Happy, Neutral, Sad, Disgust, Anger, Fear, Surprise); its features are the mean over
its utterances. `official_split`: folds 0/1/2 = train / val / test.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from pipeline.data.dataset import Dataset
from pipeline.data.importers._common import (
    Progress,
    check_finite,
    offenders,
    publish,
    require,
    sha256_file,
)
from pipeline.data.importers.carat_mosei import import_tgt_file
from pipeline.data.importers.folds import FoldOptions
from pipeline.errors import DataError

EMOTIONS = ["happy", "neutral", "sad", "disgust", "anger", "fear", "surprise"]  # ids 0..6 (pt: 4..10)
ITEMS = {"labels": 2, "text": 3, "visual": 4, "audio": 5, "train": 7, "val": 8, "test": 9}


def import_m3ed(src: str | Path, name: str, out: str | Path, official_split: bool = False,
                folds: int = 5, seed: int = 0, progress: Progress = None,
                keep_sequences: bool = False, fold_options: FoldOptions | None = None) -> Dataset:
    src = require(Path(src).resolve(), "M3ED file")
    if src.suffix == ".pt":
        return import_tgt_file(src, name, out, EMOTIONS, "m3ed", official_split, folds, seed, progress,
                               keep_sequences, fold_options)
    if keep_sequences:  # the pickle holds dialogue-level vectors only
        raise DataError(f"{src}: --keep-sequences needs the padded m3ed_data_60.pt file, not the feature pickle")
    try:
        with src.open("rb") as fh:
            data = pickle.load(fh)
    except Exception as exc:  # noqa: BLE001 - a corrupt pickle raises almost any type (MemoryError too)
        raise DataError(f"{src}: not a readable pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, (list, tuple)) or len(data) <= max(ITEMS.values()):
        raise DataError(f"{src}: expected CARAT's M3ED feature list with >= {max(ITEMS.values()) + 1} items")
    labels = data[ITEMS["labels"]]
    ids = [str(d) for part in ("train", "val", "test") for d in data[ITEMS[part]]]
    split_of = np.repeat(np.arange(3, dtype=np.int8), [len(data[ITEMS[p]]) for p in ("train", "val", "test")])
    missing = [d for d in ids if d not in labels and (d.isdigit() and int(d) not in labels)]
    key = {d: (d if d in labels else int(d)) for d in ids if d not in missing}
    for m in ("text", "visual", "audio"):
        missing += [f"{m}:{d}" for d in ids if d in key and key[d] not in data[ITEMS[m]]]
    if missing:
        raise DataError(f"{src}: dialogue(s) without labels/features: {offenders(missing)}")
    n = len(ids)
    dims = {m: int(np.shape(data[ITEMS[m]][key[ids[0]]])[-1]) for m in ("audio", "visual", "text")}
    feats = {m: np.zeros((n, d), np.float32) for m, d in dims.items()}
    y = np.zeros((n, len(EMOTIONS)), np.float32)
    bad = []
    for i, d in enumerate(ids):
        utt = list(labels[key[d]])
        for e in utt:
            if not 0 <= int(e) < len(EMOTIONS):
                bad.append(f"{d}: {e}")
                continue
            y[i, int(e)] = 1.0
        for m, dim in dims.items():
            seq = np.asarray(data[ITEMS[m]][key[d]], np.float32).reshape(-1, dim)
            if len(seq) != len(utt):
                bad.append(f"{d}: {m} has {len(seq)} rows for {len(utt)} utterances")
            feats[m][i] = np.where(np.isinf(seq), 0.0, seq).mean(0)
        if progress is not None and i % 256 == 255:
            progress(256)
    if bad:
        raise DataError(f"{src}: bad labels or shapes: {offenders(bad)}")
    samples = np.array(ids, dtype=object)
    for m, mat in feats.items():
        check_finite(src, m, mat, samples)
    prov = {"importer": "m3ed", "source": str(src), "sha256": sha256_file(src), "official_split": official_split,
            "unit": "dialogue; labels = union of utterance emotions; features = mean over utterances"}
    return publish(out, name=name, task="multi_label", classes=EMOTIONS, samples=samples, y=y,
                   labeled=np.ones(n, bool), feats=feats, present=None, folds=3 if official_split else folds,
                   seed=seed, provenance=prov, fixed_folds=split_of if official_split else None,
                   fold_options=fold_options)
