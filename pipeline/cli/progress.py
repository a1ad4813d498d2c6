"""How an experiment's progress is shown: a live rich bar on a terminal, plain log lines
anywhere else (CI, nohup, a log file).

Both hand out `Hooks`, the four callbacks of the protocol's `Progress` (pipeline.cli.runner
turns them into one), so this module does not import the protocol.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from typing_extensions import Self

console = Console()


class Hooks(NamedTuple):
    """The callbacks of `protocol.Progress`, by the same names."""

    on_start: Callable[[int], None]  # total work units
    on_stage: Callable[[str], None]  # "fold 1/5 run 2/3 · pretrain audio"
    on_epoch: Callable[[str, int, dict], None]
    on_advance: Callable[[int], None]


def rich_progress() -> tuple[Progress, Hooks]:
    bar = Progress(
        SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), console=console, transient=False,
    )
    state: dict = {}

    def start(total: int) -> None:
        state["task"] = bar.add_task("starting", total=total)

    def stage(text: str) -> None:
        state["stage"] = text
        bar.update(state["task"], description=text)

    def epoch(text: str, e: int, rec: dict) -> None:
        bar.update(state["task"], description=f"{text} · epoch {e + 1} · val {rec['val']:.3f}")

    hooks = Hooks(
        on_start=start, on_stage=stage, on_epoch=epoch,
        on_advance=lambda n: bar.advance(state["task"], n),
    )
    return bar, hooks


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class LogProgress:
    """Progress as plain log lines, for a stdout that is not a terminal (CI, nohup, a log
    file), where a live bar prints nothing for minutes or one truncated line: a line per
    stage of every fold x run, and a line per epoch at most every `epoch_every` seconds,
    each with the work units done, elapsed time and ETA."""

    def __init__(self, emit=None, clock=time.monotonic, epoch_every: float = 30.0) -> None:
        self.emit = emit or (lambda line: console.print(line, highlight=False, markup=False, soft_wrap=True))
        self.clock, self.epoch_every = clock, epoch_every
        self.total, self.done, self.t0, self.last = 0, 0, clock(), float("-inf")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def _line(self, text: str) -> None:
        now = self.clock()
        elapsed = now - self.t0
        eta = _clock(elapsed / self.done * (self.total - self.done)) if self.done else "-"
        self.emit(f"{text} | {self.done}/{self.total} units, elapsed {_clock(elapsed)}, ETA {eta}")
        self.last = now

    def start(self, total: int) -> None:
        self.total, self.t0 = total, self.clock()

    def stage(self, text: str) -> None:
        self._line(text)

    def epoch(self, text: str, e: int, rec: dict) -> None:
        if self.clock() - self.last >= self.epoch_every:
            self._line(f"{text} · epoch {e + 1} · val {rec['val']:.3f}")

    def advance(self, n: int) -> None:
        self.done += n

    def hooks(self) -> Hooks:
        return Hooks(on_start=self.start, on_stage=self.stage, on_epoch=self.epoch, on_advance=self.advance)


def progress_display() -> tuple[Progress | LogProgress, Hooks]:
    """A live rich bar on a terminal, plain log lines anywhere else."""
    if console.is_terminal:
        return rich_progress()
    plain = LogProgress()
    return plain, plain.hooks()
