"""painterly: neural style transfer by optimisation (Gatys et al.) and AdaIN (Huang and Belongie)."""

from .adain import AdaINModel, StylizeResult, StylizeSettings, stylize, stylize_batch
from .errors import Cancelled, ImageError, NonFiniteLossError, PainterlyError, SettingsError, WeightsError
from .gatys import PRESETS, GatysSettings, OptimizationResult, get_preset, load_checkpoint, optimize, save_checkpoint
from .images import load_image, read_metadata, resize_longer_side, save_image
from .reproduce import InputMismatch, Reproduction, reproduce
from .speed import SpeedSettings
from .sweep import SweepResult, sweep
from .temporal import warping_error
from .training import TrainConfig, TrainResult, train
from .video import VideoResult, read_video_metadata, stylize_video

__version__ = "0.1.0"

__all__ = [
    "AdaINModel",
    "Cancelled",
    "GatysSettings",
    "ImageError",
    "InputMismatch",
    "NonFiniteLossError",
    "OptimizationResult",
    "PRESETS",
    "PainterlyError",
    "SettingsError",
    "SpeedSettings",
    "StylizeResult",
    "StylizeSettings",
    "WeightsError",
    "get_preset",
    "load_checkpoint",
    "load_image",
    "optimize",
    "read_metadata",
    "Reproduction",
    "reproduce",
    "resize_longer_side",
    "save_checkpoint",
    "save_image",
    "stylize",
    "stylize_batch",
    "sweep",
    "SweepResult",
    "train",
    "TrainConfig",
    "TrainResult",
    "VideoResult",
    "read_video_metadata",
    "stylize_video",
    "warping_error",
]
