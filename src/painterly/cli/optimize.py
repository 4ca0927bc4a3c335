"""``painterly optimize``: Gatys et al. optimisation-based transfer."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..gatys import DEFAULT_PRESET, PRESETS, Progress, optimize
from ..images import check_output_path, load_image, merge_alpha, save_image, split_alpha, tensor_to_image
from ..plotting import plot_losses
from .common import (
    OptimizationProgress,
    add_runtime_arguments,
    add_subcommand,
    download_bar,
    info,
    non_negative_float,
    numbered_path,
    positive_int,
)

EXAMPLES = """\
  painterly optimize photo.jpg starry_night.jpg -o out.png
  painterly optimize photo.jpg starry_night.jpg -o out.png --preset d2l --size 300 --iterations 200
  painterly optimize photo.jpg starry_night.jpg -o out.png --weights random --init content \\
      --tv-weight 1e-5 --save-every 50 --plot losses.png
presets:
""" + "\n".join(f"  {name:10s} {settings.source}" for name, settings in PRESETS.items())


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(
        subparsers, "optimize", help="repaint an image by optimisation (Gatys et al.; slow, any style)", examples=EXAMPLES
    )
    parser.add_argument("content", help="the image to repaint")
    parser.add_argument("style", help="the painting whose style to copy")
    parser.add_argument("-o", "--output", help="output PNG or JPEG (default: CONTENT_STYLE.png here)")
    parser.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS), help=f"recipe (default: {DEFAULT_PRESET})")
    parser.add_argument("--size", type=positive_int, help="longer side of the output in pixels (default: the preset's)")
    parser.add_argument("--iterations", type=positive_int, help="optimisation steps (default: the preset's)")
    parser.add_argument(
        "--weights", default="auto",
        help="encoder weights: vgg19, vgg19-normalised, random, a .pth file, or auto "
        "(the preset's pretrained weights if cached or downloadable, else random; default)",
    )
    parser.add_argument("--content-weight", type=non_negative_float, help="content loss weight")
    parser.add_argument("--style-weight", type=non_negative_float, help="style loss weight")
    parser.add_argument("--tv-weight", type=non_negative_float, help="total-variation weight")
    parser.add_argument("--content-layers", nargs="+", metavar="LAYER", help="e.g. relu4_2")
    parser.add_argument("--style-layers", nargs="+", metavar="LAYER", help="e.g. relu1_1 relu2_1 relu3_1")
    parser.add_argument("--optimizer", choices=("lbfgs", "adam", "sgd"), help="default: the preset's")
    parser.add_argument("--learning-rate", type=non_negative_float, help="default: the preset's")
    parser.add_argument("--init", help="start from 'content', 'noise', or an image file (default: the preset's)")
    parser.add_argument("--save-every", type=positive_int, metavar="N", help="also write OUTPUT_<iteration> every N iterations")
    parser.add_argument("--plot", nargs="?", const="", metavar="PNG", help="write a loss-curve PNG (default name: OUTPUT_losses.png)")
    parser.add_argument("--keep-alpha", action="store_true", help="give the output the content image's transparency")
    add_runtime_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    output = Path(args.output) if args.output else Path(f"{Path(args.content).stem}_{Path(args.style).stem}.png")
    check_output_path(output, inputs=(args.content, args.style))
    content = load_image(args.content, keep_alpha=args.keep_alpha)
    style = load_image(args.style)
    init_image, init = None, args.init
    if init not in (None, "content", "noise"):
        init_image, init = load_image(init), None
    content, alpha = split_alpha(content)

    def save_intermediate(progress: Progress) -> None:
        if args.save_every and progress.iteration % args.save_every == 0 and progress.iteration < progress.iterations:
            save_image(tensor_to_image(progress.image.cpu()), numbered_path(output, progress.iteration))

    bar = OptimizationProgress(quiet=args.quiet, on_iteration=save_intermediate)
    try:
        result = optimize(
            content,
            style,
            preset=args.preset,
            size=args.size,
            iterations=args.iterations,
            weights=args.weights,
            init_image=init_image,
            seed=args.seed,
            device=args.device,
            callback=bar,
            download_progress=download_bar(args.quiet),
            content_weight=args.content_weight,
            style_weight=args.style_weight,
            tv_weight=args.tv_weight,
            content_layers=tuple(args.content_layers) if args.content_layers else None,
            style_layers=tuple(args.style_layers) if args.style_layers else None,
            optimizer=args.optimizer,
            learning_rate=args.learning_rate,
            init=init,
        )
    finally:
        bar.close()
    if result.weights_note:
        info(result.weights_note)
    image = merge_alpha(result.image, alpha)
    metadata = {**result.metadata(), "content": Path(args.content).name, "style": Path(args.style).name}
    save_image(image, output, metadata=metadata)
    info(f"wrote {output} ({image.width}x{image.height}, weights {result.weights}, seed {result.seed})")
    if args.plot is not None:
        plot_path = Path(args.plot) if args.plot else output.with_name(f"{output.stem}_losses.png")
        plot_losses(result.history, plot_path, title=f"painterly optimize, preset {args.preset}")
        info(f"wrote {plot_path}")
    return 0
