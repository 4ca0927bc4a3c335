"""``painterly stylize``: AdaIN arbitrary style transfer for images, batches and videos."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from ..adain import (
    DEFAULT_BATCH_SIZES,
    DEFAULT_STYLE_SIZE,
    DEFAULT_TILE_OVERLAP,
    DEFAULT_TILE_SIZE,
    AdaINModel,
    check_settings,
    default_batch_size,
    stylize_batch,
)
from ..device import resolve_device
from ..errors import SettingsError
from ..files import check_writes
from ..images import IMAGE_SUFFIXES, OUTPUT_SUFFIXES, check_output_path, load_image, save_image
from .common import (
    add_preserve_color_argument,
    add_runtime_arguments,
    add_speed_arguments,
    add_subcommand,
    download_bar,
    expand_inputs,
    info,
    positive_int,
    seed,
    speed_settings,
)

#: Content files with these endings are stylised frame by frame (needs the ``video`` extra).
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm")

EXAMPLES = """\
  painterly stylize photo.jpg --style starry_night.jpg -o out.png
  painterly stylize photos/ --style 'styles/*.jpg' -o results/       # every pair, {photo}_{style}.png
  painterly stylize photo.jpg --style a.jpg b.jpg --style-weights 3 1 -o mix.png
  painterly stylize photo.jpg --style a.jpg b.jpg --mask sky.png ground.png -o regions.png
  painterly stylize photo.jpg --style a.jpg -o out.png --alpha 0.6 --preserve-color --content-size 1024
  painterly stylize photo.jpg --style a.jpg -o out.png --preserve-color luminance
  painterly stylize huge.tif --style a.jpg -o huge.png --tile --tile-size 384
  painterly stylize clip.mp4 --style a.jpg -o clip_a.mp4             # needs pip install 'painterly[video]'
  painterly stylize clip.mp4 --style a.jpg -o clip_a.mp4 --device cuda --batch-size 16 --compile
  painterly stylize photo.jpg --style a.jpg -o out.png --precision float32   # exact float32 arithmetic
  painterly stylize photo.jpg --style a.jpg -o out.png --encoder random --decoder my_decoder.pth  # offline"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(
        subparsers, "stylize", help="repaint images or videos in any style in one pass (AdaIN; fast)", examples=EXAMPLES
    )
    parser.add_argument("content", nargs="+", metavar="CONTENT", help="images, folders, globs or videos to repaint")
    parser.add_argument("--style", nargs="+", required=True, metavar="STYLE", help="style images, folders or globs")
    parser.add_argument("-o", "--output", required=True,
                        help="output folder; a file (PNG, JPEG, or a video) when there is one output")
    parser.add_argument("--alpha", type=float, default=1.0, help="style strength from 0 (content) to 1 (default: 1)")
    parser.add_argument("--style-weights", nargs="+", type=float, metavar="W",
                        help="blend all styles into one output per content, with these weights (normalised to sum 1)")
    add_preserve_color_argument(parser)
    parser.add_argument("--mask", nargs="+", metavar="M",
                        help="one mask image per style, the content's size: white where that style goes, grey for a share")
    parser.add_argument("--decoder", default="auto",
                        help="decoder: adain (released, 14 MB), bundled (painterly's, for random weights of seed 0; "
                        "shipped, nothing to download) or a decoder .pth file (default: auto, adain when cached "
                        "or downloadable, else bundled)")
    parser.add_argument("--encoder", default="auto",
                        help="encoder: adain / vgg19-normalised, random (seeded), bundled, or a VGG-19 .pth; "
                        "must be the one the decoder was trained with (default: auto, the decoder's partner)")
    parser.add_argument("--content-size", type=positive_int, metavar="N", help="longer side of the output (default: the content's)")
    parser.add_argument("--style-size", type=positive_int, default=DEFAULT_STYLE_SIZE, metavar="N",
                        help=f"longer side the style is read at (default: {DEFAULT_STYLE_SIZE})")
    parser.add_argument("--tile", action=argparse.BooleanOptionalAction, default=None,
                        help="stylise in overlapping tiles, for huge images (default: automatic past 2 megapixels)")
    parser.add_argument("--tile-size", type=positive_int, default=DEFAULT_TILE_SIZE, metavar="N",
                        help=f"tile side in pixels, a multiple of 8 (default: {DEFAULT_TILE_SIZE})")
    parser.add_argument("--tile-overlap", type=int, default=DEFAULT_TILE_OVERLAP, metavar="N",
                        help=f"pixels neighbouring tiles share, a multiple of 8 (default: {DEFAULT_TILE_OVERLAP})")
    parser.add_argument("--batch-size", type=positive_int, metavar="N",
                        help="same-size images or video frames per network pass (default: "
                        + ", ".join(f"{n} on {kind}" for kind, n in DEFAULT_BATCH_SIZES.items())
                        + "; batches ran slower than single images on a 2-core CPU)")
    parser.add_argument("--overwrite", action="store_true", help="redo outputs that already exist (default: skip them)")
    add_speed_arguments(parser, default_precision="auto", why="bfloat16 output measured over 46 dB PSNR against float32's")
    add_runtime_arguments(parser)
    parser.add_argument("--encoder-seed", type=seed, dest="seed", metavar="SEED",
                        help="seed of --encoder random weights: train's flag of that name (here the same as --seed)")
    parser.set_defaults(run=run)


