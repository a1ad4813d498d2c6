"""`ramer bench ...`: run the benchmark scripts of benchmarks/ (source checkout).

Each command runs one script with the same Python, passing every further option through
(`ramer bench retrieval --sizes 5000,50000`); the script prints its machine and writes
benchmarks/results/<name>.json and .md. Benchmarks are not tests: they take minutes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer

from pipeline.errors import RamerError

app = typer.Typer(
    help="Benchmarks (retrieval, ingest, training, turbo): machine info + results in benchmarks/results/.\n\n"
    "Options after the command go to the script: `ramer bench retrieval --help` lists them.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

SCRIPTS = {
    "retrieval": ("bench_retrieval.py", "Batched exact top-K: fast path vs Qdrant edge vs the bare matmul; IVF recall."),
    "ingest": ("bench_ingest.py", "Points/s into the embedded store (and a server when QDRANT_URL is set)."),
    "training": ("bench_training.py", "Samples/s per RAMER stage for one fold x run; retrieval share of stage 3."),
    "turbo": ("turbo_stage2.py", "Paper scale (120,625 x 1024/768/5120): streamed stage 2, peak RSS and time (10+ min)."),
}
NEEDS_FAISS = {"retrieval", "training", "turbo"}  # scripts that build the fast path
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def benchmarks_dir() -> Path:
    """RAMER_BENCHMARKS_DIR, else the checkout this package runs from, else ./benchmarks."""
    env = os.environ.get("RAMER_BENCHMARKS_DIR")
    candidates = [Path(env)] if env else []
    candidates += [Path(__file__).resolve().parents[2] / "benchmarks", Path.cwd() / "benchmarks"]
    for c in candidates:
        if (c / "machine.py").is_file():
            return c
    raise RamerError(
        "benchmarks/ not found: the benchmark scripts live in the source checkout "
        "(git clone, then run from it) or set RAMER_BENCHMARKS_DIR"
    )


def run_script(name: str, args: list[str]) -> int:
    script = benchmarks_dir() / SCRIPTS[name][0]
    if name in NEEDS_FAISS and not {"-h", "--help"} & set(args):  # help needs no FAISS
        from pipeline.extras import load_faiss

        load_faiss()  # one line naming the extra, instead of the script's traceback
    return subprocess.call([sys.executable, str(script), *args])


def _command(name: str) -> None:
    def command(ctx: typer.Context) -> None:
        code = run_script(name, list(ctx.args))
        if code:
            raise typer.Exit(code)

    command.__doc__ = SCRIPTS[name][1] + f"\n\nRuns benchmarks/{SCRIPTS[name][0]}; options go to the script."
    app.command(name=name, context_settings=PASS_THROUGH)(command)


for _name in SCRIPTS:
    _command(_name)


@app.command("all")
def all_cmd(
    turbo: bool = typer.Option(False, "--turbo", help="Also run the paper-scale turbo benchmark (10+ min)."),
) -> None:
    """Retrieval, ingest and training benchmarks with their defaults (and turbo with --turbo)."""
    for name in ("retrieval", "ingest", "training", *(("turbo",) if turbo else ())):
        typer.echo(f"== ramer bench {name}")
        code = run_script(name, [])
        if code:
            raise typer.Exit(code)
