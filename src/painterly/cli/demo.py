"""``painterly demo``: stylise the bundled examples, with whatever weights can be had."""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

from ..adain import stylize
from ..gatys import optimize
from ..images import load_image, save_image
from ..weights import choose_weights, is_cached
from .common import add_runtime_arguments, add_subcommand, download_bar, info, positive_int
from .optimize import ScaleProgress

EXAMPLES = """\
  painterly demo                      # writes painterly-demo/shipwreck_starry_night.png
  painterly demo -o /tmp/demo --size 256 --iterations 200
  PAINTERLY_OFFLINE=1 painterly demo  # never download; seeded random weights
When the AdaIN weights are cached (after any 'painterly stylize' run with the default weights),
the demo also writes shipwreck_starry_night_adain.png, made in one pass."""

CONTENT, STYLE = "shipwreck.jpg", "starry_night.jpg"


def example_path(name: str) -> Path:
    """Path of a bundled example image."""
    return Path(str(resources.files("painterly") / "examples" / name))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(
        subparsers, "demo", help="repaint Turner's Shipwreck as Van Gogh's Starry Night (bundled examples)", examples=EXAMPLES
    )
    parser.add_argument("-o", "--output-dir", default="painterly-demo", help="folder for the results (default: painterly-demo)")
    parser.add_argument("--size", type=positive_int, default=192, help="longer side in pixels (default: 192)")
    parser.add_argument("--iterations", type=positive_int,
                        help="L-BFGS iterations at each scale (default: 100 with pretrained weights; with random "
                        "ones, the random-features profile's)")
    add_runtime_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    content, style = load_image(example_path(CONTENT)), load_image(example_path(STYLE))
    weights, note = choose_weights("auto", preferred="vgg19", progress=download_bar(args.quiet))
    if note:
        info(note)
    # A short run reads best started from the content. With random weights the library's
    # random-features profile (painterly.profiles) decides the rest, as it does for optimize.
    pretrained = weights != "random"
    extra = {"init": "content", "iterations": args.iterations or 100} if pretrained else {"iterations": args.iterations}
    info(f"optimisation with {'pretrained VGG-19' if pretrained else 'seeded random VGG-19'} weights")
    bar = ScaleProgress(quiet=args.quiet, description="demo")
    try:
        result = optimize(content, style, size=args.size, weights=weights, seed=args.seed, device=args.device,
                          callback=bar, **extra)
    finally:
        bar.close()
    if result.profile:
        info(f"settings: the {result.profile} profile (recorded in the output's metadata)")
    output = Path(args.output_dir) / f"{Path(CONTENT).stem}_{Path(STYLE).stem}.png"
    save_image(result.image, output, metadata={**result.metadata(), "content": CONTENT, "style": STYLE})
    info(f"wrote {output}")
    if is_cached("adain"):
        fast = stylize(content, style, content_size=args.size, style_size=args.size, device=args.device, seed=args.seed)
        adain_output = output.with_name(f"{output.stem}_adain.png")
        save_image(fast.image, adain_output, metadata={**fast.metadata(), "content": CONTENT, "style": STYLE})
        info(f"wrote {adain_output} (AdaIN, one pass)")
    return 0
