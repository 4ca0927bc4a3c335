"""``painterly train``: train an AdaIN decoder on folders of content and style images."""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from pathlib import Path

from tqdm import tqdm

from ..errors import Cancelled, SettingsError
from ..files import check_writes
from ..options import add_flags, cli_settings
from ..training import RECIPE_SOURCES, RECIPES, TrainConfig, TrainProgress, TrainStart, train
from .common import add_print_every_argument, add_subcommand, info, line_interval, seed

EXAMPLES = """\
  painterly train --content-dir coco/ --style-dir wikiart/ -o runs/adain       # the reference recipe
  painterly train --content-dir voc/ --style-dir artworks/ -o runs/keras --recipe keras
  painterly train --content-dir photos/ --style-dir paintings/ -o runs/quick --encoder random --encoder-pooling avg \\
      --iterations 2000 --crop-size 128 --image-size 160 --batch-size 4 --val-fraction 0.1 \\
      --identity-pixel-weight 25 --identity-feature-weight 1   # also learn to give photos back (SANet)
  painterly train --resume runs/adain                      # continue after Ctrl-C, SIGTERM or a crash
  painterly train --resume runs/adain --iterations 200000  # train longer
  torchrun --nproc_per_node 4 -m painterly train --content-dir coco/ --style-dir wikiart/ -o runs/ddp
then stylise with the decoder and the same encoder:
  painterly stylize photo.jpg --style starry_night.jpg -o out.png --decoder runs/adain/decoder.pth --encoder vgg19-normalised
recipes:
""" + "\n".join(f"  {name:7s} {source}" for name, source in RECIPE_SOURCES.items())


#: TrainConfig's seeds: their flags take the CLI's seed type.
SEEDS = ("seed", "encoder_seed")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(subparsers, "train", help="train an AdaIN decoder on folders of content and style images", examples=EXAMPLES)
    parser.add_argument("--content-dir", metavar="DIR", help="folder tree of content images (photos)")
    parser.add_argument("--style-dir", metavar="DIR", help="folder tree of style images (paintings)")
    parser.add_argument("-o", "--run-dir", metavar="RUN_DIR", help="folder for checkpoints, logs and decoder.pth")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its newest checkpoint")
    parser.add_argument("--recipe", choices=sorted(RECIPES), help="settings to start from (default: adain)")
    group = parser.add_argument_group("settings (default: the recipe's)")
    add_flags(group, TrainConfig, skip=SEEDS, check=True)
    for setting in cli_settings(TrainConfig):
        if setting.name in SEEDS:  # read as every command reads seeds, with the same message
            group.add_argument(setting.flag, type=seed, help=setting.help)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_print_every_argument(parser)
    parser.set_defaults(run=run)


#: What a run folder receives (README, "Training a decoder"): files, and folders filled.
RUN_FILES = ("config.json", "losses.csv", "skipped.txt", "decoder.pth", "losses.png", "val_losses.png", "summary.json")
RUN_SUBFOLDERS = ("monitor", "checkpoints", "tensorboard")


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
    settings = {setting.name: getattr(args, setting.name) for setting in cli_settings(TrainConfig)}
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
