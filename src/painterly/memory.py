"""A memory planner for the networks painterly runs: estimate a request's peak, and choose
AdaIN or Gatys tiles that fit, or refuse with a :class:`SettingsError`, instead of dying out of
memory.

Layer shapes: every activation of the VGG-19 encoder and the AdaIN decoder follows from the
input's height and width, so memory can be counted before anything runs.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from .encoder import LAYER_NAMES, deepest_layer
from .errors import SettingsError
from .gatys_tiles import DEFAULT_GATYS_TILE, minimum_tile, receptive_field
from .speed import resolve_precision
from .weights import DECODER_PLAN, VGG19_CONV_CHANNELS, VGG19_CONV_NAMES

# ---------------------------------------------------------------------------------------------
# Layer shapes.


@dataclass(frozen=True)
class Layer:
    """One layer's output: (channels, height, width) per image. ``in_channels``: a 3x3
    convolution's input channels (0 for other layers)."""

    name: str
    channels: int
    height: int
    width: int
    in_channels: int = 0

    @property
    def elements(self) -> int:
        return self.channels * self.height * self.width

    @property
    def is_conv(self) -> bool:
        return self.in_channels > 0


def encoder_layers(height: int, width: int, *, last_layer: str = "relu4_1", ceil_mode: bool = True) -> list[Layer]:
    """The VGG-19 encoder's outputs up to ``last_layer`` for an (H, W) image.

    ``ceil_mode``: the normalised (AdaIN) flavour's pooling rounds odd sizes up, torchvision's down.
    """
    _check_size(height, width)
    last = deepest_layer([last_layer])
    channels = dict(zip(VGG19_CONV_NAMES, VGG19_CONV_CHANNELS))
    layers, c, h, w = [], 3, height, width
    for name in LAYER_NAMES[: LAYER_NAMES.index(last) + 1]:
        c_in = 0
        if name.startswith("conv"):
            c_in, c = channels[name]
        elif name.startswith("pool"):
            rounding = math.ceil if ceil_mode else math.floor
            h, w = rounding(h / 2), rounding(w / 2)
        layers.append(Layer(name, c, h, w, c_in))
    return layers


def decoder_layers(height: int, width: int) -> list[Layer]:
    """The AdaIN decoder's outputs for relu4_1 features of an (H, W) image (ceil-mode pooling)."""
    features = encoder_layers(height, width, last_layer="relu4_1")[-1]
    layers, h, w = [], features.height, features.width
    for index, step in enumerate(DECODER_PLAN):
        if step == "up":
            h, w = 2 * h, 2 * w
            layers.append(Layer(f"up{index}", layers[-1].channels, h, w))
        else:
            c_in, c_out = step
            layers.append(Layer(f"conv{index}", c_out, h, w, c_in))
    return layers


# ---------------------------------------------------------------------------------------------
# Memory.

#: Multiplier on the counted tensors for what the count leaves out (allocator rounding, oneDNN
#: and cuDNN workspaces, weight reorders); measured peaks stayed under it (benchmarks/NOTES.md).
OVERHEAD = 1.5


def _check_size(height: int, width: int) -> None:
    if height < 1 or width < 1:
        raise SettingsError(f"image size must be positive, got {width}x{height}")


def _weights_bytes(layers: Sequence[Layer]) -> int:
    return 4 * sum(layer.channels * (layer.in_channels * 9 + 1) for layer in layers if layer.is_conv)


def _inference_peak(layers: Sequence[Layer], input_elements: int) -> int:
    """Elements alive at once running ``layers`` eagerly: a layer's input, its padded copy, its output."""
    peak, previous = 0, input_elements
    for layer in layers:
        padded = previous if layer.is_conv else 0
        peak = max(peak, previous + padded + layer.elements)
        previous = layer.elements
    return peak


def adain_memory(height: int, width: int, *, batch: int = 1, precision: str = "float32",
                 style_size: tuple[int, int] | None = None, style_cached: bool = False) -> int:
    """Estimated peak bytes of an AdaIN stylisation of ``batch`` (H, W) images, in inference mode.

    bfloat16 activations are counted at float32's 4 bytes: measured bfloat16 peaks were well above
    half of float32's, as oneDNN reorders them into its blocked layouts (benchmarks/NOTES.md).
    """
    itemsize = 4
    encoder, decoder = encoder_layers(height, width), decoder_layers(height, width)
    features = encoder[-1].elements * batch
    content = _inference_peak(encoder, 3 * height * width) * batch
    decode = _inference_peak(decoder, encoder[-1].elements) * batch + features
    style = 0
    if not style_cached:
        style = _inference_peak(encoder_layers(*(style_size or (height, width))), 3 * height * width)
    images = 2 * 3 * height * width * batch * 4  # float32 input and output
    tensors = itemsize * max(style, content, decode) + images
    weights = _weights_bytes(encoder) + _weights_bytes(decoder)
    if precision == "bfloat16":
        weights += weights // 2  # autocast's bfloat16 copies of the weights
    return int(OVERHEAD * tensors) + weights


