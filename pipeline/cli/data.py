"""`ramer data ...`: make, import, check and describe dataset directories."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline.config import check_name, load_settings
from pipeline.data.bounds import check_folds
from pipeline.data.dataset import Dataset, check_output_dir, load_dataset
from pipeline.data.info import DatasetInfo, dataset_info, human_bytes

app = typer.Typer(help="Datasets: synthesize, import, validate, describe.", no_args_is_help=True)
import_app = typer.Typer(
    help="Import external features as a dataset directory.", no_args_is_help=True
)
app.add_typer(import_app, name="import")
console = Console()


def _progress() -> Progress:
    """A transient bar on a terminal; elsewhere (CI, a log file) it draws nothing, so
    `_reading` says what is being read instead."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def _reading(label: str) -> None:
    if not console.is_terminal:
        console.print(f"reading {label} ...", highlight=False, markup=False)


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


def _check_target(out: Path, name: str | None) -> None:
    """--name and the output directory, before any work (one line, nothing written)."""
    if name is not None:
        check_name("--name", name)
    check_output_dir(out)


_GROUP_BY = Annotated[str | None, typer.Option(
    "--group-by", help="Column whose groups (speakers) never straddle folds: group-stratified folds. "
    "Default: speaker when the source has it; 'none' turns it off.")]
_DUP_THRESHOLD = Annotated[float, typer.Option(
    "--duplicate-threshold", help="Rows count as duplicates at cosine >= this on every shared modality "
    "(after per-column standardisation); 1 = identical up to float32 rounding (1e-5).")]
_DROP_DUP = Annotated[bool, typer.Option(
    "--drop-duplicates", help="Drop pool rows that duplicate a labeled row and keep duplicate labeled rows "
    "in one fold (default: only count them).")]


def _fold_options(group_by: str | None, threshold: float, drop: bool):
    """The importers' grouping and duplicate options, checked before any reading."""
    from pipeline.data.importers.folds import FoldOptions

    if not 0.0 < threshold <= 1.0:
        raise typer.BadParameter(f"{threshold}: must be in (0, 1]", param_hint="--duplicate-threshold")
    return FoldOptions(group_by=group_by, duplicate_threshold=threshold, drop_duplicates=drop)


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
    return lines


def _summary(ds: Dataset, seconds: float | None = None) -> None:
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
        console.print(line, highlight=False, markup=False)


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
    from pipeline.data.synth import ORACLE, SynthConfig, check_config, make_synthetic

    _check_target(out, name)
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
    group_by: _GROUP_BY = None, duplicate_threshold: _DUP_THRESHOLD = 0.999, drop_duplicates: _DROP_DUP = False,
) -> None:
    """Import bring-your-own features; assigns stratified folds (grouped by speaker where the file
    has one), counts duplicate rows and writes the directory atomically."""
    from pipeline.data.importers import import_parquet

    settings = load_settings(data_dir=data_dir, seed=seed)
    target = out if out is not None else settings.data_dir / name
    _check_target(target, name)
    check_folds(file, folds)
    options = _fold_options(group_by, duplicate_threshold, drop_duplicates)
    _reading(str(file))
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
            fold_options=options,
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
    for line in fold_lines(ds):
        console.print(line, highlight=False, markup=False)
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
    if len(inf.label_by_fold):
        console.print(_label_set_table(inf))
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

    _check_target(out, name)
    cfg = RegressionSynthConfig(
        labeled=labeled, unlabeled=unlabeled, dims=parse_dims(dims), folds=folds,
        seed=load_settings(seed=seed).seed,
    )
    t0 = time.perf_counter()
    with console.status(f"generating and writing {out} (seed {cfg.seed})"):
        ds = write_regression(out, cfg, name)
    _summary(ds, time.perf_counter() - t0)


# ---------------------------------------------------------------- multi-label + real datasets (issue 7)

_OUT = Annotated[Path | None, typer.Option("--out", "-o", help="Dataset directory (default <data_dir>/<name>).")]
_DATA_DIR = Annotated[Path | None, typer.Option(help="Data directory.", envvar="RAMER_DATA_DIR")]
_FOLDS = Annotated[int, typer.Option(help="Folds (without --official-split).")]
_FOLD_SEED = Annotated[int | None, typer.Option(help="Fold seed.")]
_OFFICIAL = Annotated[bool, typer.Option(help="Keep the source's train/valid/test as folds 0/1/2 (then run --folds 2).")]
_KEEP_SEQ = Annotated[bool, typer.Option(
    help="Also keep the frame sequences in sequences/ (float32, 4 x N x sum(T*D) bytes) for sequence models "
    "(CARAT); the pooled vectors are written as always.")]


