"""`ramer data import ...`: external features (bring-your-own parquet, MER2024, MMSA,
CARAT's CMU-MOSEI, IEMOCAP in MMIN's layout, M3ED) as dataset directories."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.data_common import check_target, progress_bar, reading, split_list, summary
from pipeline.config import load_settings
from pipeline.data.bounds import check_folds

import_app = typer.Typer(
    help="Import external features as a dataset directory.", no_args_is_help=True
)


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
    check_target(target, name)
    if folds is not None:
        check_folds(label, folds)
    reading(label)
    t0 = time.perf_counter()
    with progress_bar() as bar:
        task = bar.add_task(f"reading {label}", total=None)
        ds = fn(target, settings.seed, lambda k: bar.advance(task, k))
    summary(ds, time.perf_counter() - t0)


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
    check_target(target, name)
    check_folds(file, folds)
    options = _fold_options(group_by, duplicate_threshold, drop_duplicates)
    reading(str(file))
    t0 = time.perf_counter()
    with progress_bar() as bar:
        task = bar.add_task(f"reading {file.name}", total=None)
        ds = import_parquet(
            file,
            name,
            target,
            folds=folds,
            seed=settings.seed,
            classes=split_list(classes),
            modalities=split_list(modalities),
            progress=lambda k: bar.advance(task, k),
            fold_options=options,
        )
    summary(ds, time.perf_counter() - t0)


@import_app.command("mer2024")
def import_mer2024_cmd(
    root: Annotated[Path, typer.Argument(help="MER2024 folder with label-6way.npz (and features/).")],
    name: Annotated[str, typer.Option(help="Dataset name.")],
    audio: Annotated[str | None, typer.Option(help="Audio extractor: the stem of its {stem}-UTT or {stem}_UTT "
                                              "folder (e.g. chinese-hubert-large, eGeMAPS), or the folder name.")] = None,
    visual: Annotated[str | None, typer.Option(help="Visual extractor, e.g. clip-vit-large-patch14 or manet_UTT.")] = None,
    text: Annotated[str | None, typer.Option(help="Text extractor, e.g. Baichuan-13B-Base.")] = None,
    features: Annotated[Path | None, typer.Option(help="Folder holding the extractor folders (default ROOT/features or ROOT).")] = None,
    labels: Annotated[Path | None, typer.Option(help="Label file (default ROOT/label-6way.npz).")] = None,
    labeled_corpora: Annotated[str, typer.Option(help=(
        "Corpora whose labels are kept; the rest is the unlabeled pool. A corpus whose entries all carry one "
        "label is refused: MERTools writes 'neutral' as a placeholder for every test1_corpus entry, so leave "
        "test corpora out of this list (they are imported as unlabeled)."))] = "train_corpus",
    unlisted: Annotated[bool, typer.Option(help="Add feature files listed in no corpus to the unlabeled pool.")] = False,
    allow_missing: Annotated[bool, typer.Option(help="Import missing feature files as absent modalities.")] = False,
    out: _OUT = None, folds: Annotated[int, typer.Option(help="Stratified folds.")] = 5,
    seed: _FOLD_SEED = None, data_dir: _DATA_DIR = None,
    group_by: _GROUP_BY = None, duplicate_threshold: _DUP_THRESHOLD = 0.999, drop_duplicates: _DROP_DUP = False,
) -> None:
    """MERTools' MER2024 layout: label-6way.npz + {extractor}-UTT/ (or _UTT/) {name}.npy per modality
    (duplicates between the labeled corpora and the pool, --unlisted included, are counted). A labeled
    corpus whose labels are all one placeholder value (test1_corpus: 'neutral') is refused."""
    from pipeline.data.importers import import_mer2024

    ext = {m: e for m, e in (("audio", audio), ("visual", visual), ("text", text)) if e}
    options = _fold_options(group_by, duplicate_threshold, drop_duplicates)
    _run_import(root.name, name, out, data_dir, seed, lambda t, s, p: import_mer2024(
        root, name, t, ext, labels=labels, features=features, labeled_corpora=tuple(split_list(labeled_corpora) or ()),
        unlisted=unlisted, allow_missing=allow_missing, folds=folds, seed=s, progress=p, fold_options=options),
        folds=folds)


@import_app.command("mmsa")
def import_mmsa_cmd(
    file: Annotated[Path, typer.Argument(help="MMSA pickle (CMU-MOSI / CMU-MOSEI / CH-SIMS) or MMSA-FET output (feature.pkl).")],
    name: Annotated[str, typer.Option(help="Dataset name.")],
    task: Annotated[str, typer.Option(help="regression (sentiment score) or single_label (classification_labels; "
                                      "without them, MMSA's rule on the score: < 0 negative, 0 neutral, > 0 positive).")] = "regression",
    classes: Annotated[str | None, typer.Option(help="Class names for single_label, a,b,c.")] = None,
    padding_location: Annotated[str, typer.Option(
        help="Where the zero padding of audio/vision sits, as MMSA-FET's padding_location: end, start, or auto "
        "(read from the zeros in the file; end when they do not tell).")] = "auto",
    official_split: _OFFICIAL = False, out: _OUT = None,
    folds: Annotated[int, typer.Option(help="Stratified folds (without --official-split).")] = 5,
    seed: _FOLD_SEED = None, data_dir: _DATA_DIR = None,
    keep_sequences: _KEEP_SEQ = False,
    group_by: _GROUP_BY = None, duplicate_threshold: _DUP_THRESHOLD = 0.999, drop_duplicates: _DROP_DUP = False,
) -> None:
    """MMSA pickles and MMSA-FET's output (default / aligned / pt, padding at the end or the start):
    sequences mean-pooled over valid frames (and kept with --keep-sequences)."""
    from pipeline.data.importers import import_mmsa

    options = _fold_options(group_by, duplicate_threshold, drop_duplicates)
    _run_import(file.name, name, out, data_dir, seed, lambda t, s, p: import_mmsa(
        file, name, t, task=task, official_split=official_split, classes=split_list(classes), folds=folds, seed=s,
        progress=p, keep_sequences=keep_sequences, fold_options=options, padding=padding_location),
        folds=None if official_split else folds)


@import_app.command("carat-mosei")
def import_carat_mosei_cmd(
    file: Annotated[Path, typer.Argument(help="CARAT's CMU-MOSEI train_valid_test.pt (its 'tgt' labels; "
                                         "its aligned frames unless --unaligned).")],
    name: Annotated[str, typer.Option(help="Dataset name.")],
    unaligned: Annotated[Path | None, typer.Option(
        help="MulT's mosei_senti_data_noalign.pkl: take the frames from it (CARAT's unaligned MOSEI), "
        "the labels from FILE.")] = None,
    official_split: _OFFICIAL = False, out: _OUT = None,
    folds: _FOLDS = 5,
    seed: _FOLD_SEED = None, data_dir: _DATA_DIR = None,
    keep_sequences: _KEEP_SEQ = False,
    duplicate_threshold: _DUP_THRESHOLD = 0.999, drop_duplicates: _DROP_DUP = False,
) -> None:
    """Multi-label CMU-MOSEI (6 emotions) from CARAT's torch file (aligned) or with MulT's
    unaligned pickle (--unaligned)."""
    from pipeline.data.importers import import_carat_mosei

    options = _fold_options(None, duplicate_threshold, drop_duplicates)
    _run_import(file.name, name, out, data_dir, seed, lambda t, s, p: import_carat_mosei(
        file, name, t, official_split=official_split, folds=folds, seed=s, progress=p, keep_sequences=keep_sequences,
        fold_options=options, unaligned=unaligned), folds=None if official_split else folds)


@import_app.command("iemocap-mmin")
def import_iemocap_cmd(
    root: Annotated[Path, typer.Argument(help="Folder with A/, V/, L/ feature h5 files and target/{cv}/.")],
    name: Annotated[str, typer.Option(help="Dataset name.")],
    audio: Annotated[str, typer.Option(help="A/<name>.h5")] = "comparE",
    visual: Annotated[str, typer.Option(help="V/<name>.h5")] = "denseface",
    text: Annotated[str, typer.Option(help="L/<name>.h5")] = "bert_large",
    classes: Annotated[str | None, typer.Option(help="Class names in label index order (default angry,happy,neutral,sad).")] = None,
    allow_missing: Annotated[bool, typer.Option(help="An utterance missing from a feature file is absent for that "
                                                "modality (default: refused).")] = False,
    targets: Annotated[Path | None, typer.Option(help="Folder of the cv folders 1, 2, ... (MMIN's target_root; "
                                                 "default ROOT/target).")] = None,
    out: _OUT = None, seed: Annotated[int | None, typer.Option(help="Recorded seed.")] = None, data_dir: _DATA_DIR = None,
    duplicate_threshold: _DUP_THRESHOLD = 0.999, drop_duplicates: _DROP_DUP = False,
) -> None:
    """IEMOCAP in MMIN's layout, 4 classes; MMIN's cross-validation folds kept. Each h5 holds a dataset
    per utterance (zero-padded V/L: all-zero frames are left out of the mean, an utterance without
    another frame is absent) or make_aligned.py's raw group {feat, start, end}."""
    from pipeline.data.importers import import_iemocap_mmin

    options = _fold_options(None, duplicate_threshold, drop_duplicates)
    _run_import(root.name, name, out, data_dir, seed, lambda t, s, p: import_iemocap_mmin(
        root, name, t, audio=audio, visual=visual, text=text, classes=split_list(classes), progress=p, seed=s,
        fold_options=options, allow_missing=allow_missing, targets=targets))


