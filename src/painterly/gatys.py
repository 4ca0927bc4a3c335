"""Optimisation-based style transfer (Gatys, Ecker and Bethge, CVPR 2016).

The output image x itself is optimised to minimise

    L(x) = a * sum_l w_l L_content^l(x) + b * sum_l w_l L_style^l(x) + c * TV(x)

with content features taken from the content image and Gram targets from the style image(s)
(a weighted sum of their Gram matrices when there are several). Each published recipe
normalises these terms differently; :data:`PRESETS` reproduces four of them by name.

Where we depart from the recipes (each preset's ``source`` says which applies):

* Sizes are the longer side with the aspect ratio kept (Keras fixes the height at 400 and d2l
  resizes to 300x450 exactly).
* The Keras, TensorFlow and neural-style recipes use Caffe's VGG-19 (BGR, 0-255 input);
  torchvision's VGG stands in for it, its features multiplied by ``feature_scale`` (255 x 0.226;
  256 x 0.226 for neural-style, which scales pixels by 256) to bring them to Caffe's magnitude,
  so that the recipes' weights keep their balance. Everything else each preset computes is the
  recipe's code as it runs, checked term by term in tests/test_preset_fidelity.py and described
  in docs/presets.md.
* The image is optimised in the recipe's own pixel space (x times ``pixel_scale``, one number
  or one per channel), so learning rates and the total-variation weight mean what they meant
  there. The mean that the recipes subtract shifts the pixels, and a shift changes neither the
  gradients nor the steps, so it is left out; ``clamp`` keeps the valid range [0, pixel_scale].

Creative controls (:func:`optimize`; Gatys et al. 2017, "Controlling Perceptual Factors in
Neural Style Transfer", and jcjohnson/neural-style): several styles with blend weights, spatial
masks (guided Gram matrices), colour preservation (:mod:`painterly.color`), a style scale,
coarse-to-fine scales and checkpoints that a run can be resumed from.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from .color import grey, keep_luminance, prepare_colors, preserve_color_option, restore_colors
from .device import resolve_device
from .encoder import POOLINGS, VGG19Encoder, deepest_layer, load_encoder, smallest_input_side
from .errors import NonFiniteLossError, PainterlyError, SettingsError
from .files import load_torch, save_torch
from .gatys_tiles import (
    content_features_in_tiles,
    content_style_losses_in_tiles,
    layer_scales_in_tiles,
    minimum_tile,
    targets_in_tiles,
    tiled_losses,
)
from .images import (
    MIN_SIZE,
    check_masks,
    check_min_side,
    check_size,
    image_to_tensor,
    resize_longer_side,
    tensor_to_image,
)
from .options import check_options, option
from .losses import (
    channel_mean_std,
    content_loss,
    gram_matrix,
    gram_style_loss,
    masked_channel_mean_std,
    masked_gram_matrix,
    mean_std_distance,
    normalized_weights,
    quantile_loss,
    random_projections,
    sorted_projections,
    temporal_loss,
    total_variation_loss,
)
from .memory import MemoryPlan, plan_memory
from .profiles import profile_changes, resolve_profile
from .speed import GATYS_SPEED, SpeedSettings, resolve_precision
from .weights import Progress as DownloadProgress
from .weights import choose_weights

#: Brings torchvision-normalised features to the magnitude of Caffe's 0-255 network.
CAFFE_FEATURE_SCALE = 255.0 * 0.226
#: Caffe's mean pixel, RGB on the 0-255 scale (the recipes subtract it in BGR order).
CAFFE_MEAN_RGB = (123.68, 116.779, 103.939)
#: jcjohnson/neural-style multiplies [0, 1] pixels by 256 (not 255) before subtracting the mean.
NEURAL_STYLE_PIXEL_SCALE = 256.0
#: d2l optimises the ImageNet-normalised image: pixels divided by each channel's std.
IMAGENET_PIXEL_SCALE = (1 / 0.229, 1 / 0.224, 1 / 0.225)
INIT_CHOICES = ("content", "noise", "gaussian")
LOW_PRECISION = (torch.bfloat16, torch.float16)
CLAMP_CHOICES = ("auto", "never", "step", "closure")
STANDARD_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
#: What each style layer's statistics are compared by (:mod:`painterly.losses`).
STYLE_LOSSES = ("gram", "mean-std", "sliced-wasserstein", "histogram")
#: Style losses whose statistics can be taken inside a mask (guided statistics).
MASKABLE_STYLE_LOSSES = ("gram", "mean-std")


@dataclass(frozen=True)
class GatysSettings:
    """Everything that defines an optimisation run; presets are instances of it."""

    content_layers: tuple[str, ...] = option(("relu4_2",), metavar="LAYER", help="e.g. relu4_2")
    style_layers: tuple[str, ...] = option(STANDARD_STYLE_LAYERS, metavar="LAYER", help="e.g. relu1_1 relu2_1 relu3_1")
    content_weight: float = option(5.0, minimum=0.0, help="content loss weight")
    style_weight: float = option(100.0, minimum=0.0, help="style loss weight")
    tv_weight: float = option(1e-3, minimum=0.0, studio=True,
                              help="total-variation (smoothing) weight (default: {default})")
    #: Divide each term's weight by its number of layers (Keras, TensorFlow blog).
    average_layers: bool = False
    gram_normalization: str = "channels_positions"
    #: ``mean`` (MSE of Grams), ``paper`` (sum / 4 C^2 M^2) or ``keras`` (paper with C = 3, M = pixels).
    style_reduction: str = "mean"
    content_reduction: str = "mean"
    tv_kind: str = "squared"
    feature_scale: float = option(CAFFE_FEATURE_SCALE, positive=True, metavar="S",
                                  help="multiply the encoder's features by S (255 x 0.226 makes torchvision's VGG speak "
                                  "Caffe's magnitudes)")
    #: The optimised variable is the [0, 1] image times this: one number, or one per channel (RGB).
    pixel_scale: float | tuple[float, ...] = option(
        255.0, positive=True, metavar="S",
        help="optimise the [0, 1] image times S (one number, or one per channel R G B): the recipe's pixel space, "
        "in which its learning rate and TV weight are meant")
    optimizer: str = option("lbfgs", choices=("lbfgs", "adam", "sgd"), help="default: {default}")
    learning_rate: float = option(1.0, positive=True, help="default: {default}")
    #: Learning rate times ``lr_decay`` every ``lr_decay_every`` iterations (0: constant).
    lr_decay: float = option(1.0, positive=True, metavar="RATE",
                             help="multiply the learning rate by RATE every --lr-decay-every steps; 'none' (or 1) "
                             "switches a preset's decay off")
    lr_decay_every: int = option(0, minimum=0, metavar="N", help="steps per decay (0: never)")
    #: Step the decay every ``lr_decay_every`` iterations, or smoothly (Keras's ExponentialDecay).
    lr_decay_staircase: bool = True
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    iterations: int = option(1000, minimum=1, studio=True, studio_default=100, studio_maximum="max_iterations",
                             help="optimisation steps at each scale (default: {default})")
    size: int = option(512, minimum=MIN_SIZE, studio=True, studio_default=256, studio_maximum="max_size",
                       help="longer side of the output in pixels (default: {default})")
    #: ``content``, ``noise`` (uniform in [0, 1]) or ``gaussian`` (neural-style's ``-init random``:
    #: Caffe's mean colour plus Gaussian noise of std 0.001 on its 0-256 scale).
    init: str = option("noise", choices=INIT_CHOICES, studio=True, studio_choices=("content", "noise"),
                       studio_default="content",
                       help="start from 'content', 'noise' (uniform), 'gaussian' (neural-style's: the mean colour plus "
                       "tiny Gaussian noise), or an image file (default: {default})")
    # -- Fidelity to the recipes' code (docs/presets.md) --------------------------------------
    #: When the pixels are clamped to [0, pixel_scale]: ``never``; ``step``, after each optimiser
    #: step (the TensorFlow blog); ``closure``, before every loss evaluation, L-BFGS's included
    #: (the PyTorch tutorial); ``auto``: ``step`` for Adam and SGD, ``never`` for L-BFGS.
    clamp: str = option("auto", choices=CLAMP_CHOICES,
                        help="clamp the pixels to the image's range: never, after each step (TensorFlow blog), or "
                        "before every loss evaluation, L-BFGS's too (PyTorch tutorial); auto: after each step for "
                        "Adam and SGD, never for L-BFGS (default: {default})")
    #: Add ``adam_eps`` to sqrt(v) before Adam's bias correction, as TensorFlow 1's Adam does
    #: (torch adds it after: the same step as torch with eps / sqrt(1 - beta2^t)).
    adam_eps_hat: bool = False
    # ------------------------------------------------------------------------------------------
    #: The encoder weights the recipe was designed for.
    weights: str = "vgg19"
    #: Colour control (:func:`painterly.color.prepare_colors`): ``none``, ``luminance`` or ``match``.
    preserve_color: str = preserve_color_option()
    #: Keep the content's luminance, take the stylised result's chroma (:func:`painterly.color.keep_luminance`).
    transfer_color_only: bool = option(False, help="the opposite: keep the content's luminance (detail, shading) and "
                                       "take only the stylised result's chroma")
    #: The style images' longer side as a multiple of the output's, at every scale.
    style_scale: float = option(1.0, positive=True,
                                help="style images' longer side as a multiple of the output's (default: {default}; "
                                "smaller gives finer brush strokes)")
    #: Coarse-to-fine optimisation: how many scales, the first one's longer side (default: halve
    #: per scale), and iterations at each scale (default: ``iterations`` at every scale).
    scales: int = option(1, minimum=1, help="coarse-to-fine optimisation over this many sizes, each starting from the "
                         "previous result upsampled (default: {default})")
    start_size: int | None = option(None, metavar="PX",
                                    help="longer side at the first scale (default: SIZE halved per extra scale)")
    iterations_per_scale: tuple[int, ...] = option(
        (), minimum=1, metavar="N",
        help="iterations at each scale, coarse to fine (default: --iterations at every scale)")
    #: neural-style's ``-normalize_gradients``: each content and style term's gradient with
    #: respect to its layer's features is divided by its L1 norm before its weight applies.
    normalize_gradients: bool = option(False, help="neural-style's -normalize_gradients: each content and style "
                                       "term's gradient is divided by its L1 norm before its weight applies")
    #: Steps of curvature history L-BFGS keeps (neural-style's ``-lbfgs_num_correction``; 100,
    #: torch's and optim.lbfgs's default). Each holds two image-sized tensors.
    lbfgs_history: int = option(100, minimum=1, metavar="N",
                                help="steps of curvature history L-BFGS keeps, two image-sized tensors each "
                                "(neural-style's -lbfgs_num_correction; default: {default})")
    #: ``gram`` (Gatys et al.), ``mean-std`` (channel means and stds, as AdaIN's loss),
    #: ``sliced-wasserstein`` (Heitz et al. 2021) or ``histogram`` (Risser et al. 2017).
    style_loss: str = option("gram", choices=STYLE_LOSSES, studio=True,
                             help="how style statistics are compared: gram (Gatys et al.), mean-std (channel means and "
                             "stds), sliced-wasserstein (Heitz et al. 2021) or histogram (Risser et al. 2017); masks work "
                             "with gram and mean-std (default: {default})")
    #: One weight per style layer, multiplying that layer's style term (empty: 1 for every layer).
    style_layer_weights: tuple[float, ...] = option(
        (), minimum=0.0, metavar="W", help="one weight per style layer, multiplying its style term (default: 1 each)")
    #: Calibrate every layer on the content image (once per scale; deterministic): features are
    #: divided by their root mean square there, and each style layer's term by the content
    #: image's own style loss at that layer, so every layer and every style loss starts at 1.
    calibrate_layers: bool = option(False, help="scale every layer's features to unit size on the content image and "
                                    "each style layer's term by the content's own style loss there")
    #: The encoder's 2x2 pooling: ``max`` (torchvision's VGG) or ``avg`` (Gatys et al. 2016).
    pooling: str = option("max", choices=POOLINGS, help="the encoder's pooling: max (torchvision's VGG) or avg "
                          "(Gatys et al.); the weights stay the same (default: {default})")
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        check_options(self)  # choices and bounds, as each field declares them
        deepest_layer(self.content_layers + self.style_layers)  # raises on unknown layer names
        scales = self.pixel_scale if isinstance(self.pixel_scale, tuple) else (self.pixel_scale,)
        if len(scales) not in (1, 3):
            raise SettingsError(f"pixel_scale must be one number or three, got {self.pixel_scale}")
        if self.transfer_color_only and self.preserve_color != "none":
            raise SettingsError("transfer_color_only takes the style's colours: it cannot be combined with preserve_color")
        if self.start_size is not None and not MIN_SIZE <= self.start_size <= self.size:
            raise SettingsError(f"start_size must be between {MIN_SIZE} and size ({self.size}), got {self.start_size}")
        if self.iterations_per_scale and len(self.iterations_per_scale) != self.scales:
            raise SettingsError(f"{len(self.iterations_per_scale)} iterations_per_scale given for {self.scales} scales")
        if self.style_layer_weights and len(self.style_layer_weights) != len(self.style_layers):
            raise SettingsError(f"{len(self.style_layer_weights)} style_layer_weights given for {len(self.style_layers)} style layers")

    def clamps_after_step(self) -> bool:
        """Whether the pixels are clamped after each optimiser step (``clamp`` resolved)."""
        return self.clamp == "step" or (self.clamp == "auto" and self.optimizer != "lbfgs")

    def updated(self, **changes: Any) -> "GatysSettings":
        """A copy with ``changes`` applied (None values ignored, so CLI defaults pass through)."""
        return replace(self, **{key: value for key, value in changes.items() if value is not None})

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if key != "source"}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "GatysSettings":
        """The inverse of :meth:`to_dict` (lists, as JSON gives them back, become tuples).

        ``values`` may also be a whole output's metadata (:func:`painterly.read_metadata`, told
        apart by its ``painterly.method`` key): its settings are taken and the rest (seed,
        weights, inputs ...) left. Anywhere else an unknown key is an error, so a misspelt
        setting is never silently dropped. Settings added since the output was made keep their
        defaults.
        """
        names = {f.name for f in fields(cls) if f.name != "source"}
        if "painterly.method" in values:
            # There ``weights`` names the weights used, not the recipe's choice: the preset's is.
            preset = PRESETS.get(values.get("preset"), cls())
            values = {key: value for key, value in values.items() if key in names} | {"weights": preset.weights}
        unknown = set(values) - names
        if unknown:
            raise SettingsError(f"unknown settings: {', '.join(sorted(unknown))}")
        return cls(**{key: tuple(v) if isinstance(v, list) else v for key, v in values.items()})

    def scale_sizes(self) -> list[int]:
        """Longer side at each scale, coarse to fine: geometric from ``start_size`` to ``size``."""
        if self.scales == 1:
            return [self.size]
        start = self.start_size or max(MIN_SIZE, round(self.size / 2 ** (self.scales - 1)))
        ratio = (self.size / start) ** (1 / (self.scales - 1))
        return [round(start * ratio**k) for k in range(self.scales - 1)] + [self.size]

    def scale_iterations(self) -> list[int]:
        """Iterations at each scale."""
        return list(self.iterations_per_scale) or [self.iterations] * self.scales


PRESETS: dict[str, GatysSettings] = {
    "gatys2016": GatysSettings(
        tv_kind="neural_style",
        feature_scale=NEURAL_STYLE_PIXEL_SCALE * 0.226,
        pixel_scale=NEURAL_STYLE_PIXEL_SCALE,
        init="gaussian",
        clamp="never",
        source="Gatys et al. 2016 as jcjohnson/neural-style's code runs: Gram / (C H W), MSE terms, "
        "TV whose gradient is that of 1/2 sum (dx^2 + dy^2) on 0-256 pixels (it scales by 256), L-BFGS "
        "(step 1, 100 corrections) from the mean colour plus N(0, 0.001^2), never clamped",
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
        clamp="never",
        source="Keras example 'Neural style transfer': block5_conv2 content, raw Grams with "
        "sum / (4 * 3^2 * (HW)^2), TV (dx^2 + dy^2)^1.25, SGD 100 x 0.96^(step/100), never clipped "
        "while it runs (only when saved)",
    ),
    "d2l": GatysSettings(
        # d2l collects torchvision's features[25] and [0, 5, 10, 19], but the in-place ReLU after
        # each overwrites it: as the code runs these are relu layers; features[28] is the last
        # module kept, so conv5_1 stays before its ReLU.
        content_layers=("relu4_4",),
        style_layers=("relu1_1", "relu2_1", "relu3_1", "relu4_1", "conv5_1"),
        content_weight=1.0,
        style_weight=1e4,  # 1e3 as written, but sum(10 * styles_l + ...) repeats the list ten times
        tv_weight=10.0,
        tv_kind="absolute_mean",
        feature_scale=1.0,
        pixel_scale=IMAGENET_PIXEL_SCALE,
        optimizer="adam",
        learning_rate=0.3,
        lr_decay=0.8,
        lr_decay_every=50,
        iterations=500,
        size=450,
        init="content",
        clamp="never",
        source="Dive into Deep Learning, 'Neural Style Transfer', as its code runs: relu4_4 content, "
        "relu1_1-relu4_1 + conv5_1 style (its in-place ReLUs overwrite the conv outputs it collects), "
        "style weight 1e4 (the text's 1e3 times its list repeated 10 times), Gram / (C H W), MSE terms, "
        "TV 0.5 (mean |dx| + mean |dy|) on the normalised image, Adam 0.3 x 0.8 every 50 steps, never clamped",
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
        adam_eps_hat=True,
        iterations=1000,
        size=512,
        init="content",
        clamp="step",
        source="TensorFlow blog, eager execution: Gram / M, MSE terms averaged over layers, "
        "no TV, TensorFlow 1's Adam (lr 5, beta1 0.99, eps 0.1 before bias correction), pixels "
        "clipped to 0-255 each step; it returns its lowest-loss image, painterly the last",
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

    iteration: int  # 1-based, within the current scale
    iterations: int  # at the current scale
    losses: dict[str, float]
    image: torch.Tensor  # (1, 3, H, W) in [0, 1], detached
    optimizer: torch.optim.Optimizer | None = None
    scale: int = 1  # 1-based, coarse to fine
    scales: int = 1
    #: Returns a checkpoint of the run as it stands, for :func:`save_checkpoint`. It shares
    #: tensors with the live run: save it before the next iteration.
    checkpoint: Callable[[], dict[str, Any]] | None = None


ProgressCallback = Callable[[Progress], None]


@dataclass
class GatysResult:
    image: torch.Tensor  # (1, 3, H, W) in [0, 1]
    history: list[dict[str, float]]


class GatysObjective:
    """The loss of one run: targets computed once from the content and style images.

    Each style layer compares a statistic of the output's features with a target, by
    ``settings.style_loss``: the Gram matrix, the channel means and stds, or the sorted 1-D
    projections (sliced Wasserstein: seeded random directions; histogram: the channels). Without
    masks the target is the blend sum_k w_k T_k of the styles' statistics (for the sorted
    projections, quantile functions resampled to the output's positions: a blend of quantile
    functions is the 1-D Wasserstein barycentre). With ``masks`` (one (1, 1, H, W) soft mask per
    style, the content's size; Gram and mean-std only) each style has its own term, weighted by
    w_k: the output's statistics inside the style's region (the mask shrunk to each layer by
    area averaging) against those of the whole style image (Gatys et al. 2017).
    With ``tile_size`` (Gram and mean-std only) the targets, and the calibration, are computed
    tile by tile (:mod:`painterly.gatys_tiles`).
    """

    def __init__(
        self,
        encoder: VGG19Encoder,
        content: torch.Tensor,
        styles: Sequence[torch.Tensor],
        settings: GatysSettings,
        *,
        style_weights: Sequence[float] | None = None,
        masks: Sequence[torch.Tensor] | None = None,
        seed: int = 0,
        tile_size: int | None = None,
    ) -> None:
        self.encoder = encoder
        self.tile_size = tile_size
        self.settings = settings
        self.pixel_scale = pixel_scale(settings, content)
        self.layers = tuple(dict.fromkeys(settings.content_layers + settings.style_layers))
        self.style_layers = tuple(dict.fromkeys(settings.style_layers))
        weights = settings.style_layer_weights or (1.0,) * len(settings.style_layers)
        self.layer_weights = dict(zip(settings.style_layers, weights))
        blend = normalized_weights(style_weights, len(styles))
        if masks is not None and len(masks) != len(styles):
            raise SettingsError(f"{len(masks)} masks given for {len(styles)} style images")
        if masks is not None and settings.style_loss not in MASKABLE_STYLE_LOSSES:
            raise SettingsError(f"masks work with the {' and '.join(MASKABLE_STYLE_LOSSES)} style losses, "
                                f"not {settings.style_loss}: its statistics are not taken inside a region")
        for mask in masks or ():
            if mask.dim() != 4 or mask.shape[:2] != (1, 1) or mask.shape[-2:] != content.shape[-2:]:
                raise SettingsError(f"mask shape {tuple(mask.shape)} does not match the content's {tuple(content.shape[-2:])}")
        self.calibration: dict[str, float] = {}
        #: One entry per style term: (weight, {layer: target statistics}, {layer: mask} or None).
        self.style_terms: list[tuple[float, dict[str, torch.Tensor], dict[str, torch.Tensor] | None]] = []
        with torch.no_grad():
            if settings.calibrate_layers:
                self.calibration = self._layer_scales(content)
            if tile_size is None:
                features = self._features(content)
                shapes = {layer: features[layer].shape[-2:] for layer in self.layers}
            else:
                features, shapes = content_features_in_tiles(self, content, tile_size=tile_size)
            self.positions = {layer: shapes[layer][0] * shapes[layer][1] for layer in self.style_layers}
            self.projections = {}
            if settings.style_loss == "sliced-wasserstein":
                self.projections = {
                    layer: random_projections(features[layer].shape[1], features[layer].shape[1], seed=seed + index,
                                              dtype=features[layer].dtype).to(content.device)
                    for index, layer in enumerate(self.style_layers)
                }
            self.content_targets = {layer: features[layer] for layer in settings.content_layers}
            targets = [self._style_targets(style) for style in styles]
            if masks is None:
                blended = {layer: sum(w * t[layer] for w, t in zip(blend, targets)) for layer in self.style_layers}
                self.style_terms.append((1.0, blended, None))
            else:
                for weight, target, mask in zip(blend, targets, masks):
                    shrunk = {layer: F.adaptive_avg_pool2d(mask, shapes[layer]) for layer in self.style_layers}
                    self.style_terms.append((weight, target, shrunk))
            #: Each style layer's term is divided by this (1 unless calibrated).
            self.style_norms = {layer: 1.0 for layer in self.style_layers}
            if settings.calibrate_layers:
                self.style_norms = self._content_style_losses(content, features)

    def _layer_scales(self, content: torch.Tensor) -> dict[str, float]:
        """Per-layer scale from the content image: deterministic, and every layer's features
        then have a root mean square of 1 on it."""
        if self.tile_size is not None:
            return layer_scales_in_tiles(self, content, tile_size=self.tile_size)
        raw = self.encoder(content, self.layers)
        return {layer: float(value.float().pow(2).mean().sqrt().clamp_min(1e-12)) for layer, value in raw.items()}

    def _content_style_losses(self, content: torch.Tensor, features: dict[str, torch.Tensor]) -> dict[str, float]:
        """The content image's own style loss at each layer (``features``: its calibrated ones,
        unless tiled): every layer then starts at 1 whatever its size, depth or loss, so
        style_weight means the same for all losses."""
        if self.tile_size is not None:
            return content_style_losses_in_tiles(self, content, tile_size=self.tile_size)
        return {layer: max(float(self._layer_style_loss(features, layer, content * self.pixel_scale)), 1e-12)
                for layer in self.style_layers}

    def _features(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.encoder(image, self.layers)
        # The network may run in bfloat16 (autocast); the Grams and losses do not: in float32,
        # a Gram sums H W products and the losses differences of nearly equal numbers.
        features = {name: value.float() if value.dtype in LOW_PRECISION else value for name, value in features.items()}
        scale = self.settings.feature_scale
        if self.calibration:
            return {name: value / self.calibration[name] for name, value in features.items()}
        return {name: value * scale for name, value in features.items()} if scale != 1 else features

    def _statistics(self, features: torch.Tensor, layer: str, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The statistics ``style_loss`` compares at ``layer`` (inside ``mask`` when given)."""
        s = self.settings
        if s.style_loss == "gram":
            if mask is None:
                return gram_matrix(features, normalization=s.gram_normalization)
            return masked_gram_matrix(features, mask, normalization=s.gram_normalization)
        if s.style_loss == "mean-std":
            return torch.stack(channel_mean_std(features) if mask is None else masked_channel_mean_std(features, mask))
        return sorted_projections(features, self.projections.get(layer))

    def _style_targets(self, style: torch.Tensor) -> dict[str, torch.Tensor]:
        """A style image's target statistics at every style layer (tile by tile with tiles)."""
        if self.tile_size is not None:
            return targets_in_tiles(self, style, tile_size=self.tile_size)
        return self._targets(self._features(style))

    def _targets(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        with torch.autocast(next(iter(features.values())).device.type, enabled=False):  # statistics in float32
            targets = {layer: self._statistics(features[layer], layer) for layer in self.style_layers}
        if self.settings.style_loss in ("sliced-wasserstein", "histogram"):
            # Quantile functions resampled to the output's positions once, so they blend and
            # each step compares sorted values directly.
            targets = {layer: F.interpolate(t, size=self.positions[layer], mode="linear", align_corners=True)
                       for layer, t in targets.items()}
        return targets

    def __call__(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Weighted losses of the image ``pixels`` (in the recipe's pixel space)."""
        features = self._features(pixels / self.pixel_scale)
        with torch.autocast(pixels.device.type, enabled=False):  # Grams and losses in float32
            return self._losses(features, pixels)

    def _losses(self, features: dict[str, torch.Tensor], pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """The weighted terms from the image's (float32) features."""
        s = self.settings
        content_w = s.content_weight / (len(self.content_targets) if s.average_layers else 1)
        style_w = s.style_weight / (len(self.style_layers) if s.average_layers else 1)

        def seen(layer: str, strength: float) -> torch.Tensor:
            return normalized_gradient(features[layer], strength) if s.normalize_gradients else features[layer]

        content = sum(
            content_loss(seen(layer, content_w), target, reduction=s.content_reduction)
            for layer, target in self.content_targets.items()
        )
        style = sum(
            self.layer_weights[layer] / self.style_norms[layer] * self._layer_style_loss(
                features, layer, pixels,
                strength=style_w * self.layer_weights[layer] / self.style_norms[layer] if s.normalize_gradients else None,
            )
            for layer in self.style_layers
        )
        tv = total_variation_loss(pixels, kind=s.tv_kind) if s.tv_weight else pixels.new_zeros(())
        losses = {"content": content_w * content, "style": style_w * style, "tv": s.tv_weight * tv}
        losses["total"] = losses["content"] + losses["style"] + losses["tv"]
        return losses

    def _layer_style_loss(self, features: dict[str, torch.Tensor], layer: str, pixels: torch.Tensor, *,
                          strength: float | None = None) -> torch.Tensor:
        """sum_k w_k L_style(features at ``layer``, style k's target), over the style terms; with
        ``strength`` (the term's weight before w_k), each term's gradient is normalised to it."""

        def seen(weight: float) -> torch.Tensor:
            return features[layer] if strength is None else normalized_gradient(features[layer], weight * strength)

        return sum(
            weight * self._style_term(seen(weight), layer, targets[layer], None if masks is None else masks[layer], pixels)
            for weight, targets, masks in self.style_terms
        )

    def _style_term(
        self, features: torch.Tensor, layer: str, target: torch.Tensor, mask: torch.Tensor | None, pixels: torch.Tensor
    ) -> torch.Tensor:
        s = self.settings
        statistics = self._statistics(features, layer, mask)
        if s.style_loss == "mean-std":
            return mean_std_distance((statistics[0], statistics[1]), (target[0], target[1]))
        if s.style_loss != "gram":
            return quantile_loss(statistics, target)
        if s.style_reduction == "keras":
            pixel_count = pixels.shape[-1] * pixels.shape[-2]
            return gram_style_loss(statistics, target, reduction="paper", channels=3, positions=pixel_count)
        return gram_style_loss(statistics, target, reduction=s.style_reduction, positions=self.positions[layer])


class _NormalizedGradient(torch.autograd.Function):
    """Identity forward; backward g -> strength g / (||g||_1 + 1e-8) (neural-style's
    ``-normalize_gradients``, which divides each loss module's gradient by its L1 norm and then
    multiplies by the module's weight)."""

    @staticmethod
    def forward(ctx: Any, features: torch.Tensor, strength: float) -> torch.Tensor:
        ctx.strength = strength
        return features.view_as(features)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad / (grad.abs().sum() + 1e-8) * ctx.strength, None


def normalized_gradient(features: torch.Tensor, strength: float) -> torch.Tensor:
    """``features``, whose gradient from one loss term is rescaled to L1 norm ``strength``.

    The term's own weight multiplies its gradient before it gets here and the L1 norm divides
    it out again, so ``strength`` must be that weight: the result is neural-style's
    ``w * dL/df / ||dL/df||_1``.
    """
    return _NormalizedGradient.apply(features, float(strength))


def make_optimizer(pixels: torch.Tensor, settings: GatysSettings) -> torch.optim.Optimizer:
    if settings.optimizer == "lbfgs":
        # One iteration per step() so that progress, saving and cancelling happen between them;
        # the curvature history lives in the optimiser's state and carries over.
        return torch.optim.LBFGS([pixels], lr=settings.learning_rate, max_iter=1, history_size=settings.lbfgs_history)
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
    """The starting image in [0, 1]: the content, seeded uniform noise (Gatys et al.), or
    neural-style's ``-init random``: randn x 0.001 in Caffe's mean-subtracted 0-256 space, that is
    the mean colour plus noise of std 0.001 / 256 (the values of Torch's generator differ)."""
    if settings.init == "content":
        return content.clone()
    generator = torch.Generator().manual_seed(seed)
    if settings.init == "gaussian":
        mean = torch.tensor(CAFFE_MEAN_RGB).view(1, 3, 1, 1) / NEURAL_STYLE_PIXEL_SCALE
        noise = torch.randn(content.shape, generator=generator) * (0.001 / NEURAL_STYLE_PIXEL_SCALE)
        return (mean + noise).to(content.device)
    return torch.rand(content.shape, generator=generator).to(content.device)


def pixel_scale(settings: GatysSettings, like: torch.Tensor) -> float | torch.Tensor:
    """``settings.pixel_scale`` as a number, or a (1, 3, 1, 1) tensor on ``like``'s device."""
    if isinstance(settings.pixel_scale, tuple):
        return torch.tensor(settings.pixel_scale, dtype=torch.float32, device=like.device).view(1, 3, 1, 1)
    return settings.pixel_scale


def clamp_pixels(pixels: torch.Tensor, scale: float | torch.Tensor) -> None:
    """Clamp the optimised pixels, in place, to the image's range [0, scale]."""
    with torch.no_grad():
        pixels.clamp_(min=0).clamp_(max=scale)


def schedule(optimizer: torch.optim.Optimizer, settings: GatysSettings, iteration: int) -> None:
    """Set the learning rate (and TensorFlow's eps, see ``adam_eps_hat``) for 0-based ``iteration``."""
    for group in optimizer.param_groups:
        group["lr"] = learning_rate_at(settings, iteration)
        if settings.adam_eps_hat and settings.optimizer == "adam":
            group["eps"] = settings.adam_eps / math.sqrt(1 - settings.adam_betas[1] ** (iteration + 1))


#: A function of the optimised pixels giving named losses, ``total`` among them. Its total
#: carries the gradient, or (tiles) the gradient is in the pixels' ``.grad`` already.
Objective = Callable[[torch.Tensor], dict[str, torch.Tensor]]


def optimize_pixels(
    objective: Objective,
    pixels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    *,
    settings: GatysSettings,
    pixel_scale: float | torch.Tensor,
    start: int = 0,
    on_iteration: Callable[[int, dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Descend ``objective`` from ``pixels`` (a leaf the ``optimizer`` owns) for iterations
    ``start`` to ``settings.iterations``, with its learning-rate schedule and clamping.

    Returns one row of losses per iteration, those at the iteration's start; ``on_iteration``
    (1-based iteration, losses) sees each row as it comes and may raise to stop the run.
    """
    history: list[dict[str, float]] = []
    for iteration in range(start, settings.iterations):
        schedule(optimizer, settings, iteration)
        reported: dict[str, torch.Tensor] = {}

        def closure() -> torch.Tensor:
            if settings.clamp == "closure":  # as the PyTorch tutorial, before every evaluation
                clamp_pixels(pixels, pixel_scale)
            optimizer.zero_grad()
            losses = objective(pixels)
            if losses["total"].requires_grad:  # else a tiled objective has filled pixels.grad
                losses["total"].backward()
            if not reported:  # the losses at the start of this iteration
                reported.update({key: value.detach() for key, value in losses.items()})
            return losses["total"]

        optimizer.step(closure)
        if settings.clamps_after_step():  # keep pixels valid, as the TensorFlow blog clips each step
            clamp_pixels(pixels, pixel_scale)
        # one device-to-host copy for all the terms, not one per term (a sync each on a GPU)
        losses = dict(zip(reported, torch.stack(list(reported.values())).tolist()))
        if not math.isfinite(losses["total"]):
            raise NonFiniteLossError(
                f"the loss became {losses['total']} at iteration {iteration + 1}: "
                "lower the learning rate or the weights"
            )
        history.append({"iteration": iteration + 1, **losses})
        if on_iteration is not None:
            on_iteration(iteration + 1, losses)
    return history


def pixel_objective(
    objective: GatysObjective,
    *,
    settings: GatysSettings,
    speed: SpeedSettings = GATYS_SPEED,
    tile_size: int | None = None,
    temporal: tuple[torch.Tensor, torch.Tensor, float] | None = None,
) -> Objective:
    """``objective`` as :func:`optimize_pixels` drives it: under ``speed``'s precision, in tiles
    of ``tile_size`` (:func:`painterly.gatys_tiles.tiled_losses`, which fills the pixels'
    gradient itself), plus ``temporal`` (target, mask, weight)'s term when given."""

    def losses_of(pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        if tile_size is not None:  # statistics over the tiles, then each tile's gradient
            losses = tiled_losses(objective, pixels, tile_size=tile_size, speed=speed)
        else:
            with speed.running(pixels.device, grad=True):
                losses = objective(pixels)
        if temporal is not None:
            target, mask, weight = temporal
            losses["temporal"] = weight * temporal_loss(pixels / settings.pixel_scale, target, mask)
            losses["total"] = losses["total"] + losses["temporal"]
        return losses

    return losses_of


@dataclass
class RunRecord:
    """What a checkpoint records about the whole run of :func:`optimize`, besides the optimiser's
    state: its settings, seed, weights, profile, inputs, the scale it is at and the loss history
    so far (the run's list, growing as it goes)."""

    settings: GatysSettings
    seed: int
    weights: str
    profile: str | None
    inputs: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    scale: int = 1


@dataclass(frozen=True)
class Checkpoint:
    """A run as it stands after an iteration: the optimised pixels (in the recipe's pixel space),
    the optimiser's state, the iteration within the scale and, from :func:`optimize`, the run's
    :class:`RunRecord`. :meth:`to_dict` is what :func:`save_checkpoint` writes and ``resume`` reads."""

    pixels: torch.Tensor
    optimizer: dict[str, Any]
    iteration: int
    record: RunRecord | None = None

    def to_dict(self) -> dict[str, Any]:
        state = {"pixels": self.pixels, "optimizer": self.optimizer, "iteration": self.iteration}
        if self.record is None:  # optimize_image called alone: this scale's state, nothing to resume
            return state
        record = self.record
        return {**state, "format": CHECKPOINT_FORMAT, "settings": record.settings.to_dict(), "seed": record.seed,
                "weights": record.weights, "profile": record.profile, "scale": record.scale,
                "history": list(record.history), "inputs": record.inputs}


def _starting_pixels(content: torch.Tensor, settings: GatysSettings, scale: float | torch.Tensor, *,
                     init_image: torch.Tensor | None, resume: Mapping[str, Any] | None, seed: int) -> tuple[torch.Tensor, int]:
    """The optimised variable (pixels times ``scale``, a fresh leaf) and the iterations done."""
    if resume is not None:
        start, done = resume["pixels"].to(content), int(resume["iteration"])
        if start.shape != content.shape:
            raise SettingsError(
                f"the checkpoint's image is {tuple(start.shape)}, this run's {tuple(content.shape)}: "
                "resume with the same content image and size"
            )
    else:
        start = scale * (init_image if init_image is not None else initial_image(content, settings, seed=seed))
        done = 0
    return start.detach().clone().contiguous().requires_grad_(True), done


def optimize_image(
    content: torch.Tensor,
    styles: Sequence[torch.Tensor],
    *,
    encoder: VGG19Encoder,
    settings: GatysSettings,
    style_weights: Sequence[float] | None = None,
    masks: Sequence[torch.Tensor] | None = None,
    init_image: torch.Tensor | None = None,
    resume: Mapping[str, Any] | None = None,
    seed: int = 0,
    speed: SpeedSettings = GATYS_SPEED,
    callback: ProgressCallback | None = None,
    temporal: tuple[torch.Tensor, torch.Tensor, float] | None = None,
    tile_size: int | None = None,
    record: RunRecord | None = None,
) -> GatysResult:
    """Run Gatys transfer at one scale on tensors (1, 3, H, W) in [0, 1]; styles may have other sizes.

    ``init_image`` (resized to the content's size by the caller) overrides ``settings.init``.
    ``masks`` (one per style, see :class:`GatysObjective`) confine each style to a region.
    ``resume``, a checkpoint from :attr:`Progress.checkpoint`, continues that run from its
    pixels, optimiser state and iteration: the same run split in two gives the same pixels.
    The losses are computed under ``speed``'s precision (the caller prepares ``encoder`` with
    :meth:`SpeedSettings.prepare`); gradients flow back outside autocast, the pixels stay float32.
    The callback sees every iteration and may raise :class:`painterly.errors.Cancelled`.
    ``temporal`` (target, mask, weight) adds weight x :func:`painterly.losses.temporal_loss`
    (video: the previous frame's result warped onto this one, Ruder et al. 2016).
    ``tile_size``: compute each iteration in tiles of at most that side (:mod:`painterly.gatys_tiles`),
    the same loss and gradient as one pass up to rounding, in the memory of a tile.
    ``record``: the whole run's part of the checkpoints (:func:`optimize` gives it).
    """
    if not styles:
        raise SettingsError("at least one style image is needed")
    if init_image is not None and init_image.shape != content.shape:
        raise SettingsError(f"init image shape {tuple(init_image.shape)} differs from the content's {tuple(content.shape)}")
    torch.manual_seed(seed)
    with speed.running(content.device, grad=True):
        objective = GatysObjective(encoder, content, styles, settings, style_weights=style_weights, masks=masks, seed=seed,
                                   tile_size=tile_size)
    scale = objective.pixel_scale
    pixels, done = _starting_pixels(content, settings, scale, init_image=init_image, resume=resume, seed=seed)
    optimizer = make_optimizer(pixels, settings)
    if resume is not None:
        try:
            optimizer.load_state_dict(resume["optimizer"])
        except (ValueError, KeyError) as error:
            raise SettingsError(f"the checkpoint's optimiser state does not fit this run ({error})") from None

    def report(iteration: int, losses: dict[str, float]) -> None:
        if callback is None:
            return

        def checkpoint() -> dict[str, Any]:
            return Checkpoint(pixels.detach(), optimizer.state_dict(), iteration, record).to_dict()

        callback(Progress(iteration, settings.iterations, losses, (pixels.detach() / scale).clamp(0, 1), optimizer,
                          checkpoint=checkpoint))

    losses_of = pixel_objective(objective, settings=settings, speed=speed, tile_size=tile_size, temporal=temporal)
    history = optimize_pixels(losses_of, pixels, optimizer, settings=settings, pixel_scale=scale, start=done,
                              on_iteration=report)
    return GatysResult((pixels.detach() / scale).clamp(0, 1), history)


CHECKPOINT_FORMAT = "painterly optimize checkpoint 1"
#: What :func:`load_checkpoint` insists on (``inputs``, added later, is optional).
CHECKPOINT_KEYS = ("pixels", "optimizer", "iteration", "settings", "seed", "weights", "scale", "history")
#: What a resumed run may change: how long it runs.
RESUMABLE_CHANGES = ("iterations", "iterations_per_scale")


def save_checkpoint(checkpoint: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write a checkpoint (from :attr:`Progress.checkpoint`) with ``torch.save``, atomically.

    With L-BFGS it holds the curvature history (up to 200 image-sized tensors), so it can be
    much larger than the image; Adam's holds two image-sized tensors.
    """
    return save_torch(dict(checkpoint), path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors only, nothing executable)."""
    if not Path(path).is_file():
        raise PainterlyError(f"{path}: no such checkpoint")
    checkpoint = load_torch(path, what="a painterly checkpoint")
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise PainterlyError(f"{path}: not a painterly optimize checkpoint")
    missing = [key for key in CHECKPOINT_KEYS if key not in checkpoint]
    if missing:
        raise PainterlyError(f"{path}: an incomplete painterly checkpoint (no {', '.join(missing)})")
    return checkpoint


def input_digests(content: Image.Image, styles: Sequence[Image.Image], masks: Sequence[Image.Image] | None,
                  init_image: Image.Image | None) -> dict[str, Any]:
    """SHA-256 of every input image's pixels (and size and mode), recorded in checkpoints so a
    resumed run can refuse different inputs. Pixels, not file bytes: the Python API has no files,
    and a re-saved file with the same pixels is the same input."""

    def digest(image: Image.Image) -> str:
        return hashlib.sha256(f"{image.mode} {image.size}".encode() + image.tobytes()).hexdigest()

    return {
        "content": digest(content),
        "style": [digest(style) for style in styles],
        "mask": [digest(mask) for mask in masks] if masks is not None else None,
        "init": digest(init_image) if init_image is not None else None,
    }


def _check_same_inputs(saved: Mapping[str, Any] | None, now: Mapping[str, Any]) -> None:
    if saved is None:  # a checkpoint from before inputs were recorded
        return
    changed = [name for name in now if saved.get(name) != now[name]]
    if changed:
        raise SettingsError(
            f"the {' and '.join(changed)} image(s) differ from the checkpoint's run: resume with the same inputs"
        )


def _check_sides(content: Image.Image, styles: Sequence[Image.Image], sizes: Sequence[int], style_scale: float,
                 min_side: int) -> None:
    """At every scale, each image must keep ``min_side`` pixels a side for the deepest layer
    (each pooling halves it): refuse up front, naming the smallest size that works."""
    for number, size in enumerate(sizes, start=1):
        at = f" at scale {number} of {len(sizes)}" if len(sizes) > 1 else ""
        check_min_side(content.size, size, min_side=min_side, what=f"the content image{at}")
        for index, style in enumerate(styles, start=1):
            check_min_side(style.size, round(style_scale * size), min_side=min_side,
                           what=f"style image {index} (at style_scale x size){at}")


def _check_resumable(settings: GatysSettings, checkpoint: Mapping[str, Any]) -> None:
    saved = GatysSettings.from_dict(checkpoint["settings"])
    changed = [
        f"{f.name} was {getattr(saved, f.name)!r}, now {getattr(settings, f.name)!r}"
        for f in fields(GatysSettings)
        if f.compare and f.name not in RESUMABLE_CHANGES and getattr(saved, f.name) != getattr(settings, f.name)
    ]
    if changed:
        raise SettingsError(f"a resumed run keeps the checkpoint's settings (only iterations may change): {'; '.join(changed)}")
    if checkpoint["scale"] > settings.scales:
        raise SettingsError(f"the checkpoint is at scale {checkpoint['scale']} of a run with {settings.scales} scales")


#: Style losses whose statistics are sums over feature positions, which tiles add up exactly.
TILEABLE_STYLE_LOSSES = ("gram", "mean-std")


def _check_tileable(settings: GatysSettings) -> None:
    """Tiles compute sums over positions exactly (:mod:`painterly.gatys_tiles`); refuse what is not one."""
    reasons = []
    if settings.style_loss not in TILEABLE_STYLE_LOSSES:
        reasons.append(f"style_loss {settings.style_loss} (it sorts every position's features at once)")
    if settings.normalize_gradients:
        reasons.append("normalize_gradients (it divides by the L1 norm of a feature gradient over the whole image)")
    if reasons:
        raise SettingsError(f"this run needs tiles (or --tile was given), and tiles cannot compute {' or '.join(reasons)} "
                            "exactly: use a smaller --size, --no-tile with more memory, or --style-loss gram or mean-std "
                            "without --normalize-gradients")


@dataclass
class OptimizationResult:
    """What :func:`optimize` returns: the image, the loss history and how it was made."""

    image: Image.Image
    history: list[dict[str, float]]
    settings: GatysSettings
    weights: str
    seed: int
    weights_note: str | None = None
    style_weights: list[float] = field(default_factory=list)
    precision: str = "float32"
    #: The preset the settings started from (None: given as ``settings`` or by a checkpoint).
    preset: str | None = None
    #: The settings profile applied (:mod:`painterly.profiles`), None for the preset's own values.
    profile: str | None = None
    #: The tile window at each scale, coarse to fine (None: that scale ran in one pass).
    tile_sizes: list[int | None] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        """Settings, seed, weights and profile, for the PNG's text chunks (read back whole by
        :meth:`GatysSettings.from_dict` and :func:`painterly.reproduce`)."""
        return {
            "painterly.method": "optimize",
            "preset": self.preset,
            **self.settings.to_dict(),
            "style_weights": self.style_weights,
            "seed": self.seed,
            "weights": self.weights,
            "precision": self.precision,
            "profile": self.profile,
            "tile_sizes": self.tile_sizes,
        }


@dataclass
class ScaleInputs:
    """One scale's tensors, on the run's device: the content in [0, 1] (``content``; ``seen_content``
    and ``styles`` as the network sees them under ``preserve_color``), the masks, the start
    (the previous scale's result upsampled, or the init image) and the temporal term's tensors."""

    content: torch.Tensor
    seen_content: torch.Tensor
    styles: list[torch.Tensor]
    masks: list[torch.Tensor] | None
    init: torch.Tensor | None
    temporal: tuple[torch.Tensor, torch.Tensor, float] | None


def scale_inputs(content: Image.Image, styles: Sequence[Image.Image], *, settings: GatysSettings, size: int,
                 device: torch.device, previous: torch.Tensor | None = None, masks: Sequence[Image.Image] | None = None,
                 init_image: Image.Image | None = None,
                 temporal: tuple[Image.Image, Image.Image, float] | None = None) -> ScaleInputs:
    """The inputs of the scale whose longer side is ``size``; styles at ``style_scale`` times it."""
    content_image = resize_longer_side(content, size)
    content_tensor = image_to_tensor(content_image).to(device)
    style_size = round(settings.style_scale * size)
    style_tensors = [image_to_tensor(resize_longer_side(s, style_size)).to(device) for s in styles]
    seen_content, seen_styles = prepare_colors(content_tensor, style_tensors, settings.preserve_color)
    mask_tensors = None
    if masks is not None:
        mask_tensors = [image_to_tensor(resize_longer_side(m, size))[:, :1].to(device) for m in masks]
    init = None
    if previous is not None:
        init = F.interpolate(previous, size=content_tensor.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
    elif init_image is not None:
        resized = init_image.convert("RGB").resize(content_image.size, Image.Resampling.LANCZOS)
        init = image_to_tensor(resized).to(device)
        init = grey(init) if settings.preserve_color == "luminance" else init
    scale_temporal = None
    if temporal is not None:
        target = image_to_tensor(temporal[0].convert("RGB").resize(content_image.size, Image.Resampling.LANCZOS)).to(device)
        mask = image_to_tensor(temporal[1].convert("RGB").resize(content_image.size, Image.Resampling.BILINEAR))[:, :1]
        scale_temporal = (grey(target) if settings.preserve_color == "luminance" else target, mask.to(device), temporal[2])
    return ScaleInputs(content_tensor, seen_content, seen_styles, mask_tensors, init, scale_temporal)


def optimize_scales(
    content: Image.Image,
    styles: Sequence[Image.Image],
    *,
    encoder: VGG19Encoder,
    record: RunRecord,
    device: torch.device,
    tiles: Sequence[int | None],
    style_weights: Sequence[float] | None = None,
    masks: Sequence[Image.Image] | None = None,
    init_image: Image.Image | None = None,
    temporal: tuple[Image.Image, Image.Image, float] | None = None,
    resume: Mapping[str, Any] | None = None,
    speed: SpeedSettings = GATYS_SPEED,
    callback: ProgressCallback | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Coarse to fine: :func:`optimize_image` at each of ``record.settings``' scales (from
    ``resume``'s, when given), each starting from the previous one's result upsampled, the
    first from the init image or ``init``; ``tiles`` gives each scale's tile window (None: one
    pass). Every iteration's losses go to ``record.history``. Returns the last scale's result
    and its content, in [0, 1].

    Cost: an iteration costs about its pixel count, so 3 scales (96, 192, 384 px) with the same
    iterations at each cost 1 + 1/4 + 1/16 of a single-scale 384 px run (measured in
    benchmarks/NOTES.md).
    """
    settings = record.settings
    sizes, counts = settings.scale_sizes(), settings.scale_iterations()
    first = resume["scale"] if resume is not None else 1
    image: torch.Tensor | None = None  # the previous scale's result
    for scale in range(first, len(sizes) + 1):
        inputs = scale_inputs(content, styles, settings=settings, size=sizes[scale - 1], device=device, previous=image,
                              masks=masks, init_image=init_image, temporal=temporal)
        offset = sum(counts[: scale - 1])

        def report(progress: Progress, scale: int = scale, offset: int = offset) -> None:
            record.history.append({"iteration": offset + progress.iteration, **progress.losses})
            if callback is not None:
                callback(replace(progress, scale=scale, scales=len(sizes)))

        image = optimize_image(
            inputs.seen_content,
            inputs.styles,
            encoder=encoder,
            settings=settings.updated(size=sizes[scale - 1], iterations=counts[scale - 1]),
            style_weights=style_weights,
            masks=inputs.masks,
            init_image=inputs.init,
            resume=resume if scale == first else None,
            seed=record.seed,
            speed=speed,
            callback=report,
            temporal=inputs.temporal,
            tile_size=tiles[scale - 1],
            record=replace(record, scale=scale),  # the same history list
        ).image
    return image, inputs.content


def _resolve_run(content: Image.Image, styles: Sequence[Image.Image], *, preset: str, settings: GatysSettings | None,
                 explicit: Mapping[str, Any], checkpoint: Mapping[str, Any] | None, masks: Sequence[Image.Image] | None,
                 init_image: Image.Image | None, seed: int, weights: str, profile: str,
                 download_progress: DownloadProgress | None) -> tuple[RunRecord, str | os.PathLike, str | None]:
    """The run's record (settings with the profile applied, or the checkpoint's: seed, weights,
    profile, inputs, history), the weights to load and the note on how they were chosen."""
    settings_given = settings is not None
    if checkpoint is not None:
        base = settings if settings is not None else GatysSettings.from_dict(checkpoint["settings"])
        seed, weights, profile = checkpoint["seed"], checkpoint["weights"], checkpoint.get("profile") or "none"
    else:
        base = settings if settings is not None else get_preset(preset)
    settings = base.updated(**explicit)
    digests = input_digests(content, styles, masks, init_image)
    if checkpoint is not None:
        _check_resumable(settings, checkpoint)
        _check_same_inputs(checkpoint.get("inputs"), digests)
    spec, note = choose_weights(weights, preferred=settings.weights, progress=download_progress)
    # A settings object the caller built is taken as given; "auto" replaces presets' values only.
    profile_name = resolve_profile("none" if settings_given and profile == "auto" else profile, spec)
    if checkpoint is None and profile_name is not None:  # a checkpoint's settings have it already
        settings = base.updated(**profile_changes(profile_name, explicit)).updated(**explicit)
    history = list(checkpoint["history"]) if checkpoint is not None else []
    return RunRecord(settings, seed, str(spec), profile_name, digests, history), spec, note


def _plan_scales(settings: GatysSettings, content: Image.Image, *, device: torch.device, tile: bool | str,
                 tile_size: int | None, max_memory: float | None) -> MemoryPlan:
    """Check every scale's size and tile each one that would not fit (or refuse), before any
    weights load, rather than dying out of memory midway."""
    sizes, layers = settings.scale_sizes(), settings.content_layers + settings.style_layers
    for scale_size in (sizes[0], sizes[-1]):
        check_size(scale_size)
        check_size(round(settings.style_scale * scale_size), what=f"style size (style_scale {settings.style_scale} x {scale_size} px)")
    output_size = resize_longer_side(content, sizes[-1]).size
    if max_memory is not None and not (max_memory > 0 and math.isfinite(max_memory)):
        raise SettingsError(f"max_memory must be a positive number of GiB, got {max_memory}")
    if tile_size is not None and tile_size < minimum_tile(layers):
        raise SettingsError(f"tile_size {tile_size} is too small for layer {deepest_layer(layers)}: at least "
                            f"{minimum_tile(layers)} px (a halo on each side)")
    plan = plan_memory("gatys", height=output_size[1], width=output_size[0], device=device, sizes=sizes,
                       layers=layers, optimizer=settings.optimizer,
                       tile=tile, tile_size=tile_size, budget_bytes=None if max_memory is None else int(max_memory * 2**30))
    if any(plan.tiles):
        _check_tileable(settings)
    return plan


def optimize(
    content: Image.Image, style: Image.Image | Sequence[Image.Image], *, preset: str = DEFAULT_PRESET,
    settings: GatysSettings | None = None, size: int | None = None, iterations: int | None = None,
    weights: str = "auto", style_weights: Sequence[float] | None = None, masks: Sequence[Image.Image] | None = None,
    init_image: Image.Image | None = None, resume: str | os.PathLike | Mapping[str, Any] | None = None,
    profile: str = "auto", seed: int = 0, device: str | torch.device = "auto", speed: SpeedSettings = GATYS_SPEED,
    callback: ProgressCallback | None = None, download_progress: DownloadProgress | None = None,
    temporal: tuple[Image.Image, Image.Image, float] | None = None, tile: bool | str = "auto",
    tile_size: int | None = None, max_memory: float | None = None, **overrides: Any,
) -> OptimizationResult:
    """Repaint ``content`` in the style of ``style`` (one image or several) by optimisation.

    Starts from the named ``preset`` (or ``settings``); ``size``, ``iterations`` and any
    :class:`GatysSettings` field given as a keyword override it (``preserve_color``,
    ``transfer_color_only``, ``style_scale``, ``scales``, ``start_size``,
    ``iterations_per_scale`` ...). ``weights`` is a registry name, a file, or ``auto``: the
    preset's pretrained weights if cached or downloadable, else seeded random ones
    (``weights_note`` in the result says so).

    * ``profile``: ``auto`` (default) applies :mod:`painterly.profiles`' ``random-features``
      settings when the weights turn out random (chosen or fallen back to), the preset's own
      values otherwise (not when ``settings`` is given: that is used as given); ``none`` keeps
      the preset's. Keywords given always win over a profile,
      and the result (``profile``, and its metadata) records which applied.
    * ``style_loss``: ``gram`` (the presets'), ``mean-std``, ``sliced-wasserstein`` or
      ``histogram`` (:mod:`painterly.losses`); ``calibrate_layers``, ``style_layer_weights``
      and ``pooling`` (``avg``, as Gatys et al.) are the other levers the profile uses.
    * Several styles blend with ``style_weights`` (normalised to sum 1; equal by default).
    * Style images are resized so their longer side is ``style_scale`` times the output's.
    * ``masks``: one greyscale (soft) mask per style, the content's size; each style's Gram
      target then applies inside its region only (:class:`GatysObjective`).
    * ``scales`` > 1 optimises coarse to fine (:func:`optimize_scales`, which gives the cost).
    * ``speed``: precision, memory layout and compilation (:class:`SpeedSettings`). The default
      is float32, because bfloat16 gradients slowed L-BFGS's progress (benchmarks/NOTES.md);
      ``SpeedSettings(precision="bfloat16")`` trades that for about 1.3x per iteration on CPUs
      with native bfloat16.
    * ``resume``: a checkpoint (or its path) from :attr:`Progress.checkpoint` continues that
      run with its settings, seed and weights; only ``iterations``/``iterations_per_scale``
      may change, anything else given must match.
    * ``temporal``: (target, mask, weight) for video, the previous frame's result warped onto
      this one, the mask of where that is trusted ("L", white) and the weight of Ruder et al.'s
      short-term temporal loss; both are resized to every scale (:func:`painterly.video.optimize_video`).
    * ``tile``: compute iterations in tiles (:mod:`painterly.gatys_tiles`; the same loss and
      gradient as one pass, up to rounding, in the memory of a tile window of ``tile_size``
      pixels): ``auto`` (default) where one pass would not fit in ``max_memory`` GiB (default:
      90% of the device's free memory), True wherever the image is larger than one tile, False
      never. Coarse scales that fit run in one pass; ``tile_sizes`` in the result records each
      scale's tile.
    """
    checkpoint = load_checkpoint(resume) if isinstance(resume, (str, os.PathLike)) else resume
    styles = [style] if isinstance(style, Image.Image) else list(style)
    device = resolve_device(device)
    record, spec, note = _resolve_run(content, styles, preset=preset, settings=settings, checkpoint=checkpoint,
                                      explicit={"size": size, "iterations": iterations, **overrides}, masks=masks,
                                      init_image=init_image, seed=seed, weights=weights, profile=profile,
                                      download_progress=download_progress)
    blend = normalized_weights(style_weights, len(styles))
    mask_images = check_masks(masks, content.size, count=len(styles))
    run = record.settings
    plan = _plan_scales(run, content, device=device, tile=tile, tile_size=tile_size, max_memory=max_memory)
    layer = deepest_layer(run.content_layers + run.style_layers)
    encoder, label = load_encoder(spec, last_layer=layer, seed=record.seed, device=device, progress=download_progress,
                                  pooling=run.pooling)
    _check_sides(content, styles, run.scale_sizes(), run.style_scale, smallest_input_side(flavour=encoder.flavour, last_layer=layer))
    encoder = speed.prepare(encoder)
    precision = resolve_precision(speed.precision, device)
    image, content_tensor = optimize_scales(content, styles, encoder=encoder, record=record, device=device, tiles=plan.tiles,
                                            style_weights=blend, masks=mask_images, init_image=init_image, temporal=temporal,
                                            resume=checkpoint, speed=speed, callback=callback)
    output = restore_colors(image, content_tensor, run.preserve_color)
    if run.transfer_color_only:
        output = keep_luminance(output, content_tensor)
    preset_name = preset if settings is None and checkpoint is None else None
    return OptimizationResult(tensor_to_image(output.cpu()), record.history, run, label, record.seed, note, blend, precision,
                              preset_name, record.profile, list(plan.tiles))
