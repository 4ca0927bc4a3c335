"""What the subcommands share: argument types, progress bars, messages, output names."""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from ..device import DEVICE_CHOICES
from ..errors import SettingsError
from ..gatys import Progress
from ..images import IMAGE_SUFFIXES, list_images
from ..options import settings_of
from ..speed import PRECISIONS, SpeedSettings


def info(message: str) -> None:
    """A line for the user on stderr (stdout stays free for data)."""
    print(f"painterly: {message}", file=sys.stderr)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


#: Seeds go to torch.manual_seed and numpy's generators: whole numbers in this range.
SEED_MAX = 2**63 - 1
SEED_HELP = f"0 to {SEED_MAX}"


def seed(text: str) -> int:
    """A seed, refused at parse time outside 0..SEED_MAX (torch overflows beyond it)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"a seed must be {SEED_HELP}, got {text}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def add_subcommand(subparsers: argparse._SubParsersAction, name: str, *, help: str, examples: str) -> argparse.ArgumentParser:
    """A subparser whose ``--help`` ends with ``examples``."""
    return subparsers.add_parser(
        name,
        help=help,
        description=help,
        epilog=f"examples:\n{examples}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="where to compute (default: auto)")
    parser.add_argument("--seed", type=seed, default=0, help=f"random seed, {SEED_HELP}, recorded in the output (default: 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_speed_arguments(parser: argparse.ArgumentParser, *, default_precision: str, why: str) -> None:
    """``--precision`` and ``--compile`` (:class:`SpeedSettings`); ``why`` explains the default."""
    parser.add_argument("--precision", choices=PRECISIONS, default=default_precision,
                        help=f"arithmetic of the networks: auto is bfloat16 where the device computes it natively, "
                        f"else float32 (default: {default_precision}; {why})")
    parser.add_argument("--compile", action="store_true",
                        help="compile the networks with torch.compile: about 40 s before the first result on a "
                        "2-core CPU, and again for a second size, for at most 1.15x after (AdaIN; Gatys none) "
                        "there; meant for GPUs, where it is not measured yet (benchmarks/NOTES.md)")


def speed_settings(args: argparse.Namespace) -> SpeedSettings:
    """The :class:`SpeedSettings` of :func:`add_speed_arguments`'s flags."""
    return SpeedSettings(precision=args.precision, compile=args.compile)


def download_bar(quiet: bool) -> Callable[[int, int | None], None] | None:
    """A progress callback for weight downloads, drawing a byte-counting bar."""
    if quiet:
        return None
    bar: dict[str, tqdm] = {}

    def update(done: int, total: int | None) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(total=total, unit="B", unit_scale=True, desc="downloading weights", file=sys.stderr)
        bar["bar"].update(done - bar["bar"].n)
        if total is not None and done >= total:
            bar["bar"].close()

    return update


#: Without a terminal (a pipe, a log file), progress is a line every this many iterations.
DEFAULT_PRINT_EVERY = 50


def add_print_every_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--print-every", type=positive_int, metavar="N",
                        help="print one progress line every N iterations instead of a bar (as neural-style's "
                        f"-print_every; default: a bar on a terminal, a line every {DEFAULT_PRINT_EVERY} otherwise)")


def line_interval(print_every: int | None) -> int | None:
    """Iterations between progress lines, or None to draw a bar: a bar only on a terminal and
    when no interval is asked for (carriage returns make a log file unreadable)."""
    if print_every is not None:
        return print_every
    return None if sys.stderr.isatty() else DEFAULT_PRINT_EVERY


class OptimizationProgress:
    """Draws the iteration bar with the losses (or, see :func:`line_interval`, prints a line
    every N iterations and at the last); calls ``on_iteration`` (for --save-every)."""

    def __init__(self, *, quiet: bool, description: str = "optimising",
                 on_iteration: Callable[[Progress], None] | None = None, print_every: int | None = None) -> None:
        self.quiet = quiet
        self.description = description
        self.on_iteration = on_iteration
        self.bar: tqdm | None = None
        self.interval = line_interval(print_every)

    def __call__(self, progress: Progress) -> None:
        if not self.quiet and self.interval is not None:
            if progress.iteration % self.interval == 0 or progress.iteration == progress.iterations:
                losses = ", ".join(f"{k} {v:.4g}" for k, v in progress.losses.items())
                info(f"{self.description}: iteration {progress.iteration}/{progress.iterations}: {losses}")
        elif not self.quiet:
            if self.bar is None:
                self.bar = tqdm(total=progress.iterations, desc=self.description, unit="it", file=sys.stderr)
            self.bar.set_postfix({k: f"{v:.3g}" for k, v in progress.losses.items()}, refresh=False)
            self.bar.update(1)
            if progress.iteration == progress.iterations:
                self.bar.close()
        if self.on_iteration is not None:
            self.on_iteration(progress)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def numbered_path(path: Path, number: int) -> Path:
    """``out.png`` -> ``out_00100.png``: where intermediate images go."""
    return path.with_name(f"{path.stem}_{number:05d}{path.suffix}")


def add_preserve_color_argument(parser: argparse.ArgumentParser, cls: type) -> None:
    """``--preserve-color [MODE]``, the same flag for every method (bare: ``match``), declared by
    ``cls``'s ``preserve_color`` field; the flag alone needs this custom parsing."""
    [setting] = [s for s in settings_of(cls) if s.name == "preserve_color"]
    parser.add_argument(setting.flag, nargs="?", const="match", default=setting.default, choices=setting.option.choices,
                        help=setting.help)


def expand_inputs(specs: list[str], *, what: str, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """Files named by ``specs``: files as given, folders' images, globs' matches (in order)."""
    paths: list[Path] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            found = list_images(path)
            if not found:
                raise SettingsError(f"{what} folder {spec} has no images ({', '.join(IMAGE_SUFFIXES)})")
        elif path.exists() or not glob.has_magic(spec):
            found = [path]  # a missing file is reported by the loader, with its name
        else:
            found = [Path(p) for p in sorted(glob.glob(spec)) if Path(p).suffix.lower() in suffixes]
            if not found:
                raise SettingsError(f"{what} pattern {spec!r} matches no images")
        paths += found
    return paths
