"""Gatys seconds per iteration: the frozen reference against float32 and bfloat16 channels_last.

Usage: python benchmarks/gatys_vs_frozen.py OPTIMIZER SIZE REPEATS   (e.g. lbfgs 512 2)

The three runs take turns, iteration by iteration, from the same start (painterly.bench.time_calls); the
naive run of `painterly bench` is left out because it costs minutes per iteration at 512 px on a CPU.
"""
import sys, torch
torch.set_num_threads(2)
from painterly.bench import BenchConfig, time_calls
from painterly.bench.suite import _GatysRun, _prepared, frozen_reference, gatys_bench_settings
from painterly.encoder import deepest_layer, load_encoder
from painterly.gatys import GatysObjective, initial_image
from painterly.speed import SpeedSettings
optimizer = sys.argv[1]
size = int(sys.argv[2])
device = torch.device("cpu")
settings = gatys_bench_settings(BenchConfig(gatys_optimizer=optimizer))
layers = settings.content_layers + settings.style_layers
truncated, _ = load_encoder("random", last_layer=deepest_layer(layers), seed=0)
g = torch.Generator().manual_seed(0)
content = torch.rand((1, 3, size, size), generator=g); style = torch.rand((1, 3, size, size), generator=g)
start = initial_image(content, settings, seed=0)
calls = {"frozen reference": _GatysRun(lambda r=frozen_reference(settings, content, style): r, start, settings)}
for name, speed in [("float32 channels_last", SpeedSettings(precision="float32", channels_last=True)),
                    ("bfloat16 channels_last", SpeedSettings(precision="bfloat16", channels_last=True))]:
    with speed.running(device, grad=True):
        o = GatysObjective(_prepared(truncated, speed), speed.input(content), [speed.input(style)], settings)
    calls[name] = _GatysRun(lambda o=o: o, start, settings, speed)
t = time_calls(calls, device=device, warmup=1, repeats=int(sys.argv[3]))
base = t["frozen reference"][0]
for k, (sec, peak, loss) in t.items():
    print(f"{optimizer} {size}px {k:24s} {sec:8.2f} s/it  vs frozen {base/sec:.2f}x  loss {loss:.6g}")
