"""The timing library and ``painterly bench`` (tiny sizes: these check the benchmark, not the speed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from painterly import bench, performance
from painterly.bench import BenchConfig, BenchReport, Measurement, run_benchmark, time_calls
from painterly.cli import main
from painterly.errors import SettingsError

from .conftest import run_cli

CPU = torch.device("cpu")
TINY = BenchConfig(adain_sizes=(32,), adain_batches=(1,), gatys_sizes=(32,), gatys_iterations=2,
                   training_size=32, training_batch=1, warmup=1, repeats=1)


def test_calls_take_turns_and_report_medians(monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []
    # perf_counter at the start and end of each timed call: a takes 1, 3, 2 s; b 0.5 s each time.
    clock = iter([0, 1, 1, 1.5, 2, 5, 5, 5.5, 6, 8, 8, 8.5])
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(clock))

    def call(name: str):
        def run() -> str:
            order.append(name)
            return name

        return run

    timings = time_calls({"a": call("a"), "b": call("b")}, device=CPU, warmup=2, repeats=3)
    # Warm-ups first (each call's first one measures memory), then one of each per repeat.
    assert order == ["a", "a", "b", "b", "a", "b", "a", "b", "a", "b"]
    assert timings["a"][0] == 2 and timings["b"][0] == 0.5
    assert timings["a"][2] == "a" and timings["b"][2] == "b"


def test_speedups_divide_the_naive_time() -> None:
    def measurement(variant: str, seconds: float, cached: bool) -> Measurement:
        return Measurement("adain", variant, 64, 1, seconds, 1 / seconds, 1.0, 1 / seconds, "float32", style_cached=cached)

    report = BenchReport({}, {}, [measurement("naive", 3.0, False), measurement("painterly", 1.5, False),
                                  measurement("naive", 2.0, True), measurement("painterly", 0.5, True)])
    assert [(row["style_cached"], row["speedup"]) for row in report.speedups()] == [(False, 2.0), (True, 4.0)]


def test_adain_and_gatys_variants_against_the_naive_runs() -> None:
    config = TINY.updated(sections=("adain", "gatys"), ablation=True)
    steps: list[tuple[int, int, str]] = []
    report = run_benchmark(config, device="cpu", callback=lambda done, total, case: steps.append((done, total, case)))
    assert steps[0] == (0, 3, "adain 32px batch 1") and steps[-1] == (3, 3, "done")
    adain = [m for m in report.measurements if m.case == "adain"]
    variants = {m.variant for m in adain}
    assert {"naive", "painterly", "float32 NCHW", "bfloat16 channels_last"} <= variants
    for m in adain:
        assert m.seconds > 0 and m.gflops_per_second == pytest.approx(m.gflop / m.seconds)
        if m.variant != "naive":
            # float32 variants compute the same numbers in another order; bfloat16 is close.
            assert m.psnr_db > (60 if m.precision == "float32" else 30), m.variant
    gatys = {m.variant: m for m in report.measurements if m.case == "gatys"}
    # Truncation and cached targets change no number: the float32 NCHW run takes the naive run's steps.
    assert gatys["float32 NCHW"].final_loss == pytest.approx(gatys["naive"].final_loss, rel=1e-5)
    assert gatys["naive"].gflop == gatys["painterly"].gflop > 0


def test_cases_that_cannot_fit_are_skipped_with_the_planner_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(performance, "available_memory", lambda device: 10 * 2**20)
    report = run_benchmark(TINY.updated(sections=("adain",), adain_sizes=(256,)), device="cpu")
    assert len(report.measurements) == 2  # the naive row of each case, marked skipped
    assert all("skipped" in m.note and "tile" in m.note for m in report.measurements)
    assert json.dumps(report.to_dict(), allow_nan=False)  # NaN times become null


def test_bad_config_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="at least 32"):
        BenchConfig(adain_sizes=(8,))
    with pytest.raises(SettingsError, match="unknown benchmark section"):
        BenchConfig(sections=("video",))


def test_cli_bad_size_is_one_line_and_exit_2(capsys: pytest.CaptureFixture) -> None:
    assert main(["bench", "--sizes", "8", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "at least 32 px" in err


def test_cli_writes_a_table_and_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = run_cli("bench", "--quick", "--quiet", "--threads", "1", "--json", str(out), "--sizes", "32", "--batches", "1",
                     "--gatys-sizes", "32", "--gatys-iterations", "1", "--training-size", "32", "--training-batch", "1",
                     "--repeats", "1")
    assert result.returncode == 0, result.stderr
    assert "speed-up" in result.stdout and "naive" in result.stdout
    data = json.loads(out.read_text())
    assert set(data) == {"device", "config", "measurements", "speedups"}
    assert data["device"]["type"] == "cpu" and data["device"]["threads"] == 1
    assert {m["case"] for m in data["measurements"]} == {"adain", "gatys", "training"}
    assert {"seconds", "items_per_second", "gflops_per_second", "peak_memory_bytes", "precision"} <= set(data["measurements"][0])
    assert len(data["speedups"]) == 4 and all(row["speedup"] > 0 for row in data["speedups"])
    assert not list(tmp_path.glob(".*.part"))
