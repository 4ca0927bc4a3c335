"""``painterly sweep``: small, fast transfers over a grid of settings, on one contact sheet."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..files import check_writes
from ..gatys import Progress
from ..images import check_output_path, load_image, save_image
from ..sweep import GAP, LABEL_HEIGHT, ROW_LABEL_WIDTH, SWEEP_PARAMETERS, contact_sheet, sweep
from .common import add_subcommand, expand_inputs, info
from .optimize import (ScaleProgress, add_transfer_arguments, recorded_inputs, transfer_inputs, transfer_keywords,
                       working_settings)

__all__ = ["GAP", "LABEL_HEIGHT", "ROW_LABEL_WIDTH", "SWEEP_PARAMETERS", "contact_sheet", "register"]

EXAMPLES = """\
  painterly sweep photo.jpg starry_night.jpg -o sheet.png --param style_weight 10 100 1000
  painterly sweep photo.jpg starry_night.jpg -o sheet.png --param style_weight 10 100 1000 \\
      --param2 style_scale 0.5 1
  painterly sweep photo.jpg starry_night.jpg -o sheet.png --param tv_weight 0 1e-3 1e-2 --size 96
  painterly sweep photo.jpg starry_night.jpg -o sheet.png --param alpha 0.25 0.5 0.75 1   # AdaIN, alpha alone
  painterly reproduce sheet.png -o again.png           # paint the same sheet again from its metadata"""

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
    style_paths = expand_inputs(args.styles, what="style")
    adain_files = [path for path in (args.encoder, args.decoder) if Path(path).is_file()]
    check_writes([output], [*transfer_inputs(args, style_paths), *adain_files])
    # Cells vary the size only through style_scale: read huge JPEGs reduced towards the largest.
    working = working_settings(args)
    scales = [value for key, swept in (args.param, args.param2 or ("", [])) if key == "style_scale" for value in swept]
    content = load_image(args.content, reduce_to=None if args.masks else working.size)
    keywords = transfer_keywords(args, style_paths,
                                 style_size=round(working.size * max([working.style_scale, *scales])))
    total = len(args.param[1]) * (len(args.param2[1]) if args.param2 else 1)
    bars: dict[int, ScaleProgress] = {}

    def progress(number: int, label: str, step: Progress) -> None:
        if number not in bars:
            for bar in bars.values():
                bar.close()
            bars[number] = ScaleProgress(quiet=args.quiet, description=f"{number}/{total} {label}",
                                         print_every=args.print_every)
        bars[number](step)

    try:
        result = sweep(content, param=args.param, param2=args.param2, encoder=args.encoder, decoder=args.decoder,
                       callback=progress, **keywords)
    finally:
        for bar in bars.values():
            bar.close()
    metadata = {**result.metadata(), "content": Path(args.content).name, "style": [p.name for p in style_paths],
                "inputs": recorded_inputs(args, style_paths)}
    save_image(result.image, output, metadata=metadata)
    rows = len(args.param2[1]) if args.param2 else 1
    info(f"wrote {output} ({rows} rows x {len(args.param[1])} columns)")
    return 0
