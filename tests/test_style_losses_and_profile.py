"""Style losses beyond the Gram matrix in a run, and the random-features profile's selection."""

import pytest

from painterly import profiles
from painterly.errors import SettingsError
from painterly.gatys import GatysSettings, STYLE_LOSSES, get_preset, optimize
from painterly.images import read_metadata
from painterly.weights import choose_weights

from conftest import make_scene, make_stripes, run_cli

TINY = dict(size=32, content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"), weights="random",
            device="cpu", init="content", tv_weight=0.0, scales=1, profile="none")


@pytest.mark.parametrize("style_loss", STYLE_LOSSES)
def test_a_short_run_lowers_each_style_loss(style_loss):
    result = optimize(make_scene(32, 32), make_stripes(32, 32), iterations=8, style_loss=style_loss,
                      content_weight=0.0, **TINY)
    styles = [row["style"] for row in result.history]
    assert styles[-1] < 0.5 * styles[0]
    assert result.metadata()["style_loss"] == style_loss


def test_masks_work_with_mean_std_and_are_refused_where_unsupported():
    from PIL import Image

    content, red, blue = make_scene(32, 32), Image.new("RGB", (32, 32), "red"), Image.new("RGB", (32, 32), "blue")
    left = Image.new("L", (32, 32), 0)
    left.paste(255, (0, 0, 16, 32))
    right = Image.eval(left, lambda v: 255 - v)
    result = optimize(content, [red, blue], masks=[left, right], iterations=5, style_loss="mean-std", **TINY)
    assert result.history[-1]["style"] < result.history[0]["style"]
    for style_loss in ("sliced-wasserstein", "histogram"):
        with pytest.raises(SettingsError, match="masks work with the gram and mean-std style losses"):
            optimize(content, [red, blue], masks=[left, right], iterations=1, style_loss=style_loss, **TINY)


def test_settings_refuse_unknown_losses_poolings_and_layer_weights():
    with pytest.raises(SettingsError, match="unknown style_loss"):
        GatysSettings(style_loss="wasserstein")
    with pytest.raises(SettingsError, match="unknown pooling"):
        GatysSettings(pooling="min")
    with pytest.raises(SettingsError, match="style_layer_weights"):
        GatysSettings(style_layer_weights=(1.0, 2.0))


def test_profile_selection_random_pretrained_and_auto_fallback():
    assert profiles.resolve_profile("auto", "random") == profiles.RANDOM_FEATURES
    assert profiles.resolve_profile("auto", "vgg19") is None
    assert profiles.resolve_profile("none", "random") is None
    assert profiles.resolve_profile(profiles.RANDOM_FEATURES, "vgg19") == profiles.RANDOM_FEATURES
    with pytest.raises(SettingsError):
        profiles.resolve_profile("fast", "random")
    # Offline (the tests' cache is empty), auto falls back to random weights: the profile follows.
    spec, note = choose_weights("auto", preferred="vgg19")
    assert spec == "random" and note
    assert profiles.resolve_profile("auto", spec) == profiles.RANDOM_FEATURES


def test_the_callers_settings_win_over_the_profile():
    changes = profiles.profile_changes(profiles.RANDOM_FEATURES, {"tv_weight": 0.5, "iterations": None})
    assert "tv_weight" not in changes and changes  # unset (None) overrides leave the profile's
    assert profiles.profile_changes(None, {}) == {}
    with_iterations = profiles.profile_changes(profiles.RANDOM_FEATURES, {"iterations": 7})
    assert "iterations" not in with_iterations and "iterations_per_scale" not in with_iterations
    with_scales = profiles.profile_changes(profiles.RANDOM_FEATURES, {"scales": 1})
    assert not {"scales", "start_size", "iterations_per_scale"} & set(with_scales)


def test_random_weights_get_the_profile_and_record_it():
    content, style = make_scene(32, 32), make_stripes(32, 32)
    small = {key: value for key, value in TINY.items() if key not in ("profile", "init", "tv_weight", "scales")}
    result = optimize(content, style, iterations=1, **small)
    assert result.profile == profiles.RANDOM_FEATURES and result.metadata()["profile"] == profiles.RANDOM_FEATURES
    for key, value in profiles.RANDOM_FEATURE_SETTINGS.items():
        if key not in ("iterations", "iterations_per_scale", "scales", "start_size", *small):
            assert getattr(result.settings, key) == value, key
    plain = optimize(content, style, iterations=1, profile="none", **small)
    assert plain.profile is None and plain.metadata()["profile"] is None
    recipe = get_preset("gatys2016")
    assert (plain.settings.init, plain.settings.tv_weight) == (recipe.init, recipe.tv_weight)  # the recipe's values
    assert result.settings.content_layers == small["content_layers"]  # the caller's, not the profile's
    own_layers = optimize(content, style, iterations=1, **{k: v for k, v in small.items() if k != "content_layers"})
    assert own_layers.settings.content_layers == profiles.RANDOM_FEATURE_SETTINGS["content_layers"]
    mine = optimize(content, style, iterations=1, tv_weight=0.25, **small)
    assert mine.profile == profiles.RANDOM_FEATURES and mine.settings.tv_weight == 0.25
    # A settings object built by the caller is used as given.
    built = GatysSettings(content_layers=("relu2_1",), style_layers=("relu1_1",), size=32, iterations=1)
    assert optimize(content, style, settings=built, weights="random", device="cpu").profile is None


def test_style_loss_pooling_and_profile_from_the_cli(scene_path, stripes_path, tmp_path):
    out = tmp_path / "sw.png"
    result = run_cli("optimize", str(scene_path), str(stripes_path), "-o", str(out), "--size", "32", "--iterations", "2",
                     "--weights", "random", "--quiet", "--style-loss", "sliced-wasserstein", "--pooling", "avg",
                     "--style-layers", "relu1_1", "relu2_1", "--content-layers", "relu2_1")
    assert result.returncode == 0, result.stderr
    metadata = read_metadata(out)
    assert metadata["style_loss"] == "sliced-wasserstein" and metadata["pooling"] == "avg"
    assert metadata["profile"] == profiles.RANDOM_FEATURES
    bad = run_cli("optimize", str(scene_path), str(stripes_path), "-o", str(tmp_path / "x.png"), "--style-loss", "l1")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr and "Traceback" not in bad.stderr
    masked = run_cli("optimize", str(scene_path), str(stripes_path), "-o", str(tmp_path / "m.png"), "--size", "32",
                     "--iterations", "1", "--weights", "random", "--quiet", "--style-loss", "histogram",
                     "--mask", str(scene_path))
    assert masked.returncode == 2 and "masks work with" in masked.stderr and "Traceback" not in masked.stderr
