"""``painterly train``: train an AdaIN decoder on folders of content and style images."""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from pathlib import Path

from tqdm import tqdm

from ..device import DEVICE_CHOICES
from ..errors import Cancelled, SettingsError
from ..files import check_writes
from ..training import RECIPE_SOURCES, RECIPES, TrainProgress, TrainStart, train
from .common import SEED_HELP, add_print_every_argument, add_subcommand, info, line_interval, non_negative_float, positive_int, seed

EXAMPLES = """\
  painterly train --content-dir coco/ --style-dir wikiart/ -o runs/adain       # the reference recipe
  painterly train --content-dir voc/ --style-dir artworks/ -o runs/keras --recipe keras
  painterly train --content-dir photos/ --style-dir paintings/ -o runs/quick --encoder random \\
      --iterations 2000 --crop-size 128 --image-size 160 --batch-size 4 --val-fraction 0.1
  painterly train --resume runs/adain                      # continue after Ctrl-C, SIGTERM or a crash
  painterly train --resume runs/adain --iterations 200000  # train longer
  torchrun --nproc_per_node 4 -m painterly train --content-dir coco/ --style-dir wikiart/ -o runs/ddp
then stylise with the decoder and the same encoder:
  painterly stylize photo.jpg --style starry_night.jpg -o out.png --decoder runs/adain/decoder.pth --encoder vgg19-normalised
recipes:
""" + "\n".join(f"  {name:7s} {source}" for name, source in RECIPE_SOURCES.items())


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(subparsers, "train", help="train an AdaIN decoder on folders of content and style images", examples=EXAMPLES)
    parser.add_argument("--content-dir", metavar="DIR", help="folder tree of content images (photos)")
    parser.add_argument("--style-dir", metavar="DIR", help="folder tree of style images (paintings)")
    parser.add_argument("-o", "--run-dir", metavar="RUN_DIR", help="folder for checkpoints, logs and decoder.pth")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its newest checkpoint")
    parser.add_argument("--recipe", choices=sorted(RECIPES), help="settings to start from (default: adain)")
    group = parser.add_argument_group("settings (default: the recipe's)")
    group.add_argument("--lr", type=non_negative_float, help="Adam learning rate (adain: 1e-4)")
    group.add_argument("--lr-decay", type=non_negative_float, help="lr / (1 + lr_decay * iteration) (adain: 5e-5; 0: constant)")
    group.add_argument("--batch-size", type=positive_int, help="images per batch and process (adain: 8)")
    group.add_argument("--image-size", type=positive_int, help="shorter side images are resized to (adain: 512)")
    group.add_argument("--crop-size", type=positive_int, help="side of the random square crops (adain: 256)")
    group.add_argument("--content-weight", type=non_negative_float, help="weight of the content loss (1)")
    group.add_argument("--style-weight", type=non_negative_float, help="weight lambda of the style loss (adain: 10)")
    group.add_argument("--iterations", type=positive_int, help="optimiser steps in all (adain: 160000)")
    group.add_argument("--workers", type=int, help="data loader processes per training process (4; 0 loads in-process)")
    group.add_argument("--seed", type=seed, help=f"seed of the decoder's initialisation and the data order, {SEED_HELP} (0)")
    group.add_argument("--encoder", metavar="NAME|PATH",
                       help="frozen encoder: vgg19-normalised (default), adain, vgg19, random, or a weight file")
    group.add_argument("--encoder-seed", type=seed, help=f"seed of --encoder random weights, {SEED_HELP} (0)")
    group.add_argument("--device", choices=DEVICE_CHOICES, help="where to compute (auto)")
    group.add_argument("--checkpoint-every", type=positive_int, metavar="N", help="save a checkpoint every N iterations (1000)")
    group.add_argument("--keep", type=positive_int, metavar="K", help="keep the newest K checkpoints (3)")
    group.add_argument("--monitor-every", type=positive_int, metavar="N", help="write a style | content | result grid every N iterations (1000)")
    group.add_argument("--log-every", type=positive_int, metavar="N", help="a losses.csv row every N iterations (10)")
    group.add_argument("--val-fraction", type=non_negative_float, help="fraction of each folder held out for validation losses (0)")
    group.add_argument("--val-images", type=positive_int, help="held-out images scored at each monitor step (16)")
    group.add_argument("--amp", action="store_true", default=None, help="mixed precision: fp16 with loss scaling on GPUs, bf16 on CPUs")
    group.add_argument("--channels-last", action="store_true", default=None, help="channels-last memory layout (faster convolutions on recent GPUs)")
    group.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=None,
                       help="TensorBoard logs in RUN_DIR/tensorboard (default: when tensorboard is installed; "
                       "asked for and not installed, the run says so)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_print_every_argument(parser)
    parser.set_defaults(run=run)


#: What a run folder receives (README, "Training a decoder"): files, and folders filled.
RUN_FILES = ("config.json", "losses.csv", "skipped.txt", "decoder.pth", "losses.png", "val_losses.png", "summary.json")
RUN_SUBFOLDERS = ("monitor", "checkpoints", "tensorboard")


