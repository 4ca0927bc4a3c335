"""FLOP counts from layer shapes."""

from __future__ import annotations

import pytest

from painterly.bench.flops import adain_flops, gatys_iteration_flops, network_flops
from painterly.memory import decoder_layers, encoder_layers


@pytest.mark.parametrize(
    ("size", "gflop"),
    [(256, 31.6), (512, 126.5)],
)
def test_encoder_and_decoder_flops_match_the_counts_by_hand(size: int, gflop: float) -> None:
    assert network_flops(encoder_layers(size, size)) / 1e9 == pytest.approx(gflop, rel=0.01)
    assert network_flops(decoder_layers(size, size)) / 1e9 == pytest.approx(gflop, rel=0.01)


def test_adain_flops_match_the_counts_by_hand() -> None:
    assert adain_flops(512, 512) / 1e9 == pytest.approx(380, rel=0.01)
    assert adain_flops(512, 512, style_cached=True) / 1e9 == pytest.approx(253, rel=0.01)
    # A smaller style image costs less to encode.
    assert adain_flops(512, 512, style_size=(256, 256)) < adain_flops(512, 512)


def test_gatys_flops_counted_by_hand() -> None:
    # Forward to relu5_1 at 256: the 31.6 GFLOP to relu4_1, conv4_2..4_4 at 32x32, conv5_1 at 16x16.
    forward = 31.63e9 + 3 * 2 * 512 * 512 * 9 * 32 * 32 + 2 * 512 * 512 * 9 * 16 * 16
    # Grams 2 C^2 M at relu1_1 .. relu5_1.
    grams = 2 * (64**2 * 256**2 + 128**2 * 128**2 + 256**2 * 64**2 + 512**2 * 32**2 + 512**2 * 16**2)
    layers = ("relu4_2", "relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    flops = gatys_iteration_flops(256, 256, layers=layers, style_layers=layers[1:])
    assert flops == pytest.approx(2 * forward + 2 * grams, rel=0.01)
