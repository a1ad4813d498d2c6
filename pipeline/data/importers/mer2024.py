"""MER2024 (MERTools layout) -> a single-label dataset with an unlabeled pool.

Source layout (zeroQiaoba/MERTools, MER2024 track):
    {root}/label-6way.npz   train_corpus, test1_corpus, ... : name -> {'emo': str[, 'val': float]}
                            (`MER2024/toolkit/preprocess/mer2024.py`)
    {features}/{extractor}-UTT/{name}.npy  or  {features}/{extractor}_UTT/{name}.npy
                            one utterance-level vector (D,) per sample (`MER2024/feature_extraction/*`:
                            the huggingface extractors name their folder '%s-%s', the handcrafted,
                            vggish and face extractors '%s_%s'); the folder name itself may be given
One extractor per modality is chosen on the command line. Entries of the labeled corpora
(default train_corpus) keep their emotion; every other corpus, and optionally feature
files listed in no corpus, become the unlabeled pool (their labels are never stored).
MERTools writes every test corpus entry with the placeholder 'emo': 'neutral': a labeled
corpus whose entries all carry one label is refused, never imported as labels.
Frame-level folders (`-FRA` / `_FRA`, (T, D) per file) are refused: extract UTTERANCE level.
Scale tags (small / medium / large / turbo, RAMER Table 2) go to the `scale` column.
Files are read one by one into preallocated float32 matrices.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pipeline.data.bounds import check_dim, load_npy, load_npz, require_memory
from pipeline.data.dataset import Dataset
from pipeline.data.importers._common import (
    Progress,
    check_finite,
    listing_sha256,
    offenders,
    publish,
    require,
    sha256_file,
)
from pipeline.data.importers.folds import FoldOptions
from pipeline.data.scales import scale_tags
from pipeline.errors import DataError

EMOTIONS = ["neutral", "angry", "happy", "sad", "worried", "surprise"]
UNLABELED_EMO = {"", "none", "unknown", "nan"}


def _corpora(path: Path) -> dict[str, dict]:
    npz = load_npz(path, allow_pickle=True)  # dicts inside: only import files you trust
    out = {}
    for key, obj in npz.items():
        obj = obj.item() if obj.dtype == object and obj.shape == () else obj
        if not isinstance(obj, dict):
            raise DataError(f"{path}: '{key}' is {type(obj).__name__}, expected a dict name -> {{emo, val}}")
        out[key] = obj
    if "train_corpus" not in out:
        raise DataError(f"{path}: no 'train_corpus' (found {sorted(out)})")
    return out


def _feature_folder(feat_root: Path, modality: str, extractor: str) -> Path:
    """The utterance-level folder of one extractor: `{e}-UTT` or `{e}_UTT` (MERTools writes
    both spellings), or `e` itself when it already names such a folder. A frame-level
    folder, or both spellings at once, is one DataError."""
    e = extractor.rstrip("/")
    what = f"feature folder for {modality}"
    if e.endswith(("-FRA", "_FRA")):
        raise DataError(f"{feat_root / e}: frame-level features (rule: utterance-level '-UTT' / '_UTT' "
                        "folders, one (D,) vector per file; extract with --feature_level UTTERANCE)")
    if e.endswith(("-UTT", "_UTT")):
        return require(feat_root / e, what, like="*UTT")
    found = [feat_root / f"{e}{sep}UTT" for sep in "-_" if (feat_root / f"{e}{sep}UTT").is_dir()]
    if len(found) > 1:
        raise DataError(f"{feat_root}: both {found[0].name} and {found[1].name} exist for {modality} "
                        "(pass the folder name itself to choose one)")
    if found:
        return found[0]
    frame = [p.name for p in (feat_root / f"{e}-FRA", feat_root / f"{e}_FRA") if p.is_dir()]
    if frame:
        raise DataError(f"{feat_root / frame[0]}: only frame-level features for {modality} (rule: utterance-level "
                        "'-UTT' / '_UTT' folders; extract with --feature_level UTTERANCE)")
    return require(feat_root / f"{e}-UTT", what, like="*UTT")


def _refuse_placeholder_labels(path: Path, corp: dict[str, dict], labeled_corpora: tuple[str, ...]) -> None:
    """A labeled corpus whose entries (two or more) all carry one label holds placeholders,
    not labels: MERTools' preprocess/mer2024.py writes 'neutral' for every test1_corpus entry."""
    for c in labeled_corpora:
        emos = {_emotion(rec) for rec in corp[c].values()}
        if len(corp[c]) > 1 and len(emos) == 1 and not emos <= UNLABELED_EMO:
            raise DataError(
                f"{path}: corpus '{c}' gives all {len(corp[c])} entries the one label '{emos.pop()}' (rule: labels "
                "of a labeled corpus are not one placeholder value; MERTools writes 'neutral' for unlabeled test "
                "corpora): leave it out of --labeled-corpora to import it as unlabeled pool"
            )


def _emotion(rec: object) -> str:
    return str(rec.get("emo", "") if isinstance(rec, dict) else rec).strip().lower()