@import_app.command("m3ed")
def import_m3ed_cmd(
    file: Annotated[Path, typer.Argument(help="M3ED's feature pickle (MEmoConv prepare_fts.py: A..-V..-L...pkl), "
                                         "or the m3ed_data_60.pt CARAT's reader writes from it.")],
    name: Annotated[str, typer.Option(help="Dataset name.")],
    official_split: _OFFICIAL = False, out: _OUT = None,
    folds: _FOLDS = 5,
    seed: _FOLD_SEED = None, data_dir: _DATA_DIR = None,
    keep_sequences: _KEEP_SEQ = False,
    duplicate_threshold: _DUP_THRESHOLD = 0.999, drop_duplicates: _DROP_DUP = False,
) -> None:
    """M3ED, dialogue-level multi-label (7 emotions); audio = speech (pickle item [4], the .pt's
    src-visual), visual = faces (item [5], the .pt's src-audio)."""
    from pipeline.data.importers import import_m3ed

    options = _fold_options(None, duplicate_threshold, drop_duplicates)
    _run_import(file.name, name, out, data_dir, seed, lambda t, s, p: import_m3ed(
        file, name, t, official_split=official_split, folds=folds, seed=s, progress=p,
        keep_sequences=keep_sequences, fold_options=options), folds=None if official_split else folds)
