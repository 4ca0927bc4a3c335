"""Tiled Gatys iterations (painterly.gatys_tiles) against one pass: the same loss, gradient and pixels."""

from __future__ import annotations

import pytest
import torch

from conftest import make_scene, make_stripes
from painterly import optimize
from painterly.encoder import VGG19Encoder, load_encoder
from painterly.errors import SettingsError
from painterly.gatys import GatysObjective, GatysSettings, optimize_image
from painterly.gatys_tiles import (
    MomentSum,
    StyleTerm,
    layer_shapes,
    mean_std_from_moments,
    minimum_tile,
    owned_positions,
    plan_tiles,
    receptive_field,
    statistic_gradients,
    statistics_in_tiles,
    tiled_losses,
    window_of,
)
from painterly.losses import mean_std_style_loss
from painterly.performance import GATYS_SPEED, plan_memory

#: A truncated network: relu3_1 needs a 12 px halo (10, rounded up to its stride of 4).
SETTINGS = GatysSettings(content_layers=("relu2_2",), style_layers=("relu1_1", "relu2_1", "relu3_1"), tv_weight=1e-3)
LAYERS = SETTINGS.content_layers + SETTINGS.style_layers


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_the_halo_is_the_receptive_field_rounded_to_the_stride():
    assert receptive_field(("relu1_1",)) == (1, 1)
    assert receptive_field(("relu1_1", "relu2_1", "relu3_1")) == (4, 12)
    assert receptive_field(("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1")) == (16, 80)
    assert minimum_tile(LAYERS) == 28
    # Owned boxes cover the image exactly once and start on the deepest layer's grid.
    tiles = plan_tiles(45, 61, tile_size=36, layers=LAYERS)
    covered = torch.zeros(45, 61, dtype=torch.int64)
    for tile in tiles:
        top, bottom, left, right = tile.owned
        covered[top:bottom, left:right] += 1
        assert top % 4 == 0 and left % 4 == 0 and tile.window[0] % 4 == 0 and tile.window[2] % 4 == 0
        assert tile.window[1] - tile.window[0] <= 36 and tile.window[3] - tile.window[2] <= 36
    assert bool((covered == 1).all())
    with pytest.raises(SettingsError, match="at least 28 px"):
        plan_tiles(45, 61, tile_size=27, layers=LAYERS)


@pytest.mark.parametrize("flavour, masked", [("torchvision", False), ("torchvision", True), ("normalised", False)])
def test_tiled_loss_and_gradient_equal_one_pass(flavour, masked):
    torch.manual_seed(0)
    if flavour == "torchvision":  # zero padding, floor pooling
        encoder, _ = load_encoder("random", last_layer="relu3_1", seed=0)
    else:  # reflection padding, ceil pooling: odd sizes keep half pooling windows at the edges
        encoder = VGG19Encoder(flavour="normalised", last_layer="relu3_1")
    content, mask = torch.rand(1, 3, 37, 45), torch.rand(1, 1, 37, 45)
    styles = [torch.rand(1, 3, 29, 41)] + ([torch.rand(1, 3, 33, 30)] if masked else [])
    masks = [mask, 1 - mask] if masked else None
    one_pass = GatysObjective(encoder, content, styles, SETTINGS, masks=masks)
    tiled = GatysObjective(encoder, content, styles, SETTINGS, masks=masks, tile_size=40)  # 3 x 3 tiles
    for layer, target in one_pass.content_targets.items():
        assert relative(tiled.content_targets[layer], target) < 1e-5
    pixels = (255 * torch.rand(1, 3, 37, 45)).requires_grad_(True)
    expected = one_pass(pixels)
    expected["total"].backward()
    gradient, pixels.grad = pixels.grad.clone(), None
    losses = tiled_losses(tiled, pixels, tile_size=40, speed=GATYS_SPEED)
    for name in ("content", "style", "tv", "total"):
        assert float(losses[name]) == pytest.approx(float(expected[name].detach()), rel=1e-5)
    assert relative(pixels.grad, gradient) < 1e-5


def test_lbfgs_steps_in_tiles_give_one_pass_pixels():
    """In float64: L-BFGS's first curvature pair is the difference of two nearly equal gradients,
    which turns float32 rounding of any kind (channels_last alone does it) into percent-level
    pixel differences after three steps; in float64 what is left is the tiling's own error."""
    encoder, _ = load_encoder("random", last_layer="relu3_1", seed=0)
    encoder = encoder.double()
    content, style = torch.rand(1, 3, 29, 36, dtype=torch.float64), torch.rand(1, 3, 24, 24, dtype=torch.float64)
    settings = SETTINGS.updated(iterations=3, init="content")  # 3 x 3 tiles
    runs = [optimize_image(content, [style], encoder=encoder, settings=settings, tile_size=tile) for tile in (None, 36)]
    assert runs[1].history[-1]["total"] == pytest.approx(runs[0].history[-1]["total"], rel=1e-5)
    assert runs[1].history[-1]["total"] < 0.9 * runs[1].history[0]["total"]
    assert relative(runs[1].image, runs[0].image) < 1e-5


def test_channel_moments_plug_into_the_same_two_passes():
    """Mean-std losses (AdaIN's statistics) are sums over positions too: one pass's loss and gradient."""
    encoder, _ = load_encoder("random", last_layer="relu2_1", seed=0)
    layers = ("relu1_1", "relu2_1")
    image, style = torch.rand(1, 3, 27, 34, requires_grad=True), torch.rand(1, 3, 30, 30)
    with torch.no_grad():
        targets = encoder(style, layers)
    expected = sum(mean_std_style_loss(feature, targets[layer]) for layer, feature in encoder(image, layers).items())
    expected.backward()
    gradient, image.grad = image.grad.clone(), None

    shapes = layer_shapes(27, 34, layers, ceil_mode=False)
    tiles = plan_tiles(27, 34, tile_size=16, layers=layers)

    def moment_loss(moments: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mean, std = mean_std_from_moments(moments)
        target_mean, target_std = mean_std_from_moments(MomentSum(target[0, 0].numel()).part(target, None))
        return (mean - target_mean).pow(2).mean() + (std - target_std).pow(2).mean()

    terms = [StyleTerm(layer, MomentSum(shapes[layer][0] * shapes[layer][1]),
                       loss=lambda moments, target=targets[layer]: moment_loss(moments, target)) for layer in layers]
    with torch.no_grad():
        totals = statistics_in_tiles(lambda window: encoder(window, layers), image, terms, tiles=tiles, shapes=shapes)
    loss, gradients = statistic_gradients(terms, totals)
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    for tile in tiles:
        window = window_of(image.detach(), tile).requires_grad_(True)
        features = encoder(window, layers)
        surrogate = 0
        for term, statistic_gradient in zip(terms, gradients):
            local, _ = owned_positions(tile, term.layer, shapes[term.layer])
            surrogate = surrogate + (statistic_gradient * term.statistic.part(features[term.layer][:, :, local[0], local[1]], None)).sum()
        surrogate.backward()
        top, bottom, left, right = tile.window
        image.grad = torch.zeros_like(image) if image.grad is None else image.grad
        image.grad[:, :, top:bottom, left:right] += window.grad
    assert relative(image.grad, gradient) < 1e-5
