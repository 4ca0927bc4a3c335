import pytest
import torch
from PIL import Image

from painterly import gatys
from painterly.color import color_statistics, rgb_to_ycbcr
from painterly.encoder import load_encoder
from painterly.errors import Cancelled, NonFiniteLossError, PainterlyError, SettingsError
from painterly.gatys import (
    PRESETS,
    GatysSettings,
    get_preset,
    learning_rate_at,
    optimize,
    optimize_image,
    save_checkpoint,
)
from painterly.images import image_to_tensor
from painterly.losses import normalized_weights
from painterly.losses import gram_matrix
from painterly.speed import SpeedSettings

from conftest import make_scene, make_stripes

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def test_presets_follow_the_spec():
    g = get_preset("gatys2016")
    assert (g.content_layers, g.style_layers) == (("relu4_2",), STYLE_LAYERS)
    assert (g.content_weight, g.style_weight, g.tv_weight) == (5, 100, 1e-3)
    assert (g.optimizer, g.iterations, g.size, g.init, g.gram_normalization) == ("lbfgs", 1000, 512, "gaussian", "channels_positions")
    assert (g.pixel_scale, g.tv_kind, g.clamp) == (256, "neural_style", "never")  # neural-style scales by 256
    k = get_preset("keras")
    assert k.content_layers == ("relu5_2",) and k.style_layers == STYLE_LAYERS
    assert (k.content_weight, k.style_weight, k.tv_weight) == (2.5e-8, 1e-6, 1e-6)
    assert (k.optimizer, k.learning_rate, k.lr_decay, k.lr_decay_every, k.iterations, k.size, k.init) == ("sgd", 100, 0.96, 100, 4000, 400, "content")
    assert (k.gram_normalization, k.style_reduction, k.tv_kind, k.average_layers, k.clamp) == ("none", "keras", "keras", True, "never")
    d = get_preset("d2l")  # as its code runs: in-place ReLUs, and the style list repeated ten times
    assert d.content_layers == ("relu4_4",) and d.style_layers == ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "conv5_1")
    assert (d.content_weight, d.style_weight, d.tv_weight, d.tv_kind, d.clamp) == (1, 1e4, 10, "absolute_mean", "never")
    assert (d.optimizer, d.learning_rate, d.lr_decay, d.lr_decay_every, d.iterations, d.init) == ("adam", 0.3, 0.8, 50, 500, "content")
    t = get_preset("tf-blog")
    assert t.content_layers == ("relu5_2",) and t.style_layers == STYLE_LAYERS
    assert (t.content_weight, t.style_weight, t.tv_weight) == (1e3, 1e-2, 0)
    assert (t.optimizer, t.learning_rate, t.adam_betas[0], t.adam_eps, t.iterations, t.size) == ("adam", 5, 0.99, 0.1, 1000, 512)
    assert (t.clamp, t.adam_eps_hat) == ("step", True)
    assert all(settings.source for settings in PRESETS.values())
    with pytest.raises(SettingsError, match="gatys2016"):
        get_preset("nope")


def test_learning_rate_schedules():
    assert learning_rate_at(get_preset("d2l"), 49) == pytest.approx(0.3)
    assert learning_rate_at(get_preset("d2l"), 50) == pytest.approx(0.24)
    assert learning_rate_at(get_preset("keras"), 50) == pytest.approx(100 * 0.96**0.5)
    assert learning_rate_at(get_preset("gatys2016"), 500) == 1.0


def test_settings_are_validated():
    with pytest.raises(SettingsError, match="relu9_9"):
        GatysSettings(style_layers=("relu9_9",))
    with pytest.raises(SettingsError, match="iterations"):
        get_preset("d2l").updated(iterations=0)
    with pytest.raises(SettingsError, match="style_weight"):
        get_preset("d2l").updated(style_weight=-1.0)
    assert normalized_weights([3, 7], 2) == pytest.approx([0.3, 0.7])
    with pytest.raises(SettingsError, match="2 style weights given for 3"):
        normalized_weights([1, 2], 3)


