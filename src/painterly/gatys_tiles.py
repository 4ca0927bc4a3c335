"""Exact tiled gradients for optimisation-based transfer: any output size within a memory budget.

Every style statistic painterly optimises is a sum over feature positions p of a layer,

    G = (1/Z) sum_p f_p f_p^T        (Gram; guided by a mask m: f_p m_p, Z = C sum_p m_p^2)
    (mu, E[f^2]) = (1/M) sum_p (f_p, f_p^2)      (channel moments, for mean-std losses;
                                                  guided: m_p (f_p, f_p^2), M = sum_p m_p)

and the loss L = sum_l l_l(S_l) + content + TV depends on the positions only through such sums
and through local terms. So one iteration runs tile by tile, and gives one pass's loss and
gradient (up to floating-point rounding):

1. Pass 1, without gradients: every tile is encoded with a halo of context around the pixels it
   owns, and its owned feature positions add their share to each S_l. The sums are one pass's
   statistics; the loss and g_l = dL/dS_l are computed once, on C x C matrices, not on images.
2. Pass 2: every tile is encoded again with autograd and the scalar
       sum_l <g_l, S_l(owned positions of the tile)> + content loss at its owned positions
   is backpropagated. By the chain rule dL/dx = sum_l sum_p g_l . dS_l,p/dx, and each position
   p is owned by exactly one tile, so the tiles' pixel gradients add up to one pass's.

The content term is a sum of squared errors over positions (each tile adds its owned ones) and
total variation is computed on the whole image, which needs no network and little memory.
Calibration (``calibrate_layers``) is made of such sums too: each layer's root mean square on
the content image and the content's own style loss at each layer (the loss of its statistics)
are summed over the content's tiles once, before the first iteration.

Not sums over positions, so not tiled: the sorted projections of sliced-Wasserstein and
histogram losses, and ``normalize_gradients`` (it divides each term's feature gradient by its L1
norm over the whole image, which would cost another pass over the tiles per iteration).

Why a tile's owned features equal one pass's: a feature depends only on the pixels in its
receptive field, which the halo (:func:`receptive_field`) covers, so it never reads the
window's padding. Windows start at multiples of the deepest layer's stride (2 per max pooling),
so their pooling windows are one pass's. What differs is summation order and, possibly, the
convolution algorithm chosen for another shape: rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

import torch

from .encoder import LAYER_NAMES, deepest_layer
from .errors import SettingsError
from .losses import gram_style_loss, mean_std_distance, total_variation_loss

if TYPE_CHECKING:
    from .gatys import GatysObjective, GatysSettings
    from .speed import SpeedSettings

#: Tile windows (halo included) that ``tile=True`` uses when no size is given.
DEFAULT_GATYS_TILE = 512

Box = tuple[int, int, int, int]  # top, bottom, left, right in pixels, ends exclusive


def layer_stride(layer: str) -> int:
    """Pixels per feature position at ``layer``: 2 to the number of max poolings before it."""
    deepest_layer([layer])
    return 2 ** sum(name.startswith("pool") for name in LAYER_NAMES[: LAYER_NAMES.index(layer) + 1])


def receptive_field(layers: Sequence[str]) -> tuple[int, int]:
    """(stride, halo): the deepest layer's stride and the context, in pixels on each side, that
    the owned positions of every layer in ``layers`` need, rounded up to a multiple of the stride.

    Walking VGG-19 in order, a position p of a layer at stride s reads pixels
    [p s + low, p s + high]: a 3x3 convolution widens that by s on each side, a 2x2 max pooling
    by s on the right and doubles s. A tile owning pixels [a, b) (multiples of s) then needs
    -low pixels before a and high - s + 1 after b.
    """
    deepest = deepest_layer(layers)
    wanted = set(layers)
    low = high = halo = 0
    stride = 1
    for name in LAYER_NAMES[: LAYER_NAMES.index(deepest) + 1]:
        if name.startswith("conv"):
            low, high = low - stride, high + stride
        elif name.startswith("pool"):
            high, stride = high + stride, stride * 2
        if name in wanted:
            halo = max(halo, -low, high - stride + 1)
    return stride, math.ceil(halo / stride) * stride


def feature_size(length: int, layer: str, *, ceil_mode: bool) -> int:
    """Positions along a side of ``length`` pixels at ``layer`` (each pooling halves, rounding
    up for the normalised encoder's ``ceil_mode``, down for torchvision's)."""
    for _ in range(int(math.log2(layer_stride(layer)))):
        length = -(-length // 2) if ceil_mode else length // 2
    return length


def minimum_tile(layers: Sequence[str]) -> int:
    """The smallest tile window for ``layers``: a halo on each side of one stride of owned pixels."""
    stride, halo = receptive_field(layers)
    return 2 * halo + stride



@dataclass(frozen=True)
class Tile:
    """The pixels a tile owns and the larger window, with its halo, it is encoded from; whether
    it reaches the image's bottom and right edges (where it owns up to the layers' last row)."""

    owned: Box
    window: Box
    at_bottom: bool
    at_right: bool


def plan_tiles(height: int, width: int, *, tile_size: int, layers: Sequence[str]) -> list[Tile]:
    """Tiles over an (H, W) image whose windows are at most ``tile_size`` pixels on a side.

    Each owns a square of ``tile_size`` - 2 halo pixels (rounded down to the deepest layer's
    stride), the last ones in a row or column less; windows are clipped to the image.
    """
    stride, halo = receptive_field(layers)
    core = (tile_size - 2 * halo) // stride * stride
    if core < stride:
        raise SettingsError(
            f"tile size {tile_size} is too small for layer {deepest_layer(layers)}: tiles need a halo of "
            f"{halo} px on each side, so at least {minimum_tile(layers)} px"
        )
    tiles = []
    for top in range(0, height, core):
        for left in range(0, width, core):
            bottom, right = min(top + core, height), min(left + core, width)
            window = (max(0, top - halo), min(height, bottom + halo), max(0, left - halo), min(width, right + halo))
            tiles.append(Tile((top, bottom, left, right), window, bottom == height, right == width))
    return tiles


Slices = tuple[slice, slice]


def owned_positions(tile: Tile, layer: str, full_shape: tuple[int, int]) -> tuple[Slices, Slices]:
    """The rows and columns of ``layer`` that ``tile`` owns, as slices of the tile's features and
    of the whole image's; ``full_shape`` is the layer's (rows, columns) for the whole image."""
    stride = layer_stride(layer)
    (top, bottom, left, right), window = tile.owned, tile.window
    # Owned boxes end at multiples of the stride, except at the image's edges, where the tile
    # owns the layer's last positions (a half pooling window in ceil mode, none in floor mode).
    last_row = full_shape[0] if tile.at_bottom else bottom // stride
    last_column = full_shape[1] if tile.at_right else right // stride
    row, column = (top - window[0]) // stride, (left - window[2]) // stride
    local = (slice(row, row + last_row - top // stride), slice(column, column + last_column - left // stride))
    return local, (slice(top // stride, last_row), slice(left // stride, last_column))


def window_of(image: torch.Tensor, tile: Tile) -> torch.Tensor:
    top, bottom, left, right = tile.window
    return image[:, :, top:bottom, left:right]


def layer_shapes(height: int, width: int, layers: Sequence[str], *, ceil_mode: bool) -> dict[str, tuple[int, int]]:
    """Each layer's (rows, columns) for an (H, W) image."""
    return {layer: (feature_size(height, layer, ceil_mode=ceil_mode), feature_size(width, layer, ceil_mode=ceil_mode))
            for layer in layers}


