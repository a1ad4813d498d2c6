"""Figure set-up and saving for every report plot, so they all render the same way:
the Agg backend (no display needed), tight layout, one resolution, the figure closed."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

DPI = 120


@contextmanager
def saved_figure(path: Path, figsize: tuple[float, float], columns: int = 1) -> Iterator[Sequence]:
    """Yield one row of `columns` axes; on leaving, the figure is laid out, written to
    `path` and closed (closed too when drawing fails, so no figure leaks)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, columns, figsize=figsize, squeeze=False)
    try:
        yield axes[0]
        fig.tight_layout()
        fig.savefig(path, dpi=DPI)
    finally:
        plt.close(fig)


def errorbar_line(ax, xs: Sequence[float], means: Sequence[float], stds: Sequence[float], label: str) -> None:
    """One series as points joined by a line, with its std as error bars."""
    ax.errorbar(xs, means, yerr=stds, marker="o", label=label, capsize=2)
