"""Decoder-training throughput in images per second, variants side by side.

Runs ``painterly.train`` for a few iterations per variant (float32, --amp, --channels-last,
both) on generated images or on your folders, times the steady state (after warm-up
iterations) from the progress callback, and prints images/s and the ratio to float32.

    python benchmarks/train_throughput.py                              # CPU, 128 px crops, batch 4
    python benchmarks/train_throughput.py --device cuda --crop-size 256 --batch-size 8 --iterations 30
    python benchmarks/train_throughput.py --content-dir coco/ --style-dir wikiart/ --encoder vgg19-normalised

An image is one content-style pair: one forward of the encoder on content, style and output,
one decoder forward, and the backward through encoder and decoder.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from painterly.training import train  # noqa: E402

VARIANTS = {
    "float32": {},
    "amp": {"amp": True},
    "channels_last": {"channels_last": True},
    "amp+channels_last": {"amp": True, "channels_last": True},
}


def generate_images(folder: Path, count: int, size: int, seed: int) -> Path:
    """Smooth random colour fields: decoding cost does not depend on what the pixels show."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((size * 4 // 3, size), Image.Resampling.BICUBIC).save(folder / f"{i}.png")
    return folder


def measure(args: argparse.Namespace, content: Path, style: Path, variant: dict, run_dir: Path) -> float:
    stamps: list[float] = []
    train(content_dir=content, style_dir=style, run_dir=run_dir, encoder=args.encoder, device=args.device,
          iterations=args.warmup + args.iterations, batch_size=args.batch_size, image_size=args.crop_size,
          crop_size=args.crop_size, workers=args.workers, checkpoint_every=10**9, monitor_every=10**9,
          log_every=10**9, callback=lambda progress: stamps.append(time.perf_counter()), **variant)
    steady = stamps[args.warmup - 1 :]
    return args.batch_size * (len(steady) - 1) / (steady[-1] - steady[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--content-dir", type=Path)
    parser.add_argument("--style-dir", type=Path)
    parser.add_argument("--encoder", default="random", help="random needs no download (same cost as the real one)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--crop-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=6, help="timed iterations per variant")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        content = args.content_dir or generate_images(scratch / "content", 16, args.crop_size, seed=0)
        style = args.style_dir or generate_images(scratch / "style", 8, args.crop_size, seed=1)
        print(f"crop {args.crop_size} px, batch {args.batch_size}, {args.iterations} timed iterations, encoder {args.encoder}")
        baseline = None
        for name in args.variants:
            rate = measure(args, content, style, VARIANTS[name], scratch / f"run-{name}")
            baseline = baseline or rate
            print(f"{name:18s} {rate:8.2f} images/s   x{rate / baseline:.2f} vs {args.variants[0]}", flush=True)


if __name__ == "__main__":
    main()
