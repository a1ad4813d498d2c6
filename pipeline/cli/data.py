"""`ramer data ...`: make, import, check and describe dataset directories."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline.config import load_settings
from pipeline.data.dataset import Dataset, load_dataset
from pipeline.data.info import dataset_info, human_bytes

app = typer.Typer(help="Datasets: synthesize, import, validate, describe.", no_args_is_help=True)
import_app = typer.Typer(
    help="Import external features as a dataset directory.", no_args_is_help=True
)
app.add_typer(import_app, name="import")
console = Console()


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


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


def _split_list(text: str | None) -> list[str] | None:
    return None if text is None else [p.strip() for p in text.split(",") if p.strip()]


def _summary(ds: Dataset, seconds: float | None = None) -> None:
    info = dataset_info(ds)
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    dims = ", ".join(f"{m}={d}" for m, d in info.dims.items())
    console.print(
        f"[green]{info.name}[/]: {info.n} samples ({info.n_labeled} labeled, {info.n_unlabeled} "
        f"unlabeled), {len(info.classes)} classes, {info.folds} folds, dims {dims}; "
        f"{human_bytes(info.total_bytes)} at {info.root}{took}",
        highlight=False,
    )


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
    from pipeline.data.dataset import write_dataset
    from pipeline.data.synth import ORACLE, SynthConfig, make_synthetic

    cfg = SynthConfig(
        labeled=labeled,
        unlabeled=unlabeled,
        dims=parse_dims(dims),
        folds=folds,
        seed=load_settings(seed=seed).seed,
        missing_rate=missing_rate,
    )
    t0 = time.perf_counter()
    with _progress() as bar:
        task = bar.add_task(f"generating (seed {cfg.seed})", total=labeled + unlabeled)
        manifest, table, oracle = make_synthetic(
            cfg, name or out.name, progress=lambda k: bar.advance(task, k)
        )
    with console.status(f"validating and writing {out}"):
        ds = write_dataset(out, manifest, table, extra_files={ORACLE: oracle})
    _summary(ds, time.perf_counter() - t0)
    console.print(
        f"oracle labels of the unlabeled pool (diagnostics only): {out / ORACLE}", highlight=False
    )


@import_app.command("parquet")
def import_parquet_cmd(
    file: Annotated[
        Path,
        typer.Argument(help="Parquet with sample, label, and one list<float> column per modality."),
    ],
    name: Annotated[str, typer.Option(help="Dataset name.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Dataset directory (default <data_dir>/<name>)."),
    ] = None,
    folds: Annotated[int, typer.Option(help="Stratified folds over the labeled rows.")] = 5,
    seed: Annotated[int | None, typer.Option(help="Fold seed (default: RAMER_SEED or 0).")] = None,
    classes: Annotated[
        str | None, typer.Option(help="Class names in index order, a,b,c (default: from the file).")
    ] = None,
    modalities: Annotated[
        str | None,
        typer.Option(help="Expected modality columns in order (default: every list column)."),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Data directory.", envvar="RAMER_DATA_DIR")
    ] = None,
) -> None:
    """Import bring-your-own features; assigns stratified folds and writes the directory atomically."""
    from pipeline.data.importers import import_parquet

    settings = load_settings(data_dir=data_dir, seed=seed)
    target = out if out is not None else settings.data_dir / name
    t0 = time.perf_counter()
    with _progress() as bar:
        task = bar.add_task(f"reading {file.name}", total=None)
        ds = import_parquet(
            file,
            name,
            target,
            folds=folds,
            seed=settings.seed,
            classes=_split_list(classes),
            modalities=_split_list(modalities),
            progress=lambda k: bar.advance(task, k),
        )
    _summary(ds, time.perf_counter() - t0)


@app.command()
def validate(
    directory: Annotated[Path, typer.Argument(help="Dataset directory.")],
) -> None:
    """Check a dataset directory against the data contract; exit 1 on the first broken rule."""
    ds = load_dataset(directory, validate=True)
    console.print("[bold green]OK[/]", end=" ")
    _summary(ds)


@app.command()
def info(
    directory: Annotated[Path, typer.Argument(help="Dataset directory.")],
) -> None:
    """Counts per class x fold, split sizes, dims, modality presence and file sizes."""
    ds = load_dataset(directory, validate=True)
    inf = dataset_info(ds)
    console.print(
        f"[bold]{inf.name}[/] ({inf.task}) at {inf.root}: {inf.n} samples, {inf.n_labeled} labeled, "
        f"{inf.n_unlabeled} unlabeled" + (f", {inf.speakers} speakers" if inf.speakers else ""),
        highlight=False,
    )
    if len(inf.class_by_fold):
        t = Table(title="labeled samples per class x fold")
        t.add_column("class")
        for f in range(inf.folds):
            t.add_column(f"fold {f}", justify="right")
        t.add_column("total", justify="right", style="bold")
        for c, row in zip(inf.classes, inf.class_by_fold):
            t.add_row(c, *map(str, row), str(row.sum()))
        col = inf.class_by_fold.sum(0)
        t.add_row("[bold]total", *map(str, col), str(col.sum()))
        console.print(t)
    t = Table(title="splits of fold 0, run 0 (test = fold 0, val = 1/8 of the rest)")
    for s in inf.split_sizes:
        t.add_column(s, justify="right")
    t.add_row(*map(str, inf.split_sizes.values()))
    console.print(t)
    t = Table(title="modalities")
    for c in ("modality", "dim", "present", "labeled", "unlabeled"):
        t.add_column(c, justify="left" if c == "modality" else "right")
    for m, d in inf.dims.items():
        p = inf.presence[m]
        t.add_row(
            m,
            str(d),
            *(
                f"{100 * p[k]:.1f} %" if p[k] == p[k] else "-"
                for k in ("all", "labeled", "unlabeled")
            ),
        )
    console.print(t)
    t = Table(title=f"files ({human_bytes(inf.total_bytes)})")
    t.add_column("file")
    t.add_column("size", justify="right")
    for f, b in inf.files.items():
        t.add_row(f, human_bytes(b))
    console.print(t)
