"""M3ED (Zhao et al., ACL 2022) -> a dialogue-level multi-label dataset.

Two accepted sources:
- the M3ED authors' feature pickle (JinmingZhao/MEmoConv `codes/dialogrnn/prepare_fts.py`
  writes it, `dataloader.py` reads it; e.g. `Asent_avg_wav2vec_zh-Vsent_avg_affectdenseface-
  Lsent_avg_robert_base_wwm_chinese.pkl`): a list [utts, spks, labels, text, speech,
  visual, sents, train, val, test] whose items [2] (dialogue id -> utterance emotion ids
  0..6), [3] text (id -> (n_utt, 768)), [4] speech = audio (n_utt, 1024 wav2vec),
  [5] visual (n_utt, 342 denseface) and [7] / [8] / [9] (train / val / test dialogue
  ids) are used;
- the file CARAT's reader writes from it (chengzju/CARAT `utils/m3ed_reader.py`,
  `m3ed_data_60.pt`): the CARAT-MOSEI layout with label ids 4..10, whose `src-visual`
  holds item [4] (speech) and `src-audio` item [5] (visual), so their keys are read the
  other way round here.
A sample is a dialogue; its label set is the union of its utterances' emotions
(Happy, Neutral, Sad, Disgust, Anger, Fear, Surprise); its features are the mean over
its utterances that have a feature vector (prepare_fts.py writes zeros for an utterance
without speech or face; a dialogue with none has that modality absent). Every item is
checked for structure and dtype before use. `official_split`: folds 0/1/2 = train / val /
test.
"""

from __future__ import annotations

import re
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
    pool_valid,
    publish,
    require,
    sha256_file,
    warn_known_dims,
)
from pipeline.data.importers.carat_mosei import import_tgt_file
from pipeline.data.importers.folds import FoldOptions
from pipeline.errors import DataError

EMOTIONS = ["happy", "neutral", "sad", "disgust", "anger", "fear", "surprise"]  # ids 0..6 (pt: 4..10)
ITEMS = {"labels": 2, "text": 3, "audio": 4, "visual": 5, "train": 7, "val": 8, "test": 9}
PARTS = ("train", "val", "test")
MODALITIES = ("audio", "visual", "text")
# m3ed_data_60.pt: CARAT's reader stores item [4] (speech) as src-visual, item [5] (visual) as src-audio
PT_KEYS = {"audio": "src-visual", "visual": "src-audio", "text": "src-text"}
PT_SOURCES = {"audio": "src-visual (holds M3ED's speech, item [4])",
              "visual": "src-audio (holds M3ED's visual, item [5])", "text": "src-text"}
PT_NAMED = {"audio": "wav2vec", "visual": "denseface"}  # the dims CARAT's reader pads them to
FILE_NAME = re.compile(r"^A(?P<audio>.+)-V(?P<visual>.+)-L(?P<text>.+)$")  # prepare_fts.py's A{}-V{}-L{}.pkl


def import_m3ed(src: str | Path, name: str, out: str | Path, official_split: bool = False,
                folds: int = 5, seed: int = 0, progress: Progress = None,
                keep_sequences: bool = False, fold_options: FoldOptions | None = None) -> Dataset:
    src = require(Path(src).resolve(), "M3ED file")
    if src.suffix == ".pt":
        return import_tgt_file(src, name, out, EMOTIONS, "m3ed", official_split, folds, seed, progress,
                               keep_sequences, fold_options, keys=PT_KEYS, sources=PT_SOURCES, named=PT_NAMED)
    if keep_sequences:  # the pickle holds dialogue-level vectors only
        raise DataError(f"{src}: --keep-sequences needs the padded m3ed_data_60.pt file, not the feature pickle")
    data = _load(src)
    ids, split_of = _split_ids(src, data)
    tables = {k: _by_id(src, data, k) for k in ("labels", *MODALITIES)}
    missing = [f"{k}:{d}" for k, tab in tables.items() for d in ids if d not in tab]
    if missing:
        raise DataError(f"{src}: dialogue(s) of the splits without labels/features: {offenders(missing)}")
    n = len(ids)
    y = np.zeros((n, len(EMOTIONS)), np.float32)
    utt_counts = np.zeros(n, np.int64)
    for i, d in enumerate(ids):
        emo = _emotion_ids(src, d, tables["labels"][d])
        y[i, emo] = 1.0
        utt_counts[i] = len(emo)
    feats, present = {}, {}
    for m in MODALITIES:
        feats[m], present[m] = _pool_dialogues(src, m, ids, tables[m], utt_counts, progress if m == "text" else None)
    samples = np.array(ids, dtype=object)
    for m, mat in feats.items():
        check_finite(src, m, mat, samples)
    found = FILE_NAME.match(src.stem)
    warnings = warn_known_dims(src, found.groupdict() if found else {}, {m: f.shape[1] for m, f in feats.items()})
    prov = {"importer": "m3ed", "source": str(src), "sha256": sha256_file(src), "official_split": official_split,
            "modality_sources": {m: f"item [{ITEMS[m]}]" + (" (speech)" if m == "audio" else "") for m in MODALITIES},
            "unit": "dialogue; labels = union of utterance emotions; features = mean over utterances "
                    "with a (not all-zero) feature vector"}
    if warnings:
        prov["warnings"] = warnings
    return publish(out, name=name, task="multi_label", classes=EMOTIONS, samples=samples, y=y,
                   labeled=np.ones(n, bool), feats=feats, present=present, folds=3 if official_split else folds,
                   seed=seed, provenance=prov, fixed_folds=split_of if official_split else None,
                   fold_options=fold_options)


