"""Choosing the torch device."""

from __future__ import annotations

import torch

from .errors import SettingsError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """Return the device for ``name``; ``auto`` prefers CUDA, then Apple's MPS, then the CPU."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = name.split(":")[0]
    if kind not in DEVICE_CHOICES:
        raise SettingsError(f"unknown device {name!r}: choose one of {', '.join(DEVICE_CHOICES)}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise SettingsError("device 'cuda' was asked for but this torch build sees no CUDA GPU")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise SettingsError("device 'mps' was asked for but Apple's MPS is not available here")
    return torch.device(name)
