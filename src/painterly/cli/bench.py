"""``painterly bench``: time AdaIN, Gatys and training on this device against a naive baseline."""

from __future__ import annotations

import argparse
import math
import os
import sys

import torch
from tqdm import tqdm

from ..bench import BenchConfig, BenchReport, run_benchmark
from ..options import add_flags, flag_values
from .common import SEED_HELP, add_subcommand, info, positive_int, seed

EXAMPLES = """\
  painterly bench                         # the full grid: minutes on a GPU, an hour on a CPU
  painterly bench --quick --json bench.json
  painterly bench --only adain --sizes 512 --batches 1 --ablation
  painterly bench --only gatys --gatys-sizes 256 512 --device cuda
  painterly bench --only gatys --gatys-sizes 256 --time-to-loss 500 --gatys-optimizer adam
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(
        subparsers, "bench",
        help="time AdaIN, Gatys and decoder training here, beside a naive float32 baseline",
        examples=EXAMPLES,
    )
    add_flags(parser, BenchConfig)
    parser.add_argument("--quick", action="store_true", help="64-pixel sizes and 2 repeats: checks the benchmark runs, in seconds")
    parser.add_argument("--json", metavar="PATH", help="also write every measurement as JSON")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto (default)")
    parser.add_argument("--threads", type=positive_int, help="CPU threads (default: every core this process may use)")
    parser.add_argument("--peak-gflops", type=float, metavar="G", help="the device's peak GFLOP/s, for the table (default: known GPUs' data sheets, else measured on a matrix product)")
    parser.add_argument("--seed", type=seed, default=0, help=f"seed of the random weights and inputs, {SEED_HELP} (default: 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = BenchConfig.quick() if args.quick else BenchConfig()
    changes = flag_values(args, BenchConfig)
    if args.gatys_time_to_loss is None:
        changes["gatys_time_to_loss"] = 5 if args.quick else 100
    config = config.updated(**changes)
    torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
    bar: tqdm | None = None

    def progress(done: int, total: int, case: str) -> None:
        nonlocal bar
        if args.quiet:
            return
        if bar is None:
            bar = tqdm(total=total, desc="benchmarking", unit="case", file=sys.stderr)
        bar.set_postfix_str(case, refresh=False)
        bar.update(done - bar.n)

    try:
        report = run_benchmark(config, device=args.device, seed=args.seed, peak_gflops=args.peak_gflops, callback=progress)
    finally:
        if bar is not None:
            bar.close()
    print(format_report(report))
    if args.json:
        info(f"wrote {report.save_json(args.json)}")
    return 0


def format_report(report: BenchReport) -> str:
    """The measurements as a plain-text table, with the speed-ups over the naive runs."""
    device = report.device
    peaks = device.get("peak_gflops", {})
    lines = [f"device: {device['name']} ({device['type']}"
             + (f", {device['threads']} threads" if "threads" in device else "")
             + f", bfloat16 {'native' if device['bf16_native'] else 'not native'}, torch {device['torch']})"]
    header = f"{'case':13} {'size':>5} {'batch':>5} {'style':7} {'variant':24} {'precision':9} {'seconds':>9} {'items/s':>8} " \
             f"{'GFLOP':>7} {'GFLOP/s':>8} {'peak':>7} {'memory':>8} {'speed-up':>8} {'vs frozen':>9}  note"
    lines += [header, "-" * len(header)]
    speedups = {(s["case"], s["size"], s["batch"], s["style_cached"], s["variant"], s["baseline"]): s["speedup"]
                for s in report.speedups()}
    for m in report.measurements:
        style = "" if m.style_cached is None else ("cached" if m.style_cached else "encoded")
        peak = peaks.get(m.precision)
        key = (m.case, m.size, m.batch, m.style_cached, m.variant)
        speedup, frozen = speedups.get((*key, "naive")), speedups.get((*key, "frozen reference"))
        notes = [m.note] if m.note else []
        if m.psnr_db is not None:
            notes.append(f"PSNR {m.psnr_db:.1f} dB vs naive")
        if m.final_loss is not None:
            notes.append(f"loss {m.final_loss:.6g}")
        lines.append(
            f"{m.case:13} {m.size:5d} {m.batch:5d} {style:7} {m.variant:24} {m.precision:9} {_num(m.seconds, '.3f'):>9} "
            f"{_num(m.items_per_second, '.2f'):>8} {m.gflop:7.1f} {_num(m.gflops_per_second, '.0f'):>8} "
            f"{_num(peak, '.0f'):>7} {_mib(m.peak_memory_bytes):>8} {_num(speedup, '.2f', 'x'):>8} {_num(frozen, '.2f', 'x'):>9}  "
            f"{'; '.join(notes)}"
        )
    lines.append("seconds: per stylisation call or training step, per iteration for Gatys (median); "
                 f"peak: the device's GFLOP/s at that precision ({device.get('peak_source', 'unknown')}); "
                 "memory: peak memory added (MiB); speed-up: naive seconds / these seconds; vs frozen: the frozen "
                 "reference's seconds / these (Gatys: per iteration; 'gatys to loss': wall time to its loss)")
    return "\n".join(lines)


def _num(value: float | None, spec: str, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:{spec}}{suffix}"


def _mib(count: int | None) -> str:
    return "-" if count is None else f"{count / 2**20:.0f}"
