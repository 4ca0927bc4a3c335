"""Loss-curve plots (needs matplotlib: ``pip install 'painterly[plot]'``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

from .errors import PainterlyError


def plot_losses(
    history: Sequence[Mapping[str, float]], path: str | os.PathLike, *, x: str = "iteration", title: str = ""
) -> Path:
    """Write a PNG of every loss in ``history`` against ``x`` (log scale), atomically."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PainterlyError("loss plots need matplotlib: pip install 'painterly[plot]'") from None
    if not history:
        raise PainterlyError("no losses to plot")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".png.part")
    os.close(handle)
    try:
        figure.savefig(temporary, format="png")
        os.replace(temporary, path)
    finally:
        plt.close(figure)
        Path(temporary).unlink(missing_ok=True)
    return path
