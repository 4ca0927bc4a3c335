"""The settings the recipes fix in code: clamping, pixel and feature scales, decay, start."""

import pytest
import torch

from painterly.cli import main
from painterly.encoder import load_encoder
from painterly.errors import SettingsError
from painterly.gatys import GatysSettings, get_preset, initial_image, learning_rate_at, optimize_image
from painterly.images import image_to_tensor, read_metadata
from painterly.losses import total_variation_loss

from conftest import make_scene, make_stripes

TINY = GatysSettings(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"), iterations=3,
                     optimizer="adam", learning_rate=40.0, init="content", tv_weight=0.0)


def final_pixels(settings: GatysSettings) -> torch.Tensor:
    content, style = image_to_tensor(make_scene(24, 16)), image_to_tensor(make_stripes(24, 16))
    encoder, _ = load_encoder("random", last_layer="relu2_1", seed=0)
    seen = []
    optimize_image(content, [style], encoder=encoder, settings=settings,
                   callback=lambda progress: seen.append(progress.checkpoint()["pixels"].clone()))
    return seen[-1]


def test_clamp_never_lets_pixels_leave_the_range_and_step_keeps_them():
    assert float(final_pixels(TINY.updated(clamp="never")).max()) > 255
    assert float(final_pixels(TINY.updated(clamp="step")).max()) <= 255
    assert float(final_pixels(TINY).max()) <= 255  # auto: Adam clamps after each step, as before
    per_channel = final_pixels(TINY.updated(clamp="step", pixel_scale=(100.0, 200.0, 300.0)))
    assert per_channel.amax(dim=(0, 2, 3)).tolist() <= [100.0, 200.0, 300.0]


def test_decay_can_be_switched_off_and_the_start_chosen():
    d2l = get_preset("d2l")
    assert learning_rate_at(d2l, 400) == pytest.approx(0.3 * 0.8**8)
    assert learning_rate_at(d2l.updated(lr_decay=1.0), 400) == 0.3
    assert learning_rate_at(d2l.updated(lr_decay_every=0), 400) == 0.3
    content = torch.full((1, 3, 8, 8), 0.5)
    assert torch.equal(initial_image(content, d2l, seed=0), content)
    noise = initial_image(content, d2l.updated(init="noise"), seed=0)
    assert 0 <= float(noise.min()) and float(noise.max()) <= 1 and float(noise.std()) > 0.2
    gaussian = initial_image(content, d2l.updated(init="gaussian"), seed=0)
    assert float(gaussian.std(dim=(0, 2, 3)).max()) < 1e-4 and gaussian.mean(dim=(0, 2, 3)).tolist() == pytest.approx([0.483, 0.456, 0.406], abs=1e-3)


def test_bad_fidelity_settings_are_refused():
    for bad, message in [(dict(clamp="sometimes"), "clamp"), (dict(pixel_scale=(1.0, 2.0)), "pixel_scale"),
                         (dict(feature_scale=0.0), "feature_scale"), (dict(init="zeros"), "init"),
                         (dict(lr_decay=0.0), "lr_decay"), (dict(lr_decay_every=-1), "lr_decay_every")]:
        with pytest.raises(SettingsError, match=message):
            GatysSettings(**bad)


def test_neural_style_tv_is_half_the_squared_differences_of_inner_pixels():
    image = torch.tensor([[0.0, 1.0, 3.0], [2.0, 0.0, 0.0]]).view(1, 1, 2, 3)
    # only the first row's first two pixels have both neighbours: dx 1, -2; dy 2, -1
    assert total_variation_loss(image, kind="neural_style").item() == pytest.approx(0.5 * (1 + 4 + 4 + 1))


def test_cli_flags_reach_the_settings_and_the_metadata(scene_path, stripes_path, tmp_path, capsys):
    out = tmp_path / "out.png"
    code = main(["optimize", str(scene_path), str(stripes_path), "-o", str(out), "--preset", "d2l", "--size", "32",
                 "--iterations", "2", "--weights", "random", "--quiet", "--lr-decay", "none", "--lr-decay-every", "0",
                 "--clamp", "step", "--pixel-scale", "4", "4", "4", "--feature-scale", "1.5", "--init", "gaussian"])
    assert code == 0
    metadata = read_metadata(out)
    assert (metadata["lr_decay"], metadata["lr_decay_every"], metadata["clamp"]) == (1.0, 0, "step")
    assert (metadata["pixel_scale"], metadata["feature_scale"], metadata["init"]) == ([4.0, 4.0, 4.0], 1.5, "gaussian")
    capsys.readouterr()
    code = main(["optimize", str(scene_path), str(stripes_path), "-o", str(tmp_path / "bad.png"), "--pixel-scale", "1", "2"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and "pixel_scale" in error and len(error.splitlines()) == 1


def test_sweep_takes_the_same_flags():
    from painterly.cli import build_parser

    args = build_parser().parse_args(["sweep", "c.png", "s.png", "--param", "style_weight", "1", "--clamp", "closure",
                                      "--lr-decay", "0.5", "--pixel-scale", "1"])
    assert (args.clamp, args.lr_decay, args.pixel_scale) == ("closure", 0.5, [1.0])
