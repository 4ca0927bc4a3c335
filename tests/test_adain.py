"""AdaIN: the op, the model, weights in the released layouts, controls and tiles."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from painterly.adain import (
    AdaINModel,
    adain,
    blend_styles,
    build_decoder,
    feature_statistics,
    load_model,
    stylize,
    stylize_batch,
    supersampled,
    symmetric_power,
    with_margin,
)
from painterly.bench import psnr
from painterly.color import match_color
from painterly.encoder import load_encoder
from painterly.errors import SettingsError, WeightsError
from painterly.images import image_to_tensor, tensor_to_image
from painterly.speed import SpeedSettings
from painterly.weights import cache_dir, layout_keys

from conftest import make_scene, make_stripes


def decoder_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random decoder in the released layout, scaled so its output sits inside [0, 1] with
    visible contrast (PyTorch's default init decodes to an all-black image after clamping)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout_keys("decoder").items():
        if key.endswith("weight"):
            state[key] = torch.randn(shape, generator=generator) * (2.0 / (shape[1] * 9)) ** 0.5
        else:
            state[key] = torch.zeros(shape)
    state["28.weight"] *= 0.15
    state["28.bias"] += 0.5
    return state


def write_decoder(path: Path, seed: int = 0) -> Path:
    torch.save(decoder_state_dict(seed), path)
    return path


def write_released_adain_files(seed: int = 0) -> None:
    """vgg_normalised.pth and decoder.pth, with the released keys and shapes, into the cache."""
    generator = torch.Generator().manual_seed(seed)
    encoder = {key: torch.randn(shape, generator=generator) * 0.05 for key, shape in layout_keys("normalised").items()}
    cache_dir().mkdir(parents=True, exist_ok=True)
    torch.save(encoder, cache_dir() / "vgg_normalised.pth")
    write_decoder(cache_dir() / "decoder.pth", seed)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> AdaINModel:
    path = write_decoder(tmp_path_factory.mktemp("decoder") / "decoder.pth")
    return AdaINModel.load(encoder="random", decoder=path)


@pytest.fixture(scope="module")
def float32_model(tmp_path_factory) -> AdaINModel:
    path = write_decoder(tmp_path_factory.mktemp("decoder") / "decoder.pth")
    return AdaINModel.load(encoder="random", decoder=path, speed=SpeedSettings(precision="float32"))


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64) / 255.0


def test_adain_matches_a_hand_computation():
    content = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]], [[0.0, 0.0], [0.0, 4.0]]]])
    style = torch.tensor([[[[10.0, 14.0, 12.0, 12.0]], [[-1.0, 1.0, -1.0, 1.0]]]])
    expected = torch.empty_like(content)
    for channel in range(2):
        x, y = content[0, channel].flatten().tolist(), style[0, channel].flatten().tolist()
        mean_x, mean_y = sum(x) / 4, sum(y) / 4
        std_x = (sum((v - mean_x) ** 2 for v in x) / 4 + 1e-5) ** 0.5
        std_y = (sum((v - mean_y) ** 2 for v in y) / 4 + 1e-5) ** 0.5
        expected[0, channel] = torch.tensor([std_y * (v - mean_x) / std_x + mean_y for v in x]).view(2, 2)
    assert torch.allclose(adain(content, style), expected, atol=1e-6)
    with pytest.raises(ValueError):
        adain(content, style[:, :1])


def test_masked_statistics_are_those_of_the_region():
    features = torch.randn(1, 4, 6, 8)
    mask = torch.zeros(1, 1, 6, 8)
    mask[..., :, :3] = 1.0
    mean, std = feature_statistics(features, mask)
    region = features[..., :, :3]
    assert torch.allclose(mean, region.mean(dim=(2, 3), keepdim=True), atol=1e-6)
    assert torch.allclose(std, (region.var(dim=(2, 3), unbiased=False, keepdim=True) + 1e-5).sqrt(), atol=1e-6)
    mean, covariance = feature_statistics(features, mask, transform="wct")
    assert covariance.shape == (1, 4, 4)
    assert torch.allclose(mean, region.mean(dim=(2, 3), keepdim=True), atol=1e-6)
    assert torch.allclose(covariance[0], torch.cov(region[0].flatten(1), correction=0), atol=1e-5)
    with pytest.raises(SettingsError, match="feature transform"):
        feature_statistics(features, transform="gram")


def test_symmetric_power_inverts_and_drops_dead_directions():
    basis, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))
    matrix = basis @ torch.diag(torch.tensor([4.0, 1.0, 0.25, 0.0], dtype=torch.float64)) @ basis.T
    root = symmetric_power(matrix, 0.5)
    assert torch.allclose(root @ root, matrix, atol=1e-10)
    inverse_root = symmetric_power(matrix, -0.5)
    # A pseudo-inverse: the dead direction gets 0, not 1/sqrt(eps).
    assert torch.allclose(inverse_root @ matrix @ inverse_root, basis[:, :3] @ basis[:, :3].T, atol=1e-8)
    assert torch.linalg.matrix_norm(inverse_root, ord=2) < 2.01


def test_wct_gives_the_content_the_style_covariance_and_alpha_mixes_linearly():
    generator = torch.Generator().manual_seed(0)
    content = torch.randn(1, 3, 20, 20, generator=generator)
    mixing = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [-0.5, 0.3, 0.4]])
    style = torch.einsum("cd,ndhw->nchw", mixing, torch.randn(1, 3, 24, 24, generator=generator)) + 2.0
    content_stats = [feature_statistics(content, transform="wct")]
    style_stats = [feature_statistics(style, transform="wct")]
    full = blend_styles(content, content_stats, style_stats, [torch.tensor(1.0)])
    mean, covariance = feature_statistics(full, transform="wct")
    assert torch.allclose(mean, style_stats[0][0], atol=1e-4)
    assert torch.allclose(covariance, style_stats[0][1], atol=1e-4)
    # AdaIN matches the variances only: the correlations stay the content's.
    adain_cov = feature_statistics(adain(content, style), transform="wct")[1]
    assert not torch.allclose(adain_cov, style_stats[0][1], atol=1e-2)
    half = blend_styles(content, content_stats, style_stats, [torch.tensor(1.0)], alpha=0.25)
    assert torch.allclose(half, 0.25 * full + 0.75 * content, atol=1e-5)


def test_blend_with_one_full_weight_is_adain_and_alpha_mixes_linearly():
    content, style = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 5, 5)
    content_stats = [(content.mean((2, 3), keepdim=True), (content.var((2, 3), unbiased=False, keepdim=True) + 1e-5).sqrt())]
    style_stats = [(style.mean((2, 3), keepdim=True), (style.var((2, 3), unbiased=False, keepdim=True) + 1e-5).sqrt())]
    full = blend_styles(content, content_stats, style_stats, [torch.tensor(1.0)])
    assert torch.allclose(full, adain(content, style), atol=1e-5)
    half = blend_styles(content, content_stats, style_stats, [torch.tensor(1.0)], alpha=0.25)
    assert torch.allclose(half, 0.25 * full + 0.75 * content, atol=1e-5)


def test_decoder_has_the_released_layout():
    shapes = {key: tuple(value.shape) for key, value in build_decoder().state_dict().items()}
    assert shapes == layout_keys("decoder")


def test_alpha_zero_decodes_the_content_features_unchanged(model):
    content = make_scene(40, 32)
    result = stylize(content, make_stripes(32, 32), alpha=0.0, style_size=None, model=model)
    with model.speed.running(model.device):  # the same precision as stylize's
        expected = tensor_to_image(model.decode(model.encode(image_to_tensor(content))))
    assert np.abs(pixels(result.image) - pixels(expected)).max() <= 1 / 255
    styled = stylize(content, make_stripes(32, 32), alpha=1.0, style_size=None, model=model)
    assert np.abs(pixels(styled.image) - pixels(expected)).mean() > 0.01


def test_released_layouts_load_offline_and_forward_deterministically():
    write_released_adain_files()
    content, style = make_scene(48, 40), make_stripes(40, 40)
    first = stylize(content, style, style_size=None, device="cpu")
    fresh = AdaINModel.load(encoder="adain", decoder="adain")
    second = stylize(content, style, style_size=None, model=fresh)
    assert first.image.tobytes() == second.image.tobytes()
    assert first.metadata()["encoder"] == "adain" and first.metadata()["decoder"] == "adain"
    assert np.asarray(first.image).std() > 1  # not a flat image


def test_a_remembered_model_is_read_again_when_its_cached_download_changes():
    """The studio keeps models between requests: a released file replaced in the cache (a new
    download, a repaired one) must be what the next stylisation uses."""
    write_released_adain_files(seed=0)
    first = load_model(encoder="adain", decoder="adain", device="cpu")
    assert load_model(encoder="adain", decoder="adain", device="cpu") is first  # remembered
    write_released_adain_files(seed=1)
    later = time.time_ns() + 10**9  # whatever the file system's timestamp resolution
    os.utime(cache_dir() / "decoder.pth", ns=(later, later))
    again = load_model(encoder="adain", decoder="adain", device="cpu")
    assert again is not first
    assert not torch.equal(again.decoder[1].weight, first.decoder[1].weight)


def test_decoder_files_that_do_not_fit_are_refused(tmp_path):
    state = decoder_state_dict()
    state["14.weight"] = torch.zeros(128, 128, 3, 3)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match=r"14\.weight.*shape"):
        AdaINModel.load(encoder="random", decoder=tmp_path / "bad.pth")
    with pytest.raises(SettingsError, match="normalised VGG-19"):
        write_released_adain_files()
        AdaINModel.load(encoder="random", decoder="adain")


def test_missing_released_weights_say_how_to_get_them():
    with pytest.raises(WeightsError, match=r"vgg_normalised\.pth.*--encoder bundled --decoder bundled"):
        AdaINModel.load(encoder="adain", decoder="adain")


@pytest.mark.parametrize("tile", [False, True])
def test_odd_sizes_come_back_at_their_own_size(model, tile):
    result = stylize(make_scene(53, 37), make_stripes(24, 24), style_size=None, model=model, tile=tile, tile_size=280,
                     tile_overlap=136)
    assert result.image.size == (53, 37)
    resized = stylize(make_scene(53, 37), make_stripes(24, 24), content_size=45, style_size=None, model=model)
    assert resized.image.size == (45, 31)


def test_receptive_field_radius_is_the_reach_of_one_changed_pixel():
    # In float64 with dense random weights every path carries: an impulse's reach in the output
    # is the receptive field, measured at each of the 8 phases of the pooling grid.
    from painterly.adain import RECEPTIVE_FIELD_RADIUS, MIN_TILE_OVERLAP

    torch.manual_seed(0)
    encoder = load_encoder("random", last_layer="relu4_1", seed=0)[0].double()
    decoder = build_decoder().double()
    for module in decoder.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.normal_(module.weight, std=0.05)
            torch.nn.init.uniform_(module.bias, 0.0, 0.1)
    image = torch.rand(1, 3, 16, 192, dtype=torch.float64)
    base = decoder(encoder(image)["relu4_1"])
    reach = 0
    for pixel in range(96, 104):
        changed = image.clone()
        changed[..., pixel] += 1.0
        columns = ((decoder(encoder(changed)["relu4_1"]) - base).abs().amax(dim=(0, 1, 2)) > 0).nonzero().flatten()
        reach = max(reach, pixel - int(columns.min()), int(columns.max()) - pixel)
    assert reach == RECEPTIVE_FIELD_RADIUS == 67 and MIN_TILE_OVERLAP == 136


@pytest.mark.parametrize("transform", ["adain", "wct"])
def test_tiles_at_the_smallest_overlap_paint_what_one_pass_paints(float32_model, transform):
    # The worst case: the smallest tile and overlap the settings allow, columns that share
    # exactly that overlap (rows share more), and a busy image whose seams would show. WCT's
    # covariance is gathered over the whole image first, as AdaIN's stds are.
    from painterly.adain import MIN_TILE_OVERLAP, MIN_TILE_SIZE

    content, style = make_scene(424, 288, seed=3), make_stripes(48, 48)
    rng = np.random.default_rng(0)
    content = Image.fromarray(np.clip(np.asarray(content) + rng.normal(0, 40, (288, 424, 3)), 0, 255).astype(np.uint8))
    whole = stylize(content, style, style_size=None, model=float32_model, tile=False, feature_transform=transform)
    calls = []
    tiled = stylize(content, style, style_size=None, model=float32_model, feature_transform=transform,
                    tile=True, tile_size=MIN_TILE_SIZE,
                    tile_overlap=MIN_TILE_OVERLAP, callback=lambda done, total: calls.append((done, total)))
    assert tiled.metadata()["tile"] and calls[-1] == (6 + 4, 6 + 4)  # 2 x 3 statistics tiles, then 2 x 2 tiles
    # Every weighted pixel is one pass's, so only float rounding differs (measured: 0.009% of
    # pixels, by 1 level; the old ramp, which kept pixels within the receptive field, 1.4%).
    difference = np.abs(np.asarray(whole.image, dtype=int) - np.asarray(tiled.image, dtype=int))
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-3, (difference.max(), (difference > 0).mean())


def test_an_overlap_below_the_receptive_field_is_refused():
    from painterly.adain import StylizeSettings

    with pytest.raises(SettingsError, match="at least 136, got 64: each output pixel sees 67 px"):
        StylizeSettings(tile_size=256, tile_overlap=64)
    with pytest.raises(SettingsError, match="above twice the overlap"):
        StylizeSettings(tile_size=272, tile_overlap=136)
    StylizeSettings(tile_size=280, tile_overlap=136)


def test_style_weights_are_normalised_and_checked(model):
    content, styles = make_scene(32, 32), [make_stripes(32, 32), make_scene(32, 32, seed=5)]
    kwargs = dict(style_size=None, model=model)
    assert stylize(content, styles, style_weights=[2, 2], **kwargs).image.tobytes() == \
        stylize(content, styles, style_weights=[0.5, 0.5], **kwargs).image.tobytes()
    only_first = stylize(content, styles, style_weights=[1, 0], **kwargs)
    assert only_first.image.tobytes() == stylize(content, styles[0], **kwargs).image.tobytes()
    assert only_first.metadata()["style_weights"] == [1.0, 0.0]
    for bad in ([1.0], [1, -1], [0, 0]):
        with pytest.raises(SettingsError, match="style weights"):
            stylize(content, styles, style_weights=bad, **kwargs)
    for alpha in (-0.1, 1.5, float("nan")):
        with pytest.raises(SettingsError, match="alpha"):
            stylize(content, styles, alpha=alpha, **kwargs)


def test_masks_choose_where_each_style_goes(model):
    content, styles = make_scene(40, 32), [make_stripes(32, 32), make_scene(32, 32, seed=5)]
    kwargs = dict(style_size=None, model=model)
    white, black = Image.new("L", content.size, 255), Image.new("L", content.size, 0)
    all_first = stylize(content, styles, masks=[white, black], **kwargs)
    assert all_first.image.tobytes() == stylize(content, styles[0], **kwargs).image.tobytes()
    nothing = stylize(content, styles[0], masks=[black], **kwargs)
    assert nothing.image.tobytes() == stylize(content, styles[0], alpha=0.0, **kwargs).image.tobytes()
    with pytest.raises(SettingsError, match="mask 1 is 20x16 but the content image is 40x32"):
        stylize(content, styles, masks=[white.resize((20, 16)), black], **kwargs)
    with pytest.raises(SettingsError, match="one mask per style"):
        stylize(content, styles, masks=[white], **kwargs)


def test_crop_paints_the_centre_squares_as_pytorch_adains_crop(model):
    content, style = make_scene(56, 32), make_stripes(24, 40)
    cropped = stylize(content, style, crop=True, content_size=32, style_size=None, model=model)
    assert cropped.image.size == (32, 32) and cropped.metadata()["crop"] is True
    by_hand = stylize(content.crop((12, 0, 44, 32)), style.crop((0, 8, 24, 32)), style_size=None, model=model)
    assert cropped.image.tobytes() == by_hand.image.tobytes()
    # A mask has the content's size and is cropped with it.
    half = Image.new("L", content.size, 0)
    half.paste(255, (0, 0, 28, 32))
    masked = stylize(content, [style, make_scene(24, 24, seed=3)], masks=[half, half.point(lambda v: 255 - v)],
                     crop=True, style_size=None, model=model)
    assert masked.image.size == (32, 32)
    assert not stylize(content, style, style_size=None, model=model).metadata()["crop"]


def test_preserve_color_gives_the_style_the_contents_colours_first(model):
    content, style = make_scene(40, 32), make_stripes(32, 32)
    kwargs = dict(style_size=None, model=model)
    kept = stylize(content, style, preserve_color="match", **kwargs)
    matched_style = tensor_to_image(match_color(image_to_tensor(style), image_to_tensor(content)))
    by_hand = stylize(content, matched_style, **kwargs)
    plain = stylize(content, style, **kwargs)
    assert np.abs(pixels(kept.image) - pixels(by_hand.image)).mean() < 1 / 255
    assert np.abs(pixels(kept.image) - pixels(plain.image)).mean() > 2 / 255
    assert kept.metadata()["preserve_color"] == "match"
    with pytest.raises(SettingsError, match="preserve_color"):
        stylize(content, style, preserve_color="sepia", **kwargs)


def test_luminance_mode_keeps_the_contents_chroma(model):
    content, style = make_scene(40, 32), make_stripes(32, 32)
    kwargs = dict(style_size=None, model=model)
    chroma = lambda image: pixels(image.convert("YCbCr"))[..., 1:]
    luma = lambda image: pixels(image.convert("L"))
    kept = stylize(content, style, preserve_color="luminance", **kwargs).image
    plain = stylize(content, style, **kwargs).image
    assert np.abs(chroma(kept) - chroma(content)).mean() < 1 / 255  # rounding only
    assert np.abs(chroma(plain) - chroma(content)).mean() > 4 * np.abs(chroma(kept) - chroma(content)).mean()
    assert np.abs(luma(kept) - luma(plain)).mean() > 0  # the luminance is the transfer's, not the content's
    assert np.abs(luma(kept) - luma(content)).mean() > 1 / 255


def test_each_style_is_encoded_once(model, monkeypatch):
    encoded = []
    original = model.encode
    monkeypatch.setattr(model, "encode", lambda image: encoded.append(tuple(image.shape)) or original(image))
    style = make_scene(24, 16, seed=11)  # a style no other test has put in the model's cache
    for seed in range(3):
        stylize(make_scene(32, 32, seed=seed), style, style_size=None, model=model)
    assert encoded.count((1, 3, 16, 24)) == 1 and len(encoded) == 4


@pytest.mark.parametrize("transform", ["adain", "wct"])
def test_tile_by_tile_statistics_equal_one_pass(model, transform):
    from painterly.adain import _tiled_statistics, pad_to_multiple

    content = np.asarray(make_scene(96, 80))
    mask = np.zeros((80, 96), dtype=np.uint8)
    mask[:, :40] = 255
    with torch.no_grad():
        features = model.encode(pad_to_multiple(image_to_tensor(Image.fromarray(content))))
        whole = feature_statistics(features, torch.from_numpy(mask[::8, ::8] / 255.0).float()[None, None],
                                   transform=transform)
        (tiled,) = _tiled_statistics(model, content, [mask], [1.0], tile_size=64, transform=transform)  # 2 x 2 tiles
    assert torch.allclose(tiled[0], whole[0], atol=1e-4) and torch.allclose(tiled[1], whole[1], atol=1e-4)


@pytest.mark.parametrize("preserve_color", ["none", "match", "luminance"])
def test_a_batch_gives_what_one_at_a_time_gives(float32_model, preserve_color):
    # Three contents of one size form batches of 2 and 1; the fourth, another size, its own.
    contents = [make_scene(48, 40, seed=seed) for seed in range(3)] + [make_scene(40, 48, seed=3)]
    style = make_stripes(32, 32)
    kwargs = dict(style_size=None, model=float32_model, preserve_color=preserve_color)
    calls = []
    batched = stylize_batch(contents, style, batch_size=2, callback=lambda done, total: calls.append((done, total)), **kwargs)
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert batched[0].image.tobytes() != batched[1].image.tobytes()
    for content, result in zip(contents, batched):
        alone = stylize(content, style, **kwargs)
        assert result.image.size == content.size
        assert np.abs(pixels(result.image) - pixels(alone.image)).max() <= 1 / 255
        assert result.metadata() == alone.metadata()


def test_a_batch_with_masks_and_tiles(float32_model):
    contents = [make_scene(64, 48, seed=seed) for seed in range(2)]
    styles = [make_stripes(32, 32), make_scene(32, 32, seed=5)]
    left = Image.new("L", (64, 48), 0)
    left.paste(255, (0, 0, 32, 48))
    masks = [left, Image.eval(left, lambda v: 255 - v)]
    kwargs = dict(style_size=None, model=float32_model, masks=masks)
    for tile in (False, True):
        batched = stylize_batch(contents, styles, batch_size=2, tile=tile, tile_size=280, tile_overlap=136, **kwargs)
        for content, result in zip(contents, batched):
            alone = stylize(content, styles, tile=tile, tile_size=280, tile_overlap=136, **kwargs)
            assert result.metadata()["tile"] is tile
            assert np.abs(pixels(result.image) - pixels(alone.image)).max() <= 1 / 255
    with pytest.raises(SettingsError, match="batch size"):
        stylize_batch(contents, styles[0], batch_size=0, model=float32_model)


def test_precision_is_chosen_and_recorded(tmp_path):
    decoder = write_decoder(tmp_path / "decoder.pth")
    content, style = make_scene(64, 48), make_stripes(32, 32)
    results = {precision: stylize(content, style, encoder="random", decoder=decoder, style_size=None, device="cpu",
                                  speed=SpeedSettings(precision=precision))
               for precision in ("float32", "bfloat16")}
    assert {p: r.metadata()["precision"] for p, r in results.items()} == {"float32": "float32", "bfloat16": "bfloat16"}
    full, half = (image_to_tensor(results[p].image) for p in ("float32", "bfloat16"))
    assert not torch.equal(full, half)  # bfloat16 rounding shows in some pixels
    assert psnr(full, half) > 35
    with pytest.raises(SettingsError, match="precision"):
        SpeedSettings(precision="float16")


def test_compiled_model_gives_the_eager_result(float32_model, tmp_path):
    # torch.compile's first call takes about 20 s at this size on 2 cores (Inductor writes C++).
    decoder = write_decoder(tmp_path / "decoder.pth")
    compiled = AdaINModel.load(encoder="random", decoder=decoder, speed=SpeedSettings(precision="float32", compile=True))
    assert compiled.speed.compile and compiled.encoder is not compiled.encoder._orig_mod
    content, style = make_scene(32, 32), make_stripes(32, 32)
    eager = stylize(content, style, style_size=None, model=float32_model)
    fast = stylize(content, style, style_size=None, model=compiled)
    assert np.abs(pixels(fast.image) - pixels(eager.image)).max() <= 1 / 255


def test_compiling_without_a_compiler_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr("painterly.speed.shutil.which", lambda name: None)
    with pytest.raises(SettingsError, match="C\\+\\+ compiler"):
        AdaINModel.load(encoder="random", decoder=write_decoder(tmp_path / "decoder.pth"),
                        speed=SpeedSettings(compile=True))


def test_a_batch_looks_up_each_styles_statistics_once(float32_model, monkeypatch):
    looked_up = []
    original = float32_model.style_statistics
    monkeypatch.setattr(float32_model, "style_statistics", lambda style, **kw: looked_up.append(1) or original(style, **kw))
    contents = [make_scene(32, 32, seed=seed) for seed in range(4)]
    stylize_batch(contents, [make_stripes(32, 32), make_scene(24, 24)], batch_size=2, style_size=None, model=float32_model)
    assert len(looked_up) == 2
    looked_up.clear()  # with colour preservation the statistics depend on each content
    stylize_batch(contents, make_stripes(32, 32), preserve_color="match", style_size=None, model=float32_model)
    assert len(looked_up) == 4


def test_supersample_paints_larger_and_shrinks_to_the_output_size(float32_model):
    content, style = make_scene(56, 40), make_stripes(32, 32)
    kwargs = dict(style_size=None, model=float32_model)
    plain = stylize(content, style, **kwargs)
    # A mask over everything paints what no mask paints: masks follow the content to the painted size.
    result = stylize(content, style, supersample=2, masks=[Image.new("L", content.size, 255)], **kwargs)
    assert result.image.size == content.size and result.metadata()["supersample"] == 2
    assert plain.metadata()["supersample"] == 1  # a decoder of one's own paints at the output's size
    # What it does, spelled out: the content at twice the size, painted, then shrunk with Lanczos.
    large = stylize(supersampled(content, 2), style, supersample=1, **kwargs).image
    assert large.size == (112, 80)
    assert np.abs(pixels(result.image) - pixels(large.resize(content.size, Image.Resampling.LANCZOS))).max() <= 1 / 255
    assert np.abs(pixels(result.image) - pixels(plain.image)).mean() > 0.01  # strokes at another scale
    with pytest.raises(SettingsError, match="supersample must be between 1 and 4"):
        stylize(content, style, supersample=0.5, **kwargs)


def test_with_margin_reflects_the_image_past_each_edge():
    image = make_scene(12, 10)
    padded = with_margin(image, 3)
    assert padded.size == (18, 16) and padded.mode == "RGB"
    inner, original = pixels(padded)[3:13, 3:15], pixels(image)
    assert np.array_equal(inner, original)
    assert np.array_equal(pixels(padded)[3:13, 0], original[:, 3])  # column 0 mirrors column 3 about column 0
    assert np.array_equal(pixels(padded)[0, 3:15], original[3])
    assert with_margin(Image.new("L", (4, 4), 9), 6).size == (16, 16)  # wider than the image: reflected again
    assert with_margin(image, 0) is image


def test_a_margin_paints_the_reflected_content_and_crops_it_off(float32_model):
    """The decoder's own padding draws a frame along the borders; with a margin the network
    sees more picture there instead, and the output is the margin's painting, cropped."""
    content, style = make_scene(48, 40), make_stripes(32, 32)
    kwargs = dict(style_size=None, model=float32_model)
    plain = stylize(content, style, **kwargs)
    assert plain.metadata()["margin"] == 0  # a decoder of one's own: the paper's, no margin
    result = stylize(content, style, margin=8, **kwargs)
    assert result.image.size == content.size and result.metadata()["margin"] == 8
    by_hand = stylize(with_margin(content, 8), style, **kwargs).image.crop((8, 8, 56, 48))
    assert np.abs(pixels(result.image) - pixels(by_hand)).max() <= 1 / 255
    assert np.abs(pixels(result.image) - pixels(plain.image)).mean() > 0.01  # all of 48 px is within reach of a border
    # Masks are reflected with the content: one over everything paints what no mask paints...
    masked = stylize(content, style, margin=8, supersample=2, masks=[Image.new("L", content.size, 255)], **kwargs)
    unmasked = stylize(content, style, margin=8, supersample=2, **kwargs)
    assert np.abs(pixels(masked.image) - pixels(unmasked.image)).max() <= 1 / 255
    # ... and a mask of two halves lands where it would on the reflected content.
    left = Image.new("L", content.size, 0)
    left.paste(255, (0, 0, 20, 40))
    halves, styles = [left, left.point(lambda v: 255 - v)], [style, make_scene(32, 32, seed=5)]
    split = stylize(content, styles, masks=halves, margin=8, **kwargs)
    split_by_hand = stylize(with_margin(content, 8), styles, masks=[with_margin(m, 8) for m in halves], **kwargs)
    assert np.abs(pixels(split.image) - pixels(split_by_hand.image.crop((8, 8, 56, 48)))).max() <= 1 / 255
    with pytest.raises(SettingsError, match="margin"):
        stylize(content, style, margin=-1, **kwargs)