def _run_import(label: str, name: str, out: Path | None, data_dir: Path | None, seed: int | None, fn,
                folds: int | None = None) -> None:
    """Resolve the target directory, run `fn(target, seed, progress)` under a rich bar, summarise.
    `folds` (when the importer assigns them) is checked before any reading."""
    settings = load_settings(data_dir=data_dir, seed=seed)
    target = out if out is not None else settings.data_dir / name
    _check_target(target, name)
    if folds is not None:
        check_folds(label, folds)
    _reading(label)
    t0 = time.perf_counter()
    with _progress() as bar:
        task = bar.add_task(f"reading {label}", total=None)
        ds = fn(target, settings.seed, lambda k: bar.advance(task, k))
    _summary(ds, time.perf_counter() - t0)


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

    _check_target(out, name)
    cfg = MultiLabelSynthConfig(labeled=labeled, unlabeled=unlabeled, dims=parse_dims(dims), folds=folds,
                                seed=load_settings(seed=seed).seed)
    t0 = time.perf_counter()
    with console.status(f"generating and writing {out} (seed {cfg.seed})"):
        ds = write_multilabel(out, cfg, name)
    _summary(ds, time.perf_counter() - t0)


@import_app.command("mer2024")
def import_mer2024_cmd(
    root: Annotated[Path, typer.Argument(help="MER2024 folder with label-6way.npz (and features/).")],
    name: Annotated[str, typer.Option(help="Dataset name.")],
    audio: Annotated[str | None, typer.Option(help="Audio extractor folder stem, e.g. chinese-hubert-large.")] = None,
    visual: Annotated[str | None, typer.Option(help="Visual extractor, e.g. clip-vit-large-patch14.")] = None,
    text: Annotated[str | None, typer.Option(help="Text extractor, e.g. Baichuan-13B-Base.")] = None,
    features: Annotated[Path | None, typer.Option(help="Folder holding {extractor}-UTT/ (default ROOT/features or ROOT).")] = None,
    labels: Annotated[Path | None, typer.Option(help="Label file (default ROOT/label-6way.npz).")] = None,
    labeled_corpora: Annotated[str, typer.Option(help="Corpora whose labels are kept; the rest is the unlabeled pool.")] = "train_corpus",
    unlisted: Annotated[bool, typer.Option(help="Add feature files listed in no corpus to the unlabeled pool.")] = False,
    allow_missing: Annotated[bool, typer.Option(help="Import missing feature files as absent modalities.")] = False,
    out: _OUT = None, folds: Annotated[int, typer.Option(help="Stratified folds.")] = 5,
    seed: _FOLD_SEED = None, data_dir: _DATA_DIR = None,
    group_by: _GROUP_BY = None, duplicate_threshold: _DUP_THRESHOLD = 0.999, drop_duplicates: _DROP_DUP = False,
) -> None:
    """MERTools' MER2024 layout: label-6way.npz + {extractor}-UTT/{name}.npy per modality
    (duplicates between the labeled corpora and the pool, --unlisted included, are counted)."""
    from pipeline.data.importers import import_mer2024

    ext = {m: e for m, e in (("audio", audio), ("visual", visual), ("text", text)) if e}
    options = _fold_options(group_by, duplicate_threshold, drop_duplicates)
    _run_import(root.name, name, out, data_dir, seed, lambda t, s, p: import_mer2024(
        root, name, t, ext, labels=labels, features=features, labeled_corpora=tuple(_split_list(labeled_corpora) or ()),
        unlisted=unlisted, allow_missing=allow_missing, folds=folds, seed=s, progress=p, fold_options=options),
        folds=folds)


