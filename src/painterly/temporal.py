"""Temporal coherence for video: optical flow, warping, occlusion masks, blending and the flicker score.

Everything here is a pure function on numpy arrays (H, W, 3) with values in [0, 1] (float32),
so it can be tested and reused without files. Dense flow is OpenCV's DIS flow (Kroeger et al.
2016; ``opencv-python-headless``, the ``video`` extra), which needs no weights.

Conventions. ``flow_backward[t]`` is the flow from frame t to frame t-1: the pixel p of frame t
was at p + flow(p) in frame t-1, so ``warp(previous, flow)`` brings frame t-1 onto frame t's
grid. A pixel is trusted where the backward and forward flows agree (Sundaram et al. 2010, as
used by Ruder et al. 2016):

    |w + w_hat|^2 <= 0.01 (|w|^2 + |w_hat|^2) + 0.5

with w the backward flow at p and w_hat the forward flow at p + w; and away from motion
boundaries, |grad u|^2 + |grad v|^2 <= 0.01 |w|^2 + 0.002.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from .errors import PainterlyError

#: DIS presets by name; ``medium`` is the default (see docs/video.md for what each costs).
FLOW_PRESETS = ("ultrafast", "fast", "medium")
#: A frame where more than this share of pixels is occluded starts a new shot: nothing is carried over.
CUT_OCCLUSION_SHARE = 0.5


def _cv2():
    try:
        import cv2
    except ImportError:
        raise PainterlyError("temporal video needs OpenCV: pip install 'painterly[video]'") from None
    return cv2


def _grey(frame: np.ndarray) -> np.ndarray:
    """8-bit luma for the flow (DIS works on one 8-bit channel)."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        frame = (np.clip(frame, 0, 1) * 255 + 0.5).astype(np.uint8)
    if frame.ndim == 2:
        return np.ascontiguousarray(frame)
    return np.ascontiguousarray((frame[..., :3] @ np.array([0.299, 0.587, 0.114])).round().astype(np.uint8))


