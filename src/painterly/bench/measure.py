"""Measuring: calls timed side by side, peak memory, image agreement (PSNR) and a device's peak
arithmetic rate."""

from __future__ import annotations

import math
import platform
import re
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..speed import resolve_precision

#: Dense peak TFLOP/s (float32, bfloat16) of GPUs by a substring of their name, from the
#: vendors' data sheets (SXM parts, no sparsity). The float32 figure is TF32's: cuDNN runs
#: float32 convolutions in TF32 by default (torch.backends.cudnn.allow_tf32).
GPU_PEAK_TFLOPS = {
    "H200": (494.7, 989.4),
    "H100": (494.7, 989.4),
    "A100": (156.0, 312.0),
    "L40S": (183.0, 362.0),
    "RTX 4090": (82.6, 165.2),
    "A10": (62.5, 125.0),
}


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


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device``: CUDA runs asynchronously, so a clock read before
    this would time only the launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(calls: dict[str, Callable[[], Any]], *, device: torch.device, warmup: int = 1,
               repeats: int = 3) -> dict[str, tuple[float, int | None, Any]]:
    """For each named call: median seconds, peak memory added, and its result.

    The calls take turns, repeat after repeat, so that a load that comes and goes (a shared
    machine) falls on all of them alike. The first warm-up call of each is the one whose memory
    is measured (measuring slows it); with ``warmup`` 0 an extra untimed call does it.
    """
    peaks, results, times = {}, {}, {name: [] for name in calls}
    for name, call in calls.items():
        with PeakMemory(device) as memory:
            results[name] = call()
        peaks[name] = memory.peak_bytes
        for _ in range(warmup - 1):
            call()
    for _ in range(repeats):
        for name, call in calls.items():
            synchronize(device)
            start = time.perf_counter()
            results[name] = call()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(times[name]), peaks[name], results[name]) for name in calls}


#: Side of the square matrices whose product measures a device's practical peak.
MATMUL_SIZE = 2048


def matmul_gflops(device: torch.device, precision: str, *, size: int = MATMUL_SIZE, repeats: int = 5) -> float:
    """GFLOP/s of the fastest of ``repeats`` (size x size) @ (size x size) products (2 size^3
    FLOPs) at ``precision``: the practical peak of a device whose data sheet is not known here,
    such as a CPU. The fastest, not the median: a peak, as little disturbed by other load as can be."""
    dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn((size, size), generator=generator).to(device, dtype) for _ in range(2))
    for _ in range(2):  # warm-up: thread pools, kernel choice
        a @ b
    fastest = math.inf
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        fastest = min(fastest, time.perf_counter() - start)
    return 2 * size**3 / fastest / 1e9


def device_info(device: torch.device, *, peak_gflops: float | None = None) -> dict[str, Any]:
    """The device's name, threads, native bf16 support and peak GFLOP/s per precision, with
    where the peak comes from: ``peak_gflops`` if given, a GPU's data sheet, or else measured
    on a matrix product (:func:`matmul_gflops`; bfloat16 only where native)."""
    bf16_native = resolve_precision("auto", device) == "bfloat16"
    info: dict[str, Any] = {"type": device.type, "torch": torch.__version__, "bf16_native": bf16_native}
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
        peaks = next((p for key, p in GPU_PEAK_TFLOPS.items() if key in info["name"]), None)
        if peaks:
            info["peak_gflops"] = {"float32": peaks[0] * 1000, "bfloat16": peaks[1] * 1000}
            info["peak_source"] = "data sheet (dense; float32 as TF32)"
    else:
        info["name"] = _cpu_name()
        info["threads"] = torch.get_num_threads()
    if peak_gflops:
        info["peak_gflops"] = {"float32": peak_gflops, "bfloat16": peak_gflops}
        info["peak_source"] = "given"
    elif "peak_gflops" not in info:
        precisions = ("float32", "bfloat16") if bf16_native else ("float32",)
        info["peak_gflops"] = {p: matmul_gflops(device, p) for p in precisions}
        info["peak_source"] = f"measured: {MATMUL_SIZE}x{MATMUL_SIZE} matrix product"
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU"