def gram_distance(a: torch.Tensor, b: torch.Tensor, encoder) -> float:
    fa, fb = encoder(a, STYLE_LAYERS[:3]), encoder(b, STYLE_LAYERS[:3])
    return sum(float((gram_matrix(fa[l]) - gram_matrix(fb[l])).pow(2).sum()) for l in STYLE_LAYERS[:3])


def test_end_to_end_with_random_weights_moves_towards_the_style():
    content, style = make_scene(96, 64), make_stripes(96, 64)
    # The gatys2016 recipe itself (profile none), with random weights standing in for VGG-19's.
    result = optimize(content, style, size=96, iterations=25, weights="random", init="content", tv_weight=1e-5, seed=1,
                      device="cpu", profile="none")
    assert result.image.size == (96, 64) and result.weights == "random(seed=1)"
    totals = [row["total"] for row in result.history]
    assert len(totals) == 25 and totals[-1] < 0.2 * totals[0]
    encoder, _ = load_encoder("random", last_layer="relu3_1", seed=123)  # an independent judge
    c, s, out = (image_to_tensor(im) for im in (content, style, result.image))
    assert gram_distance(out, s, encoder) < 0.5 * gram_distance(c, s, encoder)
    # colour statistics moved too: the stripes are far more saturated than the scene
    saturation = lambda t: float((t.max(1).values - t.min(1).values).mean())
    assert abs(saturation(out) - saturation(s)) < abs(saturation(c) - saturation(s))


def test_seed_reproduces_and_callback_can_cancel():
    content, style = image_to_tensor(make_scene(32, 32)), image_to_tensor(make_stripes(32, 32))
    encoder, _ = load_encoder("random", last_layer="relu3_1", seed=0)
    settings = GatysSettings(content_layers=("relu3_1",), style_layers=("relu1_1", "relu2_1"), iterations=3, init="noise")
    first = optimize_image(content, [style], encoder=encoder, settings=settings, seed=4).image
    second = optimize_image(content, [style], encoder=encoder, settings=settings, seed=4).image
    assert torch.equal(first, second)
    seen = []

    def stop_after_two(progress):
        seen.append((progress.iteration, progress.iterations, set(progress.losses)))
        if progress.iteration == 2:
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        optimize_image(content, [style], encoder=encoder, settings=settings.updated(iterations=10), callback=stop_after_two)
    assert seen == [(1, 10, {"content", "style", "tv", "total"}), (2, 10, {"content", "style", "tv", "total"})]


def test_a_loss_that_is_not_finite_stops_with_the_error_training_raises_too():
    content, style = image_to_tensor(make_scene(32, 32)), image_to_tensor(make_stripes(32, 32))
    content[..., 0, 0] = float("nan")  # the content targets, and so the loss, are NaN
    encoder, _ = load_encoder("random", last_layer="relu3_1", seed=0)
    settings = GatysSettings(content_layers=("relu3_1",), style_layers=("relu1_1",), iterations=3, init="noise")
    with pytest.raises(NonFiniteLossError, match="the loss became nan at iteration 1"):
        optimize_image(content, [style], encoder=encoder, settings=settings)


@pytest.mark.parametrize("name", ["keras", "d2l", "tf-blog"])
def test_other_presets_reduce_their_loss(name):
    content, style = image_to_tensor(make_scene(48, 32)), image_to_tensor(make_stripes(48, 32))
    encoder, _ = load_encoder("random", last_layer="relu5_2", seed=0)
    result = optimize_image(content, [style], encoder=encoder, settings=get_preset(name).updated(iterations=8))
    assert result.history[-1]["total"] < result.history[0]["total"]