def plan(contents: list[Path], style_groups: list[list[Path]], output: Path) -> list[tuple[Path, list[Path], Path]]:
    """(content, styles, output path) for every job: a file when there is one, else a folder's
    ``{content}_{style}.png`` (``.mp4`` for videos; styles blended are joined with ``+``)."""
    single = len(contents) * len(style_groups) == 1
    if output.suffix.lower() in IMAGE_SUFFIXES and output.suffix.lower() not in OUTPUT_SUFFIXES and not output.is_dir():
        raise SettingsError(f"-o {output}: painterly writes {', '.join(OUTPUT_SUFFIXES)} images (or videos): "
                            "choose one of those endings, or a folder")
    if single and output.suffix.lower() in OUTPUT_SUFFIXES + VIDEO_SUFFIXES:
        return [(contents[0], style_groups[0], output)]
    if output.suffix.lower() in OUTPUT_SUFFIXES + VIDEO_SUFFIXES:
        raise SettingsError(
            f"-o {output} names one file but there are {len(contents) * len(style_groups)} outputs: give a folder"
        )
    jobs = []
    for styles in style_groups:  # style-major, so each style is encoded once
        style_stem = "+".join(p.stem for p in styles)
        for content in contents:
            suffix = ".mp4" if is_video(content) else ".png"
            jobs.append((content, styles, output / f"{content.stem}_{style_stem}{suffix}"))
    names = [job[2].name for job in jobs]
    clashes = sorted({name for name in names if names.count(name) > 1})
    if clashes:
        raise SettingsError(f"several inputs would be written to {clashes[0]}: give the files different names")
    return jobs


