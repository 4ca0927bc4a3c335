"""``painterly sweep``: small, fast transfers over a grid of settings, on one contact sheet."""

from __future__ import annotations

import argparse
from itertools import product
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..errors import SettingsError
from ..adain import load_model, stylize
from ..files import check_writes
from ..gatys import optimize
from ..images import check_output_path, load_image, save_image
from .common import add_subcommand, expand_inputs, info
from .optimize import ScaleProgress, add_transfer_arguments, transfer_inputs, transfer_keywords, working_settings

EXAMPLES = """\
  painterly sweep photo.jpg starry_night.jpg -o sheet.png --param style_weight 10 100 1000
  painterly sweep photo.jpg starry_night.jpg -o sheet.png --param style_weight 10 100 1000 \\
      --param2 style_scale 0.5 1
  painterly sweep photo.jpg starry_night.jpg -o sheet.png --param tv_weight 0 1e-3 1e-2 --size 96
  painterly sweep photo.jpg starry_night.jpg -o sheet.png --param alpha 0.25 0.5 0.75 1   # AdaIN
  painterly sweep photo.jpg starry_night.jpg -o sheet.png --param alpha 0.5 1 \
      --param2 style_weight 10 1000                   # AdaIN across, optimisation down"""

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


class SweepParameter(argparse.Action):
    """``--param NAME VALUE [VALUE ...]`` -> (name, [values])."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # type: ignore[override]
        name, *texts = values
        name = name.replace("-", "_")
        if name not in SWEEP_PARAMETERS:
            parser.error(f"{option_string}: cannot sweep {name!r}; choose one of {', '.join(SWEEP_PARAMETERS)}")
        if not texts:
            parser.error(f"{option_string} {name}: give at least one value")
        try:
            parsed = [SWEEP_PARAMETERS[name](text) for text in texts]
        except ValueError:
            parser.error(f"{option_string} {name}: values must be numbers, got {' '.join(texts)}")
        setattr(namespace, self.dest, (name, parsed))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(
        subparsers, "sweep",
        help="preview settings: small, fast transfers over a grid of one or two settings on one labelled sheet",
        examples=EXAMPLES,
    )
    add_transfer_arguments(parser, size_default=128, iterations_default=40)
    parser.add_argument("--decoder", default="auto",
                        help="AdaIN decoder, for an alpha sweep (default: auto, as for painterly stylize)")
    parser.add_argument("--encoder", default="auto",
                        help="AdaIN encoder, for an alpha sweep (default: auto, as for painterly stylize)")
    parser.add_argument("-o", "--output", default="sweep.png", help="the contact sheet, PNG or JPEG (default: sweep.png)")
    choices = ", ".join(SWEEP_PARAMETERS)
    parser.add_argument("--param", required=True, nargs="+", action=SweepParameter, metavar=("NAME", "VALUE"),
                        help=f"the setting across the columns and its values; one of {choices}")
    parser.add_argument("--param2", nargs="+", action=SweepParameter, metavar=("NAME", "VALUE"),
                        help="a second setting down the rows and its values")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    output = check_output_path(args.output)
    (name, values), second = args.param, args.param2
    if second is not None and second[0] == name:
        raise SettingsError(f"--param and --param2 both sweep {name}: choose two different settings")
    row_name, row_values = second if second is not None else (None, [None])
    style_paths = expand_inputs(args.styles, what="style")
    adain_files = [path for path in (args.encoder, args.decoder) if Path(path).is_file()]
    check_writes([output], [*transfer_inputs(args, style_paths), *adain_files])
    # Cells vary the size only through style_scale: read huge JPEGs reduced towards the largest.
    working = working_settings(args)
    scales = [value for key, swept in (args.param, args.param2 or ("", [])) if key == "style_scale" for value in swept]
    content = load_image(args.content, reduce_to=None if args.masks else working.size)
    keywords = transfer_keywords(args, style_paths,
                                 style_size=round(working.size * max([working.style_scale, *scales])))
    cells: list[list[Image.Image]] = [[] for _ in row_values]
    total = len(values) * len(row_values)
    for number, (row, value) in enumerate(product(range(len(row_values)), values), start=1):
        varied = {name: value} if row_name is None else {name: value, row_name: row_values[row]}
        label = ", ".join(f"{key}={val:g}" for key, val in varied.items())
        if "alpha" in varied:
            cells[row].append(_stylize_cell(args, content, keywords, varied))
            continue
        bar = ScaleProgress(quiet=args.quiet, description=f"{number}/{total} {label}")
        try:
            result = optimize(content, callback=bar, **{**keywords, **varied})
        finally:
            bar.close()
        cells[row].append(result.image)
    sheet = contact_sheet(
        cells,
        [f"{name}={value:g}" for value in values],
        None if row_name is None else [f"{row_name}=\n{value:g}" for value in row_values],
    )
    save_image(sheet, output, metadata={"painterly.method": "sweep", "columns": [name, values],
                                       "rows": None if row_name is None else [row_name, row_values]})
    info(f"wrote {output} ({len(row_values)} rows x {len(values)} columns)")
    return 0


def _stylize_cell(args: argparse.Namespace, content: Image.Image, keywords: dict, varied: dict) -> Image.Image:
    """One AdaIN cell: alpha (and only alpha) comes from the sweep, the rest from the flags."""
    others = sorted(set(varied) - {"alpha"})
    if others:
        raise SettingsError(f"alpha is AdaIN's and {', '.join(others)} optimisation's: sweep alpha with nothing else")
    model = load_model(encoder=args.encoder, decoder=args.decoder, seed=args.seed, device=args.device,
                       speed=keywords["speed"])
    return stylize(content, keywords["style"], alpha=varied["alpha"], style_weights=keywords["style_weights"],
                   preserve_color=args.preserve_color, content_size=args.size, style_size=args.size, model=model).image
