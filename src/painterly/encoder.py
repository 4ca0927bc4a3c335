"""VGG-19 with named layers, truncated at the deepest layer a method asks for.

Layers are named as in the papers: ``conv{b}_{i}``, ``relu{b}_{i}``, ``pool{b}``. The encoder
takes RGB in [0, 1] whatever its weights expect, and builds only the convolutions up to its
``last_layer``: computing deeper features that no loss reads is waste.

Two flavours, one per weight layout:

* ``torchvision``: ImageNet mean/std normalisation, zero padding, 2x2 max pooling.
* ``normalised`` (AdaIN, Gatys): a learnt 1x1 conv maps RGB [0, 1] to the mean-subtracted BGR
  [0, 255] the net was trained on; reflection padding; max pooling with ``ceil_mode``.
"""

from __future__ import annotations

import hashlib
import os
from typing import Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import SettingsError
from .weights import (
    NORMALISED_INDICES,
    TORCHVISION_INDICES,
    VGG19_CONV_CHANNELS,
    VGG19_CONV_NAMES,
    Progress,
    check_layout,
    load_weights,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _layer_names() -> tuple[str, ...]:
    names = []
    for conv in VGG19_CONV_NAMES:
        block, index = conv[4:].split("_")
        names += [conv, f"relu{block}_{index}"]
        if conv in ("conv1_2", "conv2_2", "conv3_4", "conv4_4", "conv5_4"):
            names.append(f"pool{block}")
    return tuple(names)


#: Every layer name in forward order: conv1_1, relu1_1, conv1_2, relu1_2, pool1, conv2_1, ...
LAYER_NAMES = _layer_names()


def deepest_layer(layers: Iterable[str]) -> str:
    """The layer among ``layers`` that comes last in VGG-19 (checks every name)."""
    layers = list(layers)
    for layer in layers:
        if layer not in LAYER_NAMES:
            raise SettingsError(f"unknown VGG-19 layer {layer!r}: use names such as relu4_1 or conv5_2")
    if not layers:
        raise SettingsError("no layers given")
    return max(layers, key=LAYER_NAMES.index)


def smallest_input_side(*, flavour: str, last_layer: str) -> int:
    """The fewest pixels an image side may have for features up to ``last_layer``.

    Followed through the layers: each 2x2 pooling halves a side (rounding down for torchvision,
    up for the normalised net's ``ceil_mode``), and must leave at least 1 pixel; reflection
    padding needs at least 2 pixels before every convolution of the normalised net.
    """
    layers = LAYER_NAMES[: LAYER_NAMES.index(deepest_layer([last_layer])) + 1]
    for side in range(1, 1 << 12):
        size, fits = side, True
        for name in layers:
            if name.startswith("conv") and flavour == "normalised" and size < 2:
                fits = False
            elif name.startswith("pool"):
                size = -(-size // 2) if flavour == "normalised" else size // 2
                fits = fits and size >= 1
        if fits:
            return side
    raise ValueError(f"no input side fits {last_layer}")


class ReflectionPad2d(nn.ReflectionPad2d):
    """:class:`torch.nn.ReflectionPad2d` that keeps its input's dtype under autocast.

    Autocast lists reflection padding among its float32 operations, so under bfloat16 autocast
    every padded activation was copied to float32 and back to bfloat16 by the next convolution:
    a fifth of AdaIN's time on the CPU. Padding only moves values, so bfloat16 loses nothing.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x)


#: The encoder's 2x2 pooling: VGG's ``max``, or ``avg`` (Gatys et al. 2016), same weights.
POOLINGS = ("max", "avg")


class VGG19Encoder(nn.Module):
    """VGG-19 features up to ``last_layer``; ``forward`` returns a dict of the requested layers."""

    def __init__(self, *, flavour: str = "torchvision", last_layer: str = "relu5_1", pooling: str = "max") -> None:
        super().__init__()
        if flavour not in ("torchvision", "normalised"):
            raise ValueError(f"unknown flavour {flavour!r}")
        if pooling not in POOLINGS:
            raise SettingsError(f"unknown pooling {pooling!r}: choose max or avg")
        self.flavour = flavour
        #: ``avg`` replaces every max pooling by average pooling, as Gatys et al. 2016 did: the
        #: weights stay the same, the features change.
        self.pooling = pooling
        self.last_layer = deepest_layer([last_layer])
        self.layer_names = LAYER_NAMES[: LAYER_NAMES.index(self.last_layer) + 1]
        self.convs = nn.ModuleDict()
        for name, (c_in, c_out) in zip(VGG19_CONV_NAMES, VGG19_CONV_CHANNELS):
            if name in self.layer_names:
                self.convs[name] = nn.Conv2d(c_in, c_out, 3, padding=0 if flavour == "normalised" else 1)
        # Zero padding happens inside torchvision's convolutions; reflection needs its own pass.
        self.pad = ReflectionPad2d(1) if flavour == "normalised" else nn.Identity()
        if flavour == "normalised":
            self.preprocess = nn.Conv2d(3, 3, 1)
        else:
            self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def forward(self, image: torch.Tensor, layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Features of ``image`` (N, 3, H, W, RGB in [0, 1]) at ``layers`` (default: the last)."""
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(image.shape)}")
        wanted = set(layers or (self.last_layer,))
        stop = deepest_layer(wanted)
        if LAYER_NAMES.index(stop) > LAYER_NAMES.index(self.last_layer):
            raise SettingsError(f"layer {stop} is deeper than this encoder's last layer {self.last_layer}")
        normalised = self.flavour == "normalised"
        x = self.preprocess(image) if normalised else (image - self.mean) / self.std
        features = {}
        for name in self.layer_names:
            if name.startswith("conv"):
                x = self.convs[name](self.pad(x))
            elif name.startswith("relu"):
                x = F.relu(x)
            elif self.pooling == "avg":
                x = F.avg_pool2d(x, 2, ceil_mode=normalised)
            else:
                x = F.max_pool2d(x, 2, ceil_mode=normalised)
            if name in wanted:
                features[name] = x
            if name == stop:
                break
        return features

    def load_vgg_state_dict(self, state_dict: Mapping[str, torch.Tensor], *, name: str = "weights") -> None:
        """Load weights in this flavour's layout (extra keys, deeper convs and classifier ignored)."""
        convs = len(self.convs)
        check_layout(state_dict, self.flavour, convs=convs, name=name)
        prefix, indices = ("", NORMALISED_INDICES) if self.flavour == "normalised" else ("features.", TORCHVISION_INDICES)
        with torch.no_grad():
            for conv_name, index in zip(VGG19_CONV_NAMES[:convs], indices):
                self.convs[conv_name].weight.copy_(state_dict[f"{prefix}{index}.weight"])
                self.convs[conv_name].bias.copy_(state_dict[f"{prefix}{index}.bias"])
            if self.flavour == "normalised":
                self.preprocess.weight.copy_(state_dict["0.weight"])
                self.preprocess.bias.copy_(state_dict["0.bias"])


def encoder_fingerprint(encoder: VGG19Encoder) -> str:
    """SHA-256 of the encoder's weights (float32, its state dict's order): what a trained decoder
    records of the encoder it fits, whatever name or file the weights came from."""
    digest = hashlib.sha256(encoder.flavour.encode())
    for key, value in encoder.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_encoder(
    weights: str | os.PathLike = "vgg19",
    *,
    last_layer: str = "relu5_1",
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    pooling: str = "max",
) -> tuple[VGG19Encoder, str]:
    """Build a frozen encoder from a registry name or a weight file; returns it and its label."""
    state, layout, label = load_weights(weights, role="encoder", seed=seed, progress=progress)
    encoder = VGG19Encoder(flavour=layout, last_layer=last_layer, pooling=pooling)
    encoder.load_vgg_state_dict(state, name=label)
    return encoder.to(device), label
