"""What `ramer data` and `ramer data import` share: the console, the progress bar, the
checks of the output directory, and the summary of a written dataset."""

from __future__ import annotations

import math
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline.config import check_name
from pipeline.data.dataset import Dataset, check_output_dir
from pipeline.data.info import DatasetInfo, dataset_info, human_bytes

console = Console()


def progress_bar() -> Progress:
    """A transient bar on a terminal; elsewhere (CI, a log file) it draws nothing, so
    `reading` says what is being read instead."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def reading(label: str) -> None:
    if not console.is_terminal:
        console.print(f"reading {label} ...", highlight=False, markup=False)


def split_list(text: str | None) -> list[str] | None:
    return None if text is None else [p.strip() for p in text.split(",") if p.strip()]


def check_target(out: Path, name: str | None) -> None:
    """--name and the output directory, before any work (one line, nothing written)."""
    if name is not None:
        check_name("--name", name)
    check_output_dir(out)


def fold_lines(ds: Dataset) -> list[str]:
    """How the folds were grouped and what the duplicate check found (from the manifest)."""
    prov = ds.manifest.provenance
    lines = []
    if "folds" in prov:
        f = prov["folds"]
        by = f"grouped by '{f['group_by']}' ({f.get('groups', '?')} groups)" if f.get("group_by") else "not grouped"
        lines.append(f"folds: {f['method']}, {by}")
    if "duplicates" in prov:
        d = prov["duplicates"]
        lines.append(
            f"duplicates (cosine >= {d['threshold']}): {d['pool_rows']} pool row(s) duplicate a labeled row, "
            f"{d['labeled_pairs']} labeled pair(s), {d.get('cross_fold_pairs', 0)} across folds; {d['action']}"
            + (f", {d['dropped_pool_rows']} dropped" if d.get("dropped_pool_rows") else ""))
    frames = prov.get("frames")
    if isinstance(frames, dict) and all(isinstance(f, dict) for f in frames.values()):
        lines.append("all-zero (padding) frames left out of the mean: " + ", ".join(
            _frame_counts(m, f) for m, f in frames.items()))
    dropped = prov.get("dropped_samples")
    if dropped:
        lines.append(f"left out (no usable modality): {len(dropped)} sample(s): {', '.join(map(str, dropped[:5]))}"
                     + (f" (+{len(dropped) - 5} more)" if len(dropped) > 5 else ""))
    return lines


def _frame_counts(modality: str, f: dict) -> str:
    """'visual 120/5400 (3 utterances without a frame: absent)' from an importer's counts."""
    notes = [f"{f[k]} utterance(s) {what}" for k, what in (("utterances_without_frames", "without a frame: absent"),
                                                           ("utterances_missing", "missing from the file"))
             if f.get(k)]
    return f"{modality} {f.get('all_zero_frames', '?')}/{f.get('frames', '?')}" + (f" ({'; '.join(notes)})"
                                                                                   if notes else "")


def summary(ds: Dataset, seconds: float | None = None) -> None:
    info = dataset_info(ds)
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    dims = ", ".join(f"{m}={d}" for m, d in info.dims.items())
    seqs = f", frames of {', '.join(info.sequences)} kept" if info.sequences else ""
    console.print(
        f"[green]{info.name}[/]: {info.n} samples ({info.n_labeled} labeled, {info.n_unlabeled} "
        f"unlabeled), {len(info.classes)} classes, {info.folds} folds, dims {dims}{seqs}; "
        f"{human_bytes(info.total_bytes)} at {info.root}{took}",
        highlight=False,
    )
    for line in fold_lines(ds):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    for line in modality_lines(info):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    print_warnings(info)


def fmt_share(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.1f} %"  # NaN (no such rows): "-"


def fmt_norms(p5: float, median: float, p95: float) -> str:
    return "-" if math.isnan(median) else f"{median:.3g} [{p5:.3g}, {p95:.3g}]"


def modality_lines(info: DatasetInfo) -> list[str]:
    """Per modality: dim, source, presence, all-zero rows and row norms (median [p5, p95])
    of the present rows, so that a swapped or padded modality stands out."""
    return [
        f"  {m}: dim {s.dim} from {s.source}; present {s.present}/{info.n}, all-zero rows {fmt_share(s.zero_share)}, "
        f"row L2 norm median [p5, p95] {fmt_norms(s.norm_p5, s.norm_median, s.norm_p95)}"
        for m, s in info.stats.items()
    ]


def print_warnings(info: DatasetInfo) -> None:
    for line in info.warnings:
        console.print(line, style="yellow", highlight=False, markup=False, soft_wrap=True)  # one line, even if long
