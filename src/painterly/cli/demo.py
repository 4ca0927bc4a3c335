"""``painterly demo``: stylise the bundled examples, with whatever weights can be had."""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path
from typing import Callable

from PIL import Image

from ..adain import load_model, stylize
from ..files import check_writes
from ..gatys import optimize
from ..images import load_image, resize_longer_side, save_image
from ..reproduce import describe_inputs
from ..weights import choose_weights
from .common import OptimizationProgress, add_runtime_arguments, add_subcommand, download_bar, info, positive_int
from .optimize import ScaleProgress
from .sweep import contact_sheet

EXAMPLES = """\
  painterly demo                      # painterly-demo/shipwreck_starry_night.png and ..._adain.png
  painterly demo -o /tmp/demo --size 256 --iterations 200
  PAINTERLY_OFFLINE=1 painterly demo  # never download: random weights, the bundled AdaIN decoder
  painterly demo --gallery            # contact sheets of bundled photos x paintings, both methods
  painterly demo --gallery adain      # only AdaIN's sheet (seconds; optimisation's takes minutes)
Both methods run: optimisation (Gatys et al.) and AdaIN in one pass, each with pretrained weights
when they are cached or downloadable, else with what ships in the package (it says which). 'painterly reproduce' paints either again."""

CONTENT, STYLE = "shipwreck.jpg", "starry_night.jpg"
#: The gallery: bundled photos (rows) in the style of bundled paintings (columns).
GALLERY_PHOTOS = ("astronaut.jpg", "chelsea.jpg", "rocket.jpg")
GALLERY_PAINTINGS = ("starry_night.jpg", "the_scream.jpg", "woman_with_hat_matisse.jpg", "shipwreck.jpg")
GALLERY_CELL = 160
#: Longer side of optimisation's demo picture and gallery cells, unless --size says.
DEMO_SIZE = 192
#: AdaIN paints at the size its quality is measured at (docs/offline-decoder.md): one pass costs
#: seconds, not minutes, and the bundled decoder paints blotches at optimisation's 192 px.
ADAIN_SIZE = 512
GALLERY_METHODS = ("adain", "optimize")


def example_path(name: str) -> Path:
    """Path of a bundled example image."""
    return Path(str(resources.files("painterly") / "examples" / name))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(
        subparsers, "demo", help="repaint Turner's Shipwreck as Van Gogh's Starry Night (bundled examples)", examples=EXAMPLES
    )
    parser.add_argument("-o", "--output-dir", default="painterly-demo", help="folder for the results (default: painterly-demo)")
    parser.add_argument("--size", type=positive_int,
                        help=f"longer side in pixels (default: {DEMO_SIZE} for optimisation, {ADAIN_SIZE} for AdaIN, "
                        "whose gallery cells are then shrunk to fit)")
    parser.add_argument("--iterations", type=positive_int,
                        help="L-BFGS iterations at each scale (default: 100 with pretrained weights; with random "
                        "ones, the random-features profile's)")
    parser.add_argument("--gallery", nargs="?", const="both", choices=("both", *GALLERY_METHODS),
                        help="instead, write gallery_adain.jpg and gallery_optimize.jpg (or the one named): every bundled photo in "
                        "the style of four bundled paintings (about 15 minutes on 2 CPU cores)")
    add_runtime_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.gallery:
        return gallery(args)
    output = Path(args.output_dir) / f"{Path(CONTENT).stem}_{Path(STYLE).stem}.png"
    adain_output = output.with_name(f"{output.stem}_adain.png")
    check_writes([output, adain_output], [example_path(CONTENT), example_path(STYLE)])
    content, style = load_image(example_path(CONTENT)), load_image(example_path(STYLE))
    size = args.size or DEMO_SIZE
    weights, note = choose_weights("auto", preferred="vgg19", progress=download_bar(args.quiet))
    if note:
        info(note)
    # A short run reads best started from the content. With random weights the library's
    # random-features profile (painterly.profiles) decides the rest, as it does for optimize.
    pretrained = weights != "random"
    extra = {"init": "content"} if pretrained else {}
    info(f"optimisation with {'pretrained VGG-19' if pretrained else 'seeded random VGG-19'} weights")
    bar = ScaleProgress(quiet=args.quiet, description="demo")
    try:
        result = optimize(content, style, size=size, iterations=_iterations(args, weights), weights=weights,
                          seed=args.seed, device=args.device, callback=bar, **extra)
    finally:
        bar.close()
    if result.profile:
        info(f"settings: the {result.profile} profile (recorded in the output's metadata)")
    inputs = describe_inputs(content=[example_path(CONTENT)], style=[example_path(STYLE)])
    save_image(result.image, output, metadata={**result.metadata(), "content": CONTENT, "style": STYLE, "inputs": inputs})
    info(f"wrote {output}")
    model = load_model(device=args.device, seed=args.seed)
    if model.weights_note:
        info(model.weights_note)
    adain_size = args.size or ADAIN_SIZE
    fast = stylize(content, style, content_size=adain_size, style_size=adain_size, model=model)
    save_image(fast.image, adain_output, metadata={**fast.metadata(), "content": CONTENT, "style": STYLE, "inputs": inputs})
    info(f"wrote {adain_output} (AdaIN, one pass; encoder {model.encoder_label}, decoder {model.decoder_label})")
    return 0