def test_bfloat16_is_an_opt_in_that_still_descends():
    # Adam, whose steps do not hinge on gradient differences as L-BFGS's do, descends alike in both.
    content, style = make_scene(48, 32), make_stripes(48, 32)
    settings = dict(size=48, iterations=8, weights="random", init="content", tv_weight=1e-5, device="cpu",
                    optimizer="adam", learning_rate=5.0, profile="none")
    full = optimize(content, style, **settings)
    half = optimize(content, style, speed=SpeedSettings(precision="bfloat16"), **settings)
    assert (full.precision, half.precision) == ("float32", "bfloat16")
    assert half.metadata()["precision"] == "bfloat16"
    assert half.history[-1]["total"] < 0.75 * half.history[0]["total"]
    # The same run in bfloat16 arithmetic: close to float32's losses, not equal to them.
    assert half.history[0]["total"] != full.history[0]["total"]
    assert abs(half.history[-1]["total"] / full.history[-1]["total"] - 1) < 0.05


def test_several_styles_blend_their_grams():
    content = image_to_tensor(make_scene(32, 32))
    red, blue = torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32)
    red[:, 0], blue[:, 2] = 1.0, 1.0
    encoder, _ = load_encoder("random", last_layer="relu2_1", seed=0)
    settings = GatysSettings(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"), content_weight=0.0,
                             tv_weight=0.0, iterations=30, init="content")
    mostly_red = optimize_image(content, [red, blue], encoder=encoder, settings=settings, style_weights=[9, 1]).image
    mostly_blue = optimize_image(content, [red, blue], encoder=encoder, settings=settings, style_weights=[1, 9]).image
    assert mostly_red[:, 0].mean() - mostly_red[:, 2].mean() > mostly_blue[:, 0].mean() - mostly_blue[:, 2].mean()
    with pytest.raises(SettingsError):
        optimize_image(content, [red, blue], encoder=encoder, settings=settings, style_weights=[1])


# The creative controls, on 32 px images and an encoder truncated at relu2_1.
SMALL = dict(size=32, content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"), weights="random",
             device="cpu", init="content", tv_weight=1e-5, profile="none")  # the recipe, not the random-features profile


def ycbcr(image: Image.Image) -> torch.Tensor:
    return rgb_to_ycbcr(image_to_tensor(image))


def test_colour_modes_change_what_they_claim():
    content, style = make_scene(32, 32), make_stripes(32, 32)
    plain = optimize(content, style, iterations=8, **SMALL).image
    kept = optimize(content, style, iterations=8, preserve_color="luminance", **SMALL).image
    only = optimize(content, style, iterations=8, transfer_color_only=True, **SMALL).image
    matched = optimize(content, style, iterations=8, preserve_color="match", **SMALL).image
    c, p, k, o = ycbcr(content), ycbcr(plain), ycbcr(kept), ycbcr(only)
    difference = lambda a, b: float((a - b).abs().mean())  # noqa: E731
    # luminance: the content's chroma survives (the plain run loses it), the luminance is stylised
    assert difference(k[:, 1:], c[:, 1:]) < 0.005 < 0.04 < difference(p[:, 1:], c[:, 1:])
    assert difference(k[:, :1], c[:, :1]) > 0.01
    # colour only: the content's luminance with the plain run's chroma
    assert difference(o[:, :1], c[:, :1]) < 0.01 < 0.05 < difference(p[:, :1], c[:, :1])
    assert difference(o[:, 1:], p[:, 1:]) < 0.5 * difference(o[:, 1:], c[:, 1:])
    # match: the styles took the content's colours, so the result's mean colour stays near it
    mean = lambda image: color_statistics(image_to_tensor(image))[0]  # noqa: E731
    assert float((mean(matched) - mean(content)).norm()) < 0.5 * float((mean(plain) - mean(content)).norm())
    with pytest.raises(SettingsError, match="transfer_color_only"):
        GatysSettings(preserve_color="luminance", transfer_color_only=True)
    with pytest.raises(SettingsError, match="preserve_color"):
        GatysSettings(preserve_color="sepia")


