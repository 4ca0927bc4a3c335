"""Settings profiles: what optimisation changes in a preset when the encoder is not the one the
recipe was written for.

The presets' recipes were tuned on ImageNet-trained VGG-19 features. Seeded random features
(``weights="random"``, chosen or fallen back to offline) respond differently: their layers have
other scales, their first layers are edge-blind noise detectors, and a recipe's TV weight or its
start from noise leaves a blurred blob. The ``random-features`` profile holds the settings that
paint with them, measured in docs/offline-painting.md; every entry point (optimize, sweep, demo,
the studio, :func:`painterly.optimize`) applies it through :func:`profile_changes`, so they agree,
and the output's metadata records it under ``profile``.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from .errors import SettingsError

RANDOM_FEATURES = "random-features"
#: ``auto``: the random-feature profile when the encoder's weights are random, none otherwise;
#: ``none``: the preset's values whatever the weights; or a profile by name.
PROFILE_CHOICES = ("auto", "none", RANDOM_FEATURES)

#: Settings for random VGG-19 features (fields of :class:`painterly.gatys.GatysSettings`); each
#: value is a measured lever, see docs/offline-painting.md.
RANDOM_FEATURE_SETTINGS: dict[str, Any] = {
    # Start from the photo: from noise, random features rebuild no structure (edge correlation
    # with the photo 0.08) in any affordable number of iterations.
    "init": "content",
    # Unit-scale layers, each style layer's term 1 at the photo: the weights below then mean
    # the same at every layer and for every style loss. They are x100 only because L-BFGS stops
    # (max |gradient| < 1e-7 on 0-255 pixels) before its first step at 1 and 1.
    "calibrate_layers": True,
    # Content at relu3_1 as well as relu4_2: random relu4_2 alone let paintings far from the
    # photo (white lines on black, white fields) dissolve it; with the shallower layer the photo's
    # edges held better on tuning and unseen pairs alike, and style 300 against content 100 kept
    # the painting's colour and texture as close as before.
    "content_layers": ("relu3_1", "relu4_2"),
    "content_weight": 100.0,
    "style_weight": 300.0,
    # Channel means and stds: the painting's colours and texture as well as sliced Wasserstein
    # at three quarters of its cost, and it works with masks.
    "style_loss": "mean-std",
    # Average pooling (as Gatys et al.): stroke-like texture instead of pixel confetti.
    "pooling": "avg",
    # Any total variation blurs random features' texture away (a blob at 3e-7 here).
    "tv_weight": 0.0,
    # One scale: coarse-to-fine made larger blotches but lost the photo's edges (0.52 vs 0.66).
    "scales": 1,
    "iterations": 80,
}

PROFILES: dict[str, dict[str, Any]] = {RANDOM_FEATURES: RANDOM_FEATURE_SETTINGS}

#: Settings that decide a run's length together: a caller who sets one of a group's keys (left)
#: takes over the whole group from the profile, so that a profile's iterations per scale never
#: contradict the caller's ``iterations`` or ``scales``.
LENGTH_GROUPS = {
    ("iterations", "iterations_per_scale"): ("iterations", "iterations_per_scale"),
    ("scales", "start_size"): ("scales", "start_size", "iterations_per_scale"),
}


def resolve_profile(profile: str, weights: str | os.PathLike) -> str | None:
    """The profile a run uses: ``auto`` picks ``random-features`` when ``weights`` (already
    resolved, so ``auto`` has become a name) is ``random``; ``none`` gives None."""
    if profile not in PROFILE_CHOICES:
        raise SettingsError(f"unknown profile {profile!r}: choose {', '.join(PROFILE_CHOICES)}")
    if profile == "none":
        return None
    if profile == "auto":
        return RANDOM_FEATURES if str(weights) == "random" else None
    return profile


def profile_changes(name: str | None, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The settings profile ``name`` changes, leaving out what ``overrides`` (the caller's
    explicit settings, None meaning unset) decide: the caller's values always win."""
    if name is None:
        return {}
    changes = dict(PROFILES[name])
    for keys, group in LENGTH_GROUPS.items():
        if any(overrides.get(key) is not None for key in keys):
            for key in group:
                changes.pop(key, None)
    return {key: value for key, value in changes.items() if overrides.get(key) is None}
