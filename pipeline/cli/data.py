"""`ramer data ...`: make, import, check and describe dataset directories."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from pipeline.cli.data_common import (
    check_target,
    console,
    fmt_norms,
    fmt_share,
    fold_lines,
    print_warnings,
    progress_bar,
    summary,
)
from pipeline.cli.data_import import import_app
from pipeline.config import load_settings
from pipeline.data.dataset import load_dataset
from pipeline.data.info import DatasetInfo, dataset_info, human_bytes

app = typer.Typer(help="Datasets: synthesize, import, validate, describe.", no_args_is_help=True)
app.add_typer(import_app, name="import")


def parse_dims(text: str) -> dict[str, int]:
    """'audio=1024,visual=768,text=1024' -> {'audio': 1024, ...} (order kept)."""
    dims: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or not name.strip() or not value.strip().isdigit() or int(value) < 1:
            raise typer.BadParameter(f"'{part}' is not NAME=DIM with DIM >= 1", param_hint="--dims")
        dims[name.strip()] = int(value)
    if not dims:
        raise typer.BadParameter("give at least one NAME=DIM", param_hint="--dims")
    return dims


@app.command()
def synth(
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset directory to (re)create.")],
    labeled: Annotated[
        int, typer.Option(help="Labeled samples (MER2024 class proportions).")
    ] = 5030,
    unlabeled: Annotated[
        int, typer.Option(help="Unlabeled pool size (labels only in the oracle file).")
    ] = 20000,
    dims: Annotated[
        str, typer.Option(help="Modalities and dims, NAME=DIM,...")
    ] = "audio=1024,visual=768,text=1024",
    seed: Annotated[int | None, typer.Option(help="Seed (default: RAMER_SEED or 0).")] = None,
    folds: Annotated[int, typer.Option(help="Stratified folds over the labeled samples.")] = 5,
    missing_rate: Annotated[
        float,
        typer.Option(help="Share of modality values marked absent (never all of one sample)."),
    ] = 0.0,
    name: Annotated[
        str | None, typer.Option(help="Dataset name (default: the directory name).")
    ] = None,
) -> None:
    """Generate a synthetic MER2024-like dataset (shared emotion latent, text > audio > visual)."""
    from pipeline.data.synth import ORACLE, SynthConfig, check_config
    from pipeline.data.synth_stream import write_synthetic_streamed

    check_target(out, name)
    cfg = SynthConfig(
        labeled=labeled,
        unlabeled=unlabeled,
        dims=parse_dims(dims),
        folds=folds,
        seed=load_settings(seed=seed).seed,
        missing_rate=missing_rate,
    )
    check_config(cfg)  # before the progress bar starts
    t0 = time.perf_counter()
    with progress_bar() as bar:
        task = bar.add_task(f"generating (seed {cfg.seed})", total=labeled + unlabeled)
        # streamed: chunk by chunk into the table, memory independent of the row count
        write_synthetic_streamed(out, cfg, name or out.name, progress=lambda k: bar.advance(task, k))
    with console.status(f"reading {out} back"):
        # valid by construction (tests/test_synth.py); validating would read every feature
        ds = load_dataset(out, validate=False)
    summary(ds, time.perf_counter() - t0)
    console.print(
        f"oracle labels of the unlabeled pool (diagnostics only): {out / ORACLE}", highlight=False
    )


@app.command()
def validate(
    directory: Annotated[Path, typer.Argument(help="Dataset directory.")],
) -> None:
    """Check a dataset directory against the data contract; exit 1 on the first broken rule."""
    ds = load_dataset(directory, validate=True)
    console.print("[bold green]OK[/]", end=" ")
    summary(ds)


@app.command()
def info(
    directory: Annotated[Path, typer.Argument(help="Dataset directory.")],
) -> None:
    """Counts per class x fold, split sizes, per modality its dim, source, presence, all-zero rows and
    row norms (with a warning when a modality looks wrong), and file sizes."""
    ds = load_dataset(directory, validate=True)
    inf = dataset_info(ds)
    console.print(
        f"[bold]{inf.name}[/] ({inf.task}) at {inf.root}: {inf.n} samples, {inf.n_labeled} labeled, "
        f"{inf.n_unlabeled} unlabeled" + (f", {inf.speakers} speakers" if inf.speakers else ""),
        highlight=False,
    )
    for line in fold_lines(ds):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    if len(inf.class_by_fold):
        console.print(_class_table(inf))
    if len(inf.label_by_fold):
        console.print(_label_set_table(inf))
    t = Table(title="splits of fold 0, run 0 (test = fold 0, val = 1/8 of the rest)")
    for s in inf.split_sizes:
        t.add_column(s, justify="right")
    t.add_row(*map(str, inf.split_sizes.values()))
    console.print(t)
    console.print(_modality_table(inf))
    print_warnings(inf)
    if inf.sequences:
        t = Table(title="frame sequences (sequences/, memory-mapped)")
        for c in ("modality", "rows x frames x dim", "mean valid frames"):
            t.add_column(c, justify="left" if c == "modality" else "right")
        for m, sq in inf.sequences.items():
            t.add_row(m, " x ".join(map(str, sq["shape"])), f"{sq['mean_frames']:.1f}")
        console.print(t)
    else:
        console.print("frame sequences: none (utterance-level features only)", highlight=False)
    t = Table(title=f"files ({human_bytes(inf.total_bytes)})")
    t.add_column("file")
    t.add_column("size", justify="right")
    for f, b in inf.files.items():
        t.add_row(f, human_bytes(b))
    console.print(t)


def _class_table(inf: DatasetInfo) -> Table:
    """Single-label: labeled samples per class and fold, with row and column totals."""
    t = Table(title="labeled samples per class x fold")
    t.add_column("class")
    for f in range(inf.folds):
        t.add_column(f"fold {f}", justify="right")
    t.add_column("total", justify="right", style="bold")
    for c, row in zip(inf.classes, inf.class_by_fold):
        t.add_row(c, *map(str, row), str(row.sum()))
    col = inf.class_by_fold.sum(0)
    t.add_row("[bold]total", *map(str, col), str(col.sum()))
    return t


def _modality_table(inf: DatasetInfo) -> Table:
    """Per modality its dim, where it came from, the share of all / labeled / unlabeled rows
    that have it, the share of present rows that are all zero and their row L2 norms."""
    t = Table(title="modalities", caption=escape("all-zero rows and row L2 norms (median [p5, p95]): over the rows "
                                                  "that have the modality"))
    for c in ("modality", "dim", "source", "present", "labeled", "unlabeled", "all-zero", "L2 norm"):
        t.add_column(c, justify="left" if c in ("modality", "source") else "right", no_wrap=True)
    for m, d in inf.dims.items():
        p, s = inf.presence[m], inf.stats[m]
        t.add_row(m, str(d), escape(s.source), *(fmt_share(p[k]) for k in ("all", "labeled", "unlabeled")),
                  fmt_share(s.zero_share), fmt_norms(s.norm_p5, s.norm_median, s.norm_p95))
    return t


def _label_set_table(inf: DatasetInfo) -> Table:
    """Multi-label: labeled samples carrying each class per fold, their share, and the
    empty label set (CMU-MOSEI's "None"); a sample counts once per label it carries."""
    n = max(inf.n_labeled, 1)
    t = Table(
        title="labeled samples carrying each class x fold (multi-label)",
        caption=f"{inf.labels_per_sample:.2f} labels per labeled sample on average; "
        f"{100 * inf.none_by_fold.sum() / n:.1f} % carry none",
    )
    t.add_column("class")
    for f in range(inf.folds):
        t.add_column(f"fold {f}", justify="right")
    t.add_column("samples", justify="right", style="bold")
    t.add_column("share", justify="right")
    for c, row in zip(inf.classes, inf.label_by_fold):
        t.add_row(c, *map(str, row), str(row.sum()), f"{100 * row.sum() / n:.1f} %")
    none = inf.none_by_fold
    t.add_row("[italic](no label)", *map(str, none), str(none.sum()), f"{100 * none.sum() / n:.1f} %")
    return t


@app.command("synth-regression")
def synth_regression(
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset directory to (re)create.")],
    labeled: Annotated[int, typer.Option(help="Labeled samples (CMU-MOSI: 2199).")] = 2199,
    unlabeled: Annotated[int, typer.Option(help="Unlabeled pool size (no targets stored).")] = 2000,
    dims: Annotated[str, typer.Option(help="Modalities and dims, NAME=DIM,...")] = "audio=256,visual=192,text=256",
    seed: Annotated[int | None, typer.Option(help="Seed (default: RAMER_SEED or 0).")] = None,
    folds: Annotated[int, typer.Option(help="Folds, stratified on the rounded target.")] = 5,
    name: Annotated[str | None, typer.Option(help="Dataset name (default: the directory name).")] = None,
) -> None:
    """Generate a synthetic CMU-MOSI-like regression dataset (sentiment targets in [-3, 3])."""
    from pipeline.data.synth_regression import RegressionSynthConfig, write_regression

    check_target(out, name)
    cfg = RegressionSynthConfig(
        labeled=labeled, unlabeled=unlabeled, dims=parse_dims(dims), folds=folds,
        seed=load_settings(seed=seed).seed,
    )
    t0 = time.perf_counter()
    with console.status(f"generating and writing {out} (seed {cfg.seed})"):
        ds = write_regression(out, cfg, name)
    summary(ds, time.perf_counter() - t0)


@app.command("synth-multilabel")
def synth_multilabel(
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset directory to (re)create.")],
    labeled: Annotated[int, typer.Option(help="Labeled clips (CMU-MOSEI label statistics).")] = 3000,
    unlabeled: Annotated[int, typer.Option(help="Unlabeled pool size (label sets only in the oracle file).")] = 3000,
    dims: Annotated[str, typer.Option(help="Modalities and dims, NAME=DIM,...")] = "audio=74,visual=35,text=300",
    seed: Annotated[int | None, typer.Option(help="Seed (default: RAMER_SEED or 0).")] = None,
    folds: Annotated[int, typer.Option(help="Folds, stratified on the first label.")] = 5,
    name: Annotated[str | None, typer.Option(help="Dataset name (default: the directory name).")] = None,
) -> None:
    """Generate a synthetic CMU-MOSEI-like multi-label dataset (6 emotions, ~1.6 labels per clip)."""
    from pipeline.data.synth_multilabel import MultiLabelSynthConfig, write_multilabel

    check_target(out, name)
    cfg = MultiLabelSynthConfig(labeled=labeled, unlabeled=unlabeled, dims=parse_dims(dims), folds=folds,
                                seed=load_settings(seed=seed).seed)
    t0 = time.perf_counter()
    with console.status(f"generating and writing {out} (seed {cfg.seed})"):
        ds = write_multilabel(out, cfg, name)
    summary(ds, time.perf_counter() - t0)
