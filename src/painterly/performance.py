"""Speed options, FLOP counts and a memory planner for the networks painterly runs.

Speed options (each kept because ``painterly bench`` measured a gain; benchmarks/NOTES.md):

* ``precision``: ``float32``, ``bfloat16`` (autocast: convolutions and matrix products in
  bfloat16, reductions in float32) or ``auto``, which picks bfloat16 where the device computes it
  natively (CUDA GPUs with bf16, CPUs with AVX512-BF16 or AMX) and float32 elsewhere: emulated
  bfloat16 is slower than float32.
* ``channels_last``: NHWC tensors and weights, the layout oneDNN and cuDNN convolve fastest.
* ``compile``: ``torch.compile``, opt-in (minutes of compilation on a CPU before the first image).

Layer shapes: every activation of the VGG-19 encoder and the AdaIN decoder follows from the input's
height and width, so FLOPs (2 per multiply-add, convolutions only: docs/recipes.md) and memory can
be counted before anything runs. :func:`plan_memory` uses them to choose AdaIN or Gatys tiles
that fit, or refuses with a :class:`SettingsError`, instead of dying out of memory.
"""

from __future__ import annotations

import contextlib
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch import nn

from .encoder import LAYER_NAMES, deepest_layer
from .errors import SettingsError
from .gatys_tiles import DEFAULT_GATYS_TILE, minimum_tile, receptive_field
from .weights import VGG19_CONV_CHANNELS, VGG19_CONV_NAMES

PRECISIONS = ("auto", "float32", "bfloat16")

