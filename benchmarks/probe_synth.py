"""Linear-probe accuracies of a dataset: how much each modality tells about the label.

Standardised features -> sklearn LogisticRegression, trained on folds != 0 (labeled
only), tested on fold 0; per modality and for all modalities concatenated. Absent
modality values are zeros (their stored value).

    python benchmarks/probe_synth.py DIR            # an existing dataset directory
    python benchmarks/probe_synth.py --synth        # generate the default synthetic set in memory
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from pipeline.data import load_dataset
from pipeline.data.dataset import _dataset_from_table


def probe(
    x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, seed: int = 0
) -> float:
    scaler = StandardScaler().fit(x[train])
    clf = LogisticRegression(max_iter=2000, random_state=seed)
    clf.fit(scaler.transform(x[train]), y[train])
    return float((clf.predict(scaler.transform(x[test])) == y[test]).mean())


def probe_dataset(ds) -> dict[str, float]:
    train = np.flatnonzero(ds.labeled & (ds.folds != 0))
    test = np.flatnonzero(ds.labeled & (ds.folds == 0))
    out = {m: probe(ds.features[m], ds.y, train, test) for m in ds.modalities}
    out["+".join(ds.modalities)] = probe(np.concatenate(ds.x(), axis=1), ds.y, train, test)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", nargs="?", help="dataset directory")
    ap.add_argument(
        "--synth", action="store_true", help="generate the default synthetic set in memory"
    )
    ap.add_argument("--labeled", type=int, default=5030)
    ap.add_argument("--unlabeled", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.synth:
        from pathlib import Path

        from pipeline.data.synth import SynthConfig, make_synthetic

        t = time.perf_counter()
        cfg = SynthConfig(labeled=args.labeled, unlabeled=args.unlabeled, seed=args.seed)
        man, table, _ = make_synthetic(cfg)
        ds = _dataset_from_table(man, Path("."), table, "memory")
        print(f"generated {len(ds)} samples in {time.perf_counter() - t:.1f} s")
    elif args.dir:
        ds = load_dataset(args.dir)
    else:
        ap.error("give a dataset directory or --synth")
    t = time.perf_counter()
    for name, acc in probe_dataset(ds).items():
        print(f"{name:>20s}  {100 * acc:5.1f} %")
    print(f"probes took {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