# ---------------------------------------------------------------------------------------------
# Statistics that are sums over positions.


def _widened(values: torch.Tensor) -> torch.Tensor:
    """``values`` in float32 at least: statistics sum many products, bfloat16 would lose them."""
    return values.to(torch.promote_types(values.dtype, torch.float32))


class PositionSum(Protocol):
    """A style statistic that is a sum over feature positions, so the tiles' parts add up to
    one pass's. ``part(features, mask)`` is the share of the positions given (``mask``: their
    weights, or None); everything global (normalisers, targets) is fixed beforehand."""

    def part(self, features: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor: ...


@dataclass(frozen=True)
class GramSum:
    """G = (1/Z) sum_p (m_p f_p)(m_p f_p)^T, (N, C, C), float32 or wider; Z is one pass's normaliser."""

    divisor: float | torch.Tensor

    def part(self, features: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        flat = _widened(features if mask is None else features * mask).flatten(2)
        return flat @ flat.transpose(1, 2) / self.divisor


@dataclass(frozen=True)
class MomentSum:
    """(mean, mean of squares) per channel, (2, N, C), float32 or wider: sum_p m_p (f_p, f_p^2) / Z
    with Z one pass's number of positions, or (guided by a mask m) its total weight sum_p m_p,
    as :func:`painterly.losses.masked_channel_mean_std` counts them."""

    divisor: float | torch.Tensor

    def part(self, features: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        flat = _widened(features).flatten(2)
        if mask is None:
            return torch.stack([flat.sum(-1), flat.pow(2).sum(-1)]) / self.divisor
        weights = _widened(mask).flatten(2)
        return torch.stack([(flat * weights).sum(-1), (flat.pow(2) * weights).sum(-1)]) / self.divisor


def mean_std_from_moments(moments: torch.Tensor, *, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel means and stds (N, C, 1, 1) from a :class:`MomentSum` total: var = E[f^2] - mu^2,
    std = sqrt(var + eps), the biased variance of :func:`painterly.losses.channel_mean_std`."""
    mean, square = moments[0], moments[1]
    std = (square - mean.pow(2)).clamp_min(0).add(eps).sqrt()
    return mean[..., None, None], std[..., None, None]


@dataclass(frozen=True)
class StyleTerm:
    """One style statistic at one layer and its loss as a function of the whole image's total
    (its weights included); ``mask`` (N, 1, rows, columns) at the layer, for the whole image."""

    layer: str
    statistic: PositionSum
    mask: torch.Tensor | None = None
    loss: Callable[[torch.Tensor], torch.Tensor] | None = None


def style_terms(objective: "GatysObjective", shapes: dict[str, tuple[int, int]], pixel_count: int, *,
                weighted: bool = True) -> list[StyleTerm]:
    """``objective``'s style terms (Gram or mean-std, guided by masks or not) for an image of
    ``pixel_count`` pixels whose layers have ``shapes``, weighted as :meth:`GatysObjective.__call__`
    weighs them; ``weighted=False`` leaves only each style's blend weight (calibration's own losses)."""
    s = objective.settings
    style_weight = s.style_weight / (len(objective.style_layers) if s.average_layers else 1)
    terms = []
    for weight, targets, masks in objective.style_terms:
        for layer in objective.style_layers:
            factor = weight
            if weighted:
                factor *= style_weight * objective.layer_weights[layer] / objective.style_norms[layer]
            terms.append(_style_term(s, layer, targets[layer], None if masks is None else masks[layer],
                                     positions=shapes[layer][0] * shapes[layer][1], pixel_count=pixel_count, factor=factor))
    return terms


def _style_term(settings: "GatysSettings", layer: str, target: torch.Tensor, mask: torch.Tensor | None, *,
                positions: int, pixel_count: int, factor: float) -> StyleTerm:
    """``factor`` times the loss ``settings.style_loss`` gives at ``layer``, as a function of its statistic's total."""
    if settings.style_loss == "mean-std":
        count = positions if mask is None else mask.sum(dim=(1, 2, 3)).clamp_min(1e-8).view(-1, 1)

        def moments_loss(moments: torch.Tensor) -> torch.Tensor:
            return factor * mean_std_distance(mean_std_from_moments(moments), (target[0], target[1]))

        return StyleTerm(layer, MomentSum(count), mask, moments_loss)
    if settings.style_loss != "gram":
        raise SettingsError(f"style_loss {settings.style_loss} is not a sum over positions: it cannot be tiled")
    divisor = _gram_divisor(settings.gram_normalization, channels=target.shape[-1], positions=positions, mask=mask)
    if settings.style_reduction == "keras":
        reduction: dict = dict(reduction="paper", channels=3, positions=pixel_count)
    else:
        reduction = dict(reduction=settings.style_reduction, positions=positions)

    def gram_loss(gram: torch.Tensor) -> torch.Tensor:
        return factor * gram_style_loss(gram, target, **reduction)

    return StyleTerm(layer, GramSum(divisor), mask, gram_loss)


def _gram_divisor(normalization: str, *, channels: int, positions: int, mask: torch.Tensor | None) -> float | torch.Tensor:
    # A guided Gram counts positions as the mask's total squared weight (losses.masked_gram_matrix).
    count = positions if mask is None else (mask * mask).sum(dim=(1, 2, 3)).clamp_min(1e-8).view(-1, 1, 1)
    if normalization == "none":
        return 1.0
    if normalization == "positions":
        return count
    if normalization == "channels_positions":
        return channels * count
    raise SettingsError(f"unknown Gram normalization {normalization!r}")


def content_part(owned: torch.Tensor, target: torch.Tensor, *, reduction: str, count: int) -> torch.Tensor:
    """The owned positions' share of :func:`painterly.losses.content_loss` over ``count`` elements."""
    squared = (owned - target).pow(2).sum()
    if reduction == "mean":
        return squared / count
    if reduction == "sum":
        return squared
    if reduction == "paper":
        return 0.5 * squared
    raise SettingsError(f"unknown reduction {reduction!r}")


# ---------------------------------------------------------------------------------------------
# Passes over the tiles.

Encode = Callable[[torch.Tensor], dict[str, torch.Tensor]]


def _owned(features: dict[str, torch.Tensor], tile: Tile, layer: str,
           shapes: dict[str, tuple[int, int]]) -> tuple[torch.Tensor, Slices]:
    local, whole = owned_positions(tile, layer, shapes[layer])
    return features[layer][:, :, local[0], local[1]], whole


def _term_part(term: StyleTerm, features: dict[str, torch.Tensor], tile: Tile,
               shapes: dict[str, tuple[int, int]]) -> torch.Tensor:
    owned, whole = _owned(features, tile, term.layer, shapes)
    return term.statistic.part(owned, None if term.mask is None else term.mask[:, :, whole[0], whole[1]])


def statistics_in_tiles(encode: Encode, image: torch.Tensor, terms: Sequence[StyleTerm], *,
                        tiles: Sequence[Tile], shapes: dict[str, tuple[int, int]]) -> list[torch.Tensor]:
    """Pass 1: each term's statistic of the whole ``image``, summed over the tiles' owned
    positions (run it without gradients)."""
    totals: list[torch.Tensor] = []
    for tile in tiles:
        features = encode(window_of(image, tile))
        parts = [_term_part(term, features, tile, shapes) for term in terms]
        totals = parts if not totals else [total + part for total, part in zip(totals, parts)]
    return totals


def features_in_tiles(encode: Encode, image: torch.Tensor, layers: Sequence[str], *,
                      tiles: Sequence[Tile], shapes: dict[str, tuple[int, int]]) -> dict[str, torch.Tensor]:
    """The whole ``image``'s features at ``layers``, put together from the tiles' owned positions."""
    assembled: dict[str, torch.Tensor] = {}
    for tile in tiles:
        features = encode(window_of(image, tile))
        for layer in layers:
            owned, whole = _owned(features, tile, layer, shapes)
            if layer not in assembled:
                assembled[layer] = owned.new_empty(owned.shape[:2] + shapes[layer])
            assembled[layer][:, :, whole[0], whole[1]] = owned
    return assembled


def statistic_gradients(terms: Sequence[StyleTerm], totals: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The style loss sum_t loss_t(S_t) of pass 1's totals S_t, and dL/dS_t for each: once per
    iteration, on the statistics alone."""
    if not totals:
        return torch.zeros(()), []
    leaves = [total.detach().requires_grad_(True) for total in totals]
    with torch.enable_grad():
        loss = sum(term.loss(leaf) for term, leaf in zip(terms, leaves))
    return loss.detach(), list(torch.autograd.grad(loss, leaves))


# ---------------------------------------------------------------------------------------------
# A Gatys objective, tile by tile.


def _geometry(objective: "GatysObjective", image: torch.Tensor, tile_size: int) -> tuple[list[Tile], dict[str, tuple[int, int]]]:
    height, width = image.shape[-2:]
    tiles = plan_tiles(height, width, tile_size=tile_size, layers=objective.layers)
    return tiles, layer_shapes(height, width, objective.layers, ceil_mode=objective.encoder.flavour == "normalised")


def content_features_in_tiles(objective: "GatysObjective", content: torch.Tensor, *,
                              tile_size: int) -> tuple[dict[str, torch.Tensor], dict[str, tuple[int, int]]]:
    """The content image's features at the content layers, and every layer's shape, tile by tile
    (without gradients): the targets of :class:`painterly.gatys.GatysObjective`."""
    tiles, shapes = _geometry(objective, content, tile_size)
    layers = tuple(dict.fromkeys(objective.settings.content_layers))
    return features_in_tiles(objective._features, content, layers, tiles=tiles, shapes=shapes), shapes


def targets_in_tiles(objective: "GatysObjective", style: torch.Tensor, *, tile_size: int) -> dict[str, torch.Tensor]:
    """The style image's statistics at the style layers as one pass gives them (Gram matrices,
    or stacked channel means and stds), summed tile by tile without gradients."""
    tiles, shapes = _geometry(objective, style, tile_size)
    gram = objective.settings.style_loss == "gram"
    terms = [StyleTerm(layer, GramSum(1.0) if gram else MomentSum(shapes[layer][0] * shapes[layer][1]))
             for layer in objective.style_layers]
    totals = statistics_in_tiles(objective._features, style, terms, tiles=tiles, shapes=shapes)
    if not gram:
        return {term.layer: torch.stack(mean_std_from_moments(total)) for term, total in zip(terms, totals)}
    normalization = objective.settings.gram_normalization
    return {
        term.layer: total / _gram_divisor(normalization, channels=total.shape[-1],
                                          positions=shapes[term.layer][0] * shapes[term.layer][1], mask=None)
        for term, total in zip(terms, totals)
    }


def layer_scales_in_tiles(objective: "GatysObjective", content: torch.Tensor, *, tile_size: int) -> dict[str, float]:
    """Each layer's root mean square on the raw (unscaled) features of ``content``, summed tile
    by tile: :class:`painterly.gatys.GatysObjective`'s calibration."""
    tiles, shapes = _geometry(objective, content, tile_size)
    terms = [StyleTerm(layer, MomentSum(shapes[layer][0] * shapes[layer][1])) for layer in objective.layers]

    def encode(window: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: value.float() for name, value in objective.encoder(window, objective.layers).items()}

    totals = statistics_in_tiles(encode, content, terms, tiles=tiles, shapes=shapes)
    return {term.layer: float(total[1].mean().sqrt().clamp_min(1e-12)) for term, total in zip(terms, totals)}


def content_style_losses_in_tiles(objective: "GatysObjective", content: torch.Tensor, *,
                                  tile_size: int) -> dict[str, float]:
    """The content image's own style loss at each style layer (each style's blend weight in,
    nothing else), from its statistics summed tile by tile: the calibration's per-layer norms."""
    tiles, shapes = _geometry(objective, content, tile_size)
    terms = style_terms(objective, shapes, content.shape[-1] * content.shape[-2], weighted=False)
    totals = statistics_in_tiles(objective._features, content, terms, tiles=tiles, shapes=shapes)
    losses = dict.fromkeys(objective.style_layers, 0.0)
    for term, total in zip(terms, totals):
        losses[term.layer] += float(term.loss(total))
    return {layer: max(loss, 1e-12) for layer, loss in losses.items()}


def _content_share(objective: "GatysObjective", features: dict[str, torch.Tensor], tile: Tile,
                   shapes: dict[str, tuple[int, int]]) -> torch.Tensor:
    """The tile's owned positions' share of the (unweighted) content loss."""
    share = _widened(next(iter(features.values())).new_zeros(()))
    for layer, target in objective.content_targets.items():
        owned, whole = _owned(features, tile, layer, shapes)
        share = share + content_part(_widened(owned), _widened(target[:, :, whole[0], whole[1]]),
                                     reduction=objective.settings.content_reduction, count=target.numel())
    return share


def tiled_losses(objective: "GatysObjective", pixels: torch.Tensor, *, tile_size: int,
                 speed: "SpeedSettings") -> dict[str, torch.Tensor]:
    """``objective(pixels)``'s losses (detached) computed tile by tile, with their gradient
    added to ``pixels.grad``: what ``objective(pixels)["total"].backward()`` gives, in the
    memory of one tile. Pass 1 sums the style statistics, pass 2 backpropagates each tile's
    owned share (see the module's docstring); the forward passes run under ``speed``."""
    s = objective.settings
    tiles, shapes = _geometry(objective, pixels, tile_size)
    terms = style_terms(objective, shapes, pixels.shape[-1] * pixels.shape[-2])

    def encode(window: torch.Tensor) -> dict[str, torch.Tensor]:
        return objective._features(window / objective.pixel_scale)

    with torch.no_grad(), speed.running(pixels.device, grad=True):
        totals = statistics_in_tiles(encode, pixels.detach(), terms, tiles=tiles, shapes=shapes)
    style, gradients = statistic_gradients(terms, totals)
    content_weight = s.content_weight / (len(objective.content_targets) if s.average_layers else 1)
    content = pixels.new_zeros(())
    if pixels.grad is None:
        pixels.grad = torch.zeros_like(pixels)
    for tile in tiles:
        window = window_of(pixels.detach(), tile).requires_grad_(True)
        with speed.running(pixels.device, grad=True):
            features = encode(window)
            # <dL/dS, S(owned)> has the owned positions' share of dL/dx as its gradient.
            surrogate = sum(((gradient * _term_part(term, features, tile, shapes)).sum()
                             for term, gradient in zip(terms, gradients)), window.new_zeros(()))
            local = _content_share(objective, features, tile, shapes)
            surrogate = surrogate + content_weight * local
        content += local.detach()
        if surrogate.requires_grad:  # else no loss reads this tile (all weights 0)
            surrogate.backward()
            top, bottom, left, right = tile.window
            pixels.grad[:, :, top:bottom, left:right] += window.grad
    tv = pixels.new_zeros(())
    if s.tv_weight:
        with torch.enable_grad():
            tv = s.tv_weight * total_variation_loss(pixels, kind=s.tv_kind)
        tv.backward()
    losses = {"content": content_weight * content, "style": style.to(pixels.device), "tv": tv.detach()}
    losses["total"] = losses["content"] + losses["style"] + losses["tv"]
    return losses
