"""AdaIN (Huang and Belongie, ICCV 2017): arbitrary style transfer in one forward pass.

An encoder f (the normalised VGG-19 up to relu4_1) encodes content c and style s; the AdaIN
layer gives f(c) the channel-wise mean and std of f(s); a decoder g maps the result back to an
image. With the trade-off alpha: T = g(alpha AdaIN(f(c), f(s)) + (1 - alpha) f(c)).
"""

from __future__ import annotations

import torch
from torch import nn

from .losses import channel_mean_std

#: The layer AdaIN works at, and the layers the decoder's style loss reads.
ADAIN_LAYER = "relu4_1"
STYLE_LOSS_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")


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


def build_decoder() -> nn.Sequential:
    """The decoder: VGG-19 to relu4_1 mirrored, x2 nearest upsampling in place of pooling,
    reflection padding, ReLU after every conv but the last, no normalisation layers.

    Built as one ``nn.Sequential`` so its state dict has the released ``decoder.pth`` keys
    (convs at indices 1, 5, 8, 11, 14, 18, 21, 25, 28).
    """

    def conv(c_in: int, c_out: int, *, relu: bool = True) -> list[nn.Module]:
        layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(c_in, c_out, 3)]
        return layers + [nn.ReLU()] if relu else layers

    def up() -> list[nn.Module]:
        return [nn.Upsample(scale_factor=2, mode="nearest")]

    return nn.Sequential(
        *conv(512, 256), *up(),
        *conv(256, 256), *conv(256, 256), *conv(256, 256), *conv(256, 128), *up(),
        *conv(128, 128), *conv(128, 64), *up(),
        *conv(64, 64), *conv(64, 3, relu=False),
    )  # fmt: skip
