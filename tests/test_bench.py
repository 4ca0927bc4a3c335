"""The timing library and ``painterly bench`` (tiny sizes: these check the benchmark, not the speed)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from painterly import memory
from painterly.bench import BenchConfig, BenchReport, Measurement, measure, psnr, run_benchmark, suite, time_calls
from painterly.cli import main
from painterly.encoder import load_encoder
from painterly.errors import PainterlyError, SettingsError
from painterly.speed import SpeedSettings

from conftest import run_cli

CPU = torch.device("cpu")
TINY = BenchConfig(adain_sizes=(32,), adain_batches=(1,), gatys_sizes=(32,), gatys_iterations=2,
                   training_size=32, training_batch=1, warmup=1, repeats=1)


def test_calls_take_turns_and_report_medians(monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []
    # perf_counter at the start and end of each timed call: a takes 1, 3, 2 s; b 0.5 s each time.
    clock = iter([0, 1, 1, 1.5, 2, 5, 5, 5.5, 6, 8, 8, 8.5])
    monkeypatch.setattr(measure.time, "perf_counter", lambda: next(clock))

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


def test_adain_against_the_naive_run() -> None:
    steps: list[tuple[int, int, str]] = []
    report = run_benchmark(TINY.updated(sections=("adain",)), device="cpu",
                           callback=lambda done, total, case: steps.append((done, total, case)))
    assert steps == [(0, 2, "adain 32px batch 1"), (1, 2, "adain 32px batch 1 cached"), (2, 2, "done")]
    rows = {(m.variant, m.style_cached): m for m in report.measurements}
    assert set(rows) == {("naive", False), ("painterly", False), ("naive", True), ("painterly", True)}
    for m in rows.values():
        assert m.seconds > 0 and m.gflops_per_second == pytest.approx(m.gflop / m.seconds)
    assert rows["naive", True].gflop < rows["naive", False].gflop  # no style encoding to count
    painterly = rows["painterly", False]
    assert painterly.psnr_db > (60 if painterly.precision == "float32" else 30)
    assert [row["variant"] for row in report.speedups()] == ["painterly", "painterly"]


def test_gatys_variants_reach_the_naive_loss() -> None:
    report = run_benchmark(TINY.updated(sections=("gatys",), ablation=True, gatys_iterations=1), device="cpu")
    gatys = {m.variant: m for m in report.measurements}
    assert set(gatys) == {"naive", "frozen reference", "painterly", "float32 NCHW", "float32 channels_last",
                          "bfloat16 NCHW", "bfloat16 channels_last"}
    # Truncation and cached targets change no number: the float32 NCHW run takes the naive run's steps.
    assert gatys["float32 NCHW"].final_loss == pytest.approx(gatys["naive"].final_loss, rel=1e-6)
    # The frozen reference writes the loss out on its own, and takes the same steps.
    assert gatys["frozen reference"].final_loss == pytest.approx(gatys["naive"].final_loss, rel=1e-5)
    baselines = {(row["variant"], row["baseline"]) for row in report.speedups()}
    assert ("painterly", "frozen reference") in baselines and ("frozen reference", "naive") in baselines
    assert ("naive", "frozen reference") not in baselines
    assert gatys["painterly"].precision == "float32"
    assert gatys["naive"].gflop == gatys["painterly"].gflop > 0


def test_cases_that_cannot_fit_are_skipped_with_the_planner_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    # Room for the smallest seam-free tile (320 px) with cached statistics, not for the 512 px style.
    monkeypatch.setattr(memory, "available_memory", lambda device: 200 * 2**20)
    report = run_benchmark(TINY.updated(sections=("adain",), adain_sizes=(512,)), device="cpu")
    encoded, cached = report.measurements  # the naive row of each case, marked skipped
    # Tiles cut the content, not the style: only with cached statistics do they help.
    assert "skipped" in encoded.note and "smaller style size" in encoded.note
    assert "skipped" in cached.note and "would tile at" in cached.note
    assert json.dumps(report.to_dict(), allow_nan=False)  # NaN times become null


@pytest.fixture(autouse=True)
def one_thread():
    """One thread: the 32-pixel cases are too small to share, and threads waiting on each other on
    a busy machine cost more than the work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
    # Gatys is left to the test above: the CLI only has to pass its flags on.
    result = run_cli("bench", "--quick", "--quiet", "--threads", "1", "--json", str(out), "--only", "adain", "training",
                     "--sizes", "32", "--batches", "1", "--training-size", "32", "--training-batch", "1",
                     "--repeats", "1", "--warmup", "0")
    assert result.returncode == 0, result.stderr
    assert "speed-up" in result.stdout and "naive" in result.stdout
    data = json.loads(out.read_text())
    assert set(data) == {"device", "config", "measurements", "speedups"}
    assert data["device"]["type"] == "cpu" and data["device"]["threads"] == 1
    # No data sheet for a CPU: its peak is measured on a matrix product, and said so.
    assert data["device"]["peak_source"].startswith("measured") and data["device"]["peak_gflops"]["float32"] > 0
    assert "measured: 2048x2048 matrix product" in result.stdout
    assert {m["case"] for m in data["measurements"]} == {"adain", "training"}
    assert data["config"]["adain_sizes"] == [32] and data["config"]["sections"] == ["adain", "training"]
    assert {"seconds", "items_per_second", "gflops_per_second", "peak_memory_bytes", "precision"} <= set(data["measurements"][0])
    assert len(data["speedups"]) == 3 and all(row["speedup"] > 0 for row in data["speedups"])
    assert not list(tmp_path.glob(".*.part"))


