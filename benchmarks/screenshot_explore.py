"""Screenshot of `ramer collections explore` in a real browser, for docs/explore.md.

    ramer demo                                     # makes the demo__demo__f0 collection
    python benchmarks/screenshot_explore.py        # -> docs/explore.png
    python benchmarks/screenshot_explore.py --projection tsne --png docs/explore_tsne.png

It runs the CLI command the docs show, then headless Chromium (Debian: `apt-get install
chromium`) on the written file with `#sample=NAME` in the URL, which the page selects on
load: the screenshot shows a selected point, its neighbours on every map and their lists.
The default NAME is the first test sample on the map (not a chosen good case).
The PNG is reduced to 256 colours to keep the repository small.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1400,1000",
    "--virtual-time-budget=15000",  # let plotly draw and the page's selection run first
]


def first_test_sample(page: Path) -> str:
    from pipeline.evaluation.explore import read_view_data

    for mv in read_view_data(page)["modalities"]:
        nodes = mv["nodes"]
        for i in range(mv["shown"]):
            if nodes["split"][i] == "test":
                return nodes["sample"][i]
    raise SystemExit(f"{page}: no test sample on the map to select")


def screenshot(page: Path, sample: str, png: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("chromium not found: apt-get update && apt-get install -y chromium")
    with tempfile.TemporaryDirectory() as profile:
        cmd = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={png}",
               f"{page.resolve().as_uri()}#sample={sample}"]
        subprocess.run(cmd, check=True, timeout=180, capture_output=True)


def shrink(png: Path) -> None:
    """256-colour palette PNG: a page of flat colours loses nothing visible (~3x smaller)."""
    from PIL import Image

    with Image.open(png) as img:
        small = img.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(png, optimize=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--collection", default="demo__demo__f0")
    ap.add_argument("--projection", default="pca")
    ap.add_argument("--sample", help="sample selected on load (default: the first test sample on the map)")
    ap.add_argument("--html", type=Path, help="keep the page here (default: a temporary file)")
    ap.add_argument("--png", type=Path, default=ROOT / "docs" / "explore.png")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        page = args.html or Path(tmp) / "view.html"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pipeline.cli", "collections", "explore", args.collection,
                        "--projection", args.projection, "--out", str(page)], check=True)
        made = time.perf_counter() - t0
        sample = args.sample or first_test_sample(page)
        t0 = time.perf_counter()
        screenshot(page, sample, args.png)
        shot = time.perf_counter() - t0
        shrink(args.png)
        print(f"{args.png} ({args.png.stat().st_size / 1024:.0f} KB): {args.collection}, {args.projection}, "
              f"selected {sample}; page {page.stat().st_size / 2**20:.1f} MB in {made:.1f} s, "
              f"screenshot {shot:.1f} s")


if __name__ == "__main__":
    main()
