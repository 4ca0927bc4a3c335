"""``painterly optimize``: Gatys et al. optimisation-based transfer."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any, Callable

from ..errors import SettingsError
from ..files import check_writes, same_file
from ..gatys import (
    DEFAULT_PRESET,
    INIT_CHOICES,
    PRESETS,
    GatysSettings,
    Progress,
    get_preset,
    load_checkpoint,
    optimize,
    save_checkpoint,
)
from ..gatys_tiles import DEFAULT_GATYS_TILE
from ..images import (
    check_output_path,
    load_image,
    merge_alpha,
    save_image,
    split_alpha,
    tensor_to_image,
)
from ..options import add_flags, flag_values, settings_of
from ..plotting import plot_losses
from ..profiles import PROFILE_CHOICES, RANDOM_FEATURES
from ..reproduce import describe_inputs, weight_file_inputs
from ..speed import GATYS_SPEED
from ..temporal import FLOW_PRESETS
from ..video import DEFAULT_TEMPORAL_WEIGHT, VIDEO_SUFFIXES
from .common import (
    OptimizationProgress,
    add_preserve_color_argument,
    add_print_every_argument,
    add_runtime_arguments,
    add_speed_arguments,
    add_subcommand,
    download_bar,
    expand_inputs,
    info,
    non_negative_float,
    numbered_path,
    positive_int,
    speed_settings,
)
from .stylize import VideoBars

EXAMPLES = """\
  painterly optimize photo.jpg starry_night.jpg -o out.png
  painterly optimize photo.jpg starry_night.jpg -o out.png --preset d2l --size 300 --iterations 200
  painterly optimize photo.jpg starry_night.jpg -o out.png --weights random --init content \\
      --tv-weight 1e-5 --save-every 50 --plot losses.png
  painterly optimize photo.jpg starry_night.jpg the_scream.jpg --style-weights 3 7 -o blend.png
  painterly optimize clip.mp4 starry_night.jpg -o clip_styled.mp4 --size 256 --iterations 100   # frame by frame
  painterly optimize photo.jpg styles/ -o out.png                  # every image in a folder
  painterly optimize photo.jpg starry_night.jpg --preserve-color luminance -o out.png
  painterly optimize photo.jpg starry_night.jpg --style-scale 0.5 -o finer_strokes.png
  painterly optimize photo.jpg starry_night.jpg --size 1024 --scales 3 --iterations-per-scale 300 200 100
  painterly optimize photo.jpg sky.jpg ground.jpg --mask top.png bottom.png -o out.png
  painterly optimize photo.jpg starry_night.jpg -o out.png --save-every 100     # writes out.state.pt
  painterly optimize photo.jpg starry_night.jpg -o out.png --resume out.state.pt --iterations 2000
  painterly optimize photo.jpg starry_night.jpg -o out.png --precision bfloat16   # faster steps, slower descent
  painterly optimize photo.jpg starry_night.jpg -o big.png --size 3000 --optimizer adam --tile --tile-size 768
  painterly optimize photo.jpg starry_night.jpg -o out.png --preset d2l --lr-decay none --clamp step
  painterly optimize photo.jpg starry_night.jpg -o out.png --normalize-gradients --lbfgs-history 50 --print-every 25
  painterly reproduce out.png -o again.png                         # the same pixels, from out.png's metadata
  painterly optimize photo.jpg starry_night.jpg -o out.png --style-loss sliced-wasserstein
  painterly optimize photo.jpg starry_night.jpg -o out.png --size 256 --weights random   # the random-features profile
  painterly optimize photo.jpg starry_night.jpg -o out.png --weights random --profile none --pooling avg
