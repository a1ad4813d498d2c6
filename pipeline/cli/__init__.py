"""The `ramer` command line: a thin layer over the library.

Each command group lives in its own module and registers on `app`; user-facing errors
(`RamerError`) become one red line and exit code 1, never a traceback.
"""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console

from pipeline.errors import RamerError

app = typer.Typer(
    name="ramer",
    help="Retrieval-augmented multimodal emotion recognition under missing and noisy modalities.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
err_console = Console(stderr=True)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
) -> None:
    """ramer: datasets -> Qdrant hidden-feature store -> RAMER & baselines -> reports."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its CPU-feature probing is noise


def _register() -> None:
    # Imported here so `import pipeline.cli` stays cheap and each group stays one file.
    from pipeline.cli import collections as collections_cli
    from pipeline.cli import data as data_cli
    from pipeline.cli import experiment as experiment_cli
    from pipeline.cli import explore as explore_cli

    app.add_typer(data_cli.app, name="data")
    explore_cli.register(collections_cli.app)  # issue 18: `ramer collections explore`
    app.add_typer(collections_cli.app, name="collections")
    experiment_cli.register(app)
    app.add_typer(__import__("pipeline.cli.bench", fromlist=["app"]).app, name="bench")  # issue 8


def main() -> None:
    _register()
    try:
        # standalone mode: click prints usage errors and exits 2 by itself
        app()
    except RamerError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
