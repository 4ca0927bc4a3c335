"""How far bfloat16 autocast moves AdaIN outputs and Gatys losses from float32.

    PYTHONPATH=src python benchmarks/bf16_accuracy.py [--sizes 256 512] [--seeds 0 1 2]

AdaIN: PSNR of the bfloat16 stylisation against the float32 one (same weights, the peak
being the float32 output's range); the project accepts bfloat16 at >= 40 dB. Gatys: the total
loss after N L-BFGS iterations from the same noise in float32 and in bfloat16. Random weights
unless --encoder and --decoder name trained ones, which may give other figures.
"""

from __future__ import annotations

import argparse

import torch

from painterly.adain import ADAIN_LAYER, adain
from painterly.bench import psnr, random_adain_networks
from painterly.bench.suite import _GatysRun
from painterly.device import resolve_device
from painterly.encoder import load_encoder
from painterly.gatys import GatysObjective, get_preset, initial_image
from painterly.speed import SpeedSettings
from painterly.weights import load_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[256, 512])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--gatys-size", type=int, default=128)
    parser.add_argument("--gatys-iterations", type=int, default=20)
    parser.add_argument("--encoder", help="a normalised VGG-19 file (default: random weights, one set per seed)")
    parser.add_argument("--decoder", help="a decoder file in the released layout (with --encoder)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    for seed in args.seeds:
        encoder, decoder = random_adain_networks(seed=seed, device=device)
        if args.encoder and args.decoder:
            encoder, _ = load_encoder(args.encoder, last_layer=ADAIN_LAYER, device=device)
            state, _, _ = load_weights(args.decoder, role="decoder")
            decoder.load_state_dict({key: state[key] for key in decoder.state_dict()})
        generator = torch.Generator().manual_seed(seed)
        for size in args.sizes:
            content, style = (torch.rand(1, 3, size, size, generator=generator).to(device) for _ in range(2))
            outputs = {}
            for precision in ("float32", "bfloat16"):
                with SpeedSettings(precision=precision).running(device):
                    outputs[precision] = decoder(adain(encoder(content)[ADAIN_LAYER], encoder(style)[ADAIN_LAYER])).float()
            print(f"adain seed {seed} {size}px: bfloat16 PSNR {psnr(outputs['float32'], outputs['bfloat16']):.1f} dB")
    settings = get_preset("gatys2016")
    vgg, _ = load_encoder("random", last_layer="relu5_1", device=device)
    size = args.gatys_size
    content, style = (torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(s)).to(device) for s in (1, 2))
    start = initial_image(content, settings, seed=0)
    for precision in ("float32", "bfloat16"):
        speed = SpeedSettings(precision=precision, channels_last=False)
        with speed.running(device, grad=True):
            objective = GatysObjective(vgg, content, [style], settings)
            run = _GatysRun(lambda: objective, start, settings)
            losses = [run() for _ in range(args.gatys_iterations)]
        # Score both end points with the float32 objective: bfloat16 may misjudge its own loss.
        exact = float(GatysObjective(vgg, content, [style], settings)(run.pixels.detach())["total"])
        print(f"gatys {size}px {precision}: loss after {args.gatys_iterations} iterations "
              f"{losses[-1]:.6g} (float32 objective: {exact:.6g})")


if __name__ == "__main__":
    main()