presets (each computes what its recipe's code computes as it runs; where the code and its prose
disagree, the code wins, e.g. d2l's style weight is 1e4, not the 1e3 it writes; docs/presets.md):
""" + "\n".join(f"  {name:10s} {settings.source}" for name, settings in PRESETS.items())


def decay_rate(text: str) -> float:
    """A learning-rate decay factor; ``none`` is 1, no decay (bounds: GatysSettings.lr_decay's)."""
    try:
        return 1.0 if text.lower() == "none" else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None


#: GatysSettings fields whose flags parse specially: an image file as --init, 'none' as a
#: decay rate, --preserve-color alone; help, choices and bounds still come from the field.
CUSTOM_FLAGS = ("init", "lr_decay", "preserve_color")


def add_transfer_arguments(parser: argparse.ArgumentParser, *, size_default: int | None = None,
                           iterations_default: int | None = None) -> None:
    """The inputs and settings of a transfer, shared by ``optimize`` and ``sweep``: a flag for
    every setting :class:`GatysSettings` declares for the CLI, and the inputs."""
    parser.add_argument("content", help="the image to repaint")
    parser.add_argument("styles", nargs="+", metavar="STYLE",
                        help="the painting(s) whose style to copy; a folder stands for the images in it")
    parser.add_argument("--style-weights", type=non_negative_float, nargs="+", metavar="W",
                        help="blend weights, one per style image (normalised to sum 1; default: equal)")
    parser.add_argument("--mask", nargs="+", metavar="IMAGE", dest="masks",
                        help="one greyscale mask per style, the content's size: each style applies where "
                        "its mask is white (grey values blend)")
    parser.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS), help=f"recipe (default: {DEFAULT_PRESET})")
    parser.add_argument(
        "--weights", default="auto",
        help="encoder weights: vgg19, vgg19-normalised, random, a .pth file, or auto "
        "(the preset's pretrained weights if cached or downloadable, else random; default)",
    )
    add_flags(parser, GatysSettings, skip=CUSTOM_FLAGS, default_words="the preset's", check=True,
              defaults={"size": size_default, "iterations": iterations_default})
    fields = {setting.name: setting for setting in settings_of(GatysSettings)}
    parser.add_argument(fields["init"].flag, help=fields["init"].help_with("the preset's"))
    parser.add_argument(fields["lr_decay"].flag, type=decay_rate, metavar=fields["lr_decay"].option.metavar,
                        help=fields["lr_decay"].help)
    add_preserve_color_argument(parser, GatysSettings)
    parser.add_argument("--profile", choices=PROFILE_CHOICES, default="auto",
                        help=f"auto (default): with random weights (chosen or fallen back to) use the {RANDOM_FEATURES} "
                        "settings that paint with random features, with pretrained ones the preset's; none: the "
                        "preset's values always. Flags given always win; the output's metadata records the profile")
    add_speed_arguments(parser, default_precision=GATYS_SPEED.precision,
                        why="bfloat16 gradients slow L-BFGS's progress per step")
    parser.add_argument("--tile", action=argparse.BooleanOptionalAction, default=None,
                        help="compute each iteration tile by tile: the same result as one pass (up to rounding) "
                        "in the memory of a tile (default: only the scales whose one pass would not fit)")
    parser.add_argument("--tile-size", type=positive_int, metavar="N",
                        help=f"tile window in pixels, halo included (default: the largest that fits, at most "
                        f"{DEFAULT_GATYS_TILE} with --tile; at least 176 for relu5_1)")
    parser.add_argument("--max-memory", type=positive_float, metavar="GIB",
                        help="memory budget in GiB that decides tiling (default: 90%% of the device's free memory)")
    add_runtime_arguments(parser)
    add_print_every_argument(parser)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def transfer_inputs(args: argparse.Namespace, style_paths: list[Path]) -> list[str | Path]:
    """Every file a transfer reads: content, styles, masks, an init image, a weight file."""
    inputs: list[str | Path] = [args.content, *style_paths, *(args.masks or [])]
    if args.init not in (None, *INIT_CHOICES):
        inputs.append(args.init)
    if Path(args.weights).is_file():
        inputs.append(args.weights)
    return inputs


def working_settings(args: argparse.Namespace, checkpoint: dict[str, Any] | None = None) -> GatysSettings:
    """The size and style scale the run will use (the checkpoint's when resuming), so images
    can be read at that size (:func:`load_image`'s ``reduce_to``) the same way every time."""
    base = GatysSettings.from_dict(checkpoint["settings"]) if checkpoint is not None else get_preset(args.preset)
    return base.updated(size=args.size, style_scale=args.style_scale)


