"""IEMOCAP in MMIN's layout (AIM3-RUC/MMIN) -> a 4-class single-label dataset.

Source layout (what MMIN's preprocessing writes and `data/multimodal_dataset.py` reads):
    {root}/A/{audio}.h5    utterance id -> (frames, 130) ComParE, variable length (default comparE)
    {root}/V/{visual}.h5   utterance id -> (T, 342) DenseFace            (default denseface)
    {root}/L/{text}.h5     utterance id -> (T, 1024) BERT                (default bert_large)
    {root}/target/{cv}/{trn,val,tst}_label.npy    one-hot (N, 4) or class indices (N,)
    {root}/target/{cv}/{trn,val,tst}_int2name.npy utterance ids (bytes, (N,) or (N, 1))

Variants of a feature file, each recognised per utterance:
- a dataset (frames, D): MMIN's `preprocess/IEMOCAP/migrate_VL_feat.py` copies V and L from
  cv-level (N, T, D) arrays, so every utterance has the same T and is zero-padded. Frames
  that are all zero are padding and are left out of the mean; an utterance with no other
  frame (no face found) is ABSENT for that modality, never a zero vector.
- a group {feat, start, end} (`preprocess/IEMOCAP/make_aligned.py`'s `raw_*.h5`): its
  `feat` is read the same way (a face-less utterance there is one all-zero frame with
  start = end = -1, so it is absent too). Its word-aligned `aligned_*.h5` are datasets.
MMIN's cross-validation folds are kept: an utterance's fold is the (0-based) cv whose
`tst` list holds it; every utterance must be in exactly one `tst` list. MMIN's per-cv
ComParE normalisation is left to the models' input LayerNorm. Class names default to
ang, hap(+exc), neu, sad in index order: check them against your targets (`--classes`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data.bounds import check_dim, load_npy, read_h5, require_memory
from pipeline.data.dataset import Dataset
from pipeline.data.importers._common import (
    Progress,
    check_finite,
    clean_frames,
    offenders,
    pool_valid,
    publish,
    require,
    sha256_file,
)
from pipeline.data.importers.folds import FoldOptions
from pipeline.errors import DataError
from pipeline.extras import optional_import

CLASSES = ["angry", "happy", "neutral", "sad"]
SETS = ("trn", "val", "tst")
SUBDIRS = {"audio": "A", "visual": "V", "text": "L"}
# what h5py raises on a corrupt or truncated file, wherever it notices
H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError)


def _names(path: Path) -> list[str]:
    arr = load_npy(path, allow_pickle=True)  # ids as bytes objects: only import files you trust
    if arr.ndim not in (1, 2):
        raise DataError(f"{path}: utterance ids of shape {arr.shape} (rule: (N,) or (N, 1) ids)")
    col = arr.reshape(len(arr), -1)[:, 0] if arr.ndim == 2 and arr.shape[1] else arr
    return [v.decode(errors="replace") if isinstance(v, bytes) else str(v) for v in col]


def _labels(path: Path, n_classes: int) -> np.ndarray:
    """(N,) int64 class indices from one-hot (N, C) rows (MMIN takes their argmax) or (N,)
    whole numbers; anything else (strings, fractions, NaN) is one DataError."""
    lab = load_npy(path)
    if lab.dtype.kind not in "biuf" or lab.ndim not in (1, 2):
        raise DataError(f"{path}: labels of dtype {lab.dtype} and shape {lab.shape} "
                        f"(rule: one-hot (N, {n_classes}) or class indices (N,), numbers)")
    if not np.isfinite(lab).all():
        raise DataError(f"{path}: labels hold NaN or inf (rule: finite numbers)")
    if lab.ndim == 2:
        if lab.shape[1] != n_classes:
            raise DataError(f"{path}: one-hot labels have {lab.shape[1]} columns, expected {n_classes}")
        return lab.argmax(1).astype(np.int64)
    if (lab != np.round(lab)).any():
        raise DataError(f"{path}: class indices that are not whole numbers (rule: 0..{n_classes - 1})")
    return lab.astype(np.int64)


def import_iemocap_mmin(
    root: str | Path, name: str, out: str | Path, audio: str = "comparE", visual: str = "denseface",
    text: str = "bert_large", classes: list[str] | None = None, progress: Progress = None, seed: int = 0,
    fold_options: FoldOptions | None = None, allow_missing: bool = False, targets: str | Path | None = None,
) -> Dataset:
    """`targets`: the folder of the cv folders (MMIN's `target_root`; default {root}/target).
    `allow_missing`: an utterance missing from a feature file is absent for that modality
    (make_aligned.py's raw_bert.h5 skips one) instead of an error, and one with no usable
    modality at all is left out (listed in the provenance's `dropped_samples`)."""
    h5py = optional_import("h5py", "ramer data import iemocap-mmin", "pip install 'ramer[iemocap]'")
    root = Path(root).resolve()
    classes = list(classes or CLASSES)
    tdir = require(Path(targets).resolve() if targets else root / "target", "target/ folder (cv folders 1, 2, ...)")
    cvs = sorted((p for p in tdir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    if len(cvs) < 2:
        raise DataError(f"{tdir}: need >= 2 cross-validation folders (1, 2, ...), found {[p.name for p in cvs]}")
    hashes: dict[str, str] = {}
    label_of, fold_of = _read_targets(tdir, cvs, len(classes), hashes)
    samples = np.array(sorted(label_of), dtype=object)
    feats, present, frames = {}, {}, {}
    files = {m: root / SUBDIRS[m] / f"{stem}.h5" for m, stem in (("audio", audio), ("visual", visual), ("text", text))}
    for m, path in files.items():
        require(path, f"{m} feature file", like="*.h5")
        hashes[str(path.relative_to(root))] = sha256_file(path)
        pooled = _read_h5_file(h5py, path, m, samples, allow_missing, progress)
        check_finite(path, m, pooled.values, samples)
        feats[m], present[m], frames[m] = pooled.values, pooled.present, pooled.counts()
    keep = np.stack(list(present.values()), axis=1).any(axis=1)
    if allow_missing and not keep.all():  # e.g. make_aligned.py skips one utterance in every aligned file
        dropped = [str(s) for s in samples[~keep]]
        samples, feats, present = samples[keep], {m: a[keep] for m, a in feats.items()}, {
            m: a[keep] for m, a in present.items()}
    else:
        dropped = []  # without --allow-missing, publish refuses a sample without any modality
    y = np.array([label_of[s] for s in samples], np.int64)
    folds = np.array([fold_of[s] for s in samples], np.int8)
    prov = {"importer": "iemocap-mmin", "source": str(root), "targets": str(tdir), "sha256": hashes,
            "features": {"audio": audio, "visual": visual, "text": text},
            "modality_sources": {m: str(p.relative_to(root)) for m, p in files.items()},
            "folds": f"MMIN cv folders {[p.name for p in cvs]} -> folds 0..{len(cvs) - 1} (tst lists)",
            "pooling": "mean over the frames / tokens that are not all zero (zero padding); "
                       "an utterance without such a frame is absent for that modality",
            "frames": frames, "dropped_samples": dropped}
    return publish(out, name=name, task="single_label", classes=classes, samples=samples, y=y,
                   labeled=np.ones(len(samples), bool), feats=feats, present=present, folds=len(cvs), seed=seed,
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


class _Pooled:
    """Pooled vectors of one modality as they are read: (N, D) float32 (sized by the first
    utterance read), (N,) presence, and frame counts for the provenance."""

    def __init__(self, path: Path, modality: str, n: int) -> None:
        self.path, self.modality, self.n = path, modality, n
        self.values = np.zeros((n, 0), np.float32)
        self.present = np.zeros(n, bool)
        self.frames = self.padding = self.missing = 0
        self.bad: list[str] = []

    def add(self, i: int, name: str, v: np.ndarray) -> None:
        """Row i from one utterance's (frames, D) or (D,) array."""
        if v.ndim not in (1, 2):
            raise DataError(f"{self.path}: '{name}' has shape {v.shape} (rule: (frames, D) or (D,) per utterance)")
        if self.values.shape[1] == 0:
            check_dim(self.path, self.modality, v.shape[-1])
            require_memory(self.path, 4 * self.n * v.shape[-1], f"{self.n} x {v.shape[-1]} features")
            self.values = np.zeros((self.n, v.shape[-1]), np.float32)
        if v.shape[-1] != self.values.shape[1]:
            self.bad.append(f"{name} {v.shape}")
            return
        seq, valid = clean_frames(v.reshape(1, -1, v.shape[-1]))  # (1, T, D), (1, T): all-zero = padding
        pooled, ok = pool_valid(seq, valid)
        self.values[i], self.present[i] = pooled[0], ok[0]
        self.frames += valid.shape[1]
        self.padding += int((~valid).sum())

    def counts(self) -> dict[str, int]:
        return {"frames": self.frames, "all_zero_frames": self.padding,
                "utterances_without_frames": int(self.n - self.missing - self.present.sum()),
                "utterances_missing": self.missing}


def _read_h5_file(h5py, path: Path, m: str, samples: np.ndarray, allow_missing: bool,
                  progress: Progress) -> _Pooled:
    """Every sample's pooled vector from one feature file; an unreadable (corrupt,
    truncated, not HDF5) file is one DataError naming it."""
    try:
        with h5py.File(path, "r") as h5:
            return _pool_utterances(h5py, path, h5, m, samples, allow_missing, progress)
    except H5_ERRORS as exc:
        raise DataError(f"{path}: not a readable HDF5 file ({type(exc).__name__}: "
                        f"{' '.join(str(exc).split())[:200]})") from None


def _pool_utterances(h5py, path: Path, h5, m: str, samples: np.ndarray, allow_missing: bool,
                     progress: Progress) -> _Pooled:
    missing = [s for s in samples if s not in h5]
    if missing and not allow_missing:
        raise DataError(f"{path}: {len(missing)} utterance(s) missing: {offenders(missing)} "
                        "(pass --allow-missing to import them as absent for this modality)")
    if len(missing) == len(samples):
        raise DataError(f"{path}: none of the {len(samples)} utterances of target/ is in the file")
    out = _Pooled(path, m, len(samples))
    out.missing = len(missing)
    skip = set(missing)
    for i, s in enumerate(samples):
        if s not in skip:
            out.add(i, s, _utterance_array(h5py, path, h5[s], s))
        if progress is not None and i % 512 == 511:
            progress(512)
    if out.bad:
        raise DataError(f"{path}: feature dim differs from {out.values.shape[1]} for {offenders(out.bad)}")
    return out


def _utterance_array(h5py, path: Path, item, name: str) -> np.ndarray:
    """An utterance's frames: the dataset itself, or the `feat` of a {feat, start, end}
    group (make_aligned.py's raw_*.h5); any other group is refused naming the variant."""
    if isinstance(item, h5py.Group):
        feat = item.get("feat")
        if not isinstance(feat, h5py.Dataset):
            raise DataError(f"{path}: '{name}' is a group holding {offenders(sorted(item.keys())) or 'nothing'} "
                            "(rule: a dataset per utterance, or make_aligned.py's group {feat, start, end})")
        item, name = feat, f"{name}/feat"
    if not isinstance(item, h5py.Dataset):  # e.g. a named datatype (a corrupt link can point at one)
        raise DataError(f"{path}: '{name}' is an HDF5 {type(item).__name__}, not a dataset "
                        "(rule: a dataset per utterance, or make_aligned.py's group {feat, start, end})")
    return read_h5(path, item, name)
