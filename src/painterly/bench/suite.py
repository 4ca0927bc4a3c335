"""Timing painterly's networks against a naive baseline run side by side.

Every case is timed twice in the same process, on the same random weights and inputs:

* ``naive``: the way the reference implementations run. float32, NCHW, eager, nothing cached.
  AdaIN as pytorch-AdaIN's test.py: ``torch.no_grad``, the encoder cut at relu4_1, the style
  encoded for every call. Gatys as the Keras example: the full VGG-19 (to pool5) and the content
  and style targets recomputed at every iteration. Training as pytorch-AdaIN's train.py.
* ``frozen reference`` (Gatys only): the way a careful user writes Gatys in plain PyTorch, as
  the PyTorch tutorial does: an ``nn.Sequential`` VGG-19 cut at the deepest layer the loss
  reads, its weights frozen (no weight gradients), the targets computed once, float32, NCHW,
  eager; its loss is written out independently of painterly's. The honest baseline.
* ``painterly``: the default :class:`~painterly.speed.SpeedSettings` (inference mode,
  channels_last, bfloat16 where the device computes it natively), truncated encoders, cached
  style statistics and Gatys targets.

A time is the median of ``repeats`` runs after ``warmup`` runs. Gatys also reports time to
quality (``gatys_time_to_loss``): the wall time each way takes to reach the loss that the
frozen reference reaches in that many iterations. FLOPs are counted by
:mod:`painterly.bench.flops`. Weights are seeded random (Kaiming-normal): speed does not depend on their values, but
the bfloat16 accuracy (PSNR against float32) may differ with trained weights.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..adain import ADAIN_LAYER, AdaINModel, adain, blend_styles, build_decoder
from ..device import resolve_device
from ..encoder import IMAGENET_MEAN, IMAGENET_STD, LAYER_NAMES, VGG19Encoder, deepest_layer, load_encoder
from ..errors import Cancelled, SettingsError
from ..files import atomic_path
from ..gatys import GatysObjective, GatysSettings, Progress, get_preset, initial_image, make_optimizer, optimize, pixel_scale
from ..images import image_to_tensor, tensor_to_image
from ..losses import channel_mean_std
from ..memory import plan_memory
from ..options import option
from ..speed import ADAIN_SPEED, GATYS_SPEED, SpeedSettings, resolve_precision
from ..training import decoder_losses
from ..weights import NORMALISED_INDICES, TORCHVISION_INDICES, VGG19_CONV_CHANNELS, random_vgg19_state_dict
from .flops import adain_flops, gatys_iteration_flops, training_step_flops
from .measure import device_info, psnr, synchronize, time_calls

BenchCallback = Callable[[int, int, str], None]
#: The variants others are compared with: the naive run, and for Gatys the frozen reference.
BASELINES = ("naive", "frozen reference")


@dataclass
class BenchConfig:
    """What to time. Sizes are square sides in pixels."""

    adain_sizes: tuple[int, ...] = option((256, 512, 1024), minimum=32, flag="--sizes", metavar="PX",
                                          help="AdaIN sizes (default: {default})")
    adain_batches: tuple[int, ...] = option((1, 8), minimum=1, flag="--batches", metavar="N",
                                            help="AdaIN batch sizes (default: {default})")
    gatys_sizes: tuple[int, ...] = option((256, 512), minimum=32, metavar="PX", help="Gatys sizes (default: {default})")
    gatys_iterations: int = option(5, minimum=1, metavar="N", help="timed Gatys iterations (default: {default})")
    training_size: int = option(256, minimum=32, metavar="PX", help="training crop size (default: {default})")
    training_batch: int = option(8, minimum=1, metavar="N", help="training batch (default: {default})")
    warmup: int = option(1, minimum=0, help="untimed runs first (default: {default})")
    repeats: int = option(3, minimum=1, help="timed runs per case; the median is reported (default: {default})")
    #: Also time each speed option alone (the ablation behind benchmarks/NOTES.md).
    ablation: bool = option(False, help="also time each speed option alone (precision, layout)")
    #: Also time the painterly settings with torch.compile.
    compile: bool = option(False, help="also time painterly's settings under torch.compile (slow to compile)")
    #: Gatys's optimiser: ``lbfgs`` (gatys2016) or ``adam`` (neural-style's -optimizer adam, lr 10).
    gatys_optimizer: str = option("lbfgs", choices=("lbfgs", "adam"),
                                  help="gatys2016's L-BFGS (default) or Adam, lr 10")
    #: Time to quality at the first Gatys size: the frozen reference's loss after this many
    #: iterations is the target (0: not measured).
    gatys_time_to_loss: int = option(0, minimum=0, flag="--time-to-loss", metavar="N",
                                     help="also time how long painterly takes, single-scale and coarse to fine, to reach "
                                     "the loss the frozen reference reaches in N iterations, at the first Gatys size "
                                     "(default: 100, --quick 5; 0: skip)")
    sections: tuple[str, ...] = option(("adain", "gatys", "training"), choices=("adain", "gatys", "training"),
                                       flag="--only", help="sections to run (default: all)")

    @classmethod
    def quick(cls) -> "BenchConfig":
        """Tiny sizes that finish in seconds: to check the benchmark runs, not to quote."""
        return cls(adain_sizes=(64,), adain_batches=(1, 2), gatys_sizes=(64,), gatys_iterations=2,
                   training_size=64, training_batch=2, warmup=1, repeats=2)

    def updated(self, **changes: Any) -> "BenchConfig":
        """A copy with ``changes`` applied (None values ignored, so CLI defaults pass through)."""
        return replace(self, **{key: value for key, value in changes.items() if value is not None})

    def __post_init__(self) -> None:
        for size in (*self.adain_sizes, *self.gatys_sizes, self.training_size):
            if size < 32:
                raise SettingsError(f"benchmark sizes must be at least 32 px, got {size}")
        if self.repeats < 1 or self.warmup < 0 or self.gatys_iterations < 1 or self.gatys_time_to_loss < 0:
            raise SettingsError("repeats and iterations must be at least 1, warmup and time-to-loss at least 0")
        if self.gatys_optimizer not in ("lbfgs", "adam"):
            raise SettingsError(f"unknown Gatys optimizer {self.gatys_optimizer!r}: choose lbfgs or adam")
        unknown = set(self.sections) - {"adain", "gatys", "training"}
        if unknown:
            raise SettingsError(f"unknown benchmark section(s) {', '.join(sorted(unknown))}: choose adain, gatys, training")


@dataclass
class Measurement:
    """One case run one way. ``seconds`` per call (AdaIN, training step) or per iteration (Gatys)."""

    case: str
    variant: str
    size: int
    batch: int
    seconds: float
    items_per_second: float
    gflop: float
    gflops_per_second: float
    precision: str
    style_cached: bool | None = None
    peak_memory_bytes: int | None = None
    estimated_memory_bytes: int | None = None
    psnr_db: float | None = None
    final_loss: float | None = None
    note: str | None = None


@dataclass
class BenchReport:
    device: dict[str, Any]
    config: dict[str, Any]
    measurements: list[Measurement] = field(default_factory=list)

    def speedups(self) -> list[dict[str, Any]]:
        """Baseline seconds / other seconds for each case that has both, for each baseline
        (:data:`BASELINES`) the case has."""
        rows = []
        for baseline in BASELINES:
            bases = {self._key(m): m for m in self.measurements if m.variant == baseline}
            for m in self.measurements:
                base = bases.get(self._key(m))
                if m.variant not in BASELINES[: BASELINES.index(baseline) + 1] and base is not None and m.seconds > 0:
                    rows.append({"case": m.case, "size": m.size, "batch": m.batch, "style_cached": m.style_cached,
                                 "variant": m.variant, "baseline": baseline, "speedup": base.seconds / m.seconds})
        return rows

    @staticmethod
    def _key(m: Measurement) -> tuple:
        return (m.case, m.size, m.batch, m.style_cached)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: a time that could not be measured (NaN) and an infinite PSNR
        (identical outputs) are None."""
        measurements = [{key: None if isinstance(value, float) and not math.isfinite(value) else value
                         for key, value in asdict(m).items()} for m in self.measurements]
        return {"device": self.device, "config": self.config, "measurements": measurements, "speedups": self.speedups()}

    def save_json(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` as JSON atomically (temp file, then rename)."""
        path = Path(path)
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"
        with atomic_path(path) as temporary:
            temporary.write_text(text)
        return path


# ---------------------------------------------------------------------------------------------
# Networks with seeded random weights.


def random_adain_networks(*, seed: int = 0, device: torch.device) -> tuple[VGG19Encoder, nn.Sequential]:
    """The AdaIN encoder (normalised flavour, to relu4_1) and decoder with Kaiming-normal weights.

    Speed does not depend on the values; Kaiming weights keep activations at a realistic scale
    so that the bfloat16 accuracy check sees realistic magnitudes.
    """
    torchvision = random_vgg19_state_dict(seed)
    state = {f"{n}.{kind}": torchvision[f"features.{t}.{kind}"]
             for t, n in zip(TORCHVISION_INDICES, NORMALISED_INDICES) for kind in ("weight", "bias")}
    # The released net's first conv maps RGB in [0, 1] to mean-subtracted BGR in [0, 255].
    state["0.weight"] = 255.0 * torch.eye(3).flip(0).view(3, 3, 1, 1)
    state["0.bias"] = -torch.tensor([103.939, 116.779, 123.68])
    encoder = VGG19Encoder(flavour="normalised", last_layer=ADAIN_LAYER)
    encoder.load_vgg_state_dict(state, name="random")
    generator = torch.Generator().manual_seed(seed + 1)
    decoder = build_decoder()
    with torch.no_grad():
        for module in decoder.modules():
            if isinstance(module, nn.Conv2d):
                std = (2.0 / (module.in_channels * 9)) ** 0.5
                if module.out_channels == 3:  # back from the encoder's 0-255 scale to images' 0-1
                    std /= 255.0
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * std)
                module.bias.zero_()
    return encoder.to(device), decoder.eval().to(device)


# ---------------------------------------------------------------------------------------------
# AdaIN.


def _prepared(module: nn.Module, speed: SpeedSettings) -> nn.Module:
    """A copy of ``module`` in ``speed``'s layout (``Module.to`` works in place)."""
    return speed.prepare(copy.deepcopy(module))


def bench_adain(config: BenchConfig, device: torch.device, report: BenchReport, step: Callable[[str], None], *, seed: int = 0) -> None:
    encoder, decoder = random_adain_networks(seed=seed, device=device)
    variants = [(name, speed, AdaINModel(copy.deepcopy(encoder), copy.deepcopy(decoder), speed=speed))
                for name, speed in _variants(config)]
    generator = torch.Generator().manual_seed(seed)
    for size in config.adain_sizes:
        for batch in config.adain_batches:
            content = torch.rand((batch, 3, size, size), generator=generator).to(device)
            style = torch.rand((1, 3, size, size), generator=generator).to(device)
            for cached in (False, True):
                step(f"adain {size}px batch {batch}{' cached' if cached else ''}")
                # One style image is encoded per call, whatever the batch.
                per_image = adain_flops(size, size, style_cached=True)
                flops = per_image * batch + (0 if cached else adain_flops(size, size) - per_image)
                try:
                    plan = plan_memory("adain", height=size, width=size, batch=batch, device=device, style_cached=cached)
                    skip = None if plan.fits else (
                        f"skipped: needs about {plan.estimate_bytes / 2**30:.1f} GiB, {plan.budget_bytes / 2**30:.1f} "
                        f"GiB free (stylize would tile at {plan.tile} px)")
                except SettingsError as error:
                    skip = f"skipped: {error}"
                if skip:
                    report.measurements.append(Measurement(
                        "adain", "naive", size, batch, math.nan, math.nan, flops / 1e9, math.nan, "float32",
                        style_cached=cached, note=skip))
                    continue

                def naive() -> torch.Tensor:
                    with torch.no_grad():
                        return decoder(adain(encoder(content)[ADAIN_LAYER], encoder(style)[ADAIN_LAYER]))

                calls = {"naive": naive}
                for name, _, model in variants:
                    calls[name] = _fast_adain(model, content, style, cached=cached)
                timings = time_calls(calls, device=device, warmup=config.warmup, repeats=config.repeats)
                seconds, peak, reference = timings["naive"]
                report.measurements.append(_measurement("adain", "naive", size, batch, seconds, flops, "float32",
                                                        style_cached=cached, peak=peak, estimate=plan.estimate_bytes))
                for name, speed, _ in variants:
                    seconds, peak, output = timings[name]
                    precision = resolve_precision(speed.precision, device)
                    estimate = plan_memory("adain", height=size, width=size, batch=batch, device=device,
                                           precision=precision, style_cached=cached).estimate_bytes
                    report.measurements.append(_measurement(
                        "adain", name, size, batch, seconds, flops, precision, style_cached=cached, peak=peak,
                        estimate=estimate, psnr_db=psnr(reference.float(), output.float())))


def _fast_adain(model: AdaINModel, content: torch.Tensor, style: torch.Tensor, *, cached: bool) -> Callable[[], torch.Tensor]:
    """A stylisation call through :class:`AdaINModel`, the code ``painterly stylize`` runs, with
    its speed settings; with ``cached``, the style's statistics are computed once, now."""
    device = model.device
    with model.speed.running(device):
        style_stats = channel_mean_std(model.encode(style)) if cached else None

    def call() -> torch.Tensor:
        with model.speed.running(device):
            stats = style_stats if cached else channel_mean_std(model.encode(style))
            features = model.encode(content)
            return model.decode(blend_styles(features, [channel_mean_std(features)], [stats], [1.0]))

    return call


def _variants(config: BenchConfig, default: SpeedSettings = ADAIN_SPEED) -> list[tuple[str, SpeedSettings]]:
    """The ways to run a case beside the naive one: painterly's ``default``, and on request each
    option alone (``ablation``) and compiled."""
    variants = [("painterly", default)]
    if config.ablation:
        variants = [
            ("float32 NCHW", SpeedSettings(precision="float32", channels_last=False)),
            ("float32 channels_last", SpeedSettings(precision="float32", channels_last=True)),
            ("bfloat16 NCHW", SpeedSettings(precision="bfloat16", channels_last=False)),
            ("bfloat16 channels_last", SpeedSettings(precision="bfloat16", channels_last=True)),
        ] + variants
    if config.compile:
        variants.append(("compiled", replace(default, compile=True)))
    return variants


class _FullDepth(nn.Module):
    """The Keras example's network: every layer to pool5 computed, whatever the losses read."""

    def __init__(self, encoder: VGG19Encoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, image: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        features = self.encoder(image, (*layers, self.encoder.last_layer))
        return {name: features[name] for name in layers}


LossFunction = Callable[[torch.Tensor], dict[str, torch.Tensor]]


class _GatysRun:
    """One optimisation as :func:`~painterly.gatys.optimize_image` runs it, one step at a time.

    ``objective()`` gives the loss function for each iteration: the naive run builds a new
    :class:`GatysObjective` every time (targets recomputed), the others return one built once.
    As in ``optimize_image``, only the losses run under ``speed``'s precision, not the optimiser.
    """

    def __init__(self, objective: Callable[[], LossFunction], start: torch.Tensor, settings: GatysSettings,
                 speed: SpeedSettings = SpeedSettings(precision="float32", channels_last=False)) -> None:
        self.objective = objective
        self.speed = speed
        # NCHW whatever the layout of the network: L-BFGS flattens the gradient with view().
        self.pixels = (start.detach() * pixel_scale(settings, start)).contiguous().requires_grad_(True)
        self.optimizer = make_optimizer(self.pixels, settings)

    def __call__(self) -> float:
        def closure() -> torch.Tensor:
            self.optimizer.zero_grad()
            with self.speed.running(self.pixels.device, grad=True):
                loss = self.objective()(self.pixels)["total"]
            loss.backward()
            return loss

        if isinstance(self.optimizer, torch.optim.LBFGS):
            return float(self.optimizer.step(closure).detach())  # the loss at the step's start
        loss = closure()
        self.optimizer.step()
        return float(loss.detach())


def frozen_reference(settings: GatysSettings, content: torch.Tensor, style: torch.Tensor, *, seed: int = 0) -> LossFunction:
    """gatys2016's loss written as a careful PyTorch user writes it, independently of painterly.

    The PyTorch tutorial's structure: torchvision's VGG-19 as an ``nn.Sequential`` cut at the
    deepest layer the loss reads, with frozen weights (``requires_grad_(False)``: autograd then
    computes no weight gradients), targets computed once, float32, NCHW, eager. The loss is
    c MSE(F, P) + s sum_l MSE(F F^T / (C H W), A_l) + t 1/2 sum (dx^2 + dy^2) (inner pixels).
    """
    if (settings.tv_kind, settings.gram_normalization, settings.style_reduction, settings.content_reduction,
            settings.average_layers, isinstance(settings.pixel_scale, tuple)) != (
            "neural_style", "channels_positions", "mean", "mean", False, False):
        raise SettingsError("the frozen reference computes gatys2016's loss only")
    names = settings.content_layers + settings.style_layers
    last = max(LAYER_NAMES.index(name) for name in names)
    modules: list[nn.Module] = []
    channels = iter(VGG19_CONV_CHANNELS)
    for name in LAYER_NAMES[: last + 1]:  # the order of torchvision's vgg19().features
        if name.startswith("conv"):
            modules.append(nn.Conv2d(*next(channels), 3, padding=1))
        else:
            modules.append(nn.ReLU() if name.startswith("relu") else nn.MaxPool2d(2, 2))
    net = nn.Sequential(*modules)
    state = {key.removeprefix("features."): value for key, value in random_vgg19_state_dict(seed).items()}
    net.load_state_dict({key: value for key, value in state.items() if int(key.split(".")[0]) <= last})
    net = net.to(content.device).eval().requires_grad_(False)
    mean, std = (torch.tensor(v, device=content.device).view(1, 3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
    wanted = {LAYER_NAMES.index(name): name for name in names}

    def features(pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        x, out = (pixels / settings.pixel_scale - mean) / std, {}
        for index, module in enumerate(net):
            x = module(x)
            if index in wanted:
                out[wanted[index]] = x * settings.feature_scale
        return out

    def gram(f: torch.Tensor) -> torch.Tensor:
        flat = f.flatten(2)
        return flat @ flat.transpose(1, 2) / flat[0].numel()

    with torch.no_grad():
        content_targets = features(content * settings.pixel_scale)
        style_targets = {name: gram(f) for name, f in features(style * settings.pixel_scale).items()}

    def loss(pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        out = features(pixels)
        content_term = sum(F.mse_loss(out[name], content_targets[name]) for name in settings.content_layers)
        style_term = sum(F.mse_loss(gram(out[name]), style_targets[name]) for name in settings.style_layers)
        dx = pixels[..., :-1, 1:] - pixels[..., :-1, :-1]
        dy = pixels[..., 1:, :-1] - pixels[..., :-1, :-1]
        tv = 0.5 * (dx.square().sum() + dy.square().sum())
        return {"total": settings.content_weight * content_term + settings.style_weight * style_term + settings.tv_weight * tv}

    return loss


def gatys_bench_settings(config: BenchConfig) -> GatysSettings:
    """gatys2016, or with Adam at neural-style's -learning_rate (10) for ``gatys_optimizer`` adam."""
    settings = get_preset("gatys2016")
    return settings.updated(optimizer="adam", learning_rate=10.0) if config.gatys_optimizer == "adam" else settings


def bench_gatys(config: BenchConfig, device: torch.device, report: BenchReport, step: Callable[[str], None], *, seed: int = 0) -> None:
    """Seconds per iteration of gatys2016 from the same start, and the loss reached.

    Every run takes the same steps on the same loss, so the losses must agree up to rounding
    (and bfloat16's error); the naive run's network computes layers the loss never reads, and
    its targets again at every step; the frozen reference is the careful plain-PyTorch run.
    """
    settings = gatys_bench_settings(config)
    layers = settings.content_layers + settings.style_layers
    full, _ = load_encoder("random", last_layer="pool5", seed=seed, device=device)
    truncated, _ = load_encoder("random", last_layer=deepest_layer(layers), seed=seed, device=device)
    naive_encoder = _FullDepth(full)
    generator = torch.Generator().manual_seed(seed)
    for size in config.gatys_sizes:
        step(f"gatys {size}px")
        content = torch.rand((1, 3, size, size), generator=generator).to(device)
        style = torch.rand((1, 3, size, size), generator=generator).to(device)
        start = initial_image(content, settings, seed=seed)
        flops = gatys_iteration_flops(size, size, layers=layers, style_layers=settings.style_layers)
        estimate = plan_memory("gatys", height=size, width=size, device=device, layers=layers).estimate_bytes
        reference = frozen_reference(settings, content, style, seed=seed)
        calls = {"naive": _GatysRun(lambda: GatysObjective(naive_encoder, content, [style], settings), start, settings),
                 "frozen reference": _GatysRun(lambda: reference, start, settings)}
        variants = _variants(config, GATYS_SPEED)
        for name, speed in variants:
            with speed.running(device, grad=True):
                objective = GatysObjective(_prepared(truncated, speed), speed.input(content), [speed.input(style)], settings)
            calls[name] = _GatysRun(lambda o=objective: o, start, settings, speed)
        # Each call is an iteration; the runs advance together, so the last losses are comparable.
        timings = time_calls(calls, device=device, warmup=config.warmup, repeats=config.gatys_iterations)
        for name, precision in [("naive", "float32"), ("frozen reference", "float32")] + [
                (n, resolve_precision(v.precision, device)) for n, v in variants]:
            seconds, peak, loss = timings[name]
            report.measurements.append(_measurement("gatys", name, size, 1, seconds, flops, precision,
                                                    peak=peak, estimate=estimate, final_loss=loss))


def bench_gatys_time_to_loss(config: BenchConfig, device: torch.device, report: BenchReport, step: Callable[[str], None],
                             *, seed: int = 0) -> None:
    """Wall time to reach the loss the frozen reference reaches in ``gatys_time_to_loss``
    iterations: the reference, ``painterly optimize`` as a user runs it (weights loaded and
    targets computed inside the time), and the same coarse to fine (2 scales, half the
    iterations at half the size first). Each may take up to 3 times the reference's iterations."""
    size, iterations = config.gatys_sizes[0], config.gatys_time_to_loss
    step(f"gatys {size}px time to loss")
    settings = gatys_bench_settings(config)
    generator = torch.Generator().manual_seed(seed + 1)
    content_image, style_image = (tensor_to_image(torch.rand((1, 3, size, size), generator=generator)) for _ in range(2))
    content, style = image_to_tensor(content_image).to(device), image_to_tensor(style_image).to(device)
    synchronize(device)
    begin = time.perf_counter()
    run = _GatysRun(lambda loss=frozen_reference(settings, content, style, seed=seed): loss,
                    initial_image(content, settings, seed=seed), settings)
    losses = [run() for _ in range(iterations)]
    synchronize(device)
    target, seconds = losses[-1], time.perf_counter() - begin
    report.measurements.append(_measurement("gatys to loss", "frozen reference", size, 1, seconds, 0.0, "float32",
                                            final_loss=target))
    report.measurements[-1].note = f"target: its loss at iteration {iterations}"
    coarse = settings.updated(scales=2, iterations_per_scale=(max(1, iterations // 2), 3 * iterations))
    for name, run_settings in (("painterly", settings.updated(iterations=3 * iterations)), ("painterly coarse-to-fine", coarse)):
        reached: dict[str, float] = {}

        def stop_at_target(progress: Progress) -> None:
            if progress.scale == progress.scales and progress.losses["total"] <= target:
                synchronize(device)
                reached.update(seconds=time.perf_counter() - begin, loss=progress.losses["total"],
                               iteration=progress.iteration)
                raise Cancelled("reached")

        begin = time.perf_counter()
        try:
            optimize(content_image, style_image, settings=run_settings, size=size, weights="random", seed=seed, device=device,
                     speed=GATYS_SPEED, callback=stop_at_target)
        except Cancelled:
            pass
        measurement = _measurement("gatys to loss", name, size, 1, reached.get("seconds", math.nan), 0.0, "float32",
                                   final_loss=reached.get("loss"))
        measurement.note = (f"reached at iteration {reached['iteration']} of the last scale" if reached
                            else f"not reached in {3 * iterations} iterations")
        report.measurements.append(measurement)


#: The decoder's style weight in pytorch-AdaIN's recipe (mean squared errors).
TRAINING_STYLE_WEIGHT = 10.0


def bench_training(config: BenchConfig, device: torch.device, report: BenchReport, step: Callable[[str], None], *, seed: int = 0) -> None:
    """Decoder training steps per second: encode, AdaIN, decode, encode the result, backward, Adam."""
    size, batch = config.training_size, config.training_batch
    step(f"training {size}px batch {batch}")
    encoder, decoder = random_adain_networks(seed=seed, device=device)
    generator = torch.Generator().manual_seed(seed)
    content = torch.rand((batch, 3, size, size), generator=generator).to(device)
    style = torch.rand((batch, 3, size, size), generator=generator).to(device)
    flops = training_step_flops(size, size) * batch
    variants = [("naive", SpeedSettings(precision="float32", channels_last=False)), *_variants(config)]
    calls = {name: _training_step(speed, device, encoder, decoder, content, style) for name, speed in variants}
    timings = time_calls(calls, device=device, warmup=config.warmup, repeats=config.repeats)
    for name, speed in variants:
        seconds, peak, loss = timings[name]
        report.measurements.append(_measurement("training", name, size, batch, seconds, flops,
                                                resolve_precision(speed.precision, device), peak=peak, final_loss=loss))


def _training_step(speed: SpeedSettings, device: torch.device, encoder: nn.Module, decoder: nn.Module,
                   content: torch.Tensor, style: torch.Tensor) -> Callable[[], float]:
    """One step of pytorch-AdaIN's training (the loss of :func:`painterly.training.decoder_losses`)
    on copies of the networks, run with ``speed``."""
    encoder, decoder = _prepared(encoder, speed), _prepared(decoder, speed).train().requires_grad_(True)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-4)
    content, style = speed.input(content), speed.input(style)
    amp = torch.bfloat16 if resolve_precision(speed.precision, device) == "bfloat16" else None

    def train_step() -> float:
        loss_c, loss_s, _, _ = decoder_losses(encoder, decoder, content, style, amp=amp)
        loss = loss_c + TRAINING_STYLE_WEIGHT * loss_s
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return train_step


def run_benchmark(config: BenchConfig, *, device: str | torch.device = "auto", seed: int = 0,
                  peak_gflops: float | None = None, callback: BenchCallback | None = None) -> BenchReport:
    """Time the sections of ``config`` on ``device``; ``callback(done, total, case)`` before each case."""
    device = resolve_device(device)
    report = BenchReport(device_info(device, peak_gflops=peak_gflops), asdict(config))
    gatys = "gatys" in config.sections
    total = (len(config.adain_sizes) * len(config.adain_batches) * 2 * ("adain" in config.sections)
             + (len(config.gatys_sizes) + bool(config.gatys_time_to_loss)) * gatys + ("training" in config.sections))
    done = 0

    def step(case: str) -> None:
        nonlocal done
        if callback is not None:
            callback(done, total, case)
        done += 1

    sections = {"adain": bench_adain, "gatys": bench_gatys, "training": bench_training}
    for section in config.sections:
        sections[section](config, device, report, step, seed=seed)
        if section == "gatys" and config.gatys_time_to_loss:
            bench_gatys_time_to_loss(config, device, report, step, seed=seed)
    if callback is not None:
        callback(done, total, "done")
    return report


def _measurement(case: str, variant: str, size: int, batch: int, seconds: float, flops: float, precision: str, *, style_cached: bool | None = None, peak: int | None = None,
                 estimate: int | None = None, psnr_db: float | None = None, final_loss: float | None = None) -> Measurement:
    return Measurement(case, variant, size, batch, seconds, batch / seconds, flops / 1e9, flops / 1e9 / seconds,
                       precision, style_cached=style_cached, peak_memory_bytes=peak, estimated_memory_bytes=estimate,
                       psnr_db=psnr_db, final_loss=final_loss)
