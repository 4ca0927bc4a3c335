"""``painterly stylize``: AdaIN arbitrary style transfer for images, batches and videos."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from ..adain import DEFAULT_BATCH_SIZES, AdaINModel, StylizeSettings, default_batch_size, stylize_batch
from ..device import resolve_device
from ..distributed import Shard, shard_from_environment
from ..errors import ImageError, SettingsError
from ..files import check_writes
from ..images import IMAGE_SUFFIXES, OUTPUT_SUFFIXES, check_output_path, load_image, save_image
from .common import (
    add_preserve_color_argument,
    add_runtime_arguments,
    add_speed_arguments,
    add_subcommand,
    download_bar,
    expand_inputs,
    add_print_every_argument,
    info,
    line_interval,
    positive_int,
    seed,
    speed_settings,
)
from ..options import add_flags, flag_values, keywords
from ..reproduce import describe_inputs, weight_file_inputs
from ..temporal import FLOW_PRESETS
from ..video import DEFAULT_TEMPORAL_STRENGTH, VIDEO_SUFFIXES, check_video_output

EXAMPLES = """\
  painterly stylize photo.jpg --style starry_night.jpg -o out.png
  painterly stylize photos/ --style 'styles/*.jpg' -o results/       # every pair, {photo}_{style}.png
  painterly stylize photo.jpg --style a.jpg b.jpg --style-weights 3 1 -o mix.png
  painterly stylize photo.jpg --style a.jpg b.jpg --mask sky.png ground.png -o regions.png
  painterly stylize photo.jpg --style a.jpg -o out.png --alpha 0.6 --preserve-color --content-size 1024
  painterly stylize photo.jpg --style a.jpg -o out.png --preserve-color luminance
  painterly stylize photo.jpg --style a.jpg -o out.png --supersample 3   # paint at 3x, shrink: finer strokes, 9x the time
  painterly stylize photo.jpg --style a.jpg -o out.png --feature-transform wct   # the style's feature covariance, not only stds
  painterly stylize photo.jpg --style a.jpg -o out.png --margin 64   # paint 64 px of reflected picture past each edge, crop it: no frame
  painterly stylize huge.tif --style a.jpg -o huge.png --tile --tile-size 384 --tile-overlap 136
  painterly stylize clip.mp4 --style a.jpg -o clip_a.mp4             # needs pip install 'painterly[video]'
  painterly stylize clip.mp4 --style a.jpg -o clip_a.mp4 --temporal       # steady over time: flow-guided blending
  painterly stylize clip.mp4 --style a.jpg -o clip_a.mp4 --device cuda --batch-size 16 --compile
  torchrun --nproc_per_node 4 -m painterly stylize clip.mp4 photos/ --style a.jpg -o out/   # 4 processes share the work
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
    add_flags(parser, StylizeSettings, skip=("preserve_color",))
    add_preserve_color_argument(parser, StylizeSettings)
    parser.add_argument("--mask", nargs="+", metavar="M",
                        help="one mask image per style, the content's size: white where that style goes, grey for a share")
    parser.add_argument("--decoder", default="auto",
                        help="decoder: adain (released, 14 MB), bundled (painterly's, for random weights of seed 0; "
                        "shipped, nothing to download) or a decoder .pth file (default: auto, adain when cached "
                        "or downloadable, else bundled)")
    parser.add_argument("--encoder", default="auto",
                        help="encoder: adain / vgg19-normalised, random (seeded), bundled, or a VGG-19 .pth; "
                        "must be the one the decoder was trained with (default: auto, the decoder's partner)")
    parser.add_argument("--batch-size", type=positive_int, metavar="N",
                        help="same-size images or video frames per network pass (default: "
                        + ", ".join(f"{n} on {kind}" for kind, n in DEFAULT_BATCH_SIZES.items())
                        + "; batches ran slower than single images on a 2-core CPU)")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo outputs that already exist in an output folder (default: skip them, saying so); "
                        "a file named with -o is always written")
    video = parser.add_argument_group("videos (docs/video.md)")
    video.add_argument("--temporal", action="store_true",
                       help="steady the video: blend each frame with the previous output warped along the optical "
                       "flow, where it is visible (costs about two flow fields a frame; needs opencv-python-headless)")
    video.add_argument("--temporal-strength", type=float, default=DEFAULT_TEMPORAL_STRENGTH, metavar="S",
                       help=f"share of the warped previous output a visible pixel keeps, 0 to 1 "
                       f"(default: {DEFAULT_TEMPORAL_STRENGTH}); higher is steadier but smears more")
    video.add_argument("--hold-statistics", action="store_true",
                       help="average the content's feature statistics over neighbouring frames of a shot "
                       "(one more encoder pass a frame)")
    video.add_argument("--flow", choices=FLOW_PRESETS, default="medium",
                       help="DIS optical flow preset for --temporal and the flicker score (default: medium)")
    add_speed_arguments(parser, default_precision="auto", why="bfloat16 output measured over 46 dB PSNR against float32's")
    add_runtime_arguments(parser)
    add_print_every_argument(parser)
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