@import_app.command("mmsa")
def import_mmsa_cmd(
    file: Annotated[Path, typer.Argument(help="MMSA pickle (CMU-MOSI / CMU-MOSEI / CH-SIMS).")],
    name: Annotated[str, typer.Option(help="Dataset name.")],
    task: Annotated[str, typer.Option(help="regression (sentiment score) or single_label (classification labels).")] = "regression",
    classes: Annotated[str | None, typer.Option(help="Class names for single_label, a,b,c.")] = None,
    official_split: _OFFICIAL = False, out: _OUT = None,
    folds: Annotated[int, typer.Option(help="Stratified folds (without --official-split).")] = 5,
    seed: _FOLD_SEED = None, data_dir: _DATA_DIR = None,
    keep_sequences: _KEEP_SEQ = False,
    group_by: _GROUP_BY = None, duplicate_threshold: _DUP_THRESHOLD = 0.999, drop_duplicates: _DROP_DUP = False,
) -> None:
    """MMSA pickles: sequences mean-pooled over valid frames (and kept with --keep-sequences)."""
    from pipeline.data.importers import import_mmsa

    options = _fold_options(group_by, duplicate_threshold, drop_duplicates)
    _run_import(file.name, name, out, data_dir, seed, lambda t, s, p: import_mmsa(
        file, name, t, task=task, official_split=official_split, classes=_split_list(classes), folds=folds, seed=s,
        progress=p, keep_sequences=keep_sequences, fold_options=options), folds=None if official_split else folds)


@import_app.command("carat-mosei")
def import_carat_mosei_cmd(
    file: Annotated[Path, typer.Argument(help="CARAT's aligned CMU-MOSEI train_valid_test.pt.")],
    name: Annotated[str, typer.Option(help="Dataset name.")],
    official_split: _OFFICIAL = False, out: _OUT = None,
    folds: _FOLDS = 5,
    seed: _FOLD_SEED = None, data_dir: _DATA_DIR = None,
    keep_sequences: _KEEP_SEQ = False,
    duplicate_threshold: _DUP_THRESHOLD = 0.999, drop_duplicates: _DROP_DUP = False,
) -> None:
    """Multi-label CMU-MOSEI (6 emotions) from CARAT's torch file."""
    from pipeline.data.importers import import_carat_mosei

    options = _fold_options(None, duplicate_threshold, drop_duplicates)
    _run_import(file.name, name, out, data_dir, seed, lambda t, s, p: import_carat_mosei(
        file, name, t, official_split=official_split, folds=folds, seed=s, progress=p, keep_sequences=keep_sequences,
        fold_options=options), folds=None if official_split else folds)


@import_app.command("iemocap-mmin")
def import_iemocap_cmd(
    root: Annotated[Path, typer.Argument(help="Folder with A/, V/, L/ feature h5 files and target/{cv}/.")],
    name: Annotated[str, typer.Option(help="Dataset name.")],
    audio: Annotated[str, typer.Option(help="A/<name>.h5")] = "comparE",
    visual: Annotated[str, typer.Option(help="V/<name>.h5")] = "denseface",
    text: Annotated[str, typer.Option(help="L/<name>.h5")] = "bert_large",
    classes: Annotated[str | None, typer.Option(help="Class names in label index order (default angry,happy,neutral,sad).")] = None,
    out: _OUT = None, seed: Annotated[int | None, typer.Option(help="Recorded seed.")] = None, data_dir: _DATA_DIR = None,
    duplicate_threshold: _DUP_THRESHOLD = 0.999, drop_duplicates: _DROP_DUP = False,
) -> None:
    """IEMOCAP in MMIN's layout, 4 classes; MMIN's cross-validation folds kept."""
    from pipeline.data.importers import import_iemocap_mmin

    options = _fold_options(None, duplicate_threshold, drop_duplicates)
    _run_import(root.name, name, out, data_dir, seed, lambda t, s, p: import_iemocap_mmin(
        root, name, t, audio=audio, visual=visual, text=text, classes=_split_list(classes), progress=p, seed=s,
        fold_options=options))


@import_app.command("m3ed")
def import_m3ed_cmd(
    file: Annotated[Path, typer.Argument(help="CARAT's M3ED feature pickle, or the m3ed_data_60.pt it writes.")],
    name: Annotated[str, typer.Option(help="Dataset name.")],
    official_split: _OFFICIAL = False, out: _OUT = None,
    folds: _FOLDS = 5,
    seed: _FOLD_SEED = None, data_dir: _DATA_DIR = None,
    keep_sequences: _KEEP_SEQ = False,
    duplicate_threshold: _DUP_THRESHOLD = 0.999, drop_duplicates: _DROP_DUP = False,
) -> None:
    """M3ED, dialogue-level multi-label (7 emotions)."""
    from pipeline.data.importers import import_m3ed

    options = _fold_options(None, duplicate_threshold, drop_duplicates)
    _run_import(file.name, name, out, data_dir, seed, lambda t, s, p: import_m3ed(
        file, name, t, official_split=official_split, folds=folds, seed=s, progress=p,
        keep_sequences=keep_sequences, fold_options=options), folds=None if official_split else folds)
