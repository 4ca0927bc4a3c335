"""Images per second through ``painterly.stylize_batch``, by batch size, eager and compiled.

What a folder or a video costs end to end (Pillow in, networks, Pillow out), one cached style,
seeded random weights. Each variant's first call is reported apart (for ``--compile`` it holds
the compilation); the rest take turns, round after round, and the median round is reported.

    python benchmarks/stylize_throughput.py                            # CPU, 256 px, batches 1 4 8
    python benchmarks/stylize_throughput.py --sizes 512 --images 8 --compile
    python benchmarks/stylize_throughput.py --device cuda --sizes 512 --images 256 --batches 1 8 32 64 --compile
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from painterly.adain import AdaINModel, stylize_batch  # noqa: E402
from painterly.bench import random_adain_networks  # noqa: E402
from painterly.device import resolve_device  # noqa: E402
from painterly.speed import SpeedSettings  # noqa: E402


def images(count: int, size: int, seed: int) -> list[Image.Image]:
    generator = np.random.default_rng(seed)
    return [Image.fromarray(generator.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--sizes", nargs="+", type=int, default=[256])
    parser.add_argument("--images", type=int, default=16, help="images per round")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4, 8])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also each batch size compiled")
    parser.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16"))
    args = parser.parse_args()

    device = resolve_device(args.device)
    encoder, decoder = random_adain_networks(device=device)
    style = images(1, 512, seed=1)[0]
    for size in args.sizes:
        contents = images(args.images, size, seed=0)
        variants = {}
        for compile in (False, True) if args.compile else (False,):
            model = AdaINModel(encoder, decoder, speed=SpeedSettings(precision=args.precision, compile=compile))
            for batch in args.batches:
                variants[f"batch {batch}{' compiled' if compile else ''}"] = (model, batch)
        first, rounds = {}, {name: [] for name in variants}
        for name, (model, batch) in variants.items():
            start = time.perf_counter()
            stylize_batch(contents[:batch], style, model=model, batch_size=batch, style_size=None)
            first[name] = time.perf_counter() - start
        for _ in range(args.rounds):
            for name, (model, batch) in variants.items():
                start = time.perf_counter()
                stylize_batch(contents, style, model=model, batch_size=batch, style_size=None)
                rounds[name].append(time.perf_counter() - start)
        base = args.images / statistics.median(rounds[next(iter(variants))])
        print(f"{size} px, {args.images} images per round, {device}:")
        for name in variants:
            rate = args.images / statistics.median(rounds[name])
            print(f"  {name:20s} {rate:8.2f} images/s  ({rate / base:.2f}x)  first call {first[name]:.2f} s")
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