SETTINGS = ("lr", "lr_decay", "batch_size", "image_size", "crop_size", "content_weight", "style_weight", "iterations",
            "workers", "seed", "encoder", "encoder_seed", "device", "checkpoint_every", "keep", "monitor_every",
            "log_every", "val_fraction", "val_images", "amp", "channels_last", "tensorboard")


def start_summary(start: TrainStart, *, quiet: bool = False) -> None:
    """The lines a run starts with: what it found, held out and left out, and where it runs
    (with ``quiet``, only the notes, which say something went differently than asked)."""
    for note in start.notes:
        info(f"note: {note}")
    if quiet:
        return
    held_out = f" ({start.held_out_content} and {start.held_out_style} held out for validation)" \
        if start.held_out_content or start.held_out_style else ""
    info(f"training on {start.content_images} content and {start.style_images} style images{held_out}; "
         f"{start.not_images} other files left out (not images by their ending)"
         + (f"; {start.unreadable} unreadable samples skipped so far" if start.unreadable else ""))
    info(f"iterations {start.iteration} to {start.iterations}, encoder {start.encoder}, on {start.device}")


class TrainingBar:
    """The iteration bar with the losses; skipped files and validation losses as lines above it.
    Without a terminal (or with --print-every) a line every N iterations instead of the bar."""

    def __init__(self, *, quiet: bool, print_every: int | None = None) -> None:
        self.quiet = quiet
        self.bar: tqdm | None = None
        self.interval = line_interval(print_every)

    def __call__(self, progress: TrainProgress) -> None:
        if self.quiet:
            return
        if self.interval is not None:
            self._line(progress)
            return
        if self.bar is None:
            self.bar = tqdm(total=progress.iterations, initial=progress.iteration - 1, desc="training", unit="it",
                            file=sys.stderr, dynamic_ncols=True)
        for skipped in progress.new_skipped:
            self.bar.write(f"painterly: skipped {skipped.path}: {skipped.reason}", file=sys.stderr)
        if progress.validation:
            self.bar.write(f"painterly: iteration {progress.iteration}: "
                           + ", ".join(f"{k} {v:.4g}" for k, v in progress.validation.items()), file=sys.stderr)
        postfix = {k: f"{v:.4g}" for k, v in progress.losses.items()}
        if progress.skipped:
            postfix["skipped"] = str(progress.skipped)
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(1)

    def _line(self, progress: TrainProgress) -> None:
        for skipped in progress.new_skipped:
            info(f"skipped {skipped.path}: {skipped.reason}")
        if progress.validation:
            info(f"iteration {progress.iteration}: " + ", ".join(f"{k} {v:.4g}" for k, v in progress.validation.items()))
        if progress.iteration % self.interval == 0 or progress.iteration == progress.iterations:
            losses = ", ".join(f"{k} {v:.4g}" for k, v in progress.losses.items())
            info(f"training: iteration {progress.iteration}/{progress.iterations}: {losses}, lr {progress.lr:.3g}"
                 + (f", {progress.skipped} skipped" if progress.skipped else ""))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(args: argparse.Namespace) -> int:
    if args.resume and args.run_dir and os.path.abspath(args.resume) != os.path.abspath(args.run_dir):
        raise SettingsError("give the run folder once: --resume RUN_DIR (or -o RUN_DIR with --resume)")
    run_dir = args.resume or args.run_dir
    if not run_dir:
        raise SettingsError("say where the run goes: -o RUN_DIR (or --resume RUN_DIR)")
    if args.resume and args.recipe:
        raise SettingsError("--recipe starts a new run; a resumed run keeps its settings")
    inputs = [path for path in (args.content_dir, args.style_dir, args.encoder) if path]
    check_writes([Path(run_dir) / name for name in RUN_FILES], inputs, folders=[Path(run_dir) / name for name in RUN_SUBFOLDERS])
    main_process = int(os.environ.get("RANK", "0")) == 0
    bar = TrainingBar(quiet=args.quiet or not main_process, print_every=args.print_every)
    settings = {name: getattr(args, name) for name in SETTINGS}
    note = info if main_process else None
    try:
        result = train(content_dir=args.content_dir, style_dir=args.style_dir, run_dir=run_dir, recipe=args.recipe or "adain",
                       resume=bool(args.resume), callback=bar, on_start=partial(start_summary, quiet=args.quiet), note=note, **settings)
    except Cancelled as stopped:
        bar.close()
        if main_process:
            info(str(stopped))
        return 130
    finally:
        bar.close()
    if main_process:
        losses = ", ".join(f"{k} {v:.4g}" for k, v in result.losses.items() if v is not None)
        info(f"trained {result.iteration} iterations ({losses}; {result.images_per_second:.1f} images/s; "
             f"{result.skipped} samples skipped as unreadable)")
        info(f"wrote {result.decoder_path} (encoder {result.encoder}); losses in {result.run_dir / 'losses.csv'}"
             + (f", curve {result.plot_path}" if result.plot_path else ""))
    return 0
