"""AdaIN (Huang and Belongie, ICCV 2017): arbitrary style transfer in one forward pass.

An encoder f (the normalised VGG-19 up to relu4_1) encodes content c and style s; the AdaIN
layer gives f(c) the channel-wise mean and std of f(s); a decoder g maps the result back to an
image. With the trade-off alpha: T = g(alpha AdaIN(f(c), f(s)) + (1 - alpha) f(c)).

Several styles and spatial control share one formula. Each style k has a map m_k over the
feature positions: a constant weight w_k (weights normalised to sum 1), or a user's mask (soft
values in [0, 1]; where masks overlap by more than 1 they are scaled to sum 1). Then

    t = sum_k m_k [sigma(s_k) (x - mu_k(x)) / sigma_k(x) + mu(s_k)] + (1 - sum_k m_k) x

where mu_k(x), sigma_k(x) are the content's statistics inside region k (weighted by m_k; for a
constant map, the whole image), and finally t <- alpha t + (1 - alpha) x.

``feature_transform="wct"`` swaps AdaIN for the whitening and colouring transform of Li et al.
(NeurIPS 2017) at the same layer and with the same decoder: sigma(s_k) (x - mu_k(x)) / sigma_k(x)
becomes Sigma(s_k)^(1/2) Sigma_k(x)^(-1/2) (x - mu_k(x)), so the channels' correlations are
transferred too, not only each channel's mean and std. The paper pairs WCT with decoders of its
own at five layers; painterly uses it at relu4_1 only, with the AdaIN-trained decoder.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .color import prepare_colors, preserve_color_option, with_chroma_of_image
from .device import resolve_device
from .encoder import LAYER_NAMES, ReflectionPad2d, VGG19Encoder, encoder_fingerprint, load_encoder
from .errors import SettingsError, WeightsError
from .images import check_masks, check_min_side, image_to_tensor, resize_longer_side, tensor_to_image
from .losses import channel_mean_std, masked_channel_mean_std, normalized_weights
from .memory import MemoryPlan, plan_memory
from .options import check_options, from_record, option
from .speed import ADAIN_SPEED, SpeedSettings, resolve_precision
from .weights import (
    BUNDLED_ENCODER_SEED,
    DECODER_PLAN,
    Progress,
    check_layout,
    choose_adain_weights,
    is_registry_name,
    load_weights,
    read_record,
    weight_file,
)

#: The layer AdaIN works at, and the layers the decoder's style loss reads.
ADAIN_LAYER = "relu4_1"
STYLE_LOSS_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
#: relu4_1 sits after three poolings: inputs are padded to a multiple of this.
DOWNSAMPLING = 8
#: ``tile="auto"`` tiles images with more pixels than this.
AUTO_TILE_PIXELS = 2_000_000
#: The content's colour statistics (for ``preserve_color``) come from a copy at most this large.
COLOUR_REFERENCE_PIXELS = 1024 * 1024
#: Context around each tile when gathering the content's statistics: more than the receptive
#: field radius of relu4_1 (about 30 px), so a tile core's features equal the whole image's.
STATISTICS_MARGIN = 48
DEFAULT_TILE_SIZE = 512


DEFAULT_STYLE_SIZE = 512
#: How the content's relu4_1 features take the style's statistics (``feature_transform``).
FEATURE_TRANSFORMS = ("adain", "wct")
#: The bundled decoder's default transform: with random filters a channel's mean and std say
#: little beyond colour, and the correlations carry the strokes (docs/offline-decoder.md).
BUNDLED_FEATURE_TRANSFORM = "wct"
#: How much larger than the output the bundled decoder paints by default (``supersample``): its
#: strokes are coarse and soft at 1, and crisp at 2 (docs/offline-decoder.md measures 1 to 3).
BUNDLED_SUPERSAMPLE = 2.0
#: How far past each edge the bundled decoder paints the content reflected (``margin``, pixels at
#: the painting's size), cropped off after: without it a light or dark frame lines the borders,
#: and 32 px was the least that removed it (docs/offline-decoder.md).
BUNDLED_MARGIN = 32
#: Images per network pass by device type. On a CPU, batches ran at fewer images per second than
#: one at a time (benchmarks/NOTES.md, "Batching"); on a GPU one 512 px image is too little work
#: to fill it.
DEFAULT_BATCH_SIZES = {"cpu": 1, "cuda": 8}
#: The fewest pixels a content or style side may have: :func:`pad_to_multiple` reflects, so its
#: pad must stay below the side, and the decoder's reflection padding needs relu4_1 features of
#: 2 pixels, so the padded side must reach 16 (every smaller side is refused up front).
MIN_SIDE = next(side for side in range(1, 4 * DOWNSAMPLING)
                if (-side) % DOWNSAMPLING < side and side + (-side) % DOWNSAMPLING >= 2 * DOWNSAMPLING)


def default_batch_size(device: torch.device) -> int:
    """:data:`DEFAULT_BATCH_SIZES` for ``device`` (1 for kinds not measured)."""
    return DEFAULT_BATCH_SIZES.get(device.type, 1)

#: (mean, spread) of features: see :func:`feature_statistics`.
Stats = tuple[torch.Tensor, torch.Tensor]
TileProgress = Callable[[int, int], None]
"""Tile progress: called with (tiles done, tiles in all)."""


def adain(content_features: torch.Tensor, style_features: torch.Tensor, *, eps: float = 1e-5) -> torch.Tensor:
    """AdaIN(x, y) = sigma(y) (x - mu(x)) / sigma(x) + mu(y), per sample and channel.

    Shapes (N, C, H, W) and (N or 1, C, H', W'); the style's spatial size may differ.
    sigma uses the biased variance (instance normalisation's); pytorch-AdaIN uses the unbiased
    one, a difference of a factor sqrt(HW / (HW - 1)) that vanishes at real image sizes.
    """
    if content_features.dim() != 4 or style_features.dim() != 4:
        raise ValueError("AdaIN expects (N, C, H, W) feature maps")
    if content_features.shape[1] != style_features.shape[1]:
        raise ValueError(
            f"channel counts differ: {content_features.shape[1]} vs {style_features.shape[1]}"
        )
    content_mean, content_std = channel_mean_std(content_features, eps=eps)
    style_mean, style_std = channel_mean_std(style_features, eps=eps)
    return style_std * (content_features - content_mean) / content_std + style_mean


def feature_statistics(features: torch.Tensor, mask: torch.Tensor | None = None, *, transform: str = "adain",
                       eps: float = 1e-5) -> Stats:
    """Per sample, the statistics of ``features`` (N, C, H, W) that ``transform`` transfers,
    weighted by ``mask`` ((N or 1, 1, H, W); None: all ones): the channel mean mu (N, C, 1, 1)
    and a spread, the std sigma (N, C, 1, 1) for ``adain``, the covariance Sigma (N, C, C) for ``wct``:

        mu = sum(m x) / sum(m),  sigma^2 = sum(m (x - mu)^2) / sum(m) + eps,
        Sigma = sum(m (x - mu)(x - mu)^T) / sum(m)

    (biased, as instance normalisation; Sigma's tiny eigenvalues are dropped where it is used,
    :func:`symmetric_power`). The adain pair is :func:`painterly.losses.channel_mean_std` or
    :func:`painterly.losses.masked_channel_mean_std`. An empty mask gives the statistics of
    nothing, harmless since its region then receives no weight.
    """
    if _check_transform(transform) == "adain":
        return channel_mean_std(features, eps=eps) if mask is None else masked_channel_mean_std(features, mask, eps=eps)
    if mask is None:
        mask = torch.ones_like(features[:, :1])
    if features.dim() != 4 or mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[2:] != features.shape[2:]:
        raise ValueError(f"mask {tuple(mask.shape)} does not fit features {tuple(features.shape)}")
    total = mask.sum(dim=(2, 3), keepdim=True).clamp_min(1e-12)
    mean = (features * mask).sum(dim=(2, 3), keepdim=True) / total
    centred = (features - mean).flatten(2)
    return mean, (centred * mask.flatten(2)) @ centred.transpose(1, 2) / total.flatten(1).unsqueeze(-1)


def _check_transform(transform: str) -> str:
    if transform not in FEATURE_TRANSFORMS:
        raise SettingsError(f"feature transform must be one of {', '.join(FEATURE_TRANSFORMS)}, got {transform!r}")
    return transform


def symmetric_power(matrix: torch.Tensor, power: float, *, eps: float = 1e-5) -> torch.Tensor:
    """``matrix`` (..., C, C), symmetric positive semi-definite, raised to ``power`` through its
    eigendecomposition (in float64). Directions with eigenvalue at most ``eps`` are dropped
    (given 0), as Li et al.'s WCT does: random encoders have dead channels, whose whitening
    would otherwise amplify rounding noise by 1/sqrt(eps)."""
    if matrix.dim() < 2 or matrix.shape[-1] != matrix.shape[-2]:
        raise ValueError(f"expected square matrices, got {tuple(matrix.shape)}")
    values, vectors = torch.linalg.eigh(matrix.double())
    scaled = torch.where(values > eps, values.clamp_min(eps) ** power, torch.zeros_like(values))
    return ((vectors * scaled.unsqueeze(-2)) @ vectors.transpose(-1, -2)).to(matrix.dtype)


def _normalised(features: torch.Tensor, stats: Stats) -> torch.Tensor:
    """The content's features with its statistics removed: (x - mu) / sigma, or Sigma^(-1/2) (x - mu)."""
    mean, spread = stats
    if spread.dim() == 4:
        return (features - mean) / spread
    return (symmetric_power(spread, -0.5) @ (features - mean).flatten(2)).view_as(features)


def _styled(normalised: torch.Tensor, stats: Stats) -> torch.Tensor:
    """Normalised features given a style's statistics: sigma z + mu, or Sigma^(1/2) z + mu."""
    mean, spread = stats
    if spread.dim() == 4:
        return spread * normalised + mean
    return (symmetric_power(spread, 0.5) @ normalised.flatten(2)).view_as(normalised) + mean


def blend_styles(
    features: torch.Tensor,
    content_stats: Sequence[Stats],
    style_stats: Sequence[Stats],
    maps: Sequence[torch.Tensor],
    *,
    alpha: float = 1.0,
) -> torch.Tensor:
    """The module docstring's t: each style's transfer with its own content statistics, mixed by
    ``maps`` (each (1, 1, H, W) or broadcastable), then the alpha trade-off with ``features``.
    Statistics are :func:`feature_statistics` pairs, all of one transform: AdaIN's stds or WCT's
    covariances, whose transfer is Sigma_s^(1/2) Sigma_x^(-1/2) (x - mu_x) + mu_s."""
    if not len(content_stats) == len(style_stats) == len(maps):
        raise ValueError("one content statistic, style statistic and map per style needed")
    coverage = sum(maps)
    result = (1 - coverage) * features
    for content, style, weight in zip(content_stats, style_stats, maps):
        result = result + weight * _styled(_normalised(features, content), style)
    return alpha * result + (1 - alpha) * features


def build_decoder() -> nn.Sequential:
    """The decoder of :data:`~painterly.weights.DECODER_PLAN`: VGG-19 to relu4_1 mirrored, x2
    nearest upsampling in place of pooling, reflection padding, ReLU after every conv but the
    last, no normalisation layers.

    Built as one ``nn.Sequential`` so its state dict has the released ``decoder.pth`` keys
    (:data:`~painterly.weights.DECODER_CONVS`).
    """
    layers: list[nn.Module] = []
    for step in DECODER_PLAN:
        if step == "up":
            layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
        else:
            layers += [ReflectionPad2d(1), nn.Conv2d(*step, 3), nn.ReLU()]
    return nn.Sequential(*layers[:-1])  # no ReLU after the last conv


def receptive_field_radius() -> int:
    """How far, in pixels, an output pixel of the whole network (encoder to relu4_1, then the
    decoder) looks into the input on either side; the worst of the 8 phases of the 8-pixel grid.

    Walking back from an output pixel's interval [lo, hi]: a k x k convolution widens it by
    (k - 1) / 2 on each side, x2 nearest upsampling maps it to [lo // 2, hi // 2], a 2 x 2 pool
    of stride 2 to [2 lo, 2 hi + 1]. For VGG-19 to relu4_1 and its mirrored decoder: 67 (the
    test checks it against the reach of a changed pixel in float64).
    """
    steps: list[tuple[str, int]] = []
    for name in LAYER_NAMES[: LAYER_NAMES.index(ADAIN_LAYER) + 1]:
        if name.startswith(("conv", "pool")):
            steps.append(("conv", 1) if name.startswith("conv") else ("pool", 2))
    for module in build_decoder():
        if isinstance(module, nn.Conv2d):
            steps.append(("conv", (module.kernel_size[0] - 1) // 2))
        elif isinstance(module, nn.Upsample):
            steps.append(("upsample", int(module.scale_factor)))
    worst = 0
    for pixel in range(1000, 1000 + DOWNSAMPLING):
        low = high = pixel
        for kind, size in reversed(steps):
            if kind == "conv":
                low, high = low - size, high + size
            elif kind == "upsample":
                low, high = low // size, high // size
            else:
                low, high = low * size, high * size + size - 1
        worst = max(worst, pixel - low, high - pixel)
    return worst


#: Tiles are exact where no weight falls within this many pixels of a border shared with a
#: neighbour (see :func:`_ramp`): so neighbours must share at least twice it, on the 8-pixel grid.
RECEPTIVE_FIELD_RADIUS = receptive_field_radius()
MIN_TILE_OVERLAP = math.ceil(2 * RECEPTIVE_FIELD_RADIUS / DOWNSAMPLING) * DOWNSAMPLING
#: Overlap must stay below half the tile: the smallest tile is one grid step above twice it.
MIN_TILE_SIZE = 2 * MIN_TILE_OVERLAP + DOWNSAMPLING
DEFAULT_TILE_OVERLAP = MIN_TILE_OVERLAP


def pad_to_multiple(image: torch.Tensor, multiple: int = DOWNSAMPLING) -> torch.Tensor:
    """Reflect-pad (N, C, H, W) at the bottom and right so H and W are multiples of ``multiple``."""
    height, width = image.shape[-2:]
    return F.pad(image, (0, (-width) % multiple, 0, (-height) % multiple), mode="reflect")


def _with_offline_hint(spec: str | os.PathLike, load: Callable[[], Any]) -> Any:
    """Run ``load``; a registry name that cannot be fetched also says how to work offline."""
    try:
        return load()
    except WeightsError as error:
        if is_registry_name(spec) and spec != "random":
            raise WeightsError(
                f"{error} (offline, painterly's bundled decoder works: --encoder bundled --decoder bundled, "
                "or leave both at auto)"
            ) from None
        raise


class AdaINModel(nn.Module):
    """Encoder (to relu4_1) and decoder, with a cache of style statistics.

    ``forward(content, style, alpha)`` is the whole network on image tensors in [0, 1] of any
    size (padded to a multiple of 8, cropped back); :func:`stylize` adds several styles, masks,
    colour preservation and tiles on top of :meth:`encode`, :meth:`style_statistics` and
    :meth:`decode`.
    """

    def __init__(self, encoder: VGG19Encoder, decoder: nn.Sequential, *,
                 encoder_label: str = "custom", decoder_label: str = "custom", style_cache_size: int = 16,
                 speed: SpeedSettings = ADAIN_SPEED) -> None:
        super().__init__()
        if encoder.last_layer != ADAIN_LAYER:
            raise ValueError(f"the AdaIN encoder must stop at {ADAIN_LAYER}, not {encoder.last_layer}")
        # Precision and memory layout (benchmarks/NOTES.md): bfloat16 where the device has it
        # natively, channels_last; statistics and outputs stay float32.
        self.speed = speed
        self.encoder = speed.prepare(encoder)
        self.decoder = speed.prepare(decoder.requires_grad_(False).eval())
        self.encoder_label = encoder_label
        self.decoder_label = decoder_label
        self._style_cache: OrderedDict[str, Stats] = OrderedDict()
        self._style_cache_size = style_cache_size
        self._cache_lock = threading.Lock()
        #: Set by :meth:`load` when ``auto`` fell back to the bundled weights: why, for the user.
        self.weights_note: str | None = None
        #: The ``supersample``, ``feature_transform`` and ``margin`` this decoder paints best
        #: with, the defaults of :func:`stylize`.
        self.supersample = 1.0
        self.feature_transform = "adain"
        self.margin = 0
        self.eval()

    @classmethod
    def load(cls, *, encoder: str | os.PathLike = "auto", decoder: str | os.PathLike = "auto", seed: int = 0,
             device: str | torch.device = "cpu", speed: SpeedSettings = ADAIN_SPEED,
             progress: Progress | None = None) -> "AdaINModel":
        """Build from weight names or files: ``encoder`` is ``adain``, ``vgg19-normalised``,
        ``random`` (seeded), ``bundled`` or a VGG-19 file; ``decoder`` is ``adain``, ``bundled``
        (painterly's decoder for random weights of seed 0, shipped in the package) or a decoder
        file in the released layout; ``auto`` (both) takes the released pair when cached or
        downloadable, else the bundled one, and says so in :attr:`weights_note`. A decoder only
        works with the encoder it was trained with. ``speed``: precision, layout and compilation
        (default: bfloat16 where native, channels_last)."""
        encoder, decoder, note = choose_adain_weights(encoder, decoder, progress=progress)
        vgg, encoder_label = _with_offline_hint(
            encoder, lambda: load_encoder(encoder, last_layer=ADAIN_LAYER, seed=seed, device=device, progress=progress)
        )
        state, _, decoder_label = _with_offline_hint(
            decoder, lambda: load_weights(decoder, role="decoder", progress=progress)
        )
        # A decoder fits the pooling its encoder was trained with (same weights, other features);
        # painterly's decoders record it, the released one (max) does not.
        vgg.pooling = (read_record(state) or {}).get("encoder_pooling", "max")
        # The named decoders each go with one encoder: (that encoder in words, whether it is this one).
        partners = {
            "adain": ("the normalised VGG-19", vgg.flavour == "normalised"),
            "bundled": (f"random weights of seed {BUNDLED_ENCODER_SEED}", encoder_label == f"random(seed={BUNDLED_ENCODER_SEED})"),
        }
        if str(decoder) in partners and not partners[str(decoder)][1]:
            raise SettingsError(
                f"the {decoder} decoder was trained with {partners[str(decoder)][0]}, not {encoder_label}: "
                f"use --encoder {decoder}, or a decoder trained with your encoder"
            )
        net = build_decoder()
        check_layout(state, "decoder", name=decoder_label)
        _check_trained_with(read_record(state), vgg, encoder_label=encoder_label, decoder_label=decoder_label)
        net.load_state_dict({key: state[key] for key in net.state_dict()})
        model = cls(vgg, net.to(device), encoder_label=encoder_label, decoder_label=decoder_label, speed=speed)
        model.weights_note = note
        if str(decoder) == "bundled":
            model.supersample, model.feature_transform = BUNDLED_SUPERSAMPLE, BUNDLED_FEATURE_TRANSFORM
            model.margin = BUNDLED_MARGIN
        return model

    @property
    def device(self) -> torch.device:
        return next(self.decoder.parameters()).device

    @property
    def precision(self) -> str:
        """The precision the networks run at on this device: float32 or bfloat16."""
        return resolve_precision(self.speed.precision, self.device)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """relu4_1 features (float32) of an image whose sides are multiples of 8."""
        return self.encoder(self.speed.input(image))[ADAIN_LAYER].float()

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        """The image (float32, not clamped) for relu4_1 features."""
        return self.decoder(self.speed.input(features)).float()

    def style_statistics(self, style: torch.Tensor, *, transform: str = "adain") -> Stats:
        """The style's :func:`feature_statistics` for ``transform``, cached by the style's pixels."""
        key = hashlib.sha1(style.detach().cpu().numpy().tobytes()).hexdigest() + str(tuple(style.shape)) + transform
        with self._cache_lock:  # a shared model (the web studio's) serves several threads
            if key in self._style_cache:
                self._style_cache.move_to_end(key)
                return self._style_cache[key]
        with self.speed.running(self.device):
            stats = feature_statistics(self.encode(pad_to_multiple(style.to(self.device))), transform=transform)
        with self._cache_lock:
            self._style_cache[key] = stats
            if len(self._style_cache) > self._style_cache_size:
                self._style_cache.popitem(last=False)
        return stats

    def forward(self, content: torch.Tensor, style: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """g(alpha AdaIN(f(c), f(s)) + (1 - alpha) f(c)), cropped to the content's size (the
        network :mod:`painterly.export` writes; not clamped)."""
        height, width = content.shape[-2:]
        features = self.encode(pad_to_multiple(content))
        style_features = self.encode(pad_to_multiple(style))
        mixed = alpha * adain(features, style_features) + (1 - alpha) * features
        return self.decode(mixed)[..., :height, :width]


def _check_trained_with(record: dict[str, Any] | None, encoder: VGG19Encoder, *, encoder_label: str,
                        decoder_label: str) -> None:
    """A decoder painterly trained records its encoder's fingerprint: refuse another encoder
    (it would decode features it never saw into mush). Files without a record pass."""
    if record is None or "encoder_sha256" not in record:
        return
    if record["encoder_sha256"] != encoder_fingerprint(encoder):
        raise SettingsError(
            f"{decoder_label} was trained with the encoder {record.get('encoder', '?')}, not {encoder_label}: "
            "stylise with that encoder (--encoder; --encoder-seed for random weights)"
        )


@lru_cache(maxsize=2)
def _cached_model(encoder: str, decoder: str, seed: int, device: str, speed: SpeedSettings, stamps: tuple) -> AdaINModel:
    return AdaINModel.load(encoder=encoder, decoder=decoder, seed=seed, device=device, speed=speed)


def load_model(*, encoder: str | os.PathLike = "auto", decoder: str | os.PathLike = "auto", seed: int = 0,
               device: str | torch.device = "auto", speed: SpeedSettings = ADAIN_SPEED) -> AdaINModel:
    """:meth:`AdaINModel.load`, remembering the last two models (a weight file that changes on
    disk is read again). ``auto`` is resolved first, so a model loaded before the released
    weights arrived in the cache is not handed out after."""
    encoder, decoder, note = choose_adain_weights(encoder, decoder)
    files = (weight_file(encoder, "encoder"), weight_file(decoder, "decoder"))
    stamps = tuple(path.stat().st_mtime_ns if path is not None and path.is_file() else None for path in files)
    model = _cached_model(str(encoder), str(decoder), seed, str(resolve_device(device)), speed, stamps)
    model.weights_note = note
    return model


@dataclass
class StylizeResult:
    """What :func:`stylize` returns: the image and how it was made."""

    image: Image.Image
    settings: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    #: Why ``auto`` weights fell back to the bundled ones, when they did (for the user).
    weights_note: str | None = None

    def metadata(self) -> dict[str, Any]:
        """Settings, seed and weights under the flags' names, for the PNG's text chunks."""
        return {"painterly.method": "stylize", **self.settings, "seed": self.seed}


@dataclass(frozen=True)
class StylizeSettings:
    """Everything that defines an AdaIN stylisation but the images, the weights and the device.

    Each field is declared once (:func:`painterly.options.option`): the flags of ``painterly
    stylize``, the web studio's form and its API schema are made from these declarations, and
    :meth:`to_dict` is what an output records (:func:`stylize` fills in the style weights as
    normalised and the tiling as done).
    """

    alpha: float = option(1.0, minimum=0.0, maximum=1.0, studio=True, studio_default=1.0,
                          help="style strength from 0 (content) to 1 (default: {default})")
    style_weights: tuple[float, ...] | None = option(
        None, metavar="W", studio=True,
        help="blend all styles into one output per content, with these weights (normalised to sum 1)")
    preserve_color: str = preserve_color_option()
    content_size: int | None = option(None, minimum=1, metavar="N",
                                      help="longer side of the output (default: the content's)")
    style_size: int | None = option(DEFAULT_STYLE_SIZE, minimum=1, metavar="N",
                                    help="longer side the style is read at (default: {default})")
    supersample: float | None = option(None, minimum=1.0, maximum=4.0, metavar="K",
                                       help="paint at K times the output's size, then shrink to it: finer, crisper "
                                       "strokes for K squared the time (default: the decoder's; 2 for the bundled "
                                       "one, whose strokes are coarse and soft at 1; 1 for the others)")
    feature_transform: str | None = option(
        None, choices=FEATURE_TRANSFORMS, studio=True,
        help="how the content's features take the style's: adain, each channel's mean and std (Huang and Belongie "
        "2017); wct, also the channels' correlations (whitening and colouring, Li et al. 2017) (default: the "
        "decoder's; wct for the bundled one, adain for the others)")
    margin: int | None = option(None, minimum=0, metavar="PX",
                                help="paint the content reflected this many pixels past each edge (at the painting's "
                                "size), then crop them off: no frame along the borders (default: the decoder's; "
                                f"{BUNDLED_MARGIN} for the bundled one, 0 for the others, as the paper)")
    tile: bool | str = option("auto", choices=(True, False, "auto"),
                              help="stylise in overlapping tiles, for huge images (default: automatic past 2 megapixels)")
    tile_size: int = option(DEFAULT_TILE_SIZE, minimum=1, metavar="N",
                            help="tile side in pixels, a multiple of 8 above twice the overlap (default: {default})")
    #: pytorch-AdaIN's ``test.py --crop``: the square from each image's centre, its shorter side
    #: wide (masks with the content), before the sizes apply; outputs are then square.
    crop: bool = option(False, studio=True, studio_default=False,
                        help="centre-crop the content and style images to squares first, as pytorch-AdaIN's "
                        "--crop (masks with the content; the output is square)")
    tile_overlap: int = option(DEFAULT_TILE_OVERLAP, metavar="N",
                               help=f"pixels neighbouring tiles share, a multiple of {DOWNSAMPLING} of at least "
                               f"{MIN_TILE_OVERLAP}: twice the network's {RECEPTIVE_FIELD_RADIUS} px receptive field, "
                               "less would leave seams (default: {default})")

    def __post_init__(self) -> None:
        check_options(self)
        if self.tile_overlap < MIN_TILE_OVERLAP or self.tile_overlap % DOWNSAMPLING:
            raise SettingsError(
                f"tile overlap must be a multiple of {DOWNSAMPLING} of at least {MIN_TILE_OVERLAP}, got {self.tile_overlap}: "
                f"each output pixel sees {RECEPTIVE_FIELD_RADIUS} px around it, so less would leave seams along the tiles"
            )
        if self.tile_size % DOWNSAMPLING or self.tile_size <= 2 * self.tile_overlap:
            raise SettingsError(f"tile size must be a multiple of {DOWNSAMPLING} above twice the overlap "
                                f"({2 * self.tile_overlap}; at least {MIN_TILE_SIZE} with the smallest overlap), "
                                f"got {self.tile_size}")

    def style_blend(self, style_count: int, *, masks: int | None = None) -> list[float]:
        """The style weights normalised to sum 1 for ``style_count`` styles (equal when None; a
        count that does not match, a negative weight or an all-zero set is refused), after
        checking that ``masks`` (how many mask images were given) has one per style."""
        if style_count < 1:
            raise SettingsError("no style image given")
        if masks is not None and self.style_weights is not None:
            raise SettingsError("give style weights or masks, not both: the masks say how much of each style goes where")
        if masks is not None and masks != style_count:
            raise SettingsError(f"{masks} mask(s) given for {style_count} style image(s): give one mask per style")
        return normalized_weights(self.style_weights, style_count)

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain data (tuples as lists), the way an output's metadata holds them."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "StylizeSettings":
        """The inverse of :meth:`to_dict`; ``values`` may be a whole output's metadata (other keys
        are left). Settings added since the output was made keep their defaults."""
        return from_record(cls, values)


def centre_square(image: Image.Image) -> Image.Image:
    """The largest square from the middle of ``image`` (torchvision's CenterCrop rounding)."""
    side = min(image.size)
    left, top = round((image.width - side) / 2), round((image.height - side) / 2)
    return image.crop((left, top, left + side, top + side))


def _mask_array(mask: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """A mask (L) at ``size`` as uint8, reflect-padded to a multiple of 8 like the content."""
    if mask.size != size:
        mask = mask.resize(size, Image.Resampling.BILINEAR)
    return _reflect_padded(np.asarray(mask))


def _reflect_padded(array: np.ndarray) -> np.ndarray:
    """An image array (H, W) or (H, W, C) reflect-padded at the bottom and right to multiples of
    :data:`DOWNSAMPLING`, as :func:`pad_to_multiple` pads tensors."""
    height, width = array.shape[:2]
    rows_and_columns = ((0, (-height) % DOWNSAMPLING), (0, (-width) % DOWNSAMPLING))
    return np.pad(array, rows_and_columns + ((0, 0),) * (array.ndim - 2), mode="reflect")


def _maps(masks: list[np.ndarray] | None, weights: list[float], box: tuple[int, int, int, int],
          feature_size: tuple[int, int], device: torch.device) -> list[torch.Tensor]:
    """Per-style maps on the feature grid for the pixel box (top, left, height, width)."""
    if masks is None:
        return [torch.tensor(w, device=device) for w in weights]
    top, left, height, width = box
    stacked = np.stack([m[top : top + height, left : left + width] for m in masks])
    maps = torch.from_numpy(stacked).to(device, torch.float32).unsqueeze(1) / 255.0
    # Area averaging over each 8x8 cell: boxes are aligned to 8, so tiles agree with the whole.
    maps = F.interpolate(maps, size=feature_size, mode="area")
    maps = maps / maps.sum(dim=0, keepdim=True).clamp_min(1.0)
    return list(maps.unsqueeze(1))


def _array_to_tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.tensor(array, device=device).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def _colour_reference(image: Image.Image) -> Image.Image:
    """``image``, or a copy downscaled to :data:`COLOUR_REFERENCE_PIXELS` when it is larger:
    enough for a colour mean and covariance."""
    if image.width * image.height <= COLOUR_REFERENCE_PIXELS:
        return image
    scale = math.sqrt(COLOUR_REFERENCE_PIXELS / (image.width * image.height))
    return image.resize((max(16, round(image.width * scale)), max(16, round(image.height * scale))), Image.Resampling.BOX)


def _statistics_core(tile_size: int) -> int:
    return max(tile_size - 2 * STATISTICS_MARGIN, 64)


def _tiled_statistics(model: AdaINModel, padded: np.ndarray, mask_arrays: list[np.ndarray] | None,
                      weights: list[float], tile_size: int, step: Callable[[], None] = lambda: None, *,
                      transform: str = "adain") -> list[Stats]:
    """Each style region's content statistics (:func:`feature_statistics` for ``transform``)
    over the whole padded image at full size, one tile at a time. Each tile is encoded with
    :data:`STATISTICS_MARGIN` pixels of context and only its core's features are summed (sum m,
    sum m x, sum m x^2 or sum m x x^T, in float64), so the result equals one pass over the
    whole image. ``step`` is called after every tile."""
    full_h, full_w = padded.shape[:2]
    margin, core = STATISTICS_MARGIN, _statistics_core(tile_size)
    regions = len(weights) if mask_arrays else 1
    sums: list[list[torch.Tensor | float]] = [[0.0, 0.0, 0.0] for _ in range(regions)]
    for top in range(0, full_h, core):
        for left in range(0, full_w, core):
            bottom, right = min(top + core, full_h), min(left + core, full_w)
            in_top, in_left = max(0, top - margin), max(0, left - margin)
            tile = padded[in_top : min(full_h, bottom + margin), in_left : min(full_w, right + margin)]
            features = model.encode(_array_to_tensor(tile, model.device))
            features = features[..., (top - in_top) // DOWNSAMPLING : (bottom - in_top) // DOWNSAMPLING,
                                (left - in_left) // DOWNSAMPLING : (right - in_left) // DOWNSAMPLING].double()
            if mask_arrays:
                box = (top, left, bottom - top, right - left)
                maps = [m.double() for m in _maps(mask_arrays, weights, box, features.shape[-2:], model.device)]
            else:
                maps = [torch.ones_like(features[:, :1])]
            for region, weight in zip(sums, maps):
                region[0] += weight.sum()
                region[1] += (weight * features).sum(dim=(2, 3), keepdim=True)
                if transform == "adain":
                    region[2] += (weight * features * features).sum(dim=(2, 3), keepdim=True)
                else:
                    flat = features.flatten(2)
                    region[2] += (weight.flatten(2) * flat) @ flat.transpose(1, 2)
            step()
    stats = []
    for total, first, second in sums:
        total = max(float(total), 1e-12)
        mean = first / total
        if transform == "adain":
            var = (second / total - mean * mean).clamp_min(0)
            stats.append((mean.float(), (var + 1e-5).sqrt().float()))
        else:
            centre = mean.flatten(2)
            stats.append((mean.float(), (second / total - centre @ centre.transpose(1, 2)).float()))
    return stats if mask_arrays else stats * len(weights)


def _tile_starts(length: int, tile: int, stride: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def _ramp(start: int, size: int, length: int, overlap: int) -> torch.Tensor:
    """Blend weights along one axis of a tile. On each side that has a neighbour, the outer
    :data:`RECEPTIVE_FIELD_RADIUS` pixels get weight 0 (they saw the tile's border, so they
    differ from one pass), the rest of the overlap a cosine rise, the rest 1. Every pixel with
    a weight is then exactly what one pass paints; the rise only hides rounding."""
    weights = torch.ones(size)
    skip = RECEPTIVE_FIELD_RADIUS
    blend = overlap - 2 * skip
    rise = torch.zeros(overlap)
    rise[skip : skip + blend] = 0.5 - 0.5 * torch.cos(math.pi * (torch.arange(blend) + 0.5) / blend)
    rise[skip + blend :] = 1.0
    if start > 0:
        weights[:overlap] = rise
    if start + size < length:
        weights[-overlap:] = torch.minimum(weights[-overlap:], rise.flip(0))
    return weights


def _tile_grid(size: tuple[int, int], tile_size: int, overlap: int) -> tuple[list[int], list[int]]:
    """The top rows and left columns of the tiles over an image of ``size`` padded to a multiple of 8."""
    full_w, full_h = (side + (-side) % DOWNSAMPLING for side in size)
    return (_tile_starts(full_h, min(tile_size, full_h), tile_size - overlap),
            _tile_starts(full_w, min(tile_size, full_w), tile_size - overlap))


def _tile_count(size: tuple[int, int], tile_size: int, overlap: int) -> int:
    """Steps of :func:`_stylize_tiles`: the statistics tiles, then the stylised ones."""
    full_w, full_h = (side + (-side) % DOWNSAMPLING for side in size)
    core = _statistics_core(tile_size)
    rows, columns = _tile_grid(size, tile_size, overlap)
    return math.ceil(full_h / core) * math.ceil(full_w / core) + len(rows) * len(columns)


def _stylize_tiles(model: AdaINModel, content: Image.Image, style_stats: list[Stats], masks: list[Image.Image] | None,
                   weights: list[float], alpha: float, tile_size: int, overlap: int,
                   step: Callable[[], None], held: Stats | None = None, *, transform: str = "adain") -> Image.Image:
    """Gather the content's statistics (:func:`_tiled_statistics` for ``transform``), then stylise overlapping
    tiles of the padded content and blend them, one row of tiles at a time: finished rows go
    straight to the uint8 output, so besides the input and output images only one band of
    tile_size rows is held in float. ``step`` is called after every tile (:func:`_tile_count` in all).
    ``held``: content statistics given in advance (then the statistics tiles are counted as done)."""
    width, height = content.size
    padded = _reflect_padded(np.asarray(content))
    mask_arrays = [_mask_array(m, content.size) for m in masks] if masks else None
    full_h, full_w = padded.shape[:2]
    tile_h, tile_w = min(tile_size, full_h), min(tile_size, full_w)
    rows, columns = _tile_grid(content.size, tile_size, overlap)
    if held is None:
        content_stats = _tiled_statistics(model, padded, mask_arrays, weights, tile_size, step, transform=transform)
    else:
        content_stats = [held] * len(weights)
        for _ in range(math.ceil(full_h / _statistics_core(tile_size)) * math.ceil(full_w / _statistics_core(tile_size))):
            step()
    output = np.empty((height, width, 3), dtype=np.uint8)
    carry: torch.Tensor | None = None
    device = model.device
    for index, top in enumerate(rows):
        band = torch.zeros(4, tile_h, full_w, device=device)  # weighted RGB, then the weights
        if carry is not None:
            band[:, : carry.shape[1]] = carry
        row_ramp = _ramp(top, tile_h, full_h, overlap).to(device)
        for left in columns:
            tile = _array_to_tensor(padded[top : top + tile_h, left : left + tile_w], device)
            features = model.encode(tile)
            maps = _maps(mask_arrays, weights, (top, left, tile_h, tile_w), features.shape[-2:], device)
            image = model.decode(blend_styles(features, content_stats, style_stats, maps, alpha=alpha))
            weight = row_ramp[:, None] * _ramp(left, tile_w, full_w, overlap).to(device)[None, :]
            band[:3, :, left : left + tile_w] += image[0] * weight
            band[3, :, left : left + tile_w] += weight
            step()
        done = (rows[index + 1] if index + 1 < len(rows) else full_h) - top
        finished = (band[:3, :done] / band[3:, :done]).clamp(0, 1).mul(255).round().byte()
        keep = max(0, min(done, height - top))
        output[top : top + keep] = finished[:, :keep, :width].permute(1, 2, 0).cpu().numpy()
        carry = band[:, done:]
    return Image.fromarray(output, "RGB")


def stylize(content: Image.Image, style: Image.Image | Sequence[Image.Image], **options: Any) -> StylizeResult:
    """Repaint ``content`` in the style of ``style`` (one image or several) in one forward pass:
    :func:`stylize_batch` for one content. The options, all keywords:

    - ``alpha`` in [0, 1]: 0 gives g(f(c)), 1 the full transfer.
    - ``style_weights``: one per style, normalised to sum 1 (negative or all-zero refused);
      equal when None. ``masks``: one image per style, the content's size, white where that
      style goes (grey for a partial share); not combined with ``style_weights``.
    - ``preserve_color``: ``none``; ``match``, the style images first get the content's colour
      mean and covariance (the AdaIN paper's colour control); ``luminance``, transfer on the
      luminance only, the styles' luminance histogram-matched to the content's, then the
      content's chroma (Gatys et al. 2017). The same modes as :func:`painterly.optimize`.
    - ``content_size``: longer side of the output (None: the content's own size);
      ``style_size``: longer side the style is encoded at (None: its own size).
    - ``supersample``: paint at this many times the output's size (the content enlarged with
      Lanczos), then shrink the result to it: the decoder's strokes keep their size in pixels,
      so they come out finer and crisper, for the square of it in time. None: the model's
      :attr:`AdaINModel.supersample`, 2 for the bundled decoder and 1 (the paper) otherwise.
    - ``feature_transform``: ``adain`` gives the content's features each style channel's mean
      and std; ``wct``, their covariance too (see the module docstring). None: the model's
      :attr:`AdaINModel.feature_transform`, ``wct`` for the bundled decoder, ``adain`` otherwise.
    - ``encoder``, ``decoder``: weight names or files (see :meth:`AdaINModel.load`); ``seed``
      seeds ``random`` encoder weights; ``speed``: precision, layout and compilation
      (:class:`SpeedSettings`; default bfloat16 where native); ``model``: an already loaded
      model (its weights and speed win).
    - ``tile``: True, False or ``"auto"`` (tiles past :data:`AUTO_TILE_PIXELS` pixels). Tiles of
      ``tile_size`` pixels overlap by ``tile_overlap`` and are blended with cosine ramps; style
      statistics come from the whole style image and content statistics from the whole content
      at full size (gathered tile by tile beforehand), so tiles differ from one pass only where
      the decoder's and encoder's receptive fields cross a tile border. Peak memory grows with
      the tile, not the image, beyond a few bytes per content pixel for the input and output
      (measured in docs/adain.md).
    - ``callback(done, total)`` is called after every tile, statistics tiles included (once
      without tiles).
    - ``settings``: a :class:`StylizeSettings` to start from (the keywords above change it).

    Any size works: the content is reflect-padded to a multiple of 8 and the output cropped
    back, so it has the content's (resized) size exactly.
    """
    [result] = stylize_batch([content], style, batch_size=1, **options)
    return result


def stylize_batch(
    contents: Sequence[Image.Image],
    style: Image.Image | Sequence[Image.Image],
    *,
    settings: StylizeSettings | None = None,
    masks: Sequence[Image.Image] | None = None,
    batch_size: int | None = None,
    decoder: str | os.PathLike = "auto",
    encoder: str | os.PathLike = "auto",
    device: str | torch.device = "auto",
    seed: int = 0,
    speed: SpeedSettings = ADAIN_SPEED,
    model: AdaINModel | None = None,
    callback: TileProgress | None = None,
    content_statistics: Sequence[Stats] | None = None,
    **changes: Any,
) -> list[StylizeResult]:
    """:func:`stylize` for several contents (same options), one result per content, in order.

    ``changes`` are :class:`StylizeSettings` fields (``alpha=0.5`` ...), applied to ``settings``.
    Contents that end up the same size and need no tiles go through the networks together,
    up to ``batch_size`` at a time (fewer where the memory planner says a batch will not fit;
    None: :data:`DEFAULT_BATCH_SIZES` for the device): the same images as one at a time, within
    bfloat16 rounding. ``callback(done, total)`` counts tiles of tiled contents and one-pass
    batches. Video frames and resized folders are where batches form.

    ``content_statistics``: one (mean, std) per content, each (1, C, 1, 1), used in place of the
    content's own relu4_1 statistics (:func:`content_statistics` measures them; a video holds a
    shot's steady with them); not with masks.
    """
    if batch_size is not None and batch_size < 1:
        raise SettingsError(f"batch size must be at least 1, got {batch_size}")
    settings = _settings_for(settings, changes)
    styles = [style] if isinstance(style, Image.Image) else list(style)
    weights = settings.style_blend(len(styles), masks=None if masks is None else len(masks))
    if content_statistics is not None and (masks is not None or settings.crop or len(content_statistics) != len(contents)):
        raise SettingsError("give one content statistic per content, and no masks or crop with them")
    contents, styles, checked_masks = _sized_inputs(contents, styles, masks, settings)
    if model is None:
        model = load_model(encoder=encoder, decoder=decoder, seed=seed, device=device, speed=speed)
    settings = _with_decoder_defaults(settings, model)
    painted = [_as_painted(content, settings) for content in contents]
    if checked_masks is not None and settings.margin:
        # Every content has the masks' size (checked), so one painting size serves them all.
        inner = (painted[0].width - 2 * settings.margin, painted[0].height - 2 * settings.margin)
        checked_masks = [with_margin(m.resize(inner, Image.Resampling.BILINEAR), settings.margin) for m in checked_masks]
    tiles, batches = _plan_passes(model, painted, styles, tile=settings.tile, tile_size=settings.tile_size,
                                  tile_overlap=settings.tile_overlap,
                                  batch_size=batch_size or default_batch_size(model.device))
    total = len(batches) + sum(_tile_count(painted[i].size, t, settings.tile_overlap) for i, t in tiles.items())
    images = _run_passes(model, painted, styles, checked_masks, weights, settings, tiles, batches,
                         _Counter(total, callback), content_statistics)
    results = []
    for index, content in enumerate(contents):
        image = images[index]
        if settings.margin:
            image = image.crop((settings.margin, settings.margin, image.width - settings.margin,
                                image.height - settings.margin))
        if image.size != content.size:
            image = image.resize(content.size, Image.Resampling.LANCZOS)
        if settings.preserve_color == "luminance":
            image = with_chroma_of_image(image, content)
        # As done: the weights normalised, whether this content was tiled and at what size.
        # The masks' names (the CLI records their files').
        record = {**settings.to_dict(), "style_weights": weights, "tile": index in tiles,
                  "masks": None if masks is None else [f"mask {i}" for i in range(1, len(masks) + 1)],
                  "tile_size": tiles.get(index, settings.tile_size),
                  "encoder": model.encoder_label,
                  "decoder": model.decoder_label, "precision": model.precision}
        results.append(StylizeResult(image, record, seed, model.weights_note))
    return results


def _settings_for(settings: StylizeSettings | None, changes: dict[str, Any]) -> StylizeSettings:
    """``settings`` (default: :class:`StylizeSettings`) with ``changes``."""
    return replace(settings or StylizeSettings(), **changes)


def _with_decoder_defaults(settings: StylizeSettings, model: AdaINModel) -> StylizeSettings:
    """``settings`` with the model's ``supersample``, ``feature_transform`` and ``margin`` where
    they are None, resolved once so that every output records the values used."""
    return replace(settings, supersample=settings.supersample or model.supersample,
                   feature_transform=settings.feature_transform or model.feature_transform,
                   margin=model.margin if settings.margin is None else settings.margin)


def supersampled(image: Image.Image, factor: float) -> Image.Image:
    """``image`` enlarged ``factor`` times (Lanczos), the size :func:`stylize` paints at before
    shrinking the result back: the decoder's strokes keep their size in pixels, so they come
    out ``factor`` times finer."""
    return resize_longer_side(image, round(max(image.size) * factor))


def with_margin(image: Image.Image, margin: int) -> Image.Image:
    """``image`` reflected ``margin`` pixels past each edge (numpy's reflect, repeated where the
    image is narrower than the margin): what the networks see near a border is then more of
    the picture, not their own padding."""
    if not margin:
        return image
    array = np.asarray(image)
    widths = ((margin, margin), (margin, margin)) + ((0, 0),) * (array.ndim - 2)
    return Image.fromarray(np.pad(array, widths, mode="reflect"), image.mode)


def _as_painted(content: Image.Image, settings: StylizeSettings) -> Image.Image:
    """``content`` as the networks see it: enlarged ``supersample`` times, then reflected
    ``margin`` pixels past each edge (what :func:`stylize_batch` paints and
    :func:`content_statistics` measures)."""
    return with_margin(supersampled(content, settings.supersample), settings.margin)


def _sized_inputs(contents: Sequence[Image.Image], styles: list[Image.Image], masks: Sequence[Image.Image] | None,
                  settings: StylizeSettings) -> tuple[list[Image.Image], list[Image.Image], list[Image.Image] | None]:
    """The contents (RGB) and styles at the sizes they are used at, and the masks checked
    against every content (before any resizing, so refusals name the sizes given)."""
    contents = [content.convert("RGB") for content in contents]
    checked_masks = None
    if masks is not None:
        for content in contents:  # every content must have the masks' size
            checked_masks = check_masks(masks, content.size, count=len(styles))
    if settings.crop:
        contents, styles = [centre_square(c) for c in contents], [centre_square(s) for s in styles]
        checked_masks = None if checked_masks is None else [centre_square(m) for m in checked_masks]
    for content in contents:
        check_min_side(content.size, settings.content_size, min_side=MIN_SIDE, what="the content image")
    for index, style_image in enumerate(styles, start=1):
        check_min_side(style_image.size, settings.style_size, min_side=MIN_SIDE, what=f"style image {index}")
    if settings.content_size is not None:
        contents = [resize_longer_side(content, settings.content_size) for content in contents]
    if settings.style_size is not None:
        styles = [resize_longer_side(s, settings.style_size) for s in styles]
    return contents, styles, checked_masks


class _Counter:
    """Counts the passes of a :func:`stylize_batch` call and tells ``callback(done, total)``."""

    def __init__(self, total: int, callback: TileProgress | None) -> None:
        self.done, self.total, self.callback = 0, total, callback

    def __call__(self) -> None:
        self.done += 1
        if self.callback is not None:
            self.callback(self.done, self.total)


def _run_passes(model: AdaINModel, contents: list[Image.Image], styles: list[Image.Image],
                masks: list[Image.Image] | None, weights: list[float], settings: StylizeSettings,
                tiles: dict[int, int], batches: list[list[int]], step: Callable[[], None],
                held: Sequence[Stats] | None) -> dict[int, Image.Image]:
    """The stylised image of every content by index: the tiled ones tile by tile, the others in
    their batches (:func:`_plan_passes`)."""
    preserve_color = settings.preserve_color
    images: dict[int, Image.Image] = {}
    with model.speed.running(model.device):
        style_tensors = [image_to_tensor(s.convert("RGB")).to(model.device) for s in styles]
        # Without colour preservation every content sees the same statistics: look them up once.
        transform = settings.feature_transform
        shared = [model.style_statistics(s, transform=transform) for s in style_tensors] if preserve_color == "none" else None

        def statistics_for(index: int) -> list[Stats]:
            return shared if shared is not None else _style_statistics(model, contents[index], style_tensors,
                                                                       preserve_color, transform)

        # Luminance-only transfer runs the network on the grey content (Pillow's L is BT.601
        # luma, as color.luminance) and gives the result the content's chroma back at the end.
        net_contents = [c.convert("L").convert("RGB") if preserve_color == "luminance" else c for c in contents]
        for index, size in tiles.items():
            images[index] = _stylize_tiles(model, net_contents[index], statistics_for(index), masks, weights,
                                           settings.alpha, size, settings.tile_overlap, step,
                                           None if held is None else held[index], transform=transform)
        for indices in batches:
            outputs = _stylize_together(model, [net_contents[i] for i in indices], [statistics_for(i) for i in indices],
                                        masks, weights, settings.alpha,
                                        None if held is None else [held[i] for i in indices], transform=transform)
            images.update(zip(indices, outputs))
            step()
    return images


def content_statistics(contents: Sequence[Image.Image], *, model: AdaINModel, settings: StylizeSettings | None = None,
                       **changes: Any) -> list[Stats]:
    """The relu4_1 :func:`feature_statistics` of each content (batch of one, on the CPU), as
    :func:`stylize_batch` measures them with the same settings (``changes`` are fields, as
    there; ``content_size``, ``supersample``, ``margin``, ``feature_transform``, ``preserve_color``
    and the tiling count), over the padded image; tile by tile past the tile threshold, which gives the
    same figures."""
    settings = _with_decoder_defaults(_settings_for(settings, changes), model)
    results = []
    with model.speed.running(model.device):
        for content in contents:
            content = content.convert("RGB")
            if settings.content_size is not None:
                content = resize_longer_side(content, settings.content_size)
            content = _as_painted(content, settings)
            if settings.preserve_color == "luminance":
                content = content.convert("L").convert("RGB")
            if _tiled_by_choice(content, settings.tile):
                [stats] = _tiled_statistics(model, _reflect_padded(np.asarray(content)), None, [1.0], settings.tile_size,
                                            transform=settings.feature_transform)
            else:
                stats = feature_statistics(model.encode(pad_to_multiple(image_to_tensor(content).to(model.device))),
                                           transform=settings.feature_transform)
            results.append((stats[0].float().cpu(), stats[1].float().cpu()))
    return results


def _tiled_by_choice(content: Image.Image, tile: bool | str) -> bool:
    """Whether ``tile`` (True, False or "auto") tiles ``content`` whatever the memory: auto
    tiles past :data:`AUTO_TILE_PIXELS`."""
    return content.width * content.height > AUTO_TILE_PIXELS if tile == "auto" else bool(tile)


def _plan_passes(model: AdaINModel, contents: list[Image.Image], styles: list[Image.Image], *, tile: bool | str,
                 tile_size: int, tile_overlap: int, batch_size: int) -> tuple[dict[int, int], list[list[int]]]:
    """How to run each content: ``tiles`` maps a content's index to its tile size; the others
    are grouped by size into ``batches`` of indices, as large as ``batch_size`` and memory allow.
    Where one pass would not fit, tiles (or, with ``tile`` False, a :class:`SettingsError`)."""
    largest_style = max(((s.height, s.width) for s in styles), key=lambda hw: hw[0] * hw[1])

    def plan(width: int, height: int, batch: int = 1) -> MemoryPlan:
        return plan_memory("adain", height=height, width=width, batch=batch, device=model.device,
                           precision=model.speed.precision, style_size=largest_style)

    tiles: dict[int, int] = {}
    groups: dict[tuple[int, int], list[int]] = {}
    for index, content in enumerate(contents):
        if _tiled_by_choice(content, tile):
            tiles[index] = tile_size
            continue
        fits = plan(*content.size)
        if fits.tile is None:
            groups.setdefault(content.size, []).append(index)
        elif tile is False:
            raise SettingsError(f"{content.width}x{content.height} in one pass needs about "
                                f"{fits.estimate_bytes / 2**30:.1f} GiB: allow tiles (--tile)")
        else:
            # Never below what the overlap allows (seams): a little over the plan's budget instead.
            tiles[index] = max(min(tile_size, fits.tile), 2 * tile_overlap + DOWNSAMPLING)
    batches = []
    for size, indices in groups.items():
        batch = batch_size
        while batch > 1 and not plan(*size, batch).fits:
            batch //= 2
        batches += [indices[i : i + batch] for i in range(0, len(indices), batch)]
    return tiles, batches


def _style_statistics(model: AdaINModel, content: Image.Image, styles: list[torch.Tensor], preserve_color: str,
                      transform: str) -> list[Stats]:
    """Each style's feature statistics as ``content`` sees them under ``preserve_color``: the
    styles first take the content's colours (the model caches by the recoloured pixels)."""
    # A downscaled copy is enough for colour statistics: a huge content is never held in float.
    reference = image_to_tensor(_colour_reference(content)).to(model.device)
    _, styles = prepare_colors(reference, styles, preserve_color)
    return [model.style_statistics(s, transform=transform) for s in styles]


def _stylize_together(model: AdaINModel, contents: list[Image.Image], style_stats: list[list[Stats]],
                      masks: list[Image.Image] | None, weights: list[float], alpha: float,
                      held: list[Stats] | None = None, *, transform: str = "adain") -> list[Image.Image]:
    """One pass of the networks over same-size ``contents``; ``style_stats[i]`` holds content
    i's statistics of every style (for ``transform``). Statistics are per image, so a batch equals single passes.
    ``held``: content i's statistics given in advance (not with masks)."""
    width, height = contents[0].size
    padded = pad_to_multiple(torch.cat([image_to_tensor(c) for c in contents]).to(model.device))
    features = model.encode(padded)
    mask_arrays = [_mask_array(m, (width, height)) for m in masks] if masks else None
    maps = _maps(mask_arrays, weights, (0, 0, *padded.shape[-2:]), features.shape[-2:], model.device)
    if held is not None:
        content_stats = [(torch.cat([m for m, _ in held]).to(model.device), torch.cat([s for _, s in held]).to(model.device))] * len(weights)
    elif masks is None:
        content_stats = [feature_statistics(features, transform=transform)] * len(weights)
    else:
        content_stats = [feature_statistics(features, m, transform=transform) for m in maps]
    # Per style: the batch's means and spreads stacked along the batch.
    stacked = []
    for k in range(len(weights)):
        means, spreads = zip(*(per_image[k] for per_image in style_stats))
        stacked.append((torch.cat(means), torch.cat(spreads)))
    decoded = model.decode(blend_styles(features, content_stats, stacked, maps, alpha=alpha))
    return [tensor_to_image(image[:, :height, :width].cpu()) for image in decoded]