# ---------------------------------------------------------------------------------------------
# Precision and layout.


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bfloat16 instructions (AVX512-BF16 or AMX), read from /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def bf16_is_native(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (emulated bfloat16 is slower than float32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``float32`` or ``bfloat16`` for ``precision`` on ``device`` (``auto``: bf16 where native)."""
    if precision not in PRECISIONS:
        raise SettingsError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bfloat16" if bf16_is_native(device) else "float32"
    if precision == "bfloat16" and device.type not in ("cpu", "cuda"):
        raise SettingsError(f"bfloat16 is supported on CPUs and CUDA GPUs, not on {device.type}")
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """A context computing convolutions in ``precision`` (already resolved); float32: no-op."""
    if precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def channels_last(value: torch.Tensor | nn.Module) -> torch.Tensor | nn.Module:
    """A 4-D tensor or a module's weights in NHWC memory order (other tensors unchanged)."""
    if isinstance(value, nn.Module):
        return value.to(memory_format=torch.channels_last)
    return value.contiguous(memory_format=torch.channels_last) if value.dim() == 4 else value


@dataclass(frozen=True)
class SpeedSettings:
    """How to run a network: precision (``auto``/``float32``/``bfloat16``), layout, compilation."""

    precision: str = "auto"
    channels_last: bool = True
    compile: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise SettingsError(f"unknown precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")

    def prepare(self, module: nn.Module) -> nn.Module:
        """``module`` in this layout (changed in place, as ``Module.to`` does), compiled when
        asked (call once, then reuse the result)."""
        if self.channels_last:
            module = channels_last(module)
        if not self.compile:
            return module
        # Inductor writes C++ for CPUs: without a compiler the first call would fail deep inside it.
        on_cpu = any(parameter.device.type == "cpu" for parameter in module.parameters())
        if on_cpu and not any(shutil.which(name) for name in ("c++", "g++", "clang++")):
            raise SettingsError("torch.compile on a CPU needs a C++ compiler (g++ or clang++): install one, "
                                "or run without compiling")
        return torch.compile(module)

    def input(self, image: torch.Tensor) -> torch.Tensor:
        """An input tensor in this layout."""
        return channels_last(image) if self.channels_last else image

    @contextlib.contextmanager
    def running(self, device: torch.device, *, grad: bool = False) -> Iterator[None]:
        """Inference mode (unless ``grad``) and autocast at the resolved precision."""
        precision = resolve_precision(self.precision, device)
        mode = contextlib.nullcontext() if grad else torch.inference_mode()
        with mode, autocast(device, precision):
            yield


#: AdaIN's defaults: bfloat16 where native (PSNR 49.7 dB against float32 at 512 px, random
#: weights) and channels_last; 2.7x the naive float32 run at 512 px on an AVX512-BF16 CPU
#: (benchmarks/NOTES.md).
ADAIN_SPEED = SpeedSettings()
#: Gatys's defaults: float32, because bfloat16 gradients left L-BFGS 3.6% behind float32's loss
#: after 6 iterations, and channels_last, which changes the losses by rounding only.
GATYS_SPEED = SpeedSettings(precision="float32", channels_last=True)


def psnr(reference: torch.Tensor, test: torch.Tensor) -> float:
    """Peak signal-to-noise ratio of ``test`` against ``reference`` in dB.

    The peak is the reference's value range, which is 1 for images in [0, 1] and keeps the
    measure meaningful for decoders with random weights, whose outputs have any range.
    """
    if reference.shape != test.shape:
        raise ValueError(f"shapes differ: {tuple(reference.shape)} vs {tuple(test.shape)}")
    reference, test = reference.double(), test.double()
    mse = float((reference - test).pow(2).mean())
    peak = float(reference.max() - reference.min())
    if mse == 0:
        return math.inf
    return 10 * math.log10(peak**2 / mse)


# ---------------------------------------------------------------------------------------------
# Layer shapes and FLOPs.


@dataclass(frozen=True)
class Layer:
    """One layer's output: (channels, height, width) per image; ``flops`` per image."""

    name: str
    channels: int
    height: int
    width: int
    flops: int = 0

    @property
    def elements(self) -> int:
        return self.channels * self.height * self.width


def encoder_layers(height: int, width: int, *, last_layer: str = "relu4_1", ceil_mode: bool = True) -> list[Layer]:
    """The VGG-19 encoder's outputs up to ``last_layer`` for an (H, W) image.

    ``ceil_mode``: the normalised (AdaIN) flavour's pooling rounds odd sizes up, torchvision's down.
    """
    _check_size(height, width)
    last = deepest_layer([last_layer])
    channels = dict(zip(VGG19_CONV_NAMES, VGG19_CONV_CHANNELS))
    layers, c, h, w = [], 3, height, width
    for name in LAYER_NAMES[: LAYER_NAMES.index(last) + 1]:
        flops = 0
        if name.startswith("conv"):
            c_in, c = channels[name]
            flops = 2 * c_in * c * 9 * h * w
        elif name.startswith("pool"):
            rounding = math.ceil if ceil_mode else math.floor
            h, w = rounding(h / 2), rounding(w / 2)
        layers.append(Layer(name, c, h, w, flops))
    return layers


#: The decoder's convolutions (in, out) and where it upsamples x2, in order.
_DECODER_PLAN = (
    (512, 256), "up", (256, 256), (256, 256), (256, 256), (256, 128), "up",
    (128, 128), (128, 64), "up", (64, 64), (64, 3),
)  # fmt: skip


def decoder_layers(height: int, width: int) -> list[Layer]:
    """The AdaIN decoder's outputs for relu4_1 features of an (H, W) image (ceil-mode pooling)."""
    features = encoder_layers(height, width, last_layer="relu4_1")[-1]
    layers, h, w = [], features.height, features.width
    for index, step in enumerate(_DECODER_PLAN):
        if step == "up":
            h, w = 2 * h, 2 * w
            layers.append(Layer(f"up{index}", layers[-1].channels, h, w))
        else:
            c_in, c_out = step
            layers.append(Layer(f"conv{index}", c_out, h, w, 2 * c_in * c_out * 9 * h * w))
    return layers


def network_flops(layers: Sequence[Layer]) -> int:
    return sum(layer.flops for layer in layers)


def adain_flops(height: int, width: int, *, style_cached: bool = False, style_size: tuple[int, int] | None = None) -> int:
    """FLOPs of one AdaIN stylisation: content encoding, style encoding (unless cached), decoding.

    The AdaIN layer itself (a few operations per feature) is left out (docs/recipes.md, "Counting FLOPs").
    """
    total = network_flops(encoder_layers(height, width)) + network_flops(decoder_layers(height, width))
    if not style_cached:
        total += network_flops(encoder_layers(*(style_size or (height, width))))
    return total


def gatys_iteration_flops(height: int, width: int, *, layers: Sequence[str], style_layers: Sequence[str]) -> int:
    """FLOPs of one Gatys iteration: a forward pass to the deepest layer, the backward pass, Grams.

    The encoder is frozen, so the backward pass computes gradients of the inputs only: about one
    forward pass more, not the two of training (the usual "3x forward" counts weight gradients).
    Each Gram matrix costs 2 C^2 M forward and as much again backward.
    """
    shapes = encoder_layers(height, width, last_layer=deepest_layer(layers), ceil_mode=False)
    by_name = {layer.name: layer for layer in shapes}
    grams = sum(2 * by_name[name].channels ** 2 * by_name[name].height * by_name[name].width for name in style_layers)
    return 2 * network_flops(shapes) + 2 * grams


def training_step_flops(height: int, width: int) -> int:
    """FLOPs per image of one decoder training step (forward and backward).

    Encode content and style (no gradients), decode, encode the result at four layers, then
    backward: through that encoder for the input gradient only (frozen) and through the decoder
    for input and weight gradients (2x its forward).
    """
    encoder = network_flops(encoder_layers(height, width))
    decoder = network_flops(decoder_layers(height, width))
    return 2 * encoder + decoder + encoder + encoder + 2 * decoder


# ---------------------------------------------------------------------------------------------
# Memory.

#: Multiplier on the counted tensors for what the count leaves out (allocator rounding, oneDNN
#: and cuDNN workspaces, weight reorders); measured peaks stayed under it (benchmarks/NOTES.md).
OVERHEAD = 1.5


def _check_size(height: int, width: int) -> None:
    if height < 1 or width < 1:
        raise SettingsError(f"image size must be positive, got {width}x{height}")


def _weights_bytes(layers: Sequence[Layer], channels_in: int = 3) -> int:
    params, c_in = 0, channels_in
    for layer in layers:
        if layer.flops:
            params += layer.channels * (c_in * 9 + 1)
        c_in = layer.channels
    return 4 * params


def _inference_peak(layers: Sequence[Layer], input_elements: int) -> int:
    """Elements alive at once running ``layers`` eagerly: a layer's input, its padded copy, its output."""
    peak, previous = 0, input_elements
    for layer in layers:
        padded = previous if layer.flops else 0
        peak = max(peak, previous + padded + layer.elements)
        previous = layer.elements
    return peak


def adain_memory(height: int, width: int, *, batch: int = 1, precision: str = "float32",
                 style_size: tuple[int, int] | None = None, style_cached: bool = False) -> int:
    """Estimated peak bytes of an AdaIN stylisation of ``batch`` (H, W) images, in inference mode.

    bfloat16 activations are counted at float32's 4 bytes: measured bfloat16 peaks were 75-85%
    of float32's, not half, as oneDNN reorders them into its blocked layouts (benchmarks/NOTES.md).
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
    weights = _weights_bytes(encoder) + _weights_bytes(decoder, 512)
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
        if layer.flops:
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
    import os

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


# ---------------------------------------------------------------------------------------------
# Measuring peak memory.


def _rss_kib(field: str) -> int:
    match = re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(match.group(1)) if match else 0


class PeakMemory:
    """Measures the peak memory a block of code adds, in bytes (``peak_bytes``; None if unknown).

    CUDA: ``torch.cuda.max_memory_allocated``. CPU (Linux, glibc): the process's resident-set
    high-water mark (VmHWM), reset on entry through /proc/self/clear_refs, minus the resident set
    on entry. glibc keeps freed blocks for reuse, which would hide new tensors from the resident
    set, so inside the block every allocation over 1 MiB is mapped and unmapped on its own; the
    32 MiB threshold glibc's own tuning ends at is set on exit. The block runs slower: measure a
    warm-up call, not a timed one.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_bytes: int | None = None
        self._start: int | None = None
        self._libc = None

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            return self
        try:
            import ctypes

            self._libc = ctypes.CDLL("libc.so.6")
            self._libc.malloc_trim(0)
            self._libc.mallopt(_M_MMAP_THRESHOLD, 1 << 20)
            Path("/proc/self/clear_refs").write_text("5")
            self._start = _rss_kib("VmRSS") * 1024
        except (OSError, AttributeError):
            self._start = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self._start
            return
        if self._start is not None:
            self.peak_bytes = max(0, _rss_kib("VmHWM") * 1024 - self._start)
        if self._libc is not None:
            self._libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)


#: glibc's mallopt parameter for the size above which blocks are mapped on their own.
_M_MMAP_THRESHOLD = -3
