"""`ramer collections ...`: the Qdrant hidden-feature collections.

Embedded store by default (qdrant-edge-py under <data_dir>/qdrant); set QDRANT_URL to run
every command against a Qdrant server instead, with no other change.
"""

from __future__ import annotations

import sys
import zlib
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from pipeline.config import Settings, check_name, load_settings
from pipeline.errors import RamerError
from pipeline.store.ingest import SCALES, collection_name, default_scale_tags, ingest_hidden
from pipeline.store.qdrant_store import ALLOWED_SPLITS, HiddenFeatureStore

app = typer.Typer(
    help="Qdrant collections of per-fold hidden features: create, inspect, fill, search, drop.\n\n"
    "Uses the embedded store under <data_dir>/qdrant unless QDRANT_URL points at a server.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

# Shared options: every command reaches the store the same way.
UrlOpt = Annotated[str | None, typer.Option(
    "--qdrant-url", envvar="QDRANT_URL", show_envvar=True,
    help="Qdrant server URL; unset = the embedded store.")]
PathOpt = Annotated[Path | None, typer.Option(
    "--store", envvar="RAMER_QDRANT_PATH", show_envvar=True,
    help="Embedded store folder (default <data_dir>/qdrant).")]
EngineOpt = Annotated[str | None, typer.Option(
    "--engine", envvar="RAMER_QDRANT_ENGINE", show_envvar=True,
    help="Embedded engine: 'edge' (qdrant-edge-py, fast, default) or 'local' (qdrant-client).")]
SpecOpt = Annotated[Path | None, typer.Option(
    "--spec", envvar="RAMER_COLLECTION_SPEC", show_envvar=True,
    help="Collection spec JSON (default: the packaged collections/hidden_features.json).")]
ExperimentOpt = Annotated[str, typer.Option(
    "--experiment", "-e", envvar="RAMER_EXPERIMENT",
    help="Experiment tag in the collection name {dataset}__{experiment}__f{fold}.")]
CollectionArg = Annotated[str, typer.Argument(help="Collection name, e.g. synth__raw__f0.")]
DatasetArg = Annotated[Path, typer.Argument(help="Dataset directory (manifest.json + features.parquet).")]


def _console() -> Console:
    return Console(highlight=False)


def _settings(url: str | None, store: Path | None, engine: str | None) -> Settings:
    return load_settings(qdrant_url=url, qdrant_path=store, qdrant_engine=engine)


def _open(url: str | None, store: Path | None, engine: str | None, spec: Path | None = None) -> HiddenFeatureStore:
    return HiddenFeatureStore.open(_settings(url, store, engine), spec=spec)


def _size(n: int | None) -> str:
    if n is None:
        return "n/a (server)"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


@app.command("apply")
def apply_cmd(
    dataset_dir: DatasetArg,
    experiment: ExperimentOpt = "raw",
    fold: Annotated[list[int] | None, typer.Option(
        "--fold", "-f", help="Fold(s) to create; repeat the flag. Default: every fold of the manifest.")] = None,
    dim: Annotated[int | None, typer.Option(min=1, help="Vector size (default: the spec's, 256).")] = None,
    distance: Annotated[str | None, typer.Option(
        help="Cosine (default), Euclid or Dot; Euclid is the paper's ablation.")] = None,
    spec: SpecOpt = None, qdrant_url: UrlOpt = None, store: PathOpt = None, engine: EngineOpt = None,
) -> None:
    """Create the dataset's per-fold collections from the spec (idempotent).

    One named vector per modality of the manifest; payload indexes are made before any data.
    """
    from pipeline.data.schema import MANIFEST, Manifest

    check_name("--experiment", experiment)
    manifest = Manifest.load(Path(dataset_dir) / MANIFEST)
    folds = fold if fold else list(range(manifest.folds))
    bad = [f for f in folds if not 0 <= f < manifest.folds]
    if bad:
        raise RamerError(f"--fold {bad[0]}: {manifest.name} has folds 0..{manifest.folds - 1}")
    out = _console()
    with _open(qdrant_url, store, engine, spec) as st:
        for f in folds:
            name = collection_name(manifest.name, experiment, f)
            created = st.apply(name, manifest.modality_names, dim=dim, distance=distance)
            out.print(f"{'created' if created else 'up to date'}: {name} "
                      f"({', '.join(manifest.modality_names)}) on {st.kind} {st.backend.location}")


@app.command("list")
def list_cmd(qdrant_url: UrlOpt = None, store: PathOpt = None, engine: EngineOpt = None) -> None:
    """List collections with their point counts."""
    with _open(qdrant_url, store, engine) as st:
        table = Table(title=f"collections on {st.kind} {st.backend.location}")
        table.add_column("collection")
        table.add_column("points", justify="right")
        for name in st.list_collections():
            table.add_row(name, str(st.count(name)))
        _console().print(table)


@app.command("info")
def info_cmd(collection: CollectionArg, qdrant_url: UrlOpt = None, store: PathOpt = None,
             engine: EngineOpt = None) -> None:
    """Points per split, vectors, payload indexes and on-disk size of one collection."""
    with _open(qdrant_url, store, engine) as st:
        info = st.info(collection)
        per_split = {s: st.count(collection, split=s) for s in ("train", "val", "test", "unlabeled")}
    table = Table(title=f"{collection} ({info.backend})", show_header=False)
    table.add_row("points", str(info.points))
    table.add_row("per split", ", ".join(f"{s} {n}" for s, n in per_split.items()))
    table.add_row("vectors", ", ".join(f"{m} {v.size}-d {v.distance}" for m, v in info.vectors.items()))
    indexes = ", ".join(f"{k}:{t}" for k, t in sorted(info.payload_schema.items()))
    table.add_row("payload indexes", indexes or "none (qdrant-client local mode ignores indexes)")
    table.add_row("on disk", _size(info.disk_bytes))
    _console().print(table)


@app.command("drop")
def drop_cmd(
    collection: CollectionArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    qdrant_url: UrlOpt = None, store: PathOpt = None, engine: EngineOpt = None,
) -> None:
    """Delete a collection and all its points."""
    if not yes:
        if not sys.stdin.isatty():
            raise RamerError(f"refusing to drop '{collection}' without --yes (no terminal to confirm on)")
        typer.confirm(f"Drop collection '{collection}' and all its points?", abort=True)
    with _open(qdrant_url, store, engine) as st:
        st.drop(collection)
    _console().print(f"dropped {collection}")


@app.command("search")
def search_cmd(
    collection: CollectionArg,
    sample: Annotated[str, typer.Option("--sample", "-s", help="Query sample (must be stored).")],
    modality: Annotated[str, typer.Option("--modality", "-m", help="Vector to search with (its own modality's DB).")],
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="Neighbours to show.")] = 10,
    scale: Annotated[str | None, typer.Option(
        help=f"Restrict candidates to a DB scale ({', '.join(SCALES)}); default: any.")] = None,
    qdrant_url: UrlOpt = None, store: PathOpt = None, engine: EngineOpt = None,
) -> None:
    """Exact nearest neighbours of a stored sample under the leakage filter.

    Candidates: train/unlabeled points of the fold only, never the query itself (by id).

    This is exactly the rule RAMER's retrieval uses.
    """
    if scale is not None and scale not in SCALES:
        raise RamerError(f"--scale '{scale}': choose one of {', '.join(SCALES)}")
    with _open(qdrant_url, store, engine) as st:
        _, _, payload = st.lookup(collection, sample, modality)
        hits = st.search_sample(collection, sample, modality, k=k, scale=scale)
    table = Table(title=f"{modality} neighbours of {sample} ({payload.get('label_name')}, "
                        f"{payload.get('split')}) in {collection}; candidates: {'/'.join(ALLOWED_SPLITS)}")
    for col in ("#", "sample", "label_name", "split", "score"):
        table.add_column(col, justify="right" if col in ("#", "score") else "left")
    for rank, h in enumerate(hits, 1):
        table.add_row(str(rank), h.sample, h.label_name, h.split, f"{h.score:.4f}")
    _console().print(table)