def gatys_memory(height: int, width: int, *, layers: Sequence[str], optimizer: str = "lbfgs",
                 lbfgs_history: int = 100, tile_size: int | None = None) -> int:
    """Estimated peak bytes of a Gatys run at (H, W) in float32.

    Autograd keeps every convolution's (padded) input and every ReLU's output for the backward
    pass, and max pooling its int64 indices; L-BFGS keeps ``lbfgs_history`` pairs of image-sized
    vectors, which it fills over the first iterations. With ``tile_size``
    (:mod:`painterly.gatys_tiles`) the network runs on one tile window at a time; what stays
    whole is the optimiser's image-sized state, the gradient, the content and style images, the
    output and the deepest layer's content targets.
    """
    pixels = 3 * height * width * 4
    states = {"lbfgs": 2 * lbfgs_history + 4, "adam": 3, "sgd": 1}[optimizer]
    if tile_size is not None and tile_size < max(height, width):
        window = gatys_memory(min(tile_size, height), min(tile_size, width), layers=layers, optimizer="sgd",
                              lbfgs_history=0)
        targets = encoder_layers(height, width, last_layer=deepest_layer(layers), ceil_mode=False)[-1].elements * 4
        return window + int(OVERHEAD * ((states + 4) * pixels + targets))
    shapes = encoder_layers(height, width, last_layer=deepest_layer(layers), ceil_mode=False)
    saved, previous = 0, 3 * height * width
    for layer in shapes:
        if layer.is_conv:
            saved += previous * 4
        elif layer.name.startswith("relu"):
            saved += layer.elements * 4
        else:
            saved += layer.elements * 8
        previous = layer.elements
    largest = max(layer.elements for layer in shapes)
    tensors = saved + 3 * largest * 4 + states * pixels
    return int(OVERHEAD * tensors) + _weights_bytes(shapes)


def available_memory(device: torch.device) -> int:
    """Bytes free for tensors on ``device``: CUDA's free memory plus what torch's caching
    allocator holds unused (the driver counts that as taken), or the system's MemAvailable."""
    if device.type == "cuda":
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return torch.cuda.mem_get_info(device)[0] + cached
    try:
        match = re.search(r"MemAvailable:\s+(\d+) kB", Path("/proc/meminfo").read_text())
        if match:
            return int(match.group(1)) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class MemoryPlan:
    """What :func:`plan_memory` decided.

    ``tile``: tile side in pixels for the (finest) image (None: one pass). ``sizes``: Gatys
    scales, coarse to fine, and ``tiles`` the tile window at each (None: one pass).
    """

    method: str
    estimate_bytes: int
    budget_bytes: int
    tile: int | None = None
    tile_estimate_bytes: int | None = None
    sizes: tuple[int, ...] = ()
    tiles: tuple[int | None, ...] = ()

    @property
    def fits(self) -> bool:
        return self.estimate_bytes <= self.budget_bytes


def _gib(count: int) -> str:
    return f"{count / 2**30:.1f} GiB"


#: AdaIN tiles are multiples of this (the encoder pools three times) and at least ``MIN_TILE``:
#: above :data:`painterly.adain.MIN_TILE_SIZE`, twice the smallest seam-free overlap.
TILE_STEP, MIN_TILE = 64, 320


