"""Tiled Gatys (painterly.gatys_tiles) against one pass: peak memory, time per iteration, largest output.

    PYTHONPATH=src python benchmarks/gatys_tiles.py memory --sizes 512 1024 2048 --tile-sizes 0 384 512
    PYTHONPATH=src python benchmarks/gatys_tiles.py overhead --size 512 --tile-sizes 384 512 --repeats 3
    PYTHONPATH=src python benchmarks/gatys_tiles.py largest --budget-gib 21.6 --tile-size 512

``memory`` runs every (size, tile) pair in its own subprocess, so each peak is that run's alone:
the resident-set high-water mark over one L-BFGS iteration (painterly.bench.PeakMemory;
CUDA: the allocator's peak), after the targets are computed. Tile 0 is one pass. With
``--tiles N`` only the N tiles with the largest windows are computed (targets and iteration):
memory does not build up from tile to tile (each tile's graph is freed after its backward pass,
the image-sized gradient is allocated once), so the peak is the whole iteration's, at a fraction
of the time on a loaded 2-core machine; the seconds are then per tile. ``overhead``
alternates one-pass and tiled iterations of the same image in one process and reports the ratio
of their median times. ``largest`` asks the planner for the largest output that fits the budget
in tiles, per optimiser. Preset gatys2016 (relu1_1..relu5_1, relu4_2), seeded random weights.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

import painterly.gatys_tiles
from painterly.bench import PeakMemory
from painterly.device import resolve_device
from painterly.encoder import load_encoder
from painterly.gatys import GatysObjective, get_preset, make_optimizer
from painterly.gatys_tiles import tiled_losses
from painterly.memory import _largest_gatys_side, gatys_memory, plan_memory
from painterly.speed import GATYS_SPEED

SETTINGS = get_preset("gatys2016")
LAYERS = SETTINGS.content_layers + SETTINGS.style_layers


def iteration(objective: GatysObjective, pixels: torch.Tensor, optimizer: torch.optim.Optimizer,
              tile_size: int | None) -> float:
    """One L-BFGS step as optimize_image takes it; returns its wall time."""

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        if tile_size:
            return tiled_losses(objective, pixels, tile_size=tile_size, speed=GATYS_SPEED)["total"]
        loss = objective(pixels)["total"]
        loss.backward()
        return loss

    start = time.perf_counter()
    optimizer.step(closure)
    return time.perf_counter() - start


def setup(size: int, tile_size: int | None, device: torch.device) -> tuple[GatysObjective, torch.Tensor, torch.optim.Optimizer]:
    encoder, _ = load_encoder("random", last_layer="relu5_1", seed=0, device=device)
    generator = torch.Generator().manual_seed(0)
    content = torch.rand((1, 3, size, size), generator=generator).to(device)
    style = torch.rand((1, 3, size, size), generator=generator).to(device)
    objective = GatysObjective(encoder, content, [style], SETTINGS, tile_size=tile_size or None)
    pixels = (255 * content).requires_grad_(True)
    return objective, pixels, make_optimizer(pixels, SETTINGS)


def largest_tiles_only(count: int) -> None:
    """Make every tiled pass run only the ``count`` tiles with the largest windows."""
    plan = painterly.gatys_tiles.plan_tiles

    def largest(*args, **kwargs):
        tiles = plan(*args, **kwargs)
        area = lambda tile: (tile.window[1] - tile.window[0]) * (tile.window[3] - tile.window[2])  # noqa: E731
        return sorted(tiles, key=area, reverse=True)[:count]

    painterly.gatys_tiles.plan_tiles = largest


def measure_one(size: int, tile_size: int, device: torch.device, tiles: int) -> dict:
    if tiles and tile_size:
        largest_tiles_only(tiles)
    objective, pixels, optimizer = setup(size, tile_size, device)
    with PeakMemory(device) as memory:
        seconds = iteration(objective, pixels, optimizer, tile_size) / (tiles if tiles and tile_size else 1)
    return {"size": size, "tile": tile_size, "peak_mib": memory.peak_bytes / 2**20, "seconds": seconds,
            "estimate_mib": gatys_memory(size, size, layers=LAYERS, lbfgs_history=1, tile_size=tile_size or None) / 2**20}


def memory(args: argparse.Namespace) -> None:
    print(f"{'size':>5} {'tile':>5} {'peak MiB':>9} {'estimate MiB':>12} {'seconds':>8}"
          + (f" (per tile, {args.tiles} largest tiles)" if args.tiles else ""))
    for size in args.sizes:
        for tile in args.tile_sizes:
            if tile and tile >= size:
                continue
            command = [sys.executable, __file__, "one", "--size", str(size), "--tile", str(tile), "--device", args.device,
                       "--tiles", str(args.tiles)]
            row = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            print(f"{row['size']:5d} {row['tile'] or 'none':>5} {row['peak_mib']:9.0f} {row['estimate_mib']:12.0f} "
                  f"{row['seconds']:8.1f}", flush=True)


def overhead(args: argparse.Namespace) -> None:
    device = resolve_device(args.device)
    runs = {tile: setup(args.size, tile, device) for tile in [0, *args.tile_sizes]}
    times: dict[int, list[float]] = {tile: [] for tile in runs}
    for _ in range(args.repeats):  # alternate, so load on the machine falls on every variant alike
        for tile, (objective, pixels, optimizer) in runs.items():
            times[tile].append(iteration(objective, pixels, optimizer, tile))
    base = statistics.median(times[0])
    for tile, values in times.items():
        print(f"{args.size} px, {'one pass' if not tile else f'tiles of {tile}'}: median {statistics.median(values):.2f} s "
              f"({', '.join(f'{v:.2f}' for v in values)}), {statistics.median(values) / base:.2f}x one pass")


def largest(args: argparse.Namespace) -> None:
    budget = int(args.budget_gib * 2**30)
    for optimizer in ("lbfgs", "adam"):
        one = _largest_gatys_side(8192, 8192, LAYERS, optimizer, budget)
        tiled = _largest_gatys_side(65536, 65536, LAYERS, optimizer, budget, args.tile_size)
        plan = plan_memory("gatys", height=tiled, width=tiled, layers=LAYERS, optimizer=optimizer, budget_bytes=budget)
        print(f"{optimizer}: one pass up to {one} px square; tiles up to {tiled} px square "
              f"(planner's tile there: {plan.tile} px, estimate {plan.tile_estimate_bytes / 2**30:.1f} GiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("memory", "overhead", "largest", "one"):
        sub = commands.add_parser(name)
        sub.add_argument("--device", default="cpu")
        sub.add_argument("--sizes", nargs="+", type=int, default=[512, 1024, 2048])
        sub.add_argument("--size", type=int, default=512)
        sub.add_argument("--tile", type=int, default=0)
        sub.add_argument("--tile-sizes", nargs="+", type=int, default=[0, 512])
        sub.add_argument("--tile-size", type=int, default=512)
        sub.add_argument("--repeats", type=int, default=3)
        sub.add_argument("--tiles", type=int, default=0, help="only the N largest tiles (0: all)")
        sub.add_argument("--budget-gib", type=float, default=0.9 * 24)
    args = parser.parse_args()
    if args.command == "one":
        print(json.dumps(measure_one(args.size, args.tile, resolve_device(args.device), args.tiles)))
    else:
        {"memory": memory, "overhead": overhead, "largest": largest}[args.command](args)


if __name__ == "__main__":
    main()