def test_wct_transfers_the_style_features_covariance_through_the_whole_pipeline(float32_model):
    content, style = make_scene(48, 40), make_stripes(40, 40)
    kwargs = dict(style_size=None, model=float32_model)
    plain = stylize(content, style, **kwargs)
    assert plain.metadata()["feature_transform"] == "adain"  # a decoder of one's own: the paper's
    wct = stylize(content, style, feature_transform="wct", **kwargs)
    assert wct.metadata()["feature_transform"] == "wct" and wct.image.size == content.size
    assert np.abs(pixels(wct.image) - pixels(plain.image)).mean() > 0.01
    # What it decodes, spelled out: the content's relu4_1 features with the style's mean and covariance.
    with float32_model.speed.running(float32_model.device):
        features = float32_model.encode(image_to_tensor(content))
        styled = blend_styles(features, [feature_statistics(features, transform="wct")],
                              [float32_model.style_statistics(image_to_tensor(style), transform="wct")], [torch.tensor(1.0)])
        expected = tensor_to_image(float32_model.decode(styled))
    assert np.abs(pixels(wct.image) - pixels(expected)).max() <= 1 / 255
    # Masks: each region takes its style's covariance; a full mask paints what no mask paints.
    masked = stylize(content, style, feature_transform="wct", masks=[Image.new("L", content.size, 255)], **kwargs)
    assert np.abs(pixels(masked.image) - pixels(wct.image)).max() <= 1 / 255
    with pytest.raises(SettingsError, match="feature_transform"):
        stylize(content, style, feature_transform="gram", **kwargs)
