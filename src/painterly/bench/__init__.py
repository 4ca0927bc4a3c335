"""Measuring painterly: ``painterly bench``'s timings against a naive baseline, FLOP counts,
peak memory and PSNR.

Nothing that stylises imports this package: measurement stays out of the code it measures.
"""

from .measure import GPU_PEAK_TFLOPS, PeakMemory, device_info, matmul_gflops, psnr, time_calls
from .suite import (
    BASELINES,
    BenchCallback,
    BenchConfig,
    BenchReport,
    Measurement,
    random_adain_networks,
    run_benchmark,
)

__all__ = [
    "BASELINES",
    "BenchCallback",
    "BenchConfig",
    "BenchReport",
    "GPU_PEAK_TFLOPS",
    "Measurement",
    "PeakMemory",
    "device_info",
    "matmul_gflops",
    "psnr",
    "random_adain_networks",
    "run_benchmark",
    "time_calls",
]
