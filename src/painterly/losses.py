"""Losses as pure functions on feature maps and images.

Shapes: features are (N, C, H, W); a Gram matrix is (N, C, C). Every recipe normalises its
losses differently, and the scale of every weight depends on that choice, so the normalisation
is an argument here and each preset in :mod:`painterly.gatys` names its own.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import torch

from .errors import SettingsError

GramNormalization = Literal["none", "positions", "channels_positions"]
Reduction = Literal["mean", "sum", "paper"]
TVKind = Literal["squared", "absolute_mean", "keras", "neural_style"]


def _check_features(features: torch.Tensor, name: str = "features") -> None:
    if features.dim() != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got {tuple(features.shape)}")


def gram_matrix(features: torch.Tensor, *, normalization: GramNormalization = "channels_positions") -> torch.Tensor:
    """G = F F^T with F the features reshaped to (N, C, M), M = H W.

    ``normalization``: ``none`` (Gatys et al., Keras), ``positions`` divides by M (TensorFlow
    blog), ``channels_positions`` divides by C M (jcjohnson/neural-style, d2l).
    """
    _check_features(features)
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    gram = flat @ flat.transpose(1, 2)
    if normalization == "positions":
        gram = gram / (h * w)
    elif normalization == "channels_positions":
        gram = gram / (c * h * w)
    elif normalization != "none":
        raise ValueError(f"unknown Gram normalization {normalization!r}")
    return gram


def masked_gram_matrix(
    features: torch.Tensor, mask: torch.Tensor, *, normalization: GramNormalization = "channels_positions"
) -> torch.Tensor:
    """Guided Gram matrix: features weighted by a soft ``mask`` (N, 1, H, W) before the product.

    Positions count as the mask's total weight rather than H W, so a region's statistics do not
    shrink with its area (Gatys et al. 2017, "Controlling Perceptual Factors").
    """
    _check_features(features)
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[-2:] != features.shape[-2:]:
        raise ValueError(f"mask must have shape (N, 1, {features.shape[2]}, {features.shape[3]}), got {tuple(mask.shape)}")
    n, c, h, w = features.shape
    flat = (features * mask).reshape(n, c, h * w)
    gram = flat @ flat.transpose(1, 2)
    positions = (mask * mask).sum(dim=(1, 2, 3)).clamp_min(1e-8).view(n, 1, 1)
    if normalization == "positions":
        gram = gram / positions
    elif normalization == "channels_positions":
        gram = gram / (c * positions)
    elif normalization != "none":
        raise ValueError(f"unknown Gram normalization {normalization!r}")
    return gram


def content_loss(input: torch.Tensor, target: torch.Tensor, *, reduction: Reduction = "mean") -> torch.Tensor:
    """Squared error between feature maps: ``mean`` (MSE), ``sum``, or ``paper`` (1/2 of the sum)."""
    if input.shape != target.shape:
        raise ValueError(f"shapes differ: {tuple(input.shape)} vs {tuple(target.shape)}")
    squared = (input - target).pow(2)
    if reduction == "mean":
        return squared.mean()
    if reduction == "sum":
        return squared.sum()
    if reduction == "paper":
        return 0.5 * squared.sum()
    raise ValueError(f"unknown reduction {reduction!r}")


def gram_style_loss(
    input_gram: torch.Tensor,
    target_gram: torch.Tensor,
    *,
    reduction: Reduction = "mean",
    positions: int | None = None,
    channels: int | None = None,
) -> torch.Tensor:
    """Squared error between Gram matrices (N, C, C).

    ``mean``: MSE over the C^2 entries; ``sum``: the plain sum; ``paper``: Gatys et al.'s
    sum / (4 C^2 M^2), which needs ``positions`` = M; ``channels`` defaults to the Gram's C
    (the Keras example passes 3 and the image's pixel count instead of the layer's).
    """
    if input_gram.shape != target_gram.shape:
        raise ValueError(f"Gram shapes differ: {tuple(input_gram.shape)} vs {tuple(target_gram.shape)}")
    squared = (input_gram - target_gram).pow(2)
    if reduction == "mean":
        return squared.mean()
    if reduction == "sum":
        return squared.sum()
    if reduction == "paper":
        if positions is None:
            raise ValueError("the paper's normalisation needs positions=M")
        channels = channels or input_gram.shape[-1]
        return squared.sum() / (4.0 * channels**2 * positions**2)
    raise ValueError(f"unknown reduction {reduction!r}")


def total_variation_loss(image: torch.Tensor, *, kind: TVKind = "squared") -> torch.Tensor:
    """Smoothness of ``image`` (N, C, H, W) from differences of neighbouring pixels.

    ``squared``: sum of dx^2 + dy^2 over every difference; ``absolute_mean``:
    (mean |dx| + mean |dy|) / 2 (d2l); ``keras``: sum of (dx^2 + dy^2)^1.25 over the pixels
    that have both neighbours (the Keras example); ``neural_style``: 1/2 the sum of dx^2 + dy^2
    over those pixels, the loss whose gradient jcjohnson/neural-style's TV module back-propagates
    (it computes no loss value itself, only that gradient).
    """
    _check_features(image, "image")
    dx = image[:, :, :, 1:] - image[:, :, :, :-1]
    dy = image[:, :, 1:, :] - image[:, :, :-1, :]
    if kind == "squared":
        return dx.pow(2).sum() + dy.pow(2).sum()
    if kind == "absolute_mean":
        return 0.5 * (dx.abs().mean() + dy.abs().mean())
    if kind == "keras":
        return (dx[:, :, :-1, :].pow(2) + dy[:, :, :, :-1].pow(2)).pow(1.25).sum()
    if kind == "neural_style":
        return 0.5 * (dx[:, :, :-1, :].pow(2).sum() + dy[:, :, :, :-1].pow(2).sum())
    raise ValueError(f"unknown total variation kind {kind!r}")


def channel_mean_std(features: torch.Tensor, *, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel mean and std over positions, each (N, C, 1, 1); std = sqrt(var + eps).

    The variance is the biased one (divide by H W), as in instance normalisation.
    """
    _check_features(features)
    mean = features.mean(dim=(2, 3), keepdim=True)
    var = features.var(dim=(2, 3), keepdim=True, unbiased=False)
    return mean, (var + eps).sqrt()