class VideoBars:
    """One bar per stage of a video (statistics, stylising, encoding), with frames/s and an ETA."""

    def __init__(self, name: str, *, quiet: bool) -> None:
        self.name, self.quiet = name, quiet
        self.bars: dict[str, tqdm] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.quiet:
            return
        if stage not in self.bars:
            # initial=: frames reused from an interrupted run do not inflate the rate.
            self.bars[stage] = tqdm(total=total, initial=done, desc=f"{self.name}: {stage}", unit="frame",
                                    file=sys.stderr)
        bar = self.bars[stage]
        bar.update(done - bar.n)

    def __enter__(self) -> "VideoBars":
        return self

    def __exit__(self, *exc: object) -> None:
        for bar in self.bars.values():
            bar.close()


def run_video(args: argparse.Namespace, content: Path, style_paths: list[Path], styles: list, output: Path,
              shard: Shard, settings: dict) -> None:
    """One video job: every rank stylises its share of the frames, rank 0 writes the file."""
    from ..video import stylize_video

    metadata = {"content": content.name, "style": [p.name for p in style_paths] if len(style_paths) > 1 else style_paths[0].name}
    options = {key: value for key, value in settings.items() if key != "batch_size"}
    with VideoBars(content.name, quiet=args.quiet) as bars:
        result = stylize_video(content, output, styles, temporal=args.temporal, temporal_strength=args.temporal_strength,
                               hold_statistics=args.hold_statistics, flow_preset=args.flow,
                               batch_size=settings["batch_size"], shard=shard, metadata=metadata, progress=bars, **options)
    if shard.is_main and result.warping_error is not None:
        reused = f"; reused {result.reused_frames} frames stylised before" if result.reused_frames else ""
        info(f"{output}: {result.frames} frames at {float(result.fps):.3g} fps, flicker E_warp "
             f"{result.warping_error:.5f} (frames as stylised: {result.warping_error_per_frame:.5f}){reused}")


def share_out(args: argparse.Namespace, jobs: list[Job], *, always: bool) -> tuple[Shard, torch.device, list[Job]]:
    """This process's :class:`Shard` (under torchrun), its device, and the jobs to do (those
    whose outputs are missing, or all with --overwrite or ``always``), as rank 0 sees them, so
    every rank splits one list."""
    device = resolve_device(args.device)
    shard = shard_from_environment(device)
    if device.type == "cuda" and shard.world_size > 1:
        device = torch.device("cuda", shard.local_rank)
    args.quiet = args.quiet or not shard.is_main
    return shard, device, shard.broadcast([job for job in jobs if always or args.overwrite or not job[2].exists()])


