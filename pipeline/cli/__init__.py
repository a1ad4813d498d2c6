"""The `ramer` command line: a thin layer over the library.

Each command group lives in its own module and registers on `app`; user-facing errors
(`RamerError`) become one red line and exit code 1, and a bad flag or value one red line
and exit code 2 (with the command's --help to look at), never a traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import typer
from rich.console import Console
from rich.markup import escape

from pipeline.errors import RamerError

try:  # typer >= 0.20 ships its own copy of click; older versions use click itself
    from typer._click.exceptions import ClickException, UsageError
    from typer._click.exceptions import NoArgsIsHelpError as _NoArgs
except ImportError:  # pragma: no cover - older typer
    from click.exceptions import ClickException, UsageError

    _NoArgs = getattr(__import__("click.exceptions", fromlist=["x"]), "NoArgsIsHelpError", ())

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
    if any(g.name == "data" for g in app.registered_groups):  # main() may run again (tests)
        return
    from pipeline.cli import collections as collections_cli
    from pipeline.cli import data as data_cli
    from pipeline.cli import experiment as experiment_cli
    from pipeline.cli import explore as explore_cli

    app.add_typer(data_cli.app, name="data")
    explore_cli.register(collections_cli.app)  # `ramer collections explore`
    app.add_typer(collections_cli.app, name="collections")
    experiment_cli.register(app)
    from pipeline.cli import bench as bench_cli

    app.add_typer(bench_cli.app, name="bench")


def error_line(text: str) -> None:
    """One red line on stderr (escaped: '[cpu]' in a message is text, not rich markup)."""
    err_console.print(f"[bold red]error:[/] {escape(text)}", highlight=False, soft_wrap=True)


def main(argv: Sequence[str] | None = None) -> None:
    """The console entry point (`argv` for tests; default sys.argv)."""
    _register()
    try:
        code = app(args=list(argv) if argv is not None else None, prog_name="ramer", standalone_mode=False)
    except _NoArgs as exc:  # `ramer`, `ramer data`: raising it printed the group's help already
        sys.exit(exc.exit_code)
    except UsageError as exc:
        hint = f" (see: {exc.ctx.command_path} --help)" if exc.ctx else ""
        error_line(f"{' '.join(exc.format_message().split())}{hint}")
        sys.exit(exc.exit_code)
    except ClickException as exc:
        error_line(" ".join(exc.format_message().split()))
        sys.exit(exc.exit_code)
    except typer.Abort:
        error_line("aborted")
        sys.exit(1)
    except RamerError as exc:
        error_line(" ".join(str(exc).split()))
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