def transfer_keywords(args: argparse.Namespace, style_paths: list[Path], *, style_size: int | None = None) -> dict[str, Any]:
    """Read the inputs and settings of :func:`add_transfer_arguments` into :func:`optimize`
    keywords; ``style_paths`` are the style arguments already expanded (:func:`expand_inputs`);
    huge JPEG styles are read reduced towards ``style_size`` (:func:`load_image`)."""
    init_image, init = None, args.init
    if init not in (None, *INIT_CHOICES):
        init_image, init = load_image(init), None
    settings = flag_values(args, GatysSettings, skip=("size", "iterations", *CUSTOM_FLAGS))
    if len(settings.get("pixel_scale", ())) == 1:
        settings["pixel_scale"] = settings["pixel_scale"][0]
    return {
        "style": [load_image(path, reduce_to=style_size) for path in style_paths],
        "style_weights": args.style_weights,
        "masks": [load_image(path) for path in args.masks] if args.masks else None,
        "preset": args.preset,
        "size": args.size,
        "iterations": args.iterations,
        "weights": args.weights,
        "init_image": init_image,
        "seed": args.seed,
        "device": args.device,
        "speed": speed_settings(args),
        "download_progress": download_bar(args.quiet),
        **settings,
        "init": init,
        "lr_decay": args.lr_decay,
        "preserve_color": args.preserve_color,
        "profile": args.profile,
        "tile": "auto" if args.tile is None else args.tile,
        "tile_size": args.tile_size,
        "max_memory": args.max_memory,
    }


def recorded_inputs(args: argparse.Namespace, style_paths: list[Path]) -> dict[str, list[dict[str, str]]]:
    """The files of :func:`add_transfer_arguments` as recorded in an output: path, name, SHA-256."""
    init = [args.init] if args.init not in (None, *INIT_CHOICES) else None
    return describe_inputs(content=[args.content], style=style_paths, mask=args.masks, init=init) | weight_file_inputs(
        weights=args.weights)


class ScaleProgress:
    """One progress bar per scale (described by ``description``), and ``on_iteration`` after each step."""

    def __init__(self, *, quiet: bool, description: str = "optimising",
                 on_iteration: Callable[[Progress], None] | None = None, print_every: int | None = None) -> None:
        self.quiet, self.description, self.on_iteration = quiet, description, on_iteration
        self.print_every = print_every
        self.scale = 0
        self.bar: OptimizationProgress | None = None

    def __call__(self, progress: Progress) -> None:
        if progress.scale != self.scale:
            self.close()
            self.scale = progress.scale
            description = self.description + (f", scale {progress.scale}/{progress.scales}" if progress.scales > 1 else "")
            self.bar = OptimizationProgress(quiet=self.quiet, description=description, on_iteration=self.on_iteration,
                                            print_every=self.print_every)
        self.bar(progress)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(
        subparsers, "optimize", help="repaint an image by optimisation (Gatys et al.; slow, any style)", examples=EXAMPLES
    )
    add_transfer_arguments(parser)
    parser.add_argument("-o", "--output", help="output PNG or JPEG (default: CONTENT_STYLE.png here)")
    parser.add_argument("--save-every", type=positive_int, metavar="N",
                        help="every N iterations write OUTPUT_<iteration> (OUTPUT_scale<k>_<iteration> with "
                        "several scales) and the run's state OUTPUT.state.pt, for --resume")
    parser.add_argument("--resume", metavar="STATE",
                        help="continue the run saved in STATE (a .state.pt from --save-every) with its settings, "
                        "seed and weights; only --iterations/--iterations-per-scale may change")
    parser.add_argument("--plot", nargs="?", const="", metavar="PNG",
                        help="write a loss-curve PNG, a .png name (default name: OUTPUT_losses.png)")
    parser.add_argument("--keep-alpha", action="store_true", help="give the output the content image's transparency")
    parser.add_argument("--temporal-weight", type=non_negative_float, default=DEFAULT_TEMPORAL_WEIGHT, metavar="W",
                        help="a video's frames: weight of the temporal loss towards the previous result warped along "
                        f"the optical flow (Ruder et al. 2016; default: {DEFAULT_TEMPORAL_WEIGHT:g}; 0: independent frames)")
    parser.add_argument("--flow", choices=FLOW_PRESETS, default="medium",
                        help="a video's DIS optical flow preset (default: medium)")
    parser.set_defaults(run=run)


