"""What a dataset directory holds: counts per class and fold (label sets for
multi-label), splits, presence, per-modality statistics that make a wrong import stand
out (source, all-zero rows, row norms, warnings), kept frame sequences, sizes.

Pure computation (plain dicts and arrays) so the CLI, notebooks and tests share it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.data.dataset import Dataset
from pipeline.data.splits import make_split

# Output dims of extractors a source may name (a feature file or folder), for the
# "dim contradicts the extractor" warning. Only widely documented sizes are listed.
KNOWN_DIMS = {
    "compare": 130,  # MMIN's ComParE LLDs (A/comparE.h5)
    "denseface": 342,  # MMIN / M3ED DenseFace (V/denseface.h5)
    "bert_large": 1024,  # MMIN L/bert_large.h5
    "chinese-hubert-large": 1024,
    "chinese-hubert-base": 768,
    "clip-vit-large-patch14": 768,
    "clip-vit-base-patch32": 512,
    "baichuan-13b-base": 5120,
    "vggish": 128,
}
MOSTLY_ZERO = 0.5  # share of all-zero present rows above which an import warns
NORM_BLOCK = 4096  # rows per block when computing row norms (bounded temporary memory)


@dataclass
class ModalityStats:
    """One modality's numbers: what it is (dim, source) and whether its values look like
    features (all-zero rows are padding or a failed read; row norms show scale swaps)."""

    dim: int
    source: str  # the key / folder / column it came from (manifest provenance), "?" if unknown
    present: int  # rows that have the modality
    zero_share: float  # share of the present rows that are all zero (NaN without present rows)
    norm_p5: float  # L2 norms of the present rows: 5th percentile, median, 95th percentile
    norm_median: float
    norm_p95: float


@dataclass
class DatasetInfo:
    name: str
    task: str
    root: Path
    n: int
    n_labeled: int
    n_unlabeled: int
    classes: list[str]
    dims: dict[str, int]
    folds: int
    class_by_fold: np.ndarray  # (C, K) labeled counts; single_label only, else (0, K)
    split_sizes: dict[str, int]  # fold 0, run 0: train / val / test / unlabeled
    presence: dict[str, dict[str, float]]  # modality -> {"all", "labeled", "unlabeled"} share
    files: dict[str, int]  # relative path -> bytes
    speakers: int | None
    # multi_label only: labeled samples carrying each class per fold, (C, K), else (0, K);
    # labeled samples with an empty label set per fold (CMU-MOSEI's "None"), (K,), else (0,)
    label_by_fold: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    none_by_fold: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    labels_per_sample: float = float("nan")  # mean label-set size over labeled samples (multi_label)
    # modality -> {"shape": (N, T, D), "mean_frames": mean valid frames where present}
    sequences: dict[str, dict] = field(default_factory=dict)
    stats: dict[str, ModalityStats] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # one line each: a modality that looks wrong

    @property
    def total_bytes(self) -> int:
        return sum(self.files.values())


def _share(mask: np.ndarray, rows: np.ndarray) -> float:
    return float(mask[rows].mean()) if rows.any() else float("nan")


def dataset_info(ds: Dataset) -> DatasetInfo:
    man = ds.manifest
    lbf, nbf, per_sample = _label_sets(ds)
    spk = ds.extra.get("speaker")
    stats = modality_stats(ds)
    return DatasetInfo(
        name=man.name,
        task=man.task,
        root=ds.root,
        n=len(ds),
        n_labeled=int(ds.labeled.sum()),
        n_unlabeled=int((~ds.labeled).sum()),
        classes=list(man.classes),
        dims={m.name: m.dim for m in man.modalities},
        folds=man.folds,
        class_by_fold=_class_by_fold(ds),
        split_sizes=_split_sizes(ds),
        presence=_presence(ds),
        files={str(p.relative_to(ds.root)): p.stat().st_size for p in sorted(ds.root.rglob("*")) if p.is_file()},
        speakers=None if spk is None else len({s for s in spk if s is not None}),
        label_by_fold=lbf,
        none_by_fold=nbf,
        labels_per_sample=per_sample,
        sequences=_sequence_stats(ds),
        stats=stats,
        warnings=modality_warnings(stats),
    )


def _class_by_fold(ds: Dataset) -> np.ndarray:
    """(C, K) labeled counts per class and fold; (0, K) unless single-label."""
    man, lab = ds.manifest, ds.labeled
    if man.task != "single_label":
        return np.zeros((0, man.folds), np.int64)
    cbf = np.zeros((man.n_classes, man.folds), np.int64)
    np.add.at(cbf, (ds.y[lab], ds.folds[lab]), 1)
    return cbf


def _label_sets(ds: Dataset) -> tuple[np.ndarray, np.ndarray, float]:
    """Multi-label: (C, K) samples carrying each class, (K,) empty label sets per fold and
    the mean label-set size; empty arrays and NaN for the other tasks."""
    man, lab, k = ds.manifest, ds.labeled, ds.manifest.folds
    if man.task != "multi_label":
        return np.zeros((0, k), np.int64), np.zeros(0, np.int64), float("nan")
    y, f = ds.y[lab] > 0.5, ds.folds[lab].astype(np.int64)  # (L, C), (L,)
    lbf = np.array([np.bincount(f[y[:, c]], minlength=k) for c in range(man.n_classes)], np.int64).reshape(-1, k)
    nbf = np.bincount(f[~y.any(axis=1)], minlength=k)
    return lbf, nbf, float(y.sum(1).mean()) if len(y) else float("nan")


def _split_sizes(ds: Dataset) -> dict[str, int]:
    """Sizes of the fold 0, run 0 split (train / val / test / unlabeled)."""
    lab = ds.labeled
    try:
        split = make_split(ds.y, lab, ds.folds, fold=0, run=0, seed=ds.manifest.seed)
        return {s: len(getattr(split, s)) for s in ("train", "val", "test", "unlabeled")}
    except ValueError:  # too few rows to carve a stratified validation split
        test = lab & (ds.folds == 0)
        return {
            "train+val": int((lab & ~test).sum()),
            "test": int(test.sum()),
            "unlabeled": int((~lab).sum()),
        }


def _presence(ds: Dataset) -> dict[str, dict[str, float]]:
    """Per modality the share of rows that have it: all, labeled and unlabeled rows."""
    lab = ds.labeled
    everyone = np.ones(len(ds), bool)
    return {
        m: {
            "all": _share(ds.present[m], everyone),
            "labeled": _share(ds.present[m], lab),
            "unlabeled": _share(ds.present[m], ~lab),
        }
        for m in ds.modalities
    }


def modality_sources(provenance: dict) -> dict[str, str]:
    """modality -> where the importer took it from: `modality_sources` in the provenance,
    else (datasets imported before it was recorded) the `features` entry's folder / name."""
    if isinstance(provenance.get("modality_sources"), dict):
        return {str(m): str(v) for m, v in provenance["modality_sources"].items()}
    feats = provenance.get("features")
    if not isinstance(feats, dict):
        return {}
    out = {}
    for m, v in feats.items():
        if isinstance(v, dict) and "folder" in v:
            out[str(m)] = Path(str(v["folder"])).name
        elif isinstance(v, str):
            out[str(m)] = v
    return out


