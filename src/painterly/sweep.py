"""Preview sheets: small, fast transfers over a grid of one or two settings, on one labelled sheet.

Each cell is :func:`painterly.optimize` (or, for AdaIN's ``alpha``, :func:`painterly.stylize`)
with the base settings and that cell's values; the sheet records the base settings, the grid,
seed, weights and inputs, so :func:`painterly.reproduce` can paint it again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from itertools import product
from typing import Any, Callable, Sequence

import torch
from PIL import Image, ImageDraw, ImageFont

from .adain import load_model, stylize
from .errors import SettingsError
from .gatys import DEFAULT_PRESET, GatysSettings, Progress, get_preset, optimize
from .losses import normalized_weights
from .speed import GATYS_SPEED, SpeedSettings, resolve_precision
from .device import resolve_device
from .profiles import profile_changes, resolve_profile
from .weights import choose_weights

#: The settings a sweep can vary, and how their values are read.
SWEEP_PARAMETERS = {
    "style_weight": float,
    "content_weight": float,
    "tv_weight": float,
    "style_scale": float,
    "learning_rate": float,
    "iterations": int,
    "alpha": float,  # AdaIN's: cells swept in alpha are painted by stylize, in one pass each
}
#: Contact-sheet layout, in pixels: the gap around cells, the column-label strip at the top and
#: the row-label strip on the left (only when there is a second parameter).
GAP, LABEL_HEIGHT, ROW_LABEL_WIDTH = 6, 16, 100
BACKGROUND, INK = (255, 255, 255), (0, 0, 0)

#: ``callback(cell number, label, progress)``: an optimised cell's progress (1-based cell number).
CellProgress = Callable[[int, str, Progress], None]


def contact_sheet(cells: list[list[Image.Image]], column_labels: list[str], row_labels: list[str] | None = None) -> Image.Image:
    """Lay ``cells`` (rows of equally sized images) out on a white sheet with labels.

    Width: (ROW_LABEL_WIDTH if row_labels else 0) + columns x cell width + (columns + 1) x GAP;
    height: LABEL_HEIGHT + rows x cell height + (rows + 1) x GAP.
    """
    rows, columns = len(cells), len(column_labels)
    if any(len(row) != columns for row in cells) or (row_labels is not None and len(row_labels) != rows):
        raise ValueError("one label per column (and per row when given) is needed")
    cell_width, cell_height = cells[0][0].size
    left = ROW_LABEL_WIDTH if row_labels else 0
    sheet = Image.new("RGB", (left + columns * cell_width + (columns + 1) * GAP,
                              LABEL_HEIGHT + rows * cell_height + (rows + 1) * GAP), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for column, label in enumerate(column_labels):
        draw.text((left + GAP + column * (cell_width + GAP), 2), label, fill=INK, font=font)
    for row, images in enumerate(cells):
        y = LABEL_HEIGHT + GAP + row * (cell_height + GAP)
        if row_labels:
            draw.text((GAP, y + cell_height // 2 - 6), row_labels[row], fill=INK, font=font)
        for column, image in enumerate(images):
            sheet.paste(image.convert("RGB").resize((cell_width, cell_height)), (left + GAP + column * (cell_width + GAP), y))
    return sheet


@dataclass
class SweepResult:
    """What :func:`sweep` returns: the sheet and how it was made."""

    image: Image.Image
    settings: GatysSettings
    columns: tuple[str, list[float]]
    rows: tuple[str, list[float]] | None
    preset: str | None
    seed: int
    weights: str
    precision: str
    style_weights: list[float] = field(default_factory=list)
    encoder: str = "auto"
    decoder: str = "auto"

    def metadata(self) -> dict[str, Any]:
        """The grid, the base settings, seed and weights, for the PNG's text chunks."""
        return {
            "painterly.method": "sweep",
            "columns": [self.columns[0], list(self.columns[1])],
            "rows": None if self.rows is None else [self.rows[0], list(self.rows[1])],
            "preset": self.preset,
            **self.settings.to_dict(),
            "style_weights": self.style_weights,
            "seed": self.seed,
            "weights": self.weights,
            "precision": self.precision,
            "encoder": self.encoder,
            "decoder": self.decoder,
        }


def check_parameter(name: str, values: Sequence[float]) -> None:
    if name not in SWEEP_PARAMETERS:
        raise SettingsError(f"cannot sweep {name!r}; choose one of {', '.join(SWEEP_PARAMETERS)}")
    if not values:
        raise SettingsError(f"{name}: give at least one value")