def run(args: argparse.Namespace) -> int:
    contents = expand_inputs(args.content, what="content", suffixes=IMAGE_SUFFIXES + VIDEO_SUFFIXES)
    styles = expand_inputs(args.style, what="style")
    blend = args.style_weights is not None or args.mask is not None
    stylize_settings = StylizeSettings(**flag_values(args, StylizeSettings))  # --preserve-color's too
    stylize_settings.style_blend(len(styles) if blend else 1, masks=len(args.mask) if args.mask else None)
    jobs = plan(contents, [styles] if blend else [[s] for s in styles], Path(args.output))
    for content, job_styles, output in jobs:
        if not is_video(output) and not is_video(content):
            check_output_path(output)
        elif is_video(output) != is_video(content):
            raise SettingsError(f"{content} -> {output}: a video becomes a video (.mp4), an image an image")
        else:
            check_video_output(output, inputs=(content, *job_styles, *(args.mask or [])))
    if not 0.0 <= args.temporal_strength <= 1.0:
        raise SettingsError(f"--temporal-strength must be between 0 and 1, got {args.temporal_strength}")
    # The overwrite rule (README, "Outputs"): a file named with -o is always written; in a
    # folder painterly names the files and skips those that exist, unless --overwrite.
    named_file = Path(args.output).suffix.lower() in OUTPUT_SUFFIXES + VIDEO_SUFFIXES
    shard, device, todo = share_out(args, jobs, always=named_file)
    skipped = len(jobs) - len(todo)
    # Every output written against every input of the whole batch (x.png's result must not
    # land on x_style.png, another job's content), masks and weight files included.
    weight_files = [path for path in (args.encoder, args.decoder) if Path(path).is_file()]
    check_writes([job[2] for job in todo], [*contents, *styles, *(args.mask or []), *weight_files])
    if not todo:
        if shard.is_main:
            info(f"skipped all {len(jobs)} output(s): they exist already in {args.output} (--overwrite redoes them)")
        shard.close()
        return 0
    masks = [load_image(m) for m in args.mask] if args.mask else None
    model = AdaINModel.load(encoder=args.encoder, decoder=args.decoder, seed=args.seed, speed=speed_settings(args),
                            device=device, progress=download_bar(args.quiet))
    if model.weights_note and shard.is_main:
        info(model.weights_note)
    batch_size = args.batch_size or default_batch_size(model.device)
    settings = dict(**keywords(stylize_settings), masks=masks, seed=args.seed, model=model, batch_size=batch_size)
    weight_records = weight_file_inputs(encoder=args.encoder, decoder=args.decoder)
    failed: list[str] = []  # why each unreadable content was skipped
    written = 0
    loaded_paths: list[Path] = []
    job_images: list = []
    # Each rank takes every world_size-th image; every rank takes a share of each video's frames.
    images = shard.take([job for job in todo if not is_video(job[0])])
    mine = [job for job in todo if is_video(job[0]) or job in images]
    bar = ImageProgress(total=len(mine), quiet=args.quiet, print_every=args.print_every)
    try:
        for group in batches(mine, batch_size):
            content, job_styles, output = group[0]
            if job_styles != loaded_paths:  # jobs come style by style: each style is read once
                loaded_paths, job_images = job_styles, [load_image(p, reduce_to=stylize_settings.style_size)
                                                     for p in job_styles]
            if is_video(content):
                try:
                    run_video(args, content, job_styles, job_images, output, shard, settings)
                    written += 1
                except ImageError as error:
                    failed.append(str(error))
            else:
                # Huge JPEGs are read reduced towards the output size; masks need the content's own size.
                readable, images = _load_contents(group, failed,
                                                  reduce_to=None if args.mask else stylize_settings.content_size)
                with TileBar(quiet=args.quiet) as tiles:
                    results = stylize_batch(images, job_images, callback=tiles, **settings) if images else []
                names = [p.name for p in job_styles]
                for (content, _, output), result in zip(readable, results):
                    metadata = {**result.metadata(), "content": content.name, "style": names[0] if len(names) == 1 else names,
                                "inputs": describe_inputs(content=[content], style=job_styles, mask=args.mask) | weight_records}
                    if args.mask:
                        metadata["masks"] = [Path(m).name for m in args.mask]
                    save_image(result.image, output, metadata=metadata)
                    written += 1
            bar.update(len(group))
    finally:
        bar.close()
    return _report(written, skipped, failed, jobs, args.output, shard)


class ImageProgress:
    """The bar over images (or, without a terminal or with --print-every, a line every N images)."""

    def __init__(self, *, total: int, quiet: bool, print_every: int | None) -> None:
        self.total, self.quiet, self.done = total, quiet, 0
        self.interval = line_interval(print_every)
        self.bar = tqdm(total=total, desc="stylizing", unit="image", file=sys.stderr,
                        disable=quiet or self.interval is not None)

    def update(self, count: int) -> None:
        self.bar.update(count)
        before, self.done = self.done, self.done + count
        if not self.quiet and self.interval is not None and (
                self.done // self.interval > before // self.interval or self.done == self.total):
            info(f"stylizing: {self.done}/{self.total} images")

    def close(self) -> None:
        self.bar.close()


def _load_contents(group: list[Job], failed: list[str], *, reduce_to: int | None) -> tuple[list[Job], list]:
    """The group's jobs whose content could be read, and their images; the others' reasons go to ``failed``."""
    readable, images = [], []
    for job in group:
        try:
            images.append(load_image(job[0], reduce_to=reduce_to))
        except ImageError as error:
            failed.append(str(error))
            continue
        readable.append(job)
    return readable, images


def _report(written: int, skipped: int, failed: list[str], jobs: list[Job], output: str, shard: Shard) -> int:
    """The closing lines: what was written and skipped; exit code 1 when an input could not be read."""
    if failed and not written:
        more = f" (and {len(failed) - 1} more unreadable)" if len(failed) > 1 else ""
        raise ImageError(failed[0] + more)
    note = f"; skipped {skipped} that exist (--overwrite redoes them)" if skipped else ""
    if shard.is_main:
        info(f"wrote {written} output(s) to {jobs[0][2] if len(jobs) == 1 else output}{note}")
        if failed:
            info(f"skipped {len(failed)} unreadable content file(s); every other output was written:")
            for reason in failed:
                info(f"  {reason}")
    shard.close()
    return 1 if failed else 0
    return 0
