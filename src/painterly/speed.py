"""How to run a network fast: precision, autocast, memory layout and compilation.

Each option is kept because ``painterly bench`` measured a gain (benchmarks/NOTES.md):

* ``precision``: ``float32``, ``bfloat16`` (autocast: convolutions and matrix products in
  bfloat16, reductions in float32) or ``auto``, which picks bfloat16 where the device computes it
  natively (CUDA GPUs with bf16, CPUs with AVX512-BF16 or AMX) and float32 elsewhere: emulated
  bfloat16 is slower than float32.
* ``channels_last``: NHWC tensors and weights, the layout oneDNN and cuDNN convolve fastest.
* ``compile``: ``torch.compile``, opt-in (minutes of compilation on a CPU before the first image).
"""

from __future__ import annotations

import contextlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from .errors import SettingsError

PRECISIONS = ("auto", "float32", "bfloat16")


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


#: AdaIN's defaults: bfloat16 where native and channels_last; benchmarks/NOTES.md has the
#: speed-up over the naive float32 run and bfloat16's PSNR against float32.
ADAIN_SPEED = SpeedSettings()
#: Gatys's defaults: float32, because bfloat16 gradients left L-BFGS behind float32's loss
#: (benchmarks/NOTES.md), and channels_last, which changes the losses by rounding only.
GATYS_SPEED = SpeedSettings(precision="float32", channels_last=True)
