"""The memory planner: layer shapes, estimates, and the tiles it chooses within a budget."""

from __future__ import annotations

import pytest
import torch

from painterly import memory as planner
from painterly.adain import build_decoder
from painterly.bench import PeakMemory
from painterly.encoder import LAYER_NAMES, VGG19Encoder
from painterly.errors import SettingsError
from painterly.memory import MemoryPlan, adain_memory, decoder_layers, encoder_layers, plan_memory

GiB = 2**30
CPU = torch.device("cpu")


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
    budget = planner.gatys_memory(1024, 1024, layers=layers, **adam) + 1
    plan = plan_memory("gatys", height=2048, width=2048, sizes=(256, 512, 1024, 2048), layers=layers, budget_bytes=budget, **adam)
    assert plan.sizes == (256, 512, 1024, 2048) and not plan.fits
    assert plan.tiles[:3] == (None, None, None) and plan.tiles[3] == plan.tile
    assert 176 <= plan.tile < 2048 and (plan.tile - 176) % 16 == 0  # a 80 px halo around whole strides of 16
    assert planner.gatys_memory(2048, 2048, layers=layers, tile_size=plan.tile, **adam) <= budget
    assert planner.gatys_memory(2048, 2048, layers=layers, tile_size=plan.tile + 16, **adam) > budget  # the largest
    # Tiled, the network's share stays that of a tile; only the image-sized tensors grow with the image.
    one_tile = planner.gatys_memory(512, 512, layers=layers, **adam)
    small, large = (planner.gatys_memory(side, side, layers=layers, tile_size=512, **adam) for side in (2048, 4096))
    assert small < planner.gatys_memory(2048, 2048, layers=layers, **adam) / 4
    assert large - small < 3 * (small - one_tile) + one_tile
    fixed = plan_memory("gatys", height=2048, width=2048, layers=layers, budget_bytes=budget, tile=True, tile_size=256, **adam)
    assert fixed.tiles == (256,)
    assert plan_memory("gatys", height=200, width=300, layers=layers, budget_bytes=budget, tile=True).tiles == (None,)
    with pytest.raises(SettingsError, match=r"in one pass needs about .* allow tiles \(--tile\)"):
        plan_memory("gatys", height=2048, width=2048, layers=layers, budget_bytes=budget, tile=False, **adam)


def test_plan_refuses_a_gatys_size_that_cannot_fit_and_names_one_that_does() -> None:
    with pytest.raises(SettingsError, match=r"largest size that fits is about \d+ px"):
        plan_memory("gatys", height=4096, width=3072, budget_bytes=GiB)

def test_optimize_refuses_before_loading_weights_when_memory_is_short(monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from painterly.gatys import optimize

    monkeypatch.setattr(planner, "available_memory", lambda device: 2**20)
    image = Image.new("RGB", (48, 32), (200, 100, 50))
    with pytest.raises(SettingsError, match="lower --size"):
        optimize(image, image, size=48, iterations=1, weights="vgg19", device="cpu")

def test_gpu_memory_held_by_torchs_cache_counts_as_free(monkeypatch: pytest.MonkeyPatch) -> None:
    # After one stylisation torch keeps its blocks for reuse; the driver reports them as taken,
    # which would make the planner tile (or refuse) the next image for no reason.
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (1 * 2**30, 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: 6 * 2**30)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 2 * 2**30)
    assert planner.available_memory(torch.device("cuda")) == 5 * 2**30