def test_a_given_peak_wins_over_measuring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(measure, "matmul_gflops", lambda *args, **kwargs: pytest.fail("measured a peak it was given"))
    info = measure.device_info(torch.device("cpu"), peak_gflops=123.0)
    assert info["peak_gflops"]["float32"] == 123.0 and info["peak_source"] == "given"


def test_matmul_peak_is_the_fastest_run_at_two_flops_per_multiply_add(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 0.5, 1.0, 1.25, 2.0, 2.75])  # runs of 0.5, 0.25 and 0.75 s
    monkeypatch.setattr(measure.time, "perf_counter", lambda: next(clock))
    gflops = measure.matmul_gflops(torch.device("cpu"), "float32", size=64, repeats=3)
    assert gflops == pytest.approx(2 * 64**3 / 0.25 / 1e9)


def test_json_where_no_file_can_be_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(PainterlyError, match="cannot be written"):
        BenchReport({}, {}).save_json(tmp_path / "a-file" / "bench.json")
    BenchReport({}, {}).save_json(tmp_path / "new" / "bench.json")  # missing folders are made, as for images
    assert (tmp_path / "new" / "bench.json").is_file()
    assert not list(tmp_path.rglob("*.part*"))


def test_gatys_time_to_loss_targets_the_frozen_references_loss() -> None:
    report = BenchReport({}, {})
    suite.bench_gatys_time_to_loss(TINY.updated(gatys_time_to_loss=2), torch.device("cpu"), report, lambda case: None)
    rows = {m.variant: m for m in report.measurements if m.case == "gatys to loss"}
    assert set(rows) == {"frozen reference", "painterly", "painterly coarse-to-fine"}
    target = rows["frozen reference"].final_loss
    for name in ("painterly", "painterly coarse-to-fine"):
        assert rows[name].final_loss <= target and rows[name].seconds > 0 and "reached" in rows[name].note
    assert {row["variant"] for row in report.speedups() if row["case"] == "gatys to loss"} == {
        "painterly", "painterly coarse-to-fine"}


def test_bfloat16_networks_keep_grams_and_losses_in_float32() -> None:
    from painterly.gatys import GatysObjective, get_preset

    encoder, _ = load_encoder("random", last_layer="relu2_1", seed=0)
    settings = get_preset("gatys2016").updated(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"))
    image = torch.rand((1, 3, 32, 32))
    speed = SpeedSettings(precision="bfloat16")
    with speed.running(torch.device("cpu"), grad=True):
        objective = GatysObjective(encoder, image, [image], settings)
        losses = objective(256.0 * image.clone().requires_grad_(True))
    assert all(gram.dtype == torch.float32 for gram in objective.style_terms[0][1].values())
    assert all(value.dtype == torch.float32 for value in losses.values())


def test_psnr() -> None:
    reference = torch.linspace(0, 1, 10_000)
    assert psnr(reference, reference) == math.inf
    noisy = reference + 0.01 * torch.where(torch.arange(10_000) % 2 == 0, 1.0, -1.0)
    assert psnr(reference, noisy) == pytest.approx(40.0, abs=0.01)  # MSE 1e-4, peak 1
    with pytest.raises(ValueError):
        psnr(reference, reference[:5])


def test_stylising_does_not_import_the_measuring_code() -> None:
    code = "import sys, painterly.gatys, painterly.adain; print('painterly.bench' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