class TileBar:
    """A bar over the tiles of one huge image; drawn only when there is more than one tile."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: tqdm | None = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None and total > 1 and not self.quiet:
            self.bar = tqdm(total=total, desc="tiles", unit="tile", leave=False, file=sys.stderr)
        if self.bar is not None:
            self.bar.update(done - self.bar.n)

    def __enter__(self) -> "TileBar":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


Job = tuple[Path, list[Path], Path]


def batches(jobs: list[Job], size: int) -> list[list[Job]]:
    """Runs of up to ``size`` consecutive image jobs with the same styles; a video is a job alone."""
    groups: list[list[Job]] = []
    for job in jobs:
        last = groups[-1] if groups else None
        if last and len(last) < size and last[0][1] == job[1] and not is_video(last[0][0]) and not is_video(job[0]):
            last.append(job)
        else:
            groups.append([job])
    return groups


def run(args: argparse.Namespace) -> int:
    contents = expand_inputs(args.content, what="content", suffixes=IMAGE_SUFFIXES + VIDEO_SUFFIXES)
    styles = expand_inputs(args.style, what="style")
    blend = args.style_weights is not None or args.mask is not None
    tile = "auto" if args.tile is None else args.tile
    check_settings(style_count=len(styles) if blend else 1, alpha=args.alpha, style_weights=args.style_weights,
                   preserve_color=args.preserve_color, masks=args.mask, tile=tile, tile_size=args.tile_size, tile_overlap=args.tile_overlap)
    jobs = plan(contents, [styles] if blend else [[s] for s in styles], Path(args.output))
    for content, job_styles, output in jobs:
        if not is_video(output) and not is_video(content):
            check_output_path(output)
        elif is_video(output) != is_video(content):
            raise SettingsError(f"{content} -> {output}: a video becomes a video (.mp4), an image an image")
    todo = [job for job in jobs if args.overwrite or not job[2].exists()]
    skipped = len(jobs) - len(todo)
    # Every output written against every input of the whole batch (x.png's result must not
    # land on x_style.png, another job's content), masks and weight files included.
    weight_files = [path for path in (args.encoder, args.decoder) if Path(path).is_file()]
    check_writes([job[2] for job in todo], [*contents, *styles, *(args.mask or []), *weight_files])
    if not todo:
        info(f"all {len(jobs)} output(s) exist already; --overwrite redoes them")
        return 0
    masks = [load_image(m) for m in args.mask] if args.mask else None
    model = AdaINModel.load(encoder=args.encoder, decoder=args.decoder, seed=args.seed, speed=speed_settings(args),
                            device=resolve_device(args.device), progress=download_bar(args.quiet))
    if model.weights_note:
        info(model.weights_note)
    batch_size = args.batch_size or default_batch_size(model.device)
    settings = dict(
        alpha=args.alpha, style_weights=args.style_weights, preserve_color=args.preserve_color, masks=masks,
        content_size=args.content_size, style_size=args.style_size, tile=tile, tile_size=args.tile_size,
        tile_overlap=args.tile_overlap, seed=args.seed, model=model, batch_size=batch_size,
    )
    loaded_paths: list[Path] = []
    job_images: list = []
    bar = tqdm(total=len(todo), desc="stylizing", unit="image", file=sys.stderr, disable=args.quiet)
    try:
        for group in batches(todo, batch_size):
            content, job_styles, output = group[0]
            if job_styles != loaded_paths:  # jobs come style by style: each style is read once
                loaded_paths, job_images = job_styles, [load_image(p, reduce_to=args.style_size) for p in job_styles]
            if is_video(content):
                from ..video import stylize_video

                def transform(frames: list) -> list:
                    return [result.image for result in stylize_batch(frames, job_images, **settings)]

                with tqdm(desc=content.name, unit="frame", leave=False, file=sys.stderr, disable=args.quiet) as frames:
                    stylize_video(content, output, transform, batch_size=batch_size,
                                  progress=lambda done: frames.update(done - frames.n))
            else:
                with TileBar(quiet=args.quiet) as tiles:
                    contents_read = [load_image(job[0], reduce_to=None if args.mask else args.content_size)
                                     for job in group]  # masks must keep the content's own size
                    results = stylize_batch(contents_read, job_images, callback=tiles, **settings)
                names = [p.name for p in job_styles]
                for (content, _, output), result in zip(group, results):
                    metadata = {**result.metadata(), "content": content.name, "style": names[0] if len(names) == 1 else names}
                    if args.mask:
                        metadata["mask"] = [Path(m).name for m in args.mask]
                    save_image(result.image, output, metadata=metadata)
            bar.update(len(group))
    finally:
        bar.close()
    note = f"; skipped {skipped} that exist (--overwrite redoes them)" if skipped else ""
    info(f"wrote {len(todo)} output(s) to {jobs[0][2] if len(jobs) == 1 else args.output}{note}")
    return 0