def random_projection(x: np.ndarray, modality: str, dim: int, seed: int) -> np.ndarray:
    """(N, D) -> (N, dim) by a fixed Gaussian matrix seeded by (seed, modality), a stand-in
    for the stage-1 encoders that keeps neighbourhoods roughly intact."""
    rng = np.random.default_rng([seed, zlib.crc32(modality.encode())])
    w = rng.standard_normal((x.shape[1], dim)).astype(np.float32) / np.float32(np.sqrt(dim))  # (D, dim)
    return np.asarray(x, np.float32) @ w  # (N, dim)


@app.command("ingest")
def ingest_cmd(
    dataset_dir: DatasetArg,
    experiment: ExperimentOpt = "raw",
    fold: Annotated[int, typer.Option("--fold", "-f", help="Fold whose split labels the points.")] = 0,
    run: Annotated[int, typer.Option(min=0, help="Run (seeds the validation split of the fold).")] = 0,
    scale: Annotated[str, typer.Option(
        help="Unlabeled rows to store: those of this DB scale (labeled rows are always stored).")] = "turbo",
    dim: Annotated[int, typer.Option(min=1, help="Projected vector size.")] = 256,
    seed: Annotated[int | None, typer.Option(envvar="RAMER_SEED", help="Projection seed (default: settings seed).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Points per upsert batch.")] = 512,
    spec: SpecOpt = None, qdrant_url: UrlOpt = None, store: PathOpt = None, engine: EngineOpt = None,
) -> None:
    """Ingest a fixed random projection of the raw features into the fold's collection.

    A stand-in for pretrained encoders, through the same path RAMER's stage 2 uses.

    Re-running updates the points, never duplicates them.
    """
    from pipeline.data.dataset import load_dataset
    from pipeline.data.splits import make_split

    if scale not in SCALES:
        raise RamerError(f"--scale '{scale}': choose one of {', '.join(SCALES)}")
    check_name("--experiment", experiment)
    settings = _settings(qdrant_url, store, engine)
    ds = load_dataset(dataset_dir)
    if ds.manifest.task != "single_label":
        raise RamerError(f"{dataset_dir}: ingest supports single_label datasets (task is {ds.manifest.task})")
    if not 0 <= fold < ds.manifest.folds:
        raise RamerError(f"--fold {fold}: {ds.manifest.name} has folds 0..{ds.manifest.folds - 1}")
    split = make_split(ds.y, ds.labeled, ds.folds, fold, run, ds.manifest.seed)
    tags = default_scale_tags(ds.samples, ds.labeled)
    rows = np.flatnonzero(ds.labeled | np.array([scale in t for t in tags]))  # (R,)
    proj_seed = settings.seed if seed is None else seed
    hidden = {m: random_projection(ds.features[m][rows], m, dim, proj_seed) for m in ds.modalities}
    name = collection_name(ds.manifest.name, experiment, fold)
    with HiddenFeatureStore.open(settings, spec=spec) as st:
        n = ingest_hidden(st, name, ds, split, hidden, rows, [tags[r] for r in rows], batch_size=batch_size)
        total = st.count(name)
    _console().print(f"ingested {n} points into {name} ({total} stored) on {st.kind} {st.backend.location}")


