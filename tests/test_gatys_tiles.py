"""Tiled Gatys iterations (painterly.gatys_tiles) against one pass: the same loss, gradient and pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_scene, make_stripes, run_in_process
from painterly import gatys, optimize
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
from painterly.images import read_metadata
from painterly.losses import mean_std_style_loss
from painterly.memory import gatys_memory
from painterly.profiles import RANDOM_FEATURE_SETTINGS
from painterly.speed import GATYS_SPEED

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


def assert_tiles_equal_one_pass(encoder: VGG19Encoder, settings: GatysSettings, *, masked: bool) -> None:
    """Targets, calibration, loss and gradient of a 3 x 3-tile objective against one pass's, to 1e-5."""
    torch.manual_seed(0)
    content, mask = torch.rand(1, 3, 37, 45), torch.rand(1, 1, 37, 45)
    styles = [torch.rand(1, 3, 29, 41)] + ([torch.rand(1, 3, 33, 30)] if masked else [])
    masks = [mask, 1 - mask] if masked else None
    one_pass = GatysObjective(encoder, content, styles, settings, masks=masks)
    tiled = GatysObjective(encoder, content, styles, settings, masks=masks, tile_size=40)  # 3 x 3 tiles
    for layer, target in one_pass.content_targets.items():
        assert relative(tiled.content_targets[layer], target) < 1e-5
    for name in ("calibration", "style_norms"):  # per-layer numbers, all 1 unless calibrated
        for layer, value in getattr(one_pass, name).items():
            assert getattr(tiled, name)[layer] == pytest.approx(value, rel=1e-5), (name, layer)
    pixels = (255 * torch.rand(1, 3, 37, 45)).requires_grad_(True)
    expected = one_pass(pixels)
    expected["total"].backward()
    gradient, pixels.grad = pixels.grad.clone(), None
    losses = tiled_losses(tiled, pixels, tile_size=40, speed=GATYS_SPEED)
    for name in ("content", "style", "tv", "total"):
        assert float(losses[name]) == pytest.approx(float(expected[name].detach()), rel=1e-5)
    assert relative(pixels.grad, gradient) < 1e-5


@pytest.mark.parametrize("flavour, masked", [("torchvision", False), ("torchvision", True), ("normalised", False)])
def test_tiled_loss_and_gradient_equal_one_pass(flavour, masked):
    if flavour == "torchvision":  # zero padding, floor pooling
        encoder, _ = load_encoder("random", last_layer="relu3_1", seed=0)
    else:  # reflection padding, ceil pooling: odd sizes keep half pooling windows at the edges
        encoder = VGG19Encoder(flavour="normalised", last_layer="relu3_1")
    assert_tiles_equal_one_pass(encoder, SETTINGS, masked=masked)


#: The random-features profile's settings (mean-std of calibrated layers, average pooling, no
#: TV, init content) on the truncated network.
# Two content layers as the profile has, within the truncated encoder.
PROFILE = SETTINGS.updated(**{key: value for key, value in RANDOM_FEATURE_SETTINGS.items()
                              if key not in ("iterations", "content_layers")}, content_layers=("relu2_2", "relu3_1"))


@pytest.mark.parametrize("settings, masked", [
    (PROFILE, False),
    (PROFILE.updated(style_layer_weights=(1.0, 0.5, 2.0)), True),  # guided means and stds
    (SETTINGS.updated(style_loss="mean-std", pooling="max"), False),
    (SETTINGS.updated(calibrate_layers=True, style_layer_weights=(1.0, 0.0, 3.0)), True),  # guided Grams, calibrated
], ids=["profile", "profile-masked-layer-weights", "mean-std", "gram-calibrated-masked"])
def test_the_random_features_profile_and_mean_std_tile_exactly(settings, masked):
    """Calibration (each layer's RMS and the content's own style loss) and channel moments are
    sums over positions too, so tiles give them, and the loss and gradient, as one pass does."""
    assert PROFILE.style_loss == "mean-std" and PROFILE.calibrate_layers and PROFILE.pooling == "avg"
    encoder, _ = load_encoder("random", last_layer="relu3_1", seed=0, pooling=settings.pooling)
    assert_tiles_equal_one_pass(encoder, settings, masked=masked)


