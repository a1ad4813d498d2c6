"""Leak (e) of the leak table: near-duplicates of the labeled rows hidden in the pool.

MER2024's unlabeled pool ("unlisted" clips) can contain re-encoded copies of labeled
clips; a pool copy of a test sample is then a legal retrieval candidate that carries the
test sample's own features. This writes a copy of a dataset whose pool also holds, for
every labeled row, a near-duplicate (features + Gaussian noise of `--noise` times the
modality's std), unlabeled, so `ramer run` on it measures what such copies inflate.

    python benchmarks/leaks.py data/mfeat --out data/mfeat-dup
    ramer run benchmarks/experiments/leaks.toml --dataset data/mfeat --experiment leaks-mfeat
    ramer run --dataset data/mfeat-dup --experiment leaks-mfeat-dup --systems "ramer,w/o retrieval" --runs 1
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pipeline.data.dataset import build_table, load_dataset, write_dataset


def with_pool_duplicates(src: Path, out: Path, noise: float = 0.01, seed: int = 0) -> Path:
    """`out`: `src` plus one noisy unlabeled copy of every labeled row ('dup_<sample>')."""
    ds = load_dataset(src)
    rng = np.random.default_rng(seed)
    lab = np.flatnonzero(ds.labeled)
    feats = {}
    for m in ds.modalities:
        x = np.asarray(ds.features[m])
        scale = x[ds.present[m]].std(0)
        copies = x[lab] + noise * scale * rng.standard_normal((len(lab), x.shape[1])).astype(np.float32)
        copies[~ds.present[m][lab]] = 0.0
        feats[m] = np.concatenate([x, copies.astype(np.float32)])
    n = len(lab)
    samples = np.concatenate([ds.samples, np.array([f"dup_{s}" for s in ds.samples[lab]])])
    y = np.concatenate([ds.y, np.full((n, *ds.y.shape[1:]), -1 if ds.y.ndim == 1 and ds.y.dtype.kind == "i" else 0, ds.y.dtype)])
    labeled = np.concatenate([ds.labeled, np.zeros(n, bool)])
    folds = np.concatenate([ds.folds, np.full(n, -1, np.int8)])
    present = {m: np.concatenate([ds.present[m], ds.present[m][lab]]) for m in ds.modalities}
    extra = {k: np.concatenate([v, np.full(n, None, dtype=object) if k == "label_name" else v[lab]])
             for k, v in ds.extra.items()}
    manifest = ds.manifest.model_copy(update={"name": out.name})
    table = build_table(manifest, samples, y, labeled, folds, feats, present, extra)
    write_dataset(out, manifest, table)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path, help="a dataset directory")
    ap.add_argument("--out", type=Path, required=True, help="where the copy with pool duplicates goes")
    ap.add_argument("--noise", type=float, default=0.01, help="noise of a copy, in feature stds")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    path = with_pool_duplicates(args.dataset, args.out, args.noise, args.seed)
    print(f"{path}: every labeled row of {args.dataset} also in the pool, noise {args.noise} std")


if __name__ == "__main__":
    main()