def optical_flow(source: np.ndarray, target: np.ndarray, *, preset: str = "medium") -> np.ndarray:
    """Dense flow (H, W, 2) in pixels (x, y) such that source(p) ~ target(p + flow(p)).

    ``source`` and ``target`` are same-size RGB or grey frames (uint8, or floats in [0, 1]).
    """
    if preset not in FLOW_PRESETS:
        raise PainterlyError(f"flow preset must be one of {', '.join(FLOW_PRESETS)}, got {preset!r}")
    cv2 = _cv2()
    dis = cv2.DISOpticalFlow_create(getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{preset.upper()}"))
    return dis.calc(_grey(source), _grey(target), None)


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """image(p + flow(p)), bilinear, borders repeated: the image moved onto the flow's source grid."""
    cv2 = _cv2()
    height, width = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return cv2.remap(np.asarray(image, dtype=np.float32), grid_x + flow[..., 0], grid_y + flow[..., 1],
                     interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def consistency_mask(flow_backward: np.ndarray, flow_forward: np.ndarray) -> np.ndarray:
    """1 where frame t's pixel is seen in frame t-1 too (the module docstring's tests), else 0;
    (H, W) float32. Pixels that flow out of the frame count as occluded."""
    height, width = flow_backward.shape[:2]
    returned = warp(flow_forward, flow_backward)
    round_trip = ((flow_backward + returned) ** 2).sum(-1)
    scale = (flow_backward**2).sum(-1) + (returned**2).sum(-1)
    consistent = round_trip <= 0.01 * scale + 0.5
    grad_u_y, grad_u_x = np.gradient(flow_backward[..., 0])
    grad_v_y, grad_v_x = np.gradient(flow_backward[..., 1])
    gradient = grad_u_x**2 + grad_u_y**2 + grad_v_x**2 + grad_v_y**2
    smooth = gradient <= 0.01 * (flow_backward**2).sum(-1) + 0.002
    grid_x, grid_y = np.meshgrid(np.arange(width), np.arange(height))
    target_x, target_y = grid_x + flow_backward[..., 0], grid_y + flow_backward[..., 1]
    inside = (target_x >= 0) & (target_x <= width - 1) & (target_y >= 0) & (target_y <= height - 1)
    return (consistent & smooth & inside).astype(np.float32)


def frame_pair_flow(previous: np.ndarray, current: np.ndarray, *, preset: str = "medium") -> tuple[np.ndarray, np.ndarray]:
    """(backward flow from ``current`` to ``previous``, its consistency mask): what warping the
    previous frame's output onto the current one needs."""
    backward = optical_flow(current, previous, preset=preset)
    forward = optical_flow(previous, current, preset=preset)
    return backward, consistency_mask(backward, forward)


def blend_with_previous(new: np.ndarray, warped_previous: np.ndarray, mask: np.ndarray, *, strength: float) -> np.ndarray:
    """o_t = (1 - s m) n_t + s m W(o_{t-1}): where the previous output is visible (m = 1) it
    carries over with weight ``strength`` s; where occluded (m = 0) the new stylisation stands.
    A frame that is mostly occluded (a cut) keeps its own stylisation entirely."""
    if not 0.0 <= strength <= 1.0:
        raise PainterlyError(f"temporal strength must be between 0 and 1, got {strength}")
    if mask.mean() < 1 - CUT_OCCLUSION_SHARE:
        return np.asarray(new, dtype=np.float32)
    weight = (strength * mask)[..., None]
    return (1 - weight) * new + weight * warped_previous


def pair_warping_error(current: np.ndarray, previous: np.ndarray, flow_backward: np.ndarray, mask: np.ndarray) -> float:
    """sum_p m(p) ||O_t(p) - W(O_{t-1})(p)||^2 / sum_p m(p), over RGB in [0, 1] (one term of E_warp).
    An all-occluded pair (a cut) scores 0, as it has no pixels to compare."""
    total = float(mask.sum())
    if total == 0:
        return 0.0
    squared = ((np.asarray(current, np.float32) - warp(previous, flow_backward)) ** 2).sum(-1)
    return float((squared * mask).sum() / total)


def warping_error(outputs: Iterable[np.ndarray], inputs: Iterable[np.ndarray], *, preset: str = "medium") -> float:
    """E_warp of Lai et al. (ECCV 2018): the mean over consecutive pairs of
    :func:`pair_warping_error`, the flow and its occlusion mask taken on the ``inputs``.

    Frames are (H, W, 3), uint8 or floats in [0, 1]; the lower, the steadier. Lai et al. used
    FlowNet 2 and summed squared errors over the colour channels as here; with DIS flow the
    figures compare settings on the same clip, not with their paper's tables.
    """
    errors, previous_in, previous_out = [], None, None
    for output, source in zip(outputs, inputs, strict=True):
        output = _as_float(output)
        if previous_in is not None:
            flow, mask = frame_pair_flow(previous_in, source, preset=preset)
            errors.append(pair_warping_error(output, previous_out, flow, mask))
        previous_in, previous_out = source, output
    if not errors:
        raise PainterlyError("the warping error needs at least two frames")
    return float(np.mean(errors))


def _as_float(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    return frame.astype(np.float32) / 255.0 if frame.dtype == np.uint8 else frame.astype(np.float32)


def smooth_statistics(means: np.ndarray, spreads: np.ndarray, *, radius: int = 4,
                      cut_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Hold a shot's content statistics steady: each frame's channel means (T, C) and spreads,
    stds (T, C) or covariances (T, C, C), replaced by their average over the frames within
    ``radius`` of it in the same shot.

    A shot ends where a frame's means move by more than ``cut_threshold`` of the previous
    frame's stds on average over the channels. A centred window has no lag, which it can
    afford because every frame's statistics are known before any frame is stylised.
    """
    means, spreads = np.asarray(means, np.float64), np.asarray(spreads)
    # Covariances give the stds AdaIN would use (with its eps, as dead channels have none).
    stds = spreads if spreads.ndim == 2 else np.sqrt(np.diagonal(spreads, axis1=1, axis2=2).clip(0) + 1e-5)
    jumps = np.abs(means[1:] - means[:-1]) / stds[:-1]
    shot = np.concatenate([[0], np.cumsum(jumps.mean(axis=1) > cut_threshold)])
    smoothed_means, smoothed_spreads = np.empty_like(means), np.empty(spreads.shape, np.float32)
    for t in range(len(means)):
        window = [u for u in range(max(0, t - radius), min(len(means), t + radius + 1)) if shot[u] == shot[t]]
        smoothed_means[t] = means[window].mean(axis=0)
        # Average the variances (or covariances), not the stds: the window's pooled spread.
        if spreads.ndim == 2:
            smoothed_spreads[t] = np.sqrt((spreads[window].astype(np.float64) ** 2).mean(axis=0))
        else:
            smoothed_spreads[t] = spreads[window].mean(axis=0, dtype=np.float64)
    return smoothed_means.astype(np.float32), smoothed_spreads


class TemporalFilter:
    """The recursive blend over a clip, one frame at a time, scoring flicker as it goes.

    :meth:`step` (input frame t, its own stylisation n_t) returns o_0 = n_0 and
    o_t = :func:`blend_with_previous` (n_t, W(o_{t-1})), the flow taken on the input frames;
    ``strength`` 0 gives the frames as stylised. :attr:`warping_error` is E_warp of the outputs
    so far and :attr:`warping_error_per_frame` that of the stylisations n_t, from the same flows,
    so one run compares the two at no extra cost.
    """

    def __init__(self, *, strength: float, preset: str = "medium") -> None:
        if not 0.0 <= strength <= 1.0:
            raise PainterlyError(f"temporal strength must be between 0 and 1, got {strength}")
        self.strength, self.preset = strength, preset
        self._previous: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # input, stylised, output
        self._errors: list[float] = []
        self._errors_per_frame: list[float] = []

    def step(self, source: np.ndarray, stylised: np.ndarray) -> np.ndarray:
        new = _as_float(stylised)
        output = new
        if self._previous is not None:
            previous_in, previous_new, previous_out = self._previous
            flow, mask = frame_pair_flow(previous_in, source, preset=self.preset)
            if self.strength > 0:
                output = blend_with_previous(new, warp(previous_out, flow), mask, strength=self.strength)
            self._errors.append(pair_warping_error(output, previous_out, flow, mask))
            self._errors_per_frame.append(pair_warping_error(new, previous_new, flow, mask))
        self._previous = (source, new, output)
        return output

    @property
    def warping_error(self) -> float | None:
        return float(np.mean(self._errors)) if self._errors else None

    @property
    def warping_error_per_frame(self) -> float | None:
        return float(np.mean(self._errors_per_frame)) if self._errors_per_frame else None


def temporal_filter(frames: Sequence[np.ndarray], stylised: Sequence[np.ndarray], *, strength: float,
                    preset: str = "medium") -> list[np.ndarray]:
    """:class:`TemporalFilter` over a whole clip in memory: the blended frames, float32 in [0, 1]."""
    flicker = TemporalFilter(strength=strength, preset=preset)
    return [flicker.step(source, new) for source, new in zip(frames, stylised, strict=True)]
