"""How much of a random VGG-19's features is detail? (docs/offline-decoder.md)

For each layer of the bundled encoder (seeded random weights, seed 0), on the bundled gallery
photos: the share of the features' energy held by the channel means, and the share a 9 px box
blur of the photo changes. Small blur shares mean a feature-matching loss at that layer barely
rewards detail.

    python benchmarks/random_feature_energy.py --size 256
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from painterly.encoder import load_encoder
from painterly.images import image_to_tensor, load_image, resize_longer_side
from painterly.weights import BUNDLED_ENCODER_SEED

LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
PHOTOS = ("astronaut", "chelsea", "rocket")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--blur", type=int, default=9, help="box blur side in pixels (odd)")
    args = parser.parse_args()
    from painterly.cli.demo import example_path

    encoder, _ = load_encoder("random", seed=BUNDLED_ENCODER_SEED, last_layer="relu4_1")
    shares = {layer: [] for layer in LAYERS}
    for name in PHOTOS:
        photo = image_to_tensor(resize_longer_side(load_image(example_path(f"{name}.jpg")), args.size))
        blurred = torch.nn.functional.avg_pool2d(photo, args.blur, 1, args.blur // 2, count_include_pad=False)
        with torch.no_grad():
            sharp, soft = encoder(photo, LAYERS), encoder(blurred, LAYERS)
        for layer in LAYERS:
            energy = sharp[layer].pow(2).mean().item()
            spatial = sharp[layer].var(dim=(2, 3), unbiased=False).mean().item()
            shares[layer].append((1 - spatial / energy, (soft[layer] - sharp[layer]).pow(2).mean().item() / energy))
    print(f"| layer | energy in the channel means | energy a {args.blur} px box blur changes |\n|---|---|---|")
    for layer in LAYERS:
        means, blur = np.mean(shares[layer], axis=0)
        print(f"| {layer} | {means:.0%} | {blur:.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