@pytest.mark.parametrize("profile", [False, True], ids=["gram", "random-features"])
def test_lbfgs_steps_in_tiles_give_one_pass_pixels(profile):
    """In float64: L-BFGS's first curvature pair is the difference of two nearly equal gradients,
    which turns float32 rounding of any kind (channels_last alone does it) into percent-level
    pixel differences after three steps; in float64 what is left is the tiling's own error."""
    base = PROFILE if profile else SETTINGS
    torch.manual_seed(0)  # the inputs, whatever ran before
    encoder, _ = load_encoder("random", last_layer="relu2_1", seed=0, pooling=base.pooling)
    encoder = encoder.double()
    content, style = torch.rand(1, 3, 21, 27, dtype=torch.float64), torch.rand(1, 3, 24, 24, dtype=torch.float64)
    settings = base.updated(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"), iterations=3, init="content")
    runs = [optimize_image(content, [style], encoder=encoder, settings=settings, tile_size=tile) for tile in (None, 16)]
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
    assert float(loss) == pytest.approx(float(expected.detach()), rel=1e-5)
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


# The preset's Gram loss with Adam (the random-features profile's run is tested below).
TINY = ["--size", "40", "--weights", "random", "--profile", "none", "--quiet", "--content-layers", "relu2_1",
        "--style-layers", "relu1_1", "relu2_1", "--optimizer", "adam", "--iterations", "3", "--init", "content"]


def test_optimize_tiles_on_request_or_when_one_pass_would_not_fit(scene_path, stripes_path, tmp_path, capsys):
    outputs = {name: tmp_path / f"{name}.png" for name in ("one", "tiled", "auto")}
    assert run_in_process(capsys, "optimize", str(scene_path), str(stripes_path), "-o", str(outputs["one"]), *TINY,
                          "--no-tile")[0] == 0
    code, stderr = run_in_process(capsys, "optimize", str(scene_path), str(stripes_path), "-o", str(outputs["tiled"]),
                                  *TINY, "--tile", "--tile-size", "24")
    assert code == 0 and "tiles: 24 px" in stderr
    assert read_metadata(outputs["one"])["tile_sizes"] == [None] and read_metadata(outputs["tiled"])["tile_sizes"] == [24]
    one, tiled = (np.asarray(Image.open(outputs[name]), dtype=np.int16) for name in ("one", "tiled"))
    assert np.abs(one - tiled).max() <= 1  # the same run, up to rounding
    # A budget between a tile's needs and one pass's: automatic tiling, with the largest tile that fits.
    layers = ("relu2_1", "relu1_1", "relu2_1")
    one_pass = gatys_memory(27, 40, layers=layers, optimizer="adam")
    budget = (one_pass + gatys_memory(27, 40, layers=layers, optimizer="adam", tile_size=24)) / 2
    code, stderr = run_in_process(capsys, "optimize", str(scene_path), str(stripes_path), "-o", str(outputs["auto"]), *TINY,
                                  "--max-memory", str(budget / 2**30))
    assert code == 0 and read_metadata(outputs["auto"])["tile_sizes"][0] in range(24, 40), stderr
    for args, fragment in [(["--tile", "--tile-size", "8"], "at least 10 px"),
                           (["--no-tile", "--max-memory", str(budget / 2**30)], "allow tiles (--tile)")]:
        code, stderr = run_in_process(capsys, "optimize", str(scene_path), str(stripes_path), "-o", str(tmp_path / "x.png"),
                                      *TINY, *args)
        assert code == 2 and len(stderr.strip().splitlines()) == 1 and fragment in stderr, stderr


def test_sweep_and_the_python_api_pass_tiles_on(scene_path, stripes_path, tmp_path, capsys, monkeypatch):
    seen = []
    real = gatys.optimize_image

    def spy(*args, **kwargs):
        seen.append(kwargs["tile_size"])
        return real(*args, **kwargs)

    monkeypatch.setattr(gatys, "optimize_image", spy)
    code, stderr = run_in_process(capsys, "sweep", str(scene_path), str(stripes_path), "-o", str(tmp_path / "sheet.png"),
                                  *TINY, "--tile", "--tile-size", "24", "--param", "style_weight", "100")
    assert code == 0 and seen == [24], stderr
    result = optimize(make_scene(), make_stripes(), size=40, scales=2, start_size=20, iterations=1, weights="random",
                      profile="none", content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"), tile=True,
                      tile_size=24)
    assert result.tile_sizes == [None, 24] and seen[-2:] == [None, 24]  # the coarse scale fits in one tile
    assert result.metadata()["tile_sizes"] == [None, 24]
    with pytest.raises(SettingsError, match="tile must be True, False or 'auto'"):
        optimize(make_scene(), make_stripes(), size=48, iterations=1, weights="random", tile="yes")


def test_a_random_weights_run_tiles_with_its_profile(scene_path, stripes_path, tmp_path, capsys):
    """The random-features profile (every offline run's) tiles on request, and the planner tiles it
    rather than refusing when one pass would not fit."""
    tiny = ["--size", "40", "--weights", "random", "--quiet", "--content-layers", "relu2_1",
            "--style-layers", "relu1_1", "relu2_1", "--iterations", "2"]
    tiled = tmp_path / "tiled.png"
    code, stderr = run_in_process(capsys, "optimize", str(scene_path), str(stripes_path), "-o", str(tiled), *tiny,
                                  "--tile", "--tile-size", "24")
    metadata = read_metadata(tiled)
    assert code == 0 and "tiles: 24 px" in stderr, stderr
    assert metadata["tile_sizes"] == [24] and metadata["profile"] == "random-features"
    assert metadata["style_loss"] == "mean-std" and metadata["calibrate_layers"] and metadata["pooling"] == "avg"
    layers = ("relu2_1", "relu1_1", "relu2_1")
    one_pass = gatys_memory(27, 40, layers=layers, optimizer="lbfgs")
    budget = (one_pass + gatys_memory(27, 40, layers=layers, optimizer="lbfgs", tile_size=24)) / 2
    auto = tmp_path / "auto.png"
    code, stderr = run_in_process(capsys, "optimize", str(scene_path), str(stripes_path), "-o", str(auto), *tiny,
                                  "--max-memory", str(budget / 2**30))
    assert code == 0 and read_metadata(auto)["tile_sizes"][0] in range(24, 40), stderr
    assert read_metadata(auto)["profile"] == "random-features"


@pytest.mark.parametrize("change, reason", [
    (dict(style_loss="sliced-wasserstein"), "style_loss sliced-wasserstein (it sorts every position's features at once)"),
    (dict(style_loss="histogram"), "style_loss histogram (it sorts"),
    (dict(normalize_gradients=True), "normalize_gradients (it divides by the L1 norm of a feature gradient over the whole image)"),
])
def test_tiles_refuse_what_they_do_not_compute_exactly(change, reason):
    with pytest.raises(SettingsError, match="tiles cannot compute") as refusal:
        optimize(make_scene(), make_stripes(), size=40, iterations=1, weights="random", tile=True, tile_size=24,
                 content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"), **change)
    assert reason in str(refusal.value) and "\n" not in str(refusal.value)
