"""Optimisation-based style transfer (Gatys, Ecker and Bethge, CVPR 2016).

The output image x itself is optimised to minimise

    L(x) = a * sum_l w_l L_content^l(x) + b * sum_l w_l L_style^l(x) + c * TV(x)

with content features taken from the content image and Gram targets from the style image(s)
(a weighted sum of their Gram matrices when there are several). Each published recipe
normalises these terms differently; :data:`PRESETS` reproduces four of them by name.

Where we depart from the recipes (each preset's ``source`` says which applies):

* Sizes are the longer side with the aspect ratio kept (Keras fixes the height at 400 and d2l
  resizes to 300x450 exactly).
* The Keras and TensorFlow recipes use Caffe's VGG-19 (BGR, 0-255 input); torchvision's VGG
  stands in for it, its features multiplied by ``feature_scale`` = 255 x 0.226 to bring them to
  Caffe's magnitude, so that the recipes' weights keep their balance.
* The image is optimised in the recipe's own pixel space (x times ``pixel_scale``), so learning
  rates and the total-variation weight mean what they meant there.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Sequence

import torch
from PIL import Image

from .device import resolve_device
from .encoder import VGG19Encoder, deepest_layer, load_encoder
from .errors import SettingsError
from .images import image_to_tensor, resize_longer_side, tensor_to_image
from .losses import content_loss, gram_matrix, gram_style_loss, total_variation_loss
from .performance import GATYS_SPEED, plan_memory
from .weights import Progress as DownloadProgress
from .weights import choose_weights

#: Brings torchvision-normalised features to the magnitude of Caffe's 0-255 network.
CAFFE_FEATURE_SCALE = 255.0 * 0.226
STANDARD_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


@dataclass(frozen=True)
class GatysSettings:
    """Everything that defines an optimisation run; presets are instances of it."""

    content_layers: tuple[str, ...] = ("relu4_2",)
    style_layers: tuple[str, ...] = STANDARD_STYLE_LAYERS
    content_weight: float = 5.0
    style_weight: float = 100.0
    tv_weight: float = 1e-3
    #: Divide each term's weight by its number of layers (Keras, TensorFlow blog).
    average_layers: bool = False
    gram_normalization: str = "channels_positions"
    #: ``mean`` (MSE of Grams), ``paper`` (sum / 4 C^2 M^2) or ``keras`` (paper with C = 3, M = pixels).
    style_reduction: str = "mean"
    content_reduction: str = "mean"
    tv_kind: str = "squared"
    feature_scale: float = CAFFE_FEATURE_SCALE
    pixel_scale: float = 255.0
    optimizer: str = "lbfgs"
    learning_rate: float = 1.0
    #: Learning rate times ``lr_decay`` every ``lr_decay_every`` iterations (0: constant).
    lr_decay: float = 1.0
    lr_decay_every: int = 0
    #: Step the decay every ``lr_decay_every`` iterations, or smoothly (Keras's ExponentialDecay).
    lr_decay_staircase: bool = True
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    iterations: int = 1000
    size: int = 512
    init: str = "noise"
    #: The encoder weights the recipe was designed for.
    weights: str = "vgg19"
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        deepest_layer(self.content_layers + self.style_layers)  # raises on unknown layer names
        if self.optimizer not in ("lbfgs", "adam", "sgd"):
            raise SettingsError(f"unknown optimizer {self.optimizer!r}: choose lbfgs, adam or sgd")
        if self.init not in ("content", "noise"):
            raise SettingsError(f"unknown init {self.init!r}: choose content, noise, or pass an image")
        if self.iterations < 1:
            raise SettingsError(f"iterations must be at least 1, got {self.iterations}")
        for name in ("content_weight", "style_weight", "tv_weight"):
            if getattr(self, name) < 0 or not math.isfinite(getattr(self, name)):
                raise SettingsError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise SettingsError(f"learning_rate must be positive, got {self.learning_rate}")

    def updated(self, **changes: Any) -> "GatysSettings":
        """A copy with ``changes`` applied (None values ignored, so CLI defaults pass through)."""
        return replace(self, **{key: value for key, value in changes.items() if value is not None})

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if key != "source"}


PRESETS: dict[str, GatysSettings] = {
    "gatys2016": GatysSettings(
        source="Gatys et al. 2016 as run by jcjohnson/neural-style: Gram / (C M), MSE terms, "
        "squared TV on 0-255 pixels, L-BFGS from noise",
    ),
    "keras": GatysSettings(
        content_layers=("relu5_2",),
        content_weight=2.5e-8,
        style_weight=1e-6,
        tv_weight=1e-6,
        average_layers=True,
        gram_normalization="none",
        style_reduction="keras",
        content_reduction="sum",
        tv_kind="keras",
        optimizer="sgd",
        learning_rate=100.0,
        lr_decay=0.96,
        lr_decay_every=100,
        lr_decay_staircase=False,
        iterations=4000,
        size=400,
        init="content",
        source="Keras example 'Neural style transfer': block5_conv2 content, raw Grams with "
        "sum / (4 * 3^2 * (HW)^2), TV (dx^2 + dy^2)^1.25, SGD 100 x 0.96 per 100 steps",
    ),
    "d2l": GatysSettings(
        content_layers=("conv4_4",),
        style_layers=("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"),
        content_weight=1.0,
        style_weight=1e3,
        tv_weight=10.0,
        tv_kind="absolute_mean",
        feature_scale=1.0,
        pixel_scale=1 / 0.226,  # d2l optimises the ImageNet-normalised image: one std for all channels
        optimizer="adam",
        learning_rate=0.3,
        lr_decay=0.8,
        lr_decay_every=50,
        iterations=500,
        size=450,
        init="content",
        source="Dive into Deep Learning, 'Neural Style Transfer': pre-ReLU layers, Gram / (C H W), "
        "MSE terms, TV 0.5 (mean |dx| + mean |dy|), Adam 0.3 x 0.8 every 50 steps",
    ),
    "tf-blog": GatysSettings(
        content_layers=("relu5_2",),
        style_layers=STANDARD_STYLE_LAYERS,
        content_weight=1e3,
        style_weight=1e-2,
        tv_weight=0.0,
        average_layers=True,
        gram_normalization="positions",
        optimizer="adam",
        learning_rate=5.0,
        adam_betas=(0.99, 0.999),
        adam_eps=0.1,
        iterations=1000,
        size=512,
        init="content",
        source="TensorFlow blog, eager execution: Gram / M, MSE terms averaged over layers, "
        "no TV, Adam lr 5, beta1 0.99, eps 0.1, pixels clipped each step",
    ),
}
DEFAULT_PRESET = "gatys2016"


def get_preset(name: str) -> GatysSettings:
    """The named preset (:class:`SettingsError` names the choices for an unknown one)."""
    if name not in PRESETS:
        raise SettingsError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


@dataclass
class Progress:
    """What the optimiser reports after each iteration."""

    iteration: int  # 1-based
    iterations: int
    losses: dict[str, float]
    image: torch.Tensor  # (1, 3, H, W) in [0, 1], detached
    optimizer: torch.optim.Optimizer | None = None


ProgressCallback = Callable[[Progress], None]


@dataclass
class GatysResult:
    image: torch.Tensor  # (1, 3, H, W) in [0, 1]
    history: list[dict[str, float]]


def normalized_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    """Blend weights for ``count`` styles, normalised to sum 1 (equal when None)."""
    if weights is None:
        return [1.0 / count] * count
    weights = [float(w) for w in weights]
    if len(weights) != count:
        raise SettingsError(f"{len(weights)} style weights given for {count} style images")
    if any(w < 0 or not math.isfinite(w) for w in weights) or sum(weights) <= 0:
        raise SettingsError("style weights must be non-negative numbers with a positive sum")
    return [w / sum(weights) for w in weights]


class GatysObjective:
    """The loss of one run: targets computed once from the content and style images."""

    def __init__(
        self,
        encoder: VGG19Encoder,
        content: torch.Tensor,
        styles: Sequence[torch.Tensor],
        settings: GatysSettings,
        *,
        style_weights: Sequence[float] | None = None,
    ) -> None:
        self.encoder = encoder
        self.settings = settings
        self.layers = tuple(dict.fromkeys(settings.content_layers + settings.style_layers))
        with torch.no_grad():
            features = self._features(content)
            self.content_targets = {layer: features[layer] for layer in settings.content_layers}
            self.style_targets: dict[str, torch.Tensor] = {}
            for style, weight in zip(styles, normalized_weights(style_weights, len(styles))):
                style_features = self._features(style)
                for layer in settings.style_layers:
                    gram = weight * gram_matrix(style_features[layer], normalization=settings.gram_normalization)
                    self.style_targets[layer] = self.style_targets.get(layer, 0) + gram

    def _features(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.encoder(image, self.layers)
        scale = self.settings.feature_scale
        return {name: value * scale for name, value in features.items()} if scale != 1 else features

    def __call__(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Weighted losses of the image ``pixels`` (in the recipe's pixel space)."""
        s = self.settings
        features = self._features(pixels / s.pixel_scale)
        content = sum(
            content_loss(features[layer], target, reduction=s.content_reduction)
            for layer, target in self.content_targets.items()
        )
        style = sum(self._style_term(features[layer], target, pixels) for layer, target in self.style_targets.items())
        content_w = s.content_weight / (len(self.content_targets) if s.average_layers else 1)
        style_w = s.style_weight / (len(self.style_targets) if s.average_layers else 1)
        tv = total_variation_loss(pixels, kind=s.tv_kind) if s.tv_weight else pixels.new_zeros(())
        losses = {"content": content_w * content, "style": style_w * style, "tv": s.tv_weight * tv}
        losses["total"] = losses["content"] + losses["style"] + losses["tv"]
        return losses

    def _style_term(self, features: torch.Tensor, target: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        s = self.settings
        gram = gram_matrix(features, normalization=s.gram_normalization)
        if s.style_reduction == "keras":
            pixel_count = pixels.shape[-1] * pixels.shape[-2]
            return gram_style_loss(gram, target, reduction="paper", channels=3, positions=pixel_count)
        positions = features.shape[-1] * features.shape[-2]
        return gram_style_loss(gram, target, reduction=s.style_reduction, positions=positions)


def make_optimizer(pixels: torch.Tensor, settings: GatysSettings) -> torch.optim.Optimizer:
    if settings.optimizer == "lbfgs":
        # One iteration per step() so that progress, saving and cancelling happen between them;
        # the curvature history lives in the optimiser's state and carries over.
        return torch.optim.LBFGS([pixels], lr=settings.learning_rate, max_iter=1, history_size=100)
    if settings.optimizer == "adam":
        return torch.optim.Adam([pixels], lr=settings.learning_rate, betas=settings.adam_betas, eps=settings.adam_eps)
    return torch.optim.SGD([pixels], lr=settings.learning_rate)


def learning_rate_at(settings: GatysSettings, iteration: int) -> float:
    """The schedule's learning rate for 0-based ``iteration``."""
    if not settings.lr_decay_every:
        return settings.learning_rate
    periods = iteration / settings.lr_decay_every
    if settings.lr_decay_staircase:
        periods = math.floor(periods)
    return settings.learning_rate * settings.lr_decay**periods


def initial_image(content: torch.Tensor, settings: GatysSettings, *, seed: int) -> torch.Tensor:
    """The starting image in [0, 1]: the content, or seeded white noise (Gatys et al.)."""
    if settings.init == "content":
        return content.clone()
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(content.shape, generator=generator).to(content.device)


def optimize_image(
    content: torch.Tensor,
    styles: Sequence[torch.Tensor],
    *,
    encoder: VGG19Encoder,
    settings: GatysSettings,
    style_weights: Sequence[float] | None = None,
    init_image: torch.Tensor | None = None,
    seed: int = 0,
    callback: ProgressCallback | None = None,
) -> GatysResult:
    """Run Gatys transfer on tensors (1, 3, H, W) in [0, 1]; styles may have other sizes.

    ``init_image`` (resized to the content's size by the caller) overrides ``settings.init``.
    The callback sees every iteration and may raise :class:`painterly.errors.Cancelled`.
    """
    if not styles:
        raise SettingsError("at least one style image is needed")
    if init_image is not None and init_image.shape != content.shape:
        raise SettingsError(f"init image shape {tuple(init_image.shape)} differs from the content's {tuple(content.shape)}")
    torch.manual_seed(seed)
    objective = GatysObjective(encoder, content, styles, settings, style_weights=style_weights)
    start = init_image if init_image is not None else initial_image(content, settings, seed=seed)
    pixels = (start.detach() * settings.pixel_scale).contiguous().requires_grad_(True)
    optimizer = make_optimizer(pixels, settings)
    history: list[dict[str, float]] = []

    for iteration in range(settings.iterations):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(settings, iteration)
        reported: dict[str, torch.Tensor] = {}

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            losses = objective(pixels)
            losses["total"].backward()
            if not reported:  # the losses at the start of this iteration
                reported.update({key: value.detach() for key, value in losses.items()})
            return losses["total"]

        optimizer.step(closure)
        if settings.optimizer != "lbfgs":
            with torch.no_grad():  # keep pixels valid, as the TensorFlow blog clips each step
                pixels.clamp_(0, settings.pixel_scale)
        losses = {key: float(value) for key, value in reported.items()}
        if not math.isfinite(losses["total"]):
            raise SettingsError(
                f"the loss became {losses['total']} at iteration {iteration + 1}: "
                "lower the learning rate or the weights"
            )
        history.append({"iteration": iteration + 1, **losses})
        if callback is not None:
            image = (pixels.detach() / settings.pixel_scale).clamp(0, 1)
            callback(Progress(iteration + 1, settings.iterations, losses, image, optimizer))
    return GatysResult((pixels.detach() / settings.pixel_scale).clamp(0, 1), history)


@dataclass
class OptimizationResult:
    """What :func:`optimize` returns: the image, the loss history and how it was made."""

    image: Image.Image
    history: list[dict[str, float]]
    settings: GatysSettings
    weights: str
    seed: int
    weights_note: str | None = None

    def metadata(self) -> dict[str, Any]:
        """Settings, seed and weights, for the PNG's text chunks."""
        return {"painterly.method": "optimize", **self.settings.to_dict(), "seed": self.seed, "weights": self.weights}


def optimize(
    content: Image.Image,
    style: Image.Image | Sequence[Image.Image],
    *,
    preset: str = DEFAULT_PRESET,
    settings: GatysSettings | None = None,
    size: int | None = None,
    iterations: int | None = None,
    weights: str = "auto",
    style_weights: Sequence[float] | None = None,
    init_image: Image.Image | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    callback: ProgressCallback | None = None,
    download_progress: DownloadProgress | None = None,
    **overrides: Any,
) -> OptimizationResult:
    """Repaint ``content`` in the style of ``style`` (one image or several) by optimisation.

    Starts from the named ``preset`` (or ``settings``); ``size``, ``iterations`` and any
    :class:`GatysSettings` field given as a keyword override it. ``weights`` is a registry name,
    a file, or ``auto``: the preset's pretrained weights if cached or downloadable, else seeded
    random ones (``weights_note`` in the result says so). Style images are resized to the
    output's longer side; ``init_image`` (overriding ``init``) to the output's size.
    """
    base = settings if settings is not None else get_preset(preset)
    settings = base.updated(size=size, iterations=iterations, **overrides)
    styles = [style] if isinstance(style, Image.Image) else list(style)
    device = resolve_device(device)
    spec, note = choose_weights(weights, preferred=settings.weights, progress=download_progress)
    layer = deepest_layer(settings.content_layers + settings.style_layers)
    content_image = resize_longer_side(content, settings.size)
    plan_memory("gatys", height=content_image.height, width=content_image.width, device=device,
                layers=settings.content_layers + settings.style_layers, optimizer=settings.optimizer)
    encoder, label = load_encoder(spec, last_layer=layer, seed=seed, device=device, progress=download_progress)
    encoder = GATYS_SPEED.prepare(encoder)
    content_tensor = image_to_tensor(content_image).to(device)
    style_tensors = [image_to_tensor(resize_longer_side(s, settings.size)).to(device) for s in styles]
    init_tensor = None
    if init_image is not None:
        resized = init_image.convert("RGB").resize(content_image.size, Image.Resampling.LANCZOS)
        init_tensor = image_to_tensor(resized).to(device)
    result = optimize_image(
        content_tensor,
        style_tensors,
        encoder=encoder,
        settings=settings,
        style_weights=style_weights,
        init_image=init_tensor,
        seed=seed,
        callback=callback,
    )
    return OptimizationResult(tensor_to_image(result.image.cpu()), result.history, settings, label, seed, note)