def sweep(
    content: Image.Image,
    style: Image.Image | Sequence[Image.Image],
    *,
    param: tuple[str, Sequence[float]],
    param2: tuple[str, Sequence[float]] | None = None,
    preset: str = DEFAULT_PRESET,
    settings: GatysSettings | None = None,
    size: int | None = 128,
    iterations: int | None = 40,
    weights: str = "auto",
    style_weights: Sequence[float] | None = None,
    masks: Sequence[Image.Image] | None = None,
    init_image: Image.Image | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    speed: SpeedSettings = GATYS_SPEED,
    encoder: str | os.PathLike = "auto",
    decoder: str | os.PathLike = "auto",
    callback: CellProgress | None = None,
    download_progress: Callable[[int, int | None], None] | None = None,
    tile: bool | str = "auto",
    tile_size: int | None = None,
    max_memory: float | None = None,
    profile: str = "auto",
    **overrides: Any,
) -> SweepResult:
    """A contact sheet: ``param`` (name, values) across the columns, ``param2`` down the rows.

    The base settings are ``settings`` (or the ``preset``) with ``size``, ``iterations`` and
    ``overrides`` applied, as :func:`painterly.optimize` takes them; each cell changes only its
    swept values. Cells swept in ``alpha`` are AdaIN's (``encoder``, ``decoder``), at the
    base size for content and style (``auto``: as for :func:`painterly.stylize`); alpha is
    swept with nothing else. ``tile``, ``tile_size`` and ``max_memory`` tile the optimisation
    cells as :func:`painterly.optimize` does; ``profile`` (for a preset, not for ``settings``)
    applies the random-features profile to the base as :func:`painterly.optimize` would.
    """
    (name, values), (row_name, row_values) = param, param2 if param2 is not None else (None, [None])
    check_parameter(name, values)
    if param2 is not None:
        check_parameter(row_name, row_values)
        if row_name == name:
            raise SettingsError(f"--param and --param2 both sweep {name}: choose two different settings")
    if "alpha" in (name, row_name) and param2 is not None:
        other = row_name if name == "alpha" else name
        raise SettingsError(f"alpha is AdaIN's and {other} optimisation's: sweep alpha with nothing else")
    explicit = {"size": size, "iterations": iterations, **overrides}
    base = (settings if settings is not None else get_preset(preset)).updated(**explicit)
    if settings is None:  # every cell then runs the same, profiled, base (as one optimize would)
        spec, _ = choose_weights(weights, preferred=base.weights, progress=download_progress)
        base = base.updated(**profile_changes(resolve_profile(profile, spec), explicit)).updated(**explicit)
    styles = [style] if isinstance(style, Image.Image) else list(style)
    blend = normalized_weights(style_weights, len(styles))
    label_used, precision = str(weights), resolve_precision(speed.precision, resolve_device(device))
    encoder_label, decoder_label = str(encoder), str(decoder)
    cells: list[list[Image.Image]] = [[] for _ in row_values]
    for number, (row, value) in enumerate(product(range(len(row_values)), values), start=1):
        varied = {name: value} if row_name is None else {name: value, row_name: row_values[row]}
        label = ", ".join(f"{key}={val:g}" for key, val in varied.items())
        if name == "alpha":
            model = load_model(encoder=encoder, decoder=decoder, seed=seed, device=device, speed=speed)
            encoder_label, decoder_label, precision = model.encoder_label, model.decoder_label, model.precision
            cells[row].append(stylize(content, styles, alpha=value, style_weights=style_weights,
                                      preserve_color=base.preserve_color, content_size=base.size,
                                      style_size=base.size, model=model).image)
            continue
        result = optimize(content, styles, settings=base, weights=weights, style_weights=style_weights, masks=masks,
                          init_image=init_image, seed=seed, device=device, speed=speed,
                          callback=None if callback is None else lambda p, n=number, l=label: callback(n, l, p),
                          download_progress=download_progress, tile=tile, tile_size=tile_size,
                          max_memory=max_memory, **varied)
        label_used, precision = result.weights, result.precision
        cells[row].append(result.image)
    sheet = contact_sheet(
        cells,
        [f"{name}={value:g}" for value in values],
        None if row_name is None else [f"{row_name}=\n{value:g}" for value in row_values],
    )
    return SweepResult(sheet, base, (name, list(values)), None if param2 is None else (row_name, list(row_values)),
                       preset, seed, label_used, precision, blend, encoder_label, decoder_label)
