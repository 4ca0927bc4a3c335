"""Speed options, FLOP counts from layer shapes, the memory planner and the peak-memory probe."""

from __future__ import annotations

import math

import pytest
import torch

from painterly import performance
from painterly.adain import build_decoder
from painterly.encoder import LAYER_NAMES, VGG19Encoder
from painterly.errors import SettingsError
from painterly.performance import (
    MemoryPlan,
    PeakMemory,
    SpeedSettings,
    adain_flops,
    adain_memory,
    decoder_layers,
    encoder_layers,
    gatys_iteration_flops,
    network_flops,
    plan_memory,
    psnr,
    resolve_precision,
)

GiB = 2**30
CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("size", "gflop"),
    [(256, 31.6), (512, 126.5)],
)
def test_encoder_and_decoder_flops_match_spec(size: int, gflop: float) -> None:
    assert network_flops(encoder_layers(size, size)) / 1e9 == pytest.approx(gflop, rel=0.01)
    assert network_flops(decoder_layers(size, size)) / 1e9 == pytest.approx(gflop, rel=0.01)


def test_adain_flops_match_spec() -> None:
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


def test_layer_shapes_match_the_networks_at_odd_sizes() -> None:
    torch.manual_seed(0)
    image = torch.rand(1, 3, 37, 50)
    for flavour, ceil_mode in (("normalised", True), ("torchvision", False)):
        encoder = VGG19Encoder(flavour=flavour, last_layer="relu4_1")
        with torch.no_grad():
            features = encoder(image, LAYER_NAMES[: LAYER_NAMES.index("relu4_1") + 1])
        for layer in encoder_layers(37, 50, ceil_mode=ceil_mode):
            assert tuple(features[layer.name].shape[1:]) == (layer.channels, layer.height, layer.width), layer.name
    with torch.no_grad():
        output = build_decoder()(torch.rand(1, 512, 5, 7))
    assert tuple(output.shape[1:]) == (3, decoder_layers(37, 50)[-1].height, decoder_layers(37, 50)[-1].width)


def test_adain_memory_estimate_is_the_measured_order_of_magnitude() -> None:
    from painterly.bench import random_adain_networks

    encoder, decoder = random_adain_networks(device=CPU)
    image = torch.rand(1, 3, 192, 192)
    with PeakMemory(CPU) as memory, torch.inference_mode():
        decoder(encoder(image)["relu4_1"] + encoder(image)["relu4_1"])
    if memory.peak_bytes is None:
        pytest.skip("peak memory cannot be read on this system")
    estimate = adain_memory(192, 192)
    assert memory.peak_bytes / 3 < estimate < memory.peak_bytes * 3
    # bfloat16 adds autocast's copies of the weights and saves less than half (NOTES.md).
    assert adain_memory(192, 192, precision="bfloat16") > estimate


def test_plan_whole_image_when_it_fits() -> None:
    plan = plan_memory("adain", height=256, width=256, budget_bytes=8 * GiB)
    assert plan == MemoryPlan("adain", plan.estimate_bytes, 8 * GiB)
    assert plan.fits and plan.tile is None


def test_plan_tiles_a_huge_adain_request() -> None:
    plan = plan_memory("adain", height=8192, width=6144, style_size=(512, 384), budget_bytes=2 * GiB)
    assert not plan.fits and plan.estimate_bytes > 2 * GiB
    assert plan.tile is not None and plan.tile % 64 == 0 and plan.tile >= 128
    assert plan.tile_estimate_bytes <= 2 * GiB
    # The next larger tile would not fit: the planner takes the largest.
    assert adain_memory(plan.tile + 64, plan.tile + 64, style_size=(512, 384)) > 2 * GiB


def test_plan_refuses_a_style_too_large_to_encode() -> None:
    with pytest.raises(SettingsError, match="smaller style size"):
        plan_memory("adain", height=8192, width=8192, budget_bytes=2 * GiB)


def test_plan_refuses_when_no_tile_fits() -> None:
    with pytest.raises(SettingsError, match="smaller"):
        plan_memory("adain", height=4096, width=4096, batch=64, budget_bytes=100 * 2**20)


@pytest.mark.parametrize("bad", [{"height": 0, "width": 5}, {"height": 5, "width": 5, "batch": 0}])
def test_plan_rejects_bad_requests(bad: dict) -> None:
    with pytest.raises(SettingsError):
        plan_memory("adain", **bad, budget_bytes=GiB)
    with pytest.raises(SettingsError, match="unknown method"):
        plan_memory("pix2pix", height=5, width=5, budget_bytes=GiB)