def plan_memory(
    method: str,
    *,
    height: int,
    width: int,
    batch: int = 1,
    device: torch.device | str = "cpu",
    budget_bytes: int | None = None,
    precision: str = "float32",
    style_size: tuple[int, int] | None = None,
    style_cached: bool = False,
    layers: Sequence[str] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"),
    optimizer: str = "lbfgs",
    sizes: Sequence[int] | None = None,
    tile: bool | str = "auto",
    tile_size: int | None = None,
) -> MemoryPlan:
    """Estimate a request's memory before running it, and choose how to run it within budget.

    ``method`` ``adain``: if ``batch`` (H, W) images do not fit, the largest square tile (a
    multiple of 64, at least 128) that does; ``style_size`` is the style image's (H, W).
    ``method`` ``gatys``: ``sizes`` are the longer sides of a coarse-to-fine run ending at
    (H, W) (default: just that size); ``tiles`` gets one tile window per size, None where one
    pass runs (``tile``: True, False or ``auto``, tiles only where one pass does not fit; see
    :func:`_gatys_tile`), so coarse scales run in one pass and only large ones tile.
    Raises :class:`SettingsError`, naming the memory needed and available, when nothing fits.
    ``budget_bytes`` defaults to 90% of the device's free memory.
    """
    device = torch.device(device)
    _check_size(height, width)
    if batch < 1:
        raise SettingsError(f"batch must be at least 1, got {batch}")
    budget = budget_bytes if budget_bytes is not None else int(0.9 * available_memory(device))
    if method == "adain":
        precision = resolve_precision(precision, device)
        style = style_size or (height, width)  # tiles cut the content, never the style

        def estimate(h: int, w: int) -> int:
            return adain_memory(h, w, batch=batch, precision=precision, style_size=style, style_cached=style_cached)

        needed = estimate(height, width)
        if needed <= budget:
            return MemoryPlan(method, needed, budget)
        if not style_cached and estimate(8, 8) > budget:
            raise SettingsError(
                f"encoding the {style[1]}x{style[0]} style image needs about {_gib(estimate(8, 8))} but "
                f"{_gib(budget)} is free: use a smaller style size"
            )
        for tile in range(min(max(height, width), 8192) // TILE_STEP * TILE_STEP, MIN_TILE - 1, -TILE_STEP):
            tile_bytes = estimate(min(tile, height), min(tile, width))
            if tile_bytes <= budget:
                return MemoryPlan(method, needed, budget, tile=tile, tile_estimate_bytes=tile_bytes)
        raise SettingsError(
            f"stylising {batch} image(s) of {width}x{height} needs about {_gib(needed)} and even "
            f"{MIN_TILE}-pixel tiles need more than the {_gib(budget)} free: use a smaller batch"
        )
    if method == "gatys":
        ladder = tuple(sizes) if sizes else (max(height, width),)
        if list(ladder) != sorted(ladder) or ladder[-1] != max(height, width):
            raise SettingsError("Gatys sizes must rise and end at the output's longer side")
        if tile not in (True, False, "auto"):
            raise SettingsError(f"tile must be True, False or 'auto', not {tile!r}")
        tiles = tuple(
            _gatys_tile(*_scaled(height, width, side), layers=layers, optimizer=optimizer, budget=budget,
                        tile=tile, tile_size=tile_size)
            for side in ladder
        )
        needed = gatys_memory(height, width, layers=layers, optimizer=optimizer)
        tile_bytes = None if tiles[-1] is None else gatys_memory(height, width, layers=layers, optimizer=optimizer,
                                                                 tile_size=tiles[-1])
        return MemoryPlan(method, needed, budget, tile=tiles[-1], tile_estimate_bytes=tile_bytes, sizes=ladder, tiles=tiles)
    raise SettingsError(f"unknown method {method!r}: choose adain or gatys")


def _scaled(height: int, width: int, side: int) -> tuple[int, int]:
    scale = side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def _gatys_tile(height: int, width: int, *, layers: Sequence[str], optimizer: str, budget: int,
                tile: bool | str, tile_size: int | None) -> int | None:
    """The tile window for a Gatys run at (H, W) (None: one pass), or :class:`SettingsError`.

    ``tile`` False: one pass, refused when it does not fit. True: tiles of ``tile_size``
    (default :data:`DEFAULT_GATYS_TILE`, or the largest that fits below it). ``auto``: one pass
    when it fits, else tiles of ``tile_size`` or the largest that fit. An image within one tile
    runs in one pass: a single tile is one pass.
    """
    one_pass = gatys_memory(height, width, layers=layers, optimizer=optimizer)
    if tile is False or (tile == "auto" and one_pass <= budget):
        if one_pass > budget:
            raise SettingsError(
                f"optimising a {width}x{height} image in one pass needs about {_gib(one_pass)} but "
                f"{_gib(budget)} is free: allow tiles (--tile) or lower --size"
            )
        return None
    # Windows of a halo on each side of a whole number of strides waste nothing.
    stride, halo = receptive_field(layers)
    smallest = minimum_tile(layers)
    if tile_size is not None:
        candidates = [tile_size]
    else:
        ceiling = DEFAULT_GATYS_TILE if tile is True else min(max(height, width), 8192)
        candidates = list(range(smallest + (ceiling - smallest) // stride * stride, smallest - 1, -stride)) or [smallest]
    for candidate in candidates:
        if candidate >= max(height, width):
            if one_pass <= budget:
                return None
            continue
        if gatys_memory(height, width, layers=layers, optimizer=optimizer, tile_size=candidate) <= budget:
            return candidate
    largest = _largest_gatys_side(height, width, layers, optimizer, budget, tile_size or smallest)
    hint = f"the largest size that fits is about {largest} px" if largest else "no size fits"
    raise SettingsError(
        f"optimising a {width}x{height} image needs about {_gib(one_pass)} in one pass, and "
        f"{_gib(gatys_memory(height, width, layers=layers, optimizer=optimizer, tile_size=candidates[-1]))} "
        f"in tiles of {candidates[-1]} px (the {optimizer} state alone grows with the image), but {_gib(budget)} "
        f"is free: {hint}; lower --size" + (" or use --optimizer adam" if optimizer == "lbfgs" else "")
    )


def _largest_gatys_side(height: int, width: int, layers: Sequence[str], optimizer: str, budget: int,
                        tile_size: int | None = None) -> int:
    """The longest side (a multiple of 16) at which a Gatys run of this aspect ratio fits,
    in tiles of ``tile_size`` when given."""
    longer, best = max(height, width), 0
    for side in range(16, longer + 1, 16):
        h, w = _scaled(height, width, side)
        if gatys_memory(h, w, layers=layers, optimizer=optimizer, tile_size=tile_size) > budget:
            break
        best = side
    return best