def modality_stats(ds: Dataset) -> dict[str, ModalityStats]:
    sources = modality_sources(ds.manifest.provenance)
    return {m: _one_modality(ds.features[m], ds.present[m], sources.get(m, "?")) for m in ds.modalities}


def _one_modality(x: np.ndarray, present: np.ndarray, source: str) -> ModalityStats:
    """Stats of an (N, D) matrix over its present rows, in blocks of rows."""
    norms, zero = np.empty(len(x), np.float64), np.empty(len(x), bool)
    for a in range(0, len(x), NORM_BLOCK):
        block = x[a : a + NORM_BLOCK]  # (b, D) view
        norms[a : a + len(block)] = np.sqrt(np.einsum("ij,ij->i", block, block, dtype=np.float64))
        zero[a : a + len(block)] = ~block.any(axis=1)
    n = int(present.sum())
    p5, med, p95 = np.percentile(norms[present], [5, 50, 95]) if n else (np.nan,) * 3
    return ModalityStats(dim=int(x.shape[1]), source=source, present=n,
                         zero_share=float(zero[present].mean()) if n else float("nan"),
                         norm_p5=float(p5), norm_median=float(med), norm_p95=float(p95))


def _extractor_stem(source: str) -> str:
    """'V/raw_denseface.h5' -> 'denseface', 'vggish_UTT' -> 'vggish' (lower case)."""
    stem = Path(source).name.lower().removesuffix(".h5")
    for suffix in ("-utt", "_utt"):
        stem = stem.removesuffix(suffix)
    for prefix in ("raw_", "aligned_"):
        stem = stem.removeprefix(prefix)
    return stem


def known_extractor(source: str) -> str | None:
    """The KNOWN_DIMS extractor a source names: its file / folder stem, else the longest
    known name inside it (a description such as 'list index 5 (denseface)')."""
    stem = _extractor_stem(source)
    if stem in KNOWN_DIMS:
        return stem
    text = source.lower()
    return next((k for k in sorted(KNOWN_DIMS, key=len, reverse=True) if k in text), None)


def modality_warnings(stats: dict[str, ModalityStats]) -> list[str]:
    """One line per modality that looks wrong: mostly all-zero rows, or a dim that
    contradicts the extractor its source names."""
    out = []
    for m, s in stats.items():
        if s.zero_share > MOSTLY_ZERO:
            out.append(f"warning: modality '{m}' (from {s.source}): {100 * s.zero_share:.1f} % of its present rows "
                       "are all zero (padding or failed extraction read as features?)")
        name = known_extractor(s.source)
        if name is not None and KNOWN_DIMS[name] != s.dim:
            out.append(f"warning: modality '{m}' (from {s.source}): dim {s.dim}, but {name} "
                       f"features have {KNOWN_DIMS[name]} values (modalities swapped, or another extractor?)")
    return out


def _sequence_stats(ds: Dataset) -> dict[str, dict]:
    """Per kept frame sequence its (N, T, D) shape and mean valid frames where present."""
    return {
        m: {
            "shape": tuple(int(d) for d in s.values.shape),
            "mean_frames": float(s.lengths[s.lengths > 0].mean()) if (s.lengths > 0).any() else 0.0,
        }
        for m, s in (ds.sequences or {}).items()
    }


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