def mean_std_style_loss(input: torch.Tensor, target: torch.Tensor, *, eps: float = 1e-5) -> torch.Tensor:
    """AdaIN's style loss at one layer: MSE of channel means plus MSE of channel stds."""
    if input.shape[:2] != target.shape[:2]:
        raise ValueError(f"batch and channels differ: {tuple(input.shape)} vs {tuple(target.shape)}")
    input_mean, input_std = channel_mean_std(input, eps=eps)
    target_mean, target_std = channel_mean_std(target, eps=eps)
    return (input_mean - target_mean).pow(2).mean() + (input_std - target_std).pow(2).mean()


def temporal_loss(image: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Ruder et al. (2016)'s short-term temporal loss: (1/D) sum_k c_k (x_k - w_k)^2, with w the
    previous output warped onto this frame, c the (1, 1, H, W) mask of pixels it is trusted at
    (0 where occluded) and D = C H W."""
    if image.shape != target.shape or mask.shape[-2:] != image.shape[-2:]:
        raise ValueError(f"image {tuple(image.shape)}, target {tuple(target.shape)}, mask {tuple(mask.shape)} differ")
    return (mask * (image - target) ** 2).mean()


def normalized_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    """Blend weights for ``count`` styles, normalised to sum 1 (equal when None).

    One rule for every method: negative, non-finite or all-zero weights and a wrong count are
    refused with :class:`SettingsError`.
    """
    if weights is None:
        return [1.0 / count] * count
    weights = [float(w) for w in weights]
    if len(weights) != count:
        raise SettingsError(f"{len(weights)} style weights given for {count} style images")
    if any(w < 0 or not math.isfinite(w) for w in weights) or sum(weights) <= 0:
        raise SettingsError("style weights must be non-negative numbers with a positive sum")
    if not math.isfinite(sum(weights)):  # 1e308 1e308: each finite, the sum not
        raise SettingsError(f"style weights {weights} add up to more than a float can hold: use smaller numbers")
    return [w / sum(weights) for w in weights]