def test_plan_tiles_the_gatys_scales_that_do_not_fit_instead_of_refusing() -> None:
    layers, adam = ("relu4_2", "relu5_1"), dict(optimizer="adam")
    budget = performance.gatys_memory(1024, 1024, layers=layers, **adam) + 1
    plan = plan_memory("gatys", height=2048, width=2048, sizes=(256, 512, 1024, 2048), layers=layers, budget_bytes=budget, **adam)
    assert plan.sizes == (256, 512, 1024, 2048) and not plan.fits
    assert plan.tiles[:3] == (None, None, None) and plan.tiles[3] == plan.tile
    assert 176 <= plan.tile < 2048 and (plan.tile - 176) % 16 == 0  # a 80 px halo around whole strides of 16
    assert performance.gatys_memory(2048, 2048, layers=layers, tile_size=plan.tile, **adam) <= budget
    assert performance.gatys_memory(2048, 2048, layers=layers, tile_size=plan.tile + 16, **adam) > budget  # the largest
    # Tiled, the network's share stays that of a tile; only the image-sized tensors grow with the image.
    one_tile = performance.gatys_memory(512, 512, layers=layers, **adam)
    small, large = (performance.gatys_memory(side, side, layers=layers, tile_size=512, **adam) for side in (2048, 4096))
    assert small < performance.gatys_memory(2048, 2048, layers=layers, **adam) / 4
    assert large - small < 3 * (small - one_tile) + one_tile
    fixed = plan_memory("gatys", height=2048, width=2048, layers=layers, budget_bytes=budget, tile=True, tile_size=256, **adam)
    assert fixed.tiles == (256,)
    assert plan_memory("gatys", height=200, width=300, layers=layers, budget_bytes=budget, tile=True).tiles == (None,)
    with pytest.raises(SettingsError, match=r"in one pass needs about .* allow tiles \(--tile\)"):
        plan_memory("gatys", height=2048, width=2048, layers=layers, budget_bytes=budget, tile=False, **adam)


def test_plan_refuses_a_gatys_size_that_cannot_fit_and_names_one_that_does() -> None:
    with pytest.raises(SettingsError, match=r"largest size that fits is about \d+ px"):
        plan_memory("gatys", height=4096, width=3072, budget_bytes=GiB)


def test_auto_precision_follows_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(performance, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", CPU) == "bfloat16"
    monkeypatch.setattr(performance, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", CPU) == "float32"
    assert resolve_precision("bfloat16", CPU) == "bfloat16"
    with pytest.raises(SettingsError, match="unknown precision"):
        resolve_precision("float16", CPU)
    with pytest.raises(SettingsError, match="not on mps"):
        resolve_precision("bfloat16", torch.device("mps"))


def test_speed_settings_run_convolutions_as_asked() -> None:
    conv = torch.nn.Conv2d(3, 8, 3)
    image = torch.rand(1, 3, 16, 16)
    for precision, dtype in (("bfloat16", torch.bfloat16), ("float32", torch.float32)):
        speed = SpeedSettings(precision=precision)
        with speed.running(CPU):
            assert torch.is_inference_mode_enabled()
            output = speed.prepare(conv)(speed.input(image))
        assert output.dtype == dtype
        assert output.is_contiguous(memory_format=torch.channels_last)
    with SpeedSettings().running(CPU, grad=True):
        assert not torch.is_inference_mode_enabled()
    with pytest.raises(SettingsError):
        SpeedSettings(precision="half")


def test_psnr() -> None:
    reference = torch.linspace(0, 1, 10_000)
    assert psnr(reference, reference) == math.inf
    noisy = reference + 0.01 * torch.where(torch.arange(10_000) % 2 == 0, 1.0, -1.0)
    assert psnr(reference, noisy) == pytest.approx(40.0, abs=0.01)  # MSE 1e-4, peak 1
    with pytest.raises(ValueError):
        psnr(reference, reference[:5])


def test_optimize_refuses_before_loading_weights_when_memory_is_short(monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from painterly.gatys import optimize

    monkeypatch.setattr(performance, "available_memory", lambda device: 2**20)
    image = Image.new("RGB", (48, 32), (200, 100, 50))
    with pytest.raises(SettingsError, match="lower --size"):
        optimize(image, image, size=48, iterations=1, weights="vgg19", device="cpu")


def test_gpu_memory_held_by_torchs_cache_counts_as_free(monkeypatch: pytest.MonkeyPatch) -> None:
    # After one stylisation torch keeps its blocks for reuse; the driver reports them as taken,
    # which would make the planner tile (or refuse) the next image for no reason.
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (1 * 2**30, 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: 6 * 2**30)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 2 * 2**30)
    assert performance.available_memory(torch.device("cuda")) == 5 * 2**30