def _open_destination(url: str, api_key: str | None, spec: Path | None) -> HiddenFeatureStore:
    """The Qdrant server to migrate to (a function so tests can stand a local store in)."""
    settings = load_settings().model_copy(update={"qdrant_url": url, "qdrant_api_key": api_key})
    return HiddenFeatureStore.open(settings, spec=spec)


@app.command("migrate")
def migrate_cmd(
    to: Annotated[str, typer.Option("--to", help="Destination Qdrant server URL, e.g. http://localhost:6333.")],
    collection: Annotated[list[str] | None, typer.Option(
        "--collection", "-c", help="Collection(s) to copy; repeat the flag. Default: every collection.")] = None,
    api_key: Annotated[str | None, typer.Option(
        "--api-key", envvar="QDRANT_API_KEY", show_envvar=True, help="API key of the destination server.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Points per scroll/upsert batch.")] = 256,
    check: Annotated[int, typer.Option(min=0, help="Sampled points compared vector by vector per collection.")] = 32,
    shards: Annotated[int | None, typer.Option(
        min=1, help="shard_number of collections created on the server (default: the spec's).")] = None,
    replicas: Annotated[int | None, typer.Option(
        min=1, help="replication_factor of collections created on the server (default: the spec's).")] = None,
    spec: SpecOpt = None, store: PathOpt = None, engine: EngineOpt = None,
) -> None:
    """Copy the embedded store's collections to a Qdrant server, verified.

    Batched scroll/upsert under the same point ids (a re-run completes an interrupted copy,
    never duplicates); then point counts and sampled vectors are compared.

    The source is always the embedded store (--store/--engine), whatever QDRANT_URL says.
    """
    from pipeline.store.migrate import migrate_collections

    src_settings = load_settings(qdrant_path=store, qdrant_engine=engine).model_copy(update={"qdrant_url": None})
    out = _console()
    with HiddenFeatureStore.open(src_settings, spec=spec) as src, _open_destination(to, api_key, spec) as dst:
        if dst.kind != "server":
            out.print(f"note: destination is a {dst.kind} store ({dst.backend.location}), not a server")
        results = migrate_collections(src, dst, collection, batch_size=batch_size, check=check,
                                      shard_number=shards, replication_factor=replicas)
        where = f"{dst.kind} {dst.backend.location}"
    table = Table(title=f"migrated {src_settings.store_path} -> {where}")
    for col in ("collection", "points", "checked", "created"):
        table.add_column(col, justify="right" if col in ("points", "checked") else "left")
    for r in results:
        table.add_row(r.collection, str(r.points), str(r.checked), "yes" if r.created else "existed")
    out.print(table)
