"""``painterly reproduce``: paint an output again from its own metadata."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..images import check_output_path, read_metadata, save_image
from ..reproduce import reproduce
from .common import add_print_every_argument, add_subcommand, info
from .optimize import ScaleProgress
from ..device import DEVICE_CHOICES

EXAMPLES = """\
  painterly reproduce out.png                        # writes out_reproduced.png and compares the pixels
  painterly reproduce out.png -o again.png --inputs ~/photos ~/paintings
  painterly reproduce sheet.png --check              # exit code 1 unless every pixel is the same
inputs are looked for at their recorded path, by name in --inputs folders and beside OUTPUT, and
among the bundled examples; each must have the SHA-256 recorded in OUTPUT"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(
        subparsers, "reproduce",
        help="paint an optimize, stylize, sweep or studio output again from its metadata, checking its inputs",
        examples=EXAMPLES,
    )
    parser.add_argument("output", metavar="OUTPUT", help="a PNG or JPEG written by painterly")
    parser.add_argument("-o", "--new", metavar="NEW", help="where to write the new image (default: OUTPUT_reproduced.png)")
    parser.add_argument("--inputs", nargs="+", default=[], metavar="DIR",
                        help="folders in which to look for the inputs by name, when they have moved")
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="where to compute (default: auto; "
                        "the same pixels need the same kind of device)")
    parser.add_argument("--check", action="store_true", help="exit with code 1 when the pixels differ from OUTPUT's")
    parser.add_argument("--quiet", action="store_true", help="no progress")
    add_print_every_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    original = Path(args.output)
    new = Path(args.new) if args.new else original.with_name(f"{original.stem}_reproduced.png")
    check_output_path(new, inputs=(original,))
    bar = ScaleProgress(quiet=args.quiet, description="reproducing", print_every=args.print_every)
    try:
        result = reproduce(original, search=args.inputs, device=args.device, callback=bar)
    finally:
        bar.close()
    for role, paths in result.inputs.items():
        for path in paths:
            check_output_path(new, inputs=(path,))
    save_image(result.image, new, metadata=read_metadata(original))
    for name in result.unchecked:
        info(f"{name}: recorded without a SHA-256, so not checked")
    difference = result.max_difference
    if difference == 0:
        info(f"wrote {new}: the same pixels as {original}")
        return 0
    what = "another size" if difference is None else f"differs by up to {difference} grey levels"
    info(f"wrote {new}: {what} from {original} (another device, torch version or precision changes the rounding)")
    return 1 if args.check else 0