def test_masks_confine_each_style_to_its_region():
    content = make_scene(32, 32)
    red, blue = Image.new("RGB", (32, 32), (255, 0, 0)), Image.new("RGB", (32, 32), (0, 0, 255))
    left = Image.new("L", (32, 32), 0)
    left.paste(255, (0, 0, 16, 32))
    right = Image.eval(left, lambda v: 255 - v)
    result = optimize(content, [red, blue], masks=[left, right], iterations=30, content_weight=0.0, **SMALL)
    out = image_to_tensor(result.image)
    redness = out[:, 0] - out[:, 2]
    assert float(redness[..., 2:14].mean()) > 0.3 and float(redness[..., 18:30].mean()) < -0.3
    with pytest.raises(SettingsError, match="mask 1 is 16x32 but the content image is 32x32"):
        optimize(content, [red, blue], masks=[left.crop((0, 0, 16, 32)), right], **SMALL)
    with pytest.raises(SettingsError, match="1 masks given for 2 style images"):
        optimize(content, [red, blue], masks=[left], **SMALL)


def test_scales_go_coarse_to_fine_with_the_style_scaled_to_each(monkeypatch):
    assert GatysSettings(size=384, scales=3).scale_sizes() == [96, 192, 384]
    assert GatysSettings(size=400, scales=2, start_size=100).scale_sizes() == [100, 400]
    style_sides = []

    class Spy(gatys.GatysObjective):
        def __init__(self, encoder, content, styles, settings, **kwargs):
            style_sides.append((max(content.shape[-2:]), max(styles[0].shape[-2:])))
            super().__init__(encoder, content, styles, settings, **kwargs)

    monkeypatch.setattr(gatys, "GatysObjective", Spy)
    seen = []
    result = optimize(make_scene(48, 32), make_stripes(40, 40), scales=3, iterations_per_scale=(3, 2, 1), style_scale=1.5,
                      callback=lambda p: seen.append((p.scale, p.scales, p.iteration, tuple(p.image.shape[-2:]))),
                      **{**SMALL, "size": 48})
    assert result.image.size == (48, 32)
    assert style_sides == [(16, 24), (28, 42), (48, 72)]
    assert [(s, n, i) for s, n, i, _ in seen] == [(1, 3, 1), (1, 3, 2), (1, 3, 3), (2, 3, 1), (2, 3, 2), (3, 3, 1)]
    assert [shape for *_, shape in seen][::2] == [(11, 16), (11, 16), (19, 28)] and seen[-1][3] == (32, 48)
    assert [row["iteration"] for row in result.history] == [1, 2, 3, 4, 5, 6]
    for bad in (dict(style_scale=-1.0), dict(style_scale=0.0), dict(scales=0), dict(scales=2, iterations_per_scale=(1,)),
                dict(start_size=600)):
        with pytest.raises(SettingsError):
            GatysSettings(**bad)


def test_resume_continues_the_saved_run(tmp_path):
    content, style = make_scene(32, 32), make_stripes(32, 32)
    settings = dict(SMALL, optimizer="adam", learning_rate=20.0, init="noise")
    path = tmp_path / "run.state.pt"

    def save_at_four(progress):
        if progress.iteration == 4:
            save_checkpoint(progress.checkpoint(), path)

    straight = optimize(content, style, iterations=8, callback=save_at_four, **settings)
    resumed = optimize(content, style, resume=path, iterations=8, **settings)
    assert resumed.image.tobytes() == straight.image.tobytes()
    assert resumed.history == straight.history  # the saved history, then the same four steps
    assert resumed.history[4]["total"] < 0.5 * straight.history[0]["total"]
    # a run of four, continued to eight, also gives the eight-step result
    path.unlink()
    optimize(content, style, iterations=4, callback=save_at_four, **settings)
    assert optimize(content, style, resume=str(path), iterations=8).image.tobytes() == straight.image.tobytes()
    with pytest.raises(SettingsError, match="style_weight was 100.0, now 1.0"):
        optimize(content, style, resume=path, style_weight=1.0)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(PainterlyError, match="not a painterly checkpoint"):
        optimize(content, style, resume=tmp_path / "junk.pt")
