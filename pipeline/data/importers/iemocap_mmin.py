"""IEMOCAP in MMIN's layout (AIM3-RUC/MMIN) -> a 4-class single-label dataset.

Source layout:
    {root}/A/{audio}.h5    utterance id -> (frames, 130) ComParE   (default comparE)
    {root}/V/{visual}.h5   utterance id -> (frames, 342) DenseFace (default denseface)
    {root}/L/{text}.h5     utterance id -> (tokens, 1024) BERT     (default bert_large)
    {root}/target/{cv}/{trn,val,tst}_label.npy    one-hot (N, 4) or class indices (N,)
    {root}/target/{cv}/{trn,val,tst}_int2name.npy utterance ids (bytes, (N,) or (N, 1))
MMIN's cross-validation folds are kept: an utterance's fold is the (0-based) cv whose
`tst` list holds it; every utterance must be in exactly one `tst` list. Sequences are
mean-pooled over frames (MMIN's per-cv ComParE normalisation is left to the models'
input LayerNorm). Class names default to ang, hap(+exc), neu, sad in index order: check
them against your copy of the targets (`--classes`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data.bounds import check_dim, load_npy, read_h5, require_memory
from pipeline.data.dataset import Dataset
from pipeline.data.importers._common import (
    Progress,
    check_finite,
    offenders,
    publish,
    require,
    sha256_file,
)
from pipeline.data.importers.folds import FoldOptions
from pipeline.errors import DataError
from pipeline.extras import optional_import

CLASSES = ["angry", "happy", "neutral", "sad"]
SETS = ("trn", "val", "tst")


def _names(path: Path) -> list[str]:
    arr = load_npy(path, allow_pickle=True)  # ids as bytes objects: only import files you trust
    out = []
    for v in arr.reshape(len(arr), -1)[:, 0] if arr.ndim > 1 else arr:
        out.append(v.decode() if isinstance(v, bytes) else str(v))
    return out


def _labels(path: Path, n_classes: int) -> np.ndarray:
    lab = load_npy(path)
    if lab.ndim == 2:
        if lab.shape[1] != n_classes:
            raise DataError(f"{path}: one-hot labels have {lab.shape[1]} columns, expected {n_classes}")
        lab = lab.argmax(1)
    return lab.astype(np.int64).reshape(-1)


def import_iemocap_mmin(
    root: str | Path, name: str, out: str | Path, audio: str = "comparE", visual: str = "denseface",
    text: str = "bert_large", classes: list[str] | None = None, progress: Progress = None, seed: int = 0,
    fold_options: FoldOptions | None = None,
) -> Dataset:
    h5py = optional_import("h5py", "ramer data import iemocap-mmin", "pip install 'ramer[iemocap]'")
    root = Path(root).resolve()
    classes = list(classes or CLASSES)
    tdir = require(root / "target", "target/ folder")
    cvs = sorted((p for p in tdir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    if len(cvs) < 2:
        raise DataError(f"{tdir}: need >= 2 cross-validation folders (1, 2, ...), found {[p.name for p in cvs]}")
    hashes: dict[str, str] = {}
    label_of, fold_of = _read_targets(tdir, cvs, len(classes), hashes)
    samples = np.array(sorted(label_of), dtype=object)
    n = len(samples)
    feats = {}
    files = {"audio": root / "A" / f"{audio}.h5", "visual": root / "V" / f"{visual}.h5", "text": root / "L" / f"{text}.h5"}
    for m, path in files.items():
        require(path, f"{m} feature file", like="*.h5")
        hashes[str(path.relative_to(root))] = sha256_file(path)
        with h5py.File(path, "r") as h5:
            mat = _pooled_features(path, h5, m, samples, progress)
        check_finite(path, m, mat, samples)
        feats[m] = mat
    y = np.array([label_of[s] for s in samples], np.int64)
    folds = np.array([fold_of[s] for s in samples], np.int8)
    prov = {"importer": "iemocap-mmin", "source": str(root), "sha256": hashes,
            "features": {"audio": audio, "visual": visual, "text": text},
            "folds": f"MMIN cv folders {[p.name for p in cvs]} -> folds 0..{len(cvs) - 1} (tst lists)",
            "pooling": "mean over frames / tokens"}
    return publish(out, name=name, task="single_label", classes=classes, samples=samples, y=y,
                   labeled=np.ones(n, bool), feats=feats, present=None, folds=len(cvs), seed=seed,
                   provenance=prov, fixed_folds=folds, fold_options=fold_options)


def _read_targets(
    tdir: Path, cvs: list[Path], n_classes: int, hashes: dict[str, str],
) -> tuple[dict[str, int], dict[str, int]]:
    """Every utterance's label and fold (the 0-based cv whose `tst` list holds it) from the
    cv folders' label / int2name files, whose checksums are added to `hashes`."""
    label_of: dict[str, int] = {}
    fold_of: dict[str, int] = {}
    conflicts, twice = [], []
    for f, cv in enumerate(cvs):
        for s in SETS:
            lp = require(cv / f"{s}_label.npy", "label file")
            npth = require(cv / f"{s}_int2name.npy", "int2name file")
            hashes[f"target/{cv.name}/{lp.name}"] = sha256_file(lp)
            hashes[f"target/{cv.name}/{npth.name}"] = sha256_file(npth)
            names, labs = _names(npth), _labels(lp, n_classes)
            if len(names) != len(labs):
                raise DataError(f"{cv}: {s}_int2name has {len(names)} names but {s}_label {len(labs)} labels")
            bad = [n for n, lab in zip(names, labs) if not 0 <= lab < n_classes]
            if bad:
                raise DataError(f"{lp}: labels outside 0..{n_classes - 1} for {offenders(bad)}")
            for n, lab in zip(names, labs):
                if label_of.setdefault(n, int(lab)) != lab:
                    conflicts.append(n)
                if s == "tst":
                    if n in fold_of:
                        twice.append(n)
                    fold_of[n] = f
    if conflicts:
        raise DataError(f"{tdir}: utterance(s) with different labels in different files: {offenders(conflicts)}")
    if twice:
        raise DataError(f"{tdir}: utterance(s) in more than one tst list: {offenders(twice)}")
    orphans = sorted(set(label_of) - set(fold_of))
    if orphans:
        raise DataError(f"{tdir}: utterance(s) in no tst list (no fold): {offenders(orphans)}")
    return label_of, fold_of


def _pooled_features(path: Path, h5, m: str, samples: np.ndarray, progress: Progress) -> np.ndarray:
    """(N, D) float32: each sample's frames / tokens in the open h5 file, mean-pooled; the
    first sample's D sizes the matrix and every other sample must match it."""
    n = len(samples)
    missing = [s for s in samples if s not in h5]
    if missing:
        raise DataError(f"{path}: {len(missing)} utterance(s) missing: {offenders(missing)}")
    mat = None
    bad = []
    for i, s in enumerate(samples):
        v = read_h5(path, h5[s], s).astype(np.float32)
        v = v.reshape(-1, v.shape[-1]).mean(0) if v.ndim > 1 else v
        if mat is None:
            check_dim(path, m, v.shape[0])
            require_memory(path, 4 * n * v.shape[0], f"{n} x {v.shape[0]} features")
            mat = np.zeros((n, v.shape[0]), np.float32)
        if v.shape != (mat.shape[1],):
            bad.append(f"{s} {v.shape}")
            continue
        mat[i] = v
        if progress is not None and i % 512 == 511:
            progress(512)
    if bad:
        raise DataError(f"{path}: feature dim differs from {mat.shape[1]} for {offenders(bad)}")
    return mat
