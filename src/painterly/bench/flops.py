"""FLOP counts of the networks painterly runs, from the layer shapes of :mod:`painterly.memory`.

FLOPs count convolutions (and Gram matrices) only, 2 per multiply-add (docs/recipes.md,
"Counting FLOPs"), so that GFLOP/s compare with a device's peak.
"""

from __future__ import annotations

from typing import Sequence

from ..encoder import deepest_layer
from ..memory import Layer, decoder_layers, encoder_layers


def layer_flops(layer: Layer) -> int:
    """FLOPs per image of one layer: a 3x3 convolution's multiply-adds, twice; 0 for the rest."""
    return 2 * layer.in_channels * layer.channels * 9 * layer.height * layer.width


def network_flops(layers: Sequence[Layer]) -> int:
    return sum(layer_flops(layer) for layer in layers)


def adain_flops(height: int, width: int, *, style_cached: bool = False, style_size: tuple[int, int] | None = None) -> int:
    """FLOPs of one AdaIN stylisation: content encoding, style encoding (unless cached), decoding.

    The AdaIN layer itself (a few operations per feature) is left out.
    """
    total = network_flops(encoder_layers(height, width)) + network_flops(decoder_layers(height, width))
    if not style_cached:
        total += network_flops(encoder_layers(*(style_size or (height, width))))
    return total


def gatys_iteration_flops(height: int, width: int, *, layers: Sequence[str], style_layers: Sequence[str]) -> int:
    """FLOPs of one Gatys iteration: a forward pass to the deepest layer, the backward pass, Grams.

    The encoder is frozen, so the backward pass computes gradients of the inputs only: about one
    forward pass more, not the two of training (the usual "3x forward" counts weight gradients).
    Each Gram matrix costs 2 C^2 M forward and as much again backward.
    """
    shapes = encoder_layers(height, width, last_layer=deepest_layer(layers), ceil_mode=False)
    by_name = {layer.name: layer for layer in shapes}
    grams = sum(2 * by_name[name].channels ** 2 * by_name[name].height * by_name[name].width for name in style_layers)
    return 2 * network_flops(shapes) + 2 * grams


def training_step_flops(height: int, width: int) -> int:
    """FLOPs per image of one decoder training step (forward and backward).

    Encode content and style (no gradients), decode, encode the result at four layers, then
    backward: through that encoder for the input gradient only (frozen) and through the decoder
    for input and weight gradients (2x its forward).
    """
    encoder = network_flops(encoder_layers(height, width))
    decoder = network_flops(decoder_layers(height, width))
    return 2 * encoder + decoder + encoder + encoder + 2 * decoder
