"""Loss-curve plots (needs matplotlib: ``pip install 'painterly[plot]'``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

from .errors import PainterlyError
from .files import atomic_path


def plot_losses(
    history: Sequence[Mapping[str, float]], path: str | os.PathLike, *, x: str = "iteration", title: str = ""
) -> Path:
    """Write a PNG of every loss in ``history`` against ``x`` (log scale), atomically."""
    if Path(path).suffix.lower() != ".png":
        raise PainterlyError(f"{path}: a loss plot is a PNG; give a name ending in .png")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PainterlyError("loss plots need matplotlib: pip install 'painterly[plot]'") from None
    if not history:
        raise PainterlyError("no losses to plot")
    figure, axes = plt.subplots(figsize=(7, 4), dpi=100)
    steps = [row[x] for row in history]
    for key in history[0]:
        if key == x:
            continue
        values = [row[key] for row in history]
        if any(v > 0 for v in values):
            axes.plot(steps, values, label=key)
    axes.set_yscale("log")
    axes.set_xlabel(x)
    axes.set_ylabel("loss")
    axes.set_title(title)
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    try:
        with atomic_path(path) as temporary:
            figure.savefig(temporary, format="png")
    finally:
        plt.close(figure)
    return Path(path)
