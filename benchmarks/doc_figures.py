"""Re-render a finished experiment's figures (`ramer report`, no training) and copy them to
docs/figures/ under the experiment's name, for the docs to link:

    python benchmarks/doc_figures.py benchmarks/results/experiments/mfeat10

writes docs/figures/mfeat10_wa_by_condition.png, docs/figures/mfeat10_paired_differences.png,
... (every PNG the folder's report.md / noise_report.md link), and prints their paths.
The folder needs its metrics.parquet (and noise.parquet for the noise figure).
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

from pipeline.errors import RamerError
from pipeline.experiment.results import report_folder

REPORTS = ("report.md", "noise_report.md")


def linked_figures(results: Path) -> list[Path]:
    """The PNGs the folder's reports link, in report order."""
    names: list[str] = []
    for report in REPORTS:
        path = results / report
        if path.is_file():
            names += [n for n in re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", path.read_text()) if n not in names]
    return [results / n for n in names]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, help="results folder with metrics.parquet")
    ap.add_argument("--name", default=None, help="file name prefix (default: the folder's name)")
    ap.add_argument("--out", type=Path, default=Path("docs/figures"), help="where the PNGs go")
    args = ap.parse_args()
    try:
        report_folder(args.results)
    except RamerError as exc:
        raise SystemExit(f"error: {exc}") from None
    args.out.mkdir(parents=True, exist_ok=True)
    prefix = args.name or args.results.name
    for png in linked_figures(args.results):
        target = args.out / f"{prefix}_{png.name}"
        shutil.copyfile(png, target)
        print(target)


if __name__ == "__main__":
    main()
