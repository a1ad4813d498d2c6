"""`ramer collections explore`: one collection as a self-contained interactive HTML page.

Kept apart from `collections.py` so the page's options grow here; it registers on the
`collections` group (see `pipeline.cli._register`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.collections import CollectionArg, EngineOpt, PathOpt, UrlOpt, _console, _open
from pipeline.config import check_output_file
from pipeline.errors import RamerError
from pipeline.evaluation.explore import COLOR_FIELDS, DEFAULT_MAX_POINTS, PROJECTIONS, write_view
from pipeline.store.ingest import SCALES


def explore_cmd(
    collection: CollectionArg,
    modality: Annotated[list[str] | None, typer.Option(
        "--modality", "-m", help="Modality map(s) to draw; repeat the flag. Default: every vector of the collection.")] = None,
    color: Annotated[str, typer.Option(
        "--color", help=f"Payload field the points are coloured by: {', '.join(COLOR_FIELDS)}.")] = "label_name",
    max_points: Annotated[int, typer.Option(
        "--max-points", help="Samples drawn at most; larger collections are sampled, stratified by split "
        "and label (the page says so). Neighbours are always searched among all candidates.")] = DEFAULT_MAX_POINTS,
    projection: Annotated[str, typer.Option(
        "--projection", help=f"2-D map ({', '.join(PROJECTIONS)}): pca (seconds), tsne (scikit-learn, "
        "~1 min per modality at 4,200 points on 2 cores) or umap (pip install 'ramer\\[umap]').")] = "pca",
    k: Annotated[int, typer.Option("-k", "--k", help="Neighbours listed per point (RAMER's K, paper: 10).")] = 10,
    scale: Annotated[str | None, typer.Option(
        help=f"Candidates of one DB scale only ({', '.join(SCALES)}), as the experiment used; default: any.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sample and the projection.")] = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path("view.html"),
    qdrant_url: UrlOpt = None, store: PathOpt = None, engine: EngineOpt = None,
) -> None:
    """Write an interactive HTML view of a collection: per modality a 2-D map of the stored
    hidden vectors, hover for sample / split / label / fold, click for the point's top-K
    neighbours under the leakage filter (the same FAISS search RAMER trains with).

    The file is self-contained (plotly's JavaScript embedded): it opens offline and can be
    mailed or attached to a report. Works the same on the embedded store and on a Qdrant
    server (QDRANT_URL). Open it with #sample=NAME appended to the URL to start with NAME
    selected.
    """
    if scale is not None and scale not in SCALES:
        raise RamerError(f"--scale '{scale}': choose one of {', '.join(SCALES)}")
    check_output_file("--out", out)
    t0 = time.perf_counter()
    with _open(qdrant_url, store, engine) as st:
        path, view = write_view(st, collection, out, modalities=modality, color=color,
                                max_points=max_points, projection=projection, k=k, scale=scale, seed=seed)
    shown = f"{view.sampled} of {view.points} samples (stratified)" if view.is_sample else f"all {view.points} samples"
    size = path.stat().st_size / 2**20
    _console().print(f"wrote {path} ({size:.1f} MB; {shown}, {', '.join(m.name for m in view.modalities)}; "
                     f"{time.perf_counter() - t0:.1f} s): open it in a browser, no server needed")


def register(app: typer.Typer) -> None:
    app.command("explore")(explore_cmd)
