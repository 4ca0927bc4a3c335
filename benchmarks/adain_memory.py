"""Peak memory (max RSS) and time of one AdaIN stylisation, tiled or not, on the CPU.

Run one size per process, since max RSS only grows:
    python benchmarks/adain_memory.py WIDTH HEIGHT [--tile-size N --tile-overlap N | --no-tile]
Random encoder weights and a random decoder in the released layout (speed and memory do not
depend on the values). Prints one line: size, mode, seconds, peak RSS in MB, RSS before.

``--stub-network`` swaps encoder and decoder for cheap stand-ins with the same shapes (8x
average pooling to 512 channels, 8x nearest upsampling to 3): what remains is the memory that
grows with the image (buffers, bands, statistics), measurable at 8000x6000 in a minute on a CPU.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from painterly.adain import AdaINModel, build_decoder, stylize


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports kB


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("width", type=int)
    parser.add_argument("height", type=int)
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument("--tile-overlap", type=int, default=136)
    parser.add_argument("--no-tile", action="store_true")
    parser.add_argument("--stub-network", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "decoder.pth"
        torch.save(build_decoder().state_dict(), path)
        model = AdaINModel.load(encoder="random", decoder=path, device="cpu")
    if args.stub_network:
        model.encode = lambda image: F.avg_pool2d(image, 8).repeat(1, 171, 1, 1)[:, :512]
        model.decode = lambda features: F.interpolate(features[:, :3], scale_factor=8)
    rng = np.random.default_rng(0)
    content = Image.fromarray(rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8))
    style = Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))
    before = max_rss_mb()
    start = time.perf_counter()
    stylize(content, style, model=model, style_size=None, tile=not args.no_tile,
            tile_size=args.tile_size, tile_overlap=args.tile_overlap)
    seconds = time.perf_counter() - start
    mode = "untiled" if args.no_tile else f"tiles {args.tile_size}/{args.tile_overlap}"
    mode += ", stub network" if args.stub_network else ""
    print(f"{args.width}x{args.height}\t{mode}\t{seconds:.1f} s\tpeak RSS {max_rss_mb():.0f} MB\t(before: {before:.0f} MB)")


if __name__ == "__main__":
    main()
