"""Planner estimates against measured peaks: AdaIN (inference) and Gatys (one L-BFGS iteration).

    PYTHONPATH=src python benchmarks/memory_check.py [--sizes 128 256 512] [--device cpu]

CPU peaks are the resident-set high-water mark (see painterly.bench.PeakMemory); the
planner is right when every ratio estimate / measured stays above 1 and below about 3.
"""

from __future__ import annotations

import argparse

import torch

from painterly.adain import ADAIN_LAYER, adain
from painterly.bench import PeakMemory, random_adain_networks
from painterly.device import resolve_device
from painterly.encoder import load_encoder
from painterly.gatys import GatysObjective, get_preset, make_optimizer
from painterly.memory import adain_memory, gatys_memory
from painterly.speed import SpeedSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[128, 256, 512])
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    encoder, decoder = random_adain_networks(device=device)
    settings = get_preset("gatys2016")
    layers = settings.content_layers + settings.style_layers
    vgg, _ = load_encoder("random", last_layer="relu5_1", device=device)
    print(f"{'case':24} {'size':>5} {'estimate MiB':>12} {'measured MiB':>12} {'ratio':>6}")
    for size in args.sizes:
        image = torch.rand(1, 3, size, size, device=device)
        for precision in ("float32", "bfloat16"):
            speed = SpeedSettings(precision=precision, channels_last=False)
            with speed.running(device):
                decoder(adain(encoder(image)[ADAIN_LAYER], encoder(image)[ADAIN_LAYER]))  # warm-up
            with PeakMemory(device) as memory, speed.running(device):
                decoder(adain(encoder(image)[ADAIN_LAYER], encoder(image)[ADAIN_LAYER]))
            report(f"adain {precision}", size, adain_memory(size, size, precision=precision), memory.peak_bytes)
        objective = GatysObjective(vgg, image, [image], settings)
        pixels = (torch.rand_like(image) * 255).requires_grad_(True)
        optimizer = make_optimizer(pixels, settings)

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = objective(pixels)["total"]
            loss.backward()
            return loss

        with PeakMemory(device) as memory:
            optimizer.step(closure)
        # The estimate includes L-BFGS's full history, which one iteration has not filled yet.
        report("gatys (1 iteration)", size, gatys_memory(size, size, layers=layers, lbfgs_history=1), memory.peak_bytes)


def report(case: str, size: int, estimate: int, measured: int | None) -> None:
    if measured:
        print(f"{case:24} {size:5d} {estimate / 2**20:12.0f} {measured / 2**20:12.0f} {estimate / measured:6.2f}")
    else:
        print(f"{case:24} {size:5d} {estimate / 2**20:12.0f} {'-':>12}")


if __name__ == "__main__":
    main()