def run_video(args: argparse.Namespace) -> int:
    """A video content: every frame optimised in turn, held to the previous one (docs/video.md)."""
    from ..video import check_video_output, optimize_video

    content = Path(args.content)
    style_paths = expand_inputs(args.styles, what="style")
    output = Path(args.output) if args.output else Path(f"{content.stem}_{style_paths[0].stem}.mp4")
    check_video_output(output, inputs=(content, *style_paths, *(args.masks or [])))
    if args.resume or args.save_every or args.plot is not None or args.keep_alpha:
        raise SettingsError("--resume, --save-every, --plot and --keep-alpha are for images: a video resumes by itself")
    keywords = transfer_keywords(args, style_paths)
    styles = keywords.pop("style")
    names = [path.name for path in style_paths]
    metadata = {"content": content.name, "style": names[0] if len(names) == 1 else names}
    with VideoBars(content.name, quiet=args.quiet) as bars:
        result = optimize_video(content, output, styles, temporal_weight=args.temporal_weight, flow_preset=args.flow,
                                metadata=metadata, progress=bars, **keywords)
    reused = f"; reused {result.reused_frames} frames optimised before" if result.reused_frames else ""
    info(f"wrote {output}: {result.frames} frames at {float(result.fps):.3g} fps, flicker E_warp "
         f"{result.warping_error:.5f}{reused}")
    return 0


def run(args: argparse.Namespace) -> int:
    if Path(args.content).suffix.lower() in VIDEO_SUFFIXES:
        return run_video(args)
    output = Path(args.output) if args.output else Path(f"{Path(args.content).stem}_{Path(args.styles[0]).stem}.png")
    check_output_path(output)
    state_path = output.with_suffix(".state.pt")
    plot_path = None
    if args.plot is not None:
        plot_path = Path(args.plot) if args.plot else output.with_name(f"{output.stem}_losses.png")
        if plot_path.suffix.lower() != ".png":
            raise SettingsError(f"--plot {plot_path}: a loss curve is a PNG; give a name ending in .png")
    style_paths = expand_inputs(args.styles, what="style")  # once: a folder may change during a long run
    writes = [output, *([plot_path] if plot_path else [])]
    if args.save_every and not (args.resume and same_file(state_path, args.resume)):
        writes.append(state_path)  # continuing a run overwrites its own state, and only that
    snapshots = rf"{re.escape(output.stem)}(_scale\d+)?_\d{{5,}}{re.escape(output.suffix)}"
    check_writes(writes, [*transfer_inputs(args, style_paths), *([args.resume] if args.resume else [])],
                 families=[(output.parent, snapshots)] if args.save_every else [])
    checkpoint = load_checkpoint(args.resume) if args.resume else None
    working = working_settings(args, checkpoint)
    # Masks are checked against the content's own size: read it whole when there are some.
    reduce_to = None if args.masks else working.size
    content, alpha = split_alpha(load_image(args.content, keep_alpha=args.keep_alpha, reduce_to=reduce_to))
    keywords = transfer_keywords(args, style_paths, style_size=round(working.size * working.style_scale))
    saved_state = False

    def save_intermediate(progress: Progress) -> None:
        if not args.save_every or progress.iteration % args.save_every:
            return
        if progress.iteration < progress.iterations:
            name = output.with_name(f"{output.stem}_scale{progress.scale}{output.suffix}") if progress.scales > 1 else output
            save_image(tensor_to_image(progress.image.cpu()), numbered_path(name, progress.iteration))
        save_checkpoint(progress.checkpoint(), state_path)
        nonlocal saved_state
        saved_state = True

    bar = ScaleProgress(quiet=args.quiet, on_iteration=save_intermediate, print_every=args.print_every)
    try:
        result = optimize(content, callback=bar, resume=checkpoint, **keywords)
    finally:
        bar.close()
    if result.weights_note:
        info(result.weights_note)
    image = merge_alpha(result.image, alpha)
    styles = [path.name for path in style_paths]
    metadata = {**result.metadata(), "content": Path(args.content).name, "style": styles[0] if len(styles) == 1 else styles,
                "inputs": recorded_inputs(args, style_paths)}
    if args.masks:
        metadata["masks"] = [Path(path).name for path in args.masks]
    if alpha is not None:
        metadata["keep_alpha"] = True
    save_image(image, output, metadata=metadata)
    info(f"wrote {output} ({image.width}x{image.height}, weights {result.weights}, seed {result.seed})")
    if any(result.tile_sizes):
        info("tiles: " + ", ".join(f"{size} px" if size else "one pass" for size in result.tile_sizes)
             + (" (scales coarse to fine)" if len(result.tile_sizes) > 1 else ""))
    if saved_state:
        info(f"wrote {state_path} (continue with --resume {state_path})")
    if plot_path is not None:
        plot_losses(result.history, plot_path, title=f"painterly optimize, preset {args.preset}")
        info(f"wrote {plot_path}")
    return 0