def gallery(args: argparse.Namespace) -> int:
    """Contact sheets of every gallery photo (rows) in the style of every gallery painting (columns)."""
    photos = [load_image(example_path(name)) for name in GALLERY_PHOTOS]
    paintings = [load_image(example_path(name)) for name in GALLERY_PAINTINGS]
    labels = ["photo"] + [Path(name).stem.replace("_", " ") for name in GALLERY_PAINTINGS]
    header = [_thumbnail(Image.new("RGB", (GALLERY_CELL, GALLERY_CELL), "white"))] + [_thumbnail(p) for p in paintings]
    for method in GALLERY_METHODS if args.gallery == "both" else (args.gallery,):
        paint, weights_used = _gallery_painter(method, args)
        rows = [header] + [[_thumbnail(photo)] + [_thumbnail(paint(photo, painting)) for painting in paintings]
                           for photo in photos]
        sheet = contact_sheet(rows, labels)
        output = Path(args.output_dir) / f"gallery_{method}.jpg"
        save_image(sheet, output, metadata={"painterly.method": "gallery", "method": method, "weights": weights_used,
                                            "photos": list(GALLERY_PHOTOS), "paintings": list(GALLERY_PAINTINGS)})
        info(f"wrote {output} ({method}, weights {weights_used})")
    return 0


def _gallery_painter(method: str, args: argparse.Namespace) -> tuple[Callable[[Image.Image, Image.Image], Image.Image], str]:
    """How ``method`` paints a gallery cell, with the weights it can have, and those weights in words."""
    if method == "adain":
        model = load_model(device=args.device, seed=args.seed)
        if model.weights_note:
            info(model.weights_note)
        size = args.size or ADAIN_SIZE
        return (lambda photo, painting: stylize(photo, painting, content_size=size, model=model).image,
                f"{model.encoder_label} + {model.decoder_label}")
    weights, note = choose_weights("auto", preferred="vgg19", progress=download_bar(args.quiet))
    if note:
        info(note)
    return (lambda photo, painting: _optimized(args, photo, painting, weights)), str(weights)


def _optimized(args: argparse.Namespace, photo: Image.Image, painting: Image.Image, weights: str) -> Image.Image:
    bar = OptimizationProgress(quiet=args.quiet, description="gallery")
    try:
        return optimize(photo, painting, size=args.size or DEMO_SIZE, iterations=_iterations(args, weights), weights=weights,
                        seed=args.seed, device=args.device, callback=bar).image
    finally:
        bar.close()


def _iterations(args: argparse.Namespace, weights: str) -> int | None:
    """--iterations, else 100 with pretrained weights; with random ones the random-features
    profile sets the length (None)."""
    return args.iterations or (None if weights == "random" else 100)


def _thumbnail(image: Image.Image) -> Image.Image:
    """The image fitted into a GALLERY_CELL square, centred on white."""
    cell = Image.new("RGB", (GALLERY_CELL, GALLERY_CELL), "white")
    small = resize_longer_side(image.convert("RGB"), GALLERY_CELL)
    cell.paste(small, ((GALLERY_CELL - small.width) // 2, (GALLERY_CELL - small.height) // 2))
    return cell