def _read_vectors(folder: Path, names: np.ndarray, allow_missing: bool, progress: Progress) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) float32 and (N,) present, reading {folder}/{name}.npy one at a time."""
    mat: np.ndarray | None = None
    present = np.zeros(len(names), bool)
    missing, bad_shape = [], []
    for i, n in enumerate(names):
        f = folder / f"{n}.npy"
        if not f.is_file():
            missing.append(n)
            continue
        v = load_npy(f)
        if v.dtype.kind not in "biuf":
            raise DataError(f"{f}: holds {v.dtype} values (rule: a feature file holds one vector of numbers)")
        v = v.reshape(-1) if v.ndim == 2 and 1 in v.shape else v
        if mat is None:
            if v.ndim != 1:
                raise DataError(f"{f}: shape {v.shape}, expected (D,) (utterance-level features, '-UTT')")
            check_dim(f, folder.name, v.shape[0])
            require_memory(folder, 4 * len(names) * v.shape[0], f"{len(names)} x {v.shape[0]} features")
            mat = np.zeros((len(names), v.shape[0]), np.float32)
        if v.shape != (mat.shape[1],):
            bad_shape.append(f"{n} {v.shape}")
            continue
        mat[i] = v
        present[i] = True
        if progress is not None and i % 256 == 255:
            progress(256)
    if bad_shape:
        raise DataError(f"{folder}: feature shape differs from ({mat.shape[1]},) for {offenders(bad_shape)}")
    if missing and not allow_missing:
        raise DataError(
            f"{folder}: {len(missing)} feature file(s) missing: {offenders(missing)} "
            "(pass --allow-missing to import them as absent modalities)"
        )
    if mat is None:
        raise DataError(f"{folder}: no feature file for any sample")
    return mat, present


def import_mer2024(
    root: str | Path, name: str, out: str | Path, extractors: dict[str, str],
    labels: str | Path | None = None, features: str | Path | None = None,
    labeled_corpora: tuple[str, ...] = ("train_corpus",), unlisted: bool = False,
    allow_missing: bool = False, folds: int = 5, seed: int = 0, progress: Progress = None,
    fold_options: FoldOptions | None = None,
) -> Dataset:
    """`extractors`: modality -> extractor folder stem, e.g. {'audio': 'chinese-hubert-large'}."""
    root = Path(root).resolve()
    lab_path = require(Path(labels) if labels else root / "label-6way.npz", "label file label-6way.npz")
    feat_root = Path(features) if features else (root / "features" if (root / "features").is_dir() else root)
    dirs = {m: _feature_folder(feat_root, m, e) for m, e in extractors.items()}
    if not dirs:
        raise DataError("mer2024: give at least one modality extractor (--audio / --visual / --text)")
    corp = _corpora(lab_path)
    unknown = [c for c in labeled_corpora if c not in corp]
    if unknown:
        raise DataError(f"{lab_path}: labeled corpora {unknown} not in the file (has {sorted(corp)})")
    _refuse_placeholder_labels(lab_path, corp, labeled_corpora)
    names, emo = [], []
    for cname, entries in corp.items():
        for n, rec in entries.items():
            e = _emotion(rec)
            names.append(str(n))
            emo.append(e if cname in labeled_corpora and e not in UNLABELED_EMO else None)
    if unlisted:  # feature files in the first modality's folder listed in no corpus
        known = set(names)
        first = next(iter(dirs.values()))
        extra = sorted(e.name[:-4] for e in os.scandir(first) if e.name.endswith(".npy") and e.name[:-4] not in known)
        names += extra
        emo += [None] * len(extra)
    samples = np.array(names, dtype=object)
    lookup = {c: i for i, c in enumerate(EMOTIONS)}
    bad = sorted({e for e in emo if e is not None and e not in lookup})
    if bad:
        raise DataError(f"{lab_path}: emotion(s) {offenders(bad)} not among {EMOTIONS}")
    y = np.array([lookup.get(e, -1) if e is not None else -1 for e in emo], np.int64)
    labeled = y >= 0
    feats, present = {}, {}
    for m, folder in dirs.items():
        feats[m], present[m] = _read_vectors(folder, samples, allow_missing, progress)
        check_finite(folder, m, feats[m], samples)
    tags = np.array([",".join(t) for t in scale_tags(samples, labeled)], dtype=object)
    prov = {
        "importer": "mer2024", "source": str(root), "labels": str(lab_path), "sha256": sha256_file(lab_path),
        "features": {m: {"folder": str(d), "listing_sha256": listing_sha256(d, samples[present[m]])} for m, d in dirs.items()},
        "modality_sources": {m: d.name for m, d in dirs.items()},
        "labeled_corpora": list(labeled_corpora), "corpora": {c: len(v) for c, v in corp.items()},
        "unlisted_pool": unlisted,
    }
    return publish(out, name=name, task="single_label", classes=EMOTIONS, samples=samples, y=y,
                   labeled=labeled, feats=feats, present=present, folds=folds, seed=seed, provenance=prov,
                   extra={"scale": tags}, fold_options=fold_options)