def _load(src: Path) -> list:
    data = load_pickle(src, "pickle")
    if not isinstance(data, (list, tuple)) or len(data) <= max(ITEMS.values()):
        raise DataError(f"{src}: expected the M3ED feature list [utts, spks, labels, text, speech, visual, sents, "
                        f"train, val, test] (MEmoConv prepare_fts.py), found {type(data).__name__}"
                        + (f" of {len(data)} items" if isinstance(data, (list, tuple)) else ""))
    return data


def _split_ids(src: Path, data: list) -> tuple[list[str], np.ndarray]:
    """Every dialogue id of items [7] / [8] / [9] (as text), and its split 0 / 1 / 2."""
    ids, sizes = [], []
    for p in PARTS:
        part = data[ITEMS[p]]
        try:
            if isinstance(part, (str, bytes, dict)):
                raise TypeError
            got = [str(d) for d in part]
        except TypeError:  # None, an int, a 0-d array or tensor
            raise DataError(f"{src}: item [{ITEMS[p]}] ({p} dialogue ids) is a {type(part).__name__}, "
                            "not a list of dialogue ids") from None
        ids += got
        sizes.append(len(got))
    if not ids:
        raise DataError(f"{src}: items [7] / [8] / [9] list no dialogue (rule: train / val / test dialogue ids)")
    return ids, np.repeat(np.arange(3, dtype=np.int8), sizes)


def _by_id(src: Path, data: list, item: str) -> dict[str, object]:
    """Item `item` (a dict dialogue id -> value) keyed by the id as text."""
    tab = data[ITEMS[item]]
    if not isinstance(tab, dict):
        raise DataError(f"{src}: item [{ITEMS[item]}] ({item}) is a {type(tab).__name__}, "
                        "not a dict dialogue id -> per-utterance values")
    return {str(k): v for k, v in tab.items()}


def _emotion_ids(src: Path, d: str, value: object) -> np.ndarray:
    """One dialogue's utterance emotions as (n_utt,) int64 ids 0..6, or one DataError."""
    try:
        arr = None if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") else np.asarray(value)
    except (ValueError, TypeError):  # ragged nesting
        arr = None
    ok = arr is not None and arr.ndim == 1 and len(arr) > 0 and (
        arr.dtype.kind in "iu" or (arr.dtype.kind == "f" and np.array_equal(arr, np.round(arr))))
    if not ok:
        raise DataError(f"{src}: labels of dialogue '{d}' are {type(value).__name__} {str(value)[:40]!r} "
                        "(rule: a non-empty list of utterance emotion ids 0..6)")
    emo = arr.astype(np.int64)
    if ((emo < 0) | (emo >= len(EMOTIONS))).any():
        raise DataError(f"{src}: labels of dialogue '{d}' hold ids outside 0..6 ({EMOTIONS}): "
                        f"{offenders(emo[(emo < 0) | (emo >= len(EMOTIONS))])}")
    return emo


def _pool_dialogues(src: Path, m: str, ids: list[str], tab: dict, utt_counts: np.ndarray,
                    progress: Progress) -> tuple[np.ndarray, np.ndarray]:
    """(n, D) mean over each dialogue's not all-zero utterance vectors and (n,) "has one";
    each dialogue's value is checked to be (n_utt, D) numbers, D the same everywhere."""
    where = f"item [{ITEMS[m]}] ({m})"
    rule = "one sentence-level vector per utterance, (n_utt, D) numbers; frame-level features are not supported"
    dim = int(feature_array(src, f"{where}['{ids[0]}']", tab[ids[0]], (1, 2, 3), rule).shape[-1])
    feats = np.zeros((len(ids), dim), np.float32)
    present = np.zeros(len(ids), bool)
    for i, d in enumerate(ids):
        utt = feature_array(src, f"{where}['{d}']", tab[d], (1, 2, 3), rule)
        if utt.ndim == 3 and utt.shape[1] == 1:  # (n_utt, 1, D): one vector per utterance kept 2-D
            utt = utt[:, 0]
        if utt.ndim == 3:
            raise DataError(f"{src}: {where}['{d}'] has shape {utt.shape} (rule: {rule})")
        utt = utt.reshape(1, -1) if utt.ndim == 1 else utt  # (n_utt, D)
        if utt.shape != (utt_counts[i], dim):
            raise DataError(f"{src}: {where}['{d}'] has shape {utt.shape}, expected ({utt_counts[i]}, {dim}) "
                            "(rule: one vector per utterance, the same dim in every dialogue)")
        pooled, ok = pool_valid(*clean_frames(utt[None]))  # (1, n_utt, D) -> (1, D)
        feats[i], present[i] = pooled[0], ok[0]
        if progress is not None and i % 256 == 255:
            progress(256)
    return feats, present
