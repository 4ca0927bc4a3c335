"""Training an AdaIN decoder (Huang and Belongie, ICCV 2017, section 6).

The encoder f (VGG-19 to relu4_1) is frozen; only the decoder g learns. For a batch of content
images c and style images s, t = AdaIN(f(c), f(s)) and

    L = w_c L_c + lambda L_s
    L_c = MSE(f(g(t)), t)                                         at relu4_1 (the target is t, not f(c))
    L_s = sum over relu1_1, relu2_1, relu3_1, relu4_1 of
          MSE(mu(phi(g(t))), mu(phi(s))) + MSE(sigma(phi(g(t))), sigma(phi(s)))

minimised with Adam at lr / (1 + lr_decay * iteration). The default recipe is pytorch-AdaIN's
(mean squared errors, lambda = 10) on the paper's data pipeline (shorter side to 512, random 256
crops); the Torch original's lambda = 1e-2 applies to summed errors instead.

``identity_pixel_weight`` and ``identity_feature_weight`` add SANet's identity losses (see
:func:`identity_losses`) to L; both are 0 in every recipe.

Where we depart from the recipes:

* sigma uses the biased variance (see :func:`painterly.adain.adain`).
* ``keras``: the example squashes images to 224x224, we keep the aspect ratio and crop 224
  squares; its decoder ends in a sigmoid, ours stays linear (the released ``decoder.pth``
  layout, clamped to [0, 1] at inference), so that the decoder loads in ``painterly stylize``
  and in every pytorch-AdaIN tool; its (ImageNet) VGG-19 is stood in for by the normalised one.

A run is one phase per function: set up (:func:`_start_session`, :func:`_open_run_folder`), then
``while`` iterations remain: draw, step (:func:`_step`), monitor, log (:func:`_log`), checkpoint,
and at the end :func:`_finish`. Where the run stands is one :class:`RunState`, saved whole in
every checkpoint. Run under ``torchrun`` it trains with DistributedDataParallel (the decoder
only; each rank draws its own shard of the files) and rank 0 alone writes files.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import json
import math
import os
import random
import signal
import threading
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np
import torch
from PIL import Image

from .adain import ADAIN_LAYER, STYLE_LOSS_LAYERS, adain, build_decoder
from .data import ImageFolder, Skipped, find_images, infinite_loader, load_fixed, split_files, stop_workers
from .device import resolve_device
from .encoder import POOLINGS, VGG19Encoder, encoder_fingerprint, load_encoder
from .errors import Cancelled, NonFiniteLossError, PainterlyError, SettingsError
from .files import atomic_path, load_torch, save_torch
from .images import IMAGE_SUFFIXES, check_size, save_image, tensor_to_image
from .losses import content_loss, mean_std_style_loss
from .options import option
from .weights import with_record


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; recipes are instances of it.

    Stored as plain data in every checkpoint and in ``RUN_DIR/config.json``.
    """

    content_dir: str = ""
    style_dir: str = ""
    lr: float = option(1e-4, positive=True, help="Adam learning rate (adain: 1e-4)")
    #: lr at iteration i is lr / (1 + lr_decay * i); 0 keeps it constant.
    lr_decay: float = option(5e-5, minimum=0.0, help="lr / (1 + lr_decay * iteration) (adain: 5e-5; 0: constant)")
    batch_size: int = option(8, minimum=1, help="images per batch and process (adain: 8)")
    #: Images are resized so their shorter side is image_size, then cropped to crop_size squares.
    image_size: int = option(512, help="shorter side images are resized to (adain: 512)")
    crop_size: int = option(256, help="side of the random square crops (adain: 256)")
    content_weight: float = option(1.0, minimum=0.0, help="weight of the content loss (1)")
    style_weight: float = option(10.0, minimum=0.0, help="weight lambda of the style loss (adain: 10)")
    #: SANet's identity losses (Park and Lee 2019, their lambda_identity1 = 50, lambda_identity2 = 1):
    #: the decoder must also give each content image back from its own features. Not in the
    #: AdaIN recipe; the bundled decoder for random weights uses them (docs/offline-decoder.md).
    identity_pixel_weight: float = option(0.0, minimum=0.0,
                                          help="weight of MSE(g(f(c)), c), the content given back in pixels (0: off)")
    identity_feature_weight: float = option(0.0, minimum=0.0,
                                            help="weight of the content given back in features, relu1_1..relu4_1 (0: off)")
    iterations: int = option(160_000, minimum=1, help="optimiser steps in all (adain: 160000)")
    workers: int = option(4, minimum=0, help="data loader processes per training process (4; 0 loads in-process)")
    seed: int = option(0, minimum=0, maximum=2**63 - 1,
                       help="seed of the decoder's initialisation and the data order, 0 to 2**63-1 (0)")
    #: Encoder weights: a registry name (vgg19-normalised, adain, vgg19, random) or a file.
    encoder: str = option("vgg19-normalised", metavar="NAME|PATH",
                          help="frozen encoder: vgg19-normalised (default), adain, vgg19, random, or a weight file")
    #: Seed of ``random`` encoder weights: stylise with the same one.
    encoder_seed: int = option(0, minimum=0, maximum=2**63 - 1, help="seed of --encoder random weights (0)")
    #: Average pooling keeps random features invertible where max pooling loses the photo
    #: (docs/offline-decoder.md); a decoder only fits the pooling it was trained with.
    encoder_pooling: str = option("max", choices=POOLINGS,
                                  help="the encoder's 2x2 pooling: max (VGG's) or avg; stylise with the same (max)")
    device: str = option("auto", help="where to compute: auto, cpu, cuda, cuda:N or mps (auto)")
    checkpoint_every: int = option(1000, minimum=1, metavar="N", help="save a checkpoint every N iterations (1000)")
    #: How many checkpoints to keep (the newest).
    keep: int = option(3, minimum=1, metavar="K", help="keep the newest K checkpoints (3)")
    monitor_every: int = option(1000, minimum=1, metavar="N",
                                help="write a style | content | result grid every N iterations (1000)")
    log_every: int = option(10, minimum=1, metavar="N", help="a losses.csv row every N iterations (10)")
    #: Fraction of each folder held out for validation losses and the monitor grid.
    val_fraction: float = option(0.0, minimum=0.0, help="fraction of each folder held out for validation losses (0)")
    #: Held-out content images scored at each monitor step (paired with held-out styles in turn).
    val_images: int = option(16, minimum=1, help="held-out images scored at each monitor step (16)")
    amp: bool = option(False, help="mixed precision: fp16 with loss scaling on GPUs, bf16 on CPUs")
    channels_last: bool = option(False, help="channels-last memory layout (faster convolutions on recent GPUs)")
    recipe: str = "adain"
    #: TensorBoard logs in RUN_DIR/tensorboard: None when it is installed, True asked for (a
    #: note at the start says when it is not installed), False never.
    tensorboard: bool | None = option(None, help="TensorBoard logs in RUN_DIR/tensorboard (default: when tensorboard "
                                      "is installed; asked for and not installed, the run says so)")

    def __post_init__(self) -> None:
        for name in ("batch_size", "iterations", "checkpoint_every", "keep", "monitor_every", "log_every", "val_images"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.workers < 0:
            raise SettingsError(f"workers must be 0 or more, got {self.workers}")
        check_size(self.image_size, what="image_size")
        check_size(self.crop_size, what="crop_size")
        if self.crop_size > self.image_size:
            raise SettingsError(f"crop_size {self.crop_size} is larger than image_size {self.image_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise SettingsError(f"lr must be a positive number, got {self.lr}")
        for name in ("lr_decay", "content_weight", "style_weight", "identity_pixel_weight", "identity_feature_weight"):
            if not (getattr(self, name) >= 0 and math.isfinite(getattr(self, name))):
                raise SettingsError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        if not 0 <= self.val_fraction < 1:
            raise SettingsError(f"val_fraction must be in [0, 1), got {self.val_fraction}")

    def updated(self, **changes: Any) -> "TrainConfig":
        """A copy with ``changes`` applied (None values ignored, so CLI defaults pass through)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise SettingsError(f"unknown training settings: {', '.join(sorted(unknown))}")
        return replace(self, **{key: value for key, value in changes.items() if value is not None})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


RECIPES: dict[str, TrainConfig] = {
    "adain": TrainConfig(),
    "keras": TrainConfig(
        lr=1e-5,
        lr_decay=0.0,
        batch_size=64,
        image_size=224,
        crop_size=224,
        style_weight=4.0,
        iterations=1500,  # 30 epochs of 50 steps
        monitor_every=50,  # the example's per-epoch monitor
        checkpoint_every=50,
        val_fraction=0.1,
        recipe="keras",
    ),
}
RECIPE_SOURCES = {
    "adain": "pytorch-AdaIN on the paper's data pipeline: Adam 1e-4 / (1 + 5e-5 i), batch 8, "
    "shorter side 512, random 256 crops, style weight 10 (MSE), 160k iterations",
    "keras": "Keras example 'Neural Style Transfer with AdaIN': Adam 1e-5, batch 64, 224 px, "
    "style weight 4 (MSE), 30 epochs of 50 steps, a monitor per epoch, 10% held out",
}


def get_recipe(name: str) -> TrainConfig:
    if name not in RECIPES:
        raise SettingsError(f"unknown recipe {name!r}: choose one of {', '.join(RECIPES)}")
    return RECIPES[name]


#: The training losses logged: content and style unweighted, identity weighted, total = the sum minimised.
LOSS_KEYS = ("content", "style", "identity", "total")
#: Columns of RUN_DIR/losses.csv; val_* are empty on rows without a validation pass.
CSV_COLUMNS = ("iteration", "lr", "content", "style", "identity", "total", "val_content", "val_style", "val_total", "skipped", "images_per_second")
#: Settings a resumed run may not change: the decoder would no longer match its encoder.
FIXED_ON_RESUME = ("encoder", "encoder_seed", "encoder_pooling")


@dataclass
class TrainProgress:
    """What the loop reports after each iteration (on rank 0)."""

    iteration: int  # 1-based
    iterations: int
    losses: dict[str, float]  # content, style, total (weighted), of this iteration
    lr: float
    skipped: int  # samples dropped so far because their file could not be read
    new_skipped: list[Skipped] = field(default_factory=list)
    validation: dict[str, float] | None = None  # val_content, val_style, val_total at monitor steps


TrainCallback = Callable[[TrainProgress], None]


@dataclass
class TrainStart:
    """What a run starts with (reported once, on rank 0, before the first iteration)."""

    content_images: int  # image files found below the content folder
    style_images: int
    held_out_content: int  # of those, held out for validation (--val-fraction)
    held_out_style: int
    not_images: int  # other files below the folders, left out by their endings
    unreadable: int  # samples already dropped as unreadable (a resumed run's count)
    iteration: int  # the first iteration to run (1-based)
    iterations: int
    encoder: str
    device: str
    #: Things the user asked for that will not happen, each a sentence.
    notes: list[str] = field(default_factory=list)


StartCallback = Callable[[TrainStart], None]


@dataclass
class TrainResult:
    run_dir: Path
    decoder_path: Path
    iteration: int
    losses: dict[str, float | None]  # the last log row's training losses (None if no iteration ran)
    skipped: int
    encoder: str  # the encoder's label, e.g. vgg19-normalised or random(seed=0)
    images_per_second: float
    plot_path: Path | None  # None when matplotlib is missing


# ---------------------------------------------------------------------------------------------
# The loss.


def encoder_record(encoder: VGG19Encoder, label: str) -> dict[str, str]:
    """What a decoder file records of the encoder it was trained with: AdaIN checks the weights'
    fingerprint and builds the encoder with the same pooling."""
    return {"encoder": label, "encoder_sha256": encoder_fingerprint(encoder), "encoder_pooling": encoder.pooling}


class DecoderLosses(NamedTuple):
    """The losses of a batch (float32 scalars) and the decoder's output g(t)."""

    content: torch.Tensor
    style: torch.Tensor
    output: torch.Tensor
    #: (L_id_pixel, L_id_feature) of :func:`identity_losses`, when asked for.
    identity: tuple[torch.Tensor, torch.Tensor] | None = None


def decoder_losses(
    encoder: torch.nn.Module, decoder: torch.nn.Module, content: torch.Tensor, style: torch.Tensor, *,
    amp: torch.dtype | None = None, identity: bool = False,
) -> DecoderLosses:
    """L_c, L_s and g(t) for a batch, and with ``identity`` the identity losses; only the
    decoder's parameters get gradients.

    With ``amp`` the networks run in that dtype under autocast; statistics and losses stay
    float32, where the small differences of means and stds would otherwise round away.
    """
    with torch.autocast(content.device.type, dtype=amp or torch.float32, enabled=amp is not None):
        with torch.no_grad():
            content_features = encoder(content, STYLE_LOSS_LAYERS if identity else [ADAIN_LAYER])
            style_features = encoder(style, STYLE_LOSS_LAYERS)
        target = adain(content_features[ADAIN_LAYER].float(), style_features[ADAIN_LAYER].float())
        output = decoder(target)
        output_features = encoder(output, STYLE_LOSS_LAYERS)
        given_back = identity_losses(encoder, decoder, content, content_features) if identity else None
    loss_c = content_loss(output_features[ADAIN_LAYER].float(), target)
    loss_s = sum(mean_std_style_loss(output_features[l].float(), style_features[l].float()) for l in STYLE_LOSS_LAYERS)
    return DecoderLosses(loss_c, loss_s, output, given_back)


def identity_losses(
    encoder: torch.nn.Module, decoder: torch.nn.Module, content: torch.Tensor, content_features: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """SANet's identity losses for a batch of content images c, whose features at
    relu1_1..relu4_1 are ``content_features``, with I = g(f(c)) from relu4_1:

        L_id_pixel   = MSE(I, c)
        L_id_feature = sum over relu1_1..relu4_1 of MSE(phi(I), phi(c))

    Zero when the decoder inverts the encoder. SANet sums squared errors where we average them,
    as the content and style losses here do.
    """
    given_back = decoder(content_features[ADAIN_LAYER])
    given_back_features = encoder(given_back, STYLE_LOSS_LAYERS)
    pixel = torch.nn.functional.mse_loss(given_back.float(), content.float())
    feature = sum(content_loss(given_back_features[l].float(), content_features[l].float()) for l in STYLE_LOSS_LAYERS)
    return pixel, feature


# ---------------------------------------------------------------------------------------------
# Files: written by rank 0 only, always through a temporary file and a rename.


def _atomic_write(path: Path, write: Callable[[Any], None], *, binary: bool = True) -> None:
    with atomic_path(path) as temporary, open(temporary, "wb" if binary else "w") as file:
        write(file)


def checkpoint_paths(run_dir: Path) -> list[Path]:
    """The run's checkpoints, oldest first."""
    return sorted((run_dir / "checkpoints").glob("ckpt_*.pt"))


def _rng_state() -> dict[str, Any]:
    numpy_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        # Plain lists and tuples, so checkpoints load with weights_only=True.
        "numpy": (numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]),
        "python": random.getstate(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    random.setstate(state["python"])


def _append_csv_row(path: Path, row: dict[str, Any]) -> None:
    values = ["" if row.get(key) is None else (f"{row[key]:.9g}" if isinstance(row[key], float) else str(row[key])) for key in CSV_COLUMNS]
    # One write() on an O_APPEND descriptor: a crash leaves whole rows or none.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (",".join(values) + "\n").encode())
        finally:
            os.close(fd)
    except OSError as error:
        raise PainterlyError(f"{path}: cannot be written ({error.strerror or error})") from None


def read_losses(path: str | os.PathLike) -> list[dict[str, float | None]]:
    """The rows of a ``losses.csv`` (empty cells as None, a torn last line ignored)."""
    path = Path(path)
    if not path.is_file():
        return []
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    complete = [line for line in lines if line.endswith("\n")]
    rows = []
    for row in csv.DictReader(complete):
        rows.append({key: (float(value) if value not in ("", None) else None) for key, value in row.items()})
    return rows


def _truncate_csv(path: Path, iteration: int) -> None:
    """Drop rows logged after ``iteration`` (they will be logged again) and any torn line."""
    rows = [row for row in read_losses(path) if row["iteration"] <= iteration]
    header = ",".join(CSV_COLUMNS) + "\n"
    _atomic_write(path, lambda f: f.write(header), binary=False)
    for row in rows:
        _append_csv_row(path, {**row, "iteration": int(row["iteration"]), "skipped": int(row["skipped"] or 0)})


def _monitor_grid(style: torch.Tensor, content: torch.Tensor, result: torch.Tensor) -> Image.Image:
    """Rows of style | content | result, as the Keras example shows after each epoch."""
    rows, size = style.shape[0], style.shape[-1]
    grid = Image.new("RGB", (3 * size, rows * size), "white")
    for row in range(rows):
        for column, images in enumerate((style, content, result)):
            grid.paste(tensor_to_image(images[row].float().cpu()), (column * size, row * size))
    return grid


class _StopFlag:
    """Set by SIGINT/SIGTERM (or a callback raising Cancelled): the loop then saves and stops."""

    def __init__(self) -> None:
        self.requested = False
        self.previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for number in (signal.SIGINT, signal.SIGTERM):
            self.previous[number] = signal.signal(number, self._handle)

    def _handle(self, number: int, frame: Any) -> None:
        self.requested = True
        # A second Ctrl-C interrupts at once.
        signal.signal(number, self.previous.get(number, signal.SIG_DFL))

    def restore(self) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)


# ---------------------------------------------------------------------------------------------
# The loop.


def train(
    *,
    content_dir: str | os.PathLike | None = None,
    style_dir: str | os.PathLike | None = None,
    run_dir: str | os.PathLike,
    recipe: str = "adain",
    resume: bool = False,
    callback: TrainCallback | None = None,
    on_start: StartCallback | None = None,
    note: Callable[[str], None] | None = None,
    **settings: Any,
) -> TrainResult:
    """Train a decoder on the images below ``content_dir`` and ``style_dir`` into ``run_dir``.

    ``settings`` override the ``recipe``'s :class:`TrainConfig` fields. With ``resume``, the run
    continues from the newest checkpoint in ``run_dir`` with its stored config (``settings``
    may still change e.g. ``iterations`` or ``workers``; the encoder is fixed).

    Writes ``config.json``, ``losses.csv``, ``skipped.txt``, ``monitor/*.png``,
    ``checkpoints/ckpt_*.pt``, ``tensorboard/`` (when installed), and at the end
    ``decoder.pth`` (the released decoder's key layout), ``losses.png`` and ``summary.json``.
    Raises :class:`Cancelled` after saving a checkpoint when interrupted (SIGINT, SIGTERM, or a
    callback raising Cancelled), :class:`NonFiniteLossError` when the loss stops being finite.
    A resume skips unreadable newest checkpoints (a torn file) for the newest good one and
    tells ``note`` (a line for the user) which.
    ``on_start`` receives a :class:`TrainStart` summary before the first iteration.
    """
    run_dir = Path(run_dir)
    # Paths and devices are stored as text: the config must stay plain data (JSON, weights_only).
    settings = {k: str(v) if k in ("encoder", "device") and v is not None else v for k, v in settings.items()}
    dirs = {k: str(v) for k, v in (("content_dir", content_dir), ("style_dir", style_dir)) if v is not None}
    checkpoint = None
    if resume:
        checkpoint, config = _newest_readable_checkpoint(run_dir, note)
        for name in FIXED_ON_RESUME:
            if name in settings and settings[name] is not None and settings[name] != getattr(config, name):
                raise SettingsError(f"{name} cannot change when resuming: the decoder was trained against {getattr(config, name)!r}")
        config = config.updated(**dirs, **settings)
    else:
        if checkpoint_paths(run_dir):
            raise SettingsError(f"{run_dir} already holds a training run: resume it with --resume {run_dir}, or choose another folder")
        config = get_recipe(recipe).updated(recipe=recipe, **dirs, **settings)
    if not config.content_dir or not config.style_dir:
        raise SettingsError("training needs a content folder and a style folder")

    # --- distributed setup: one process per device under torchrun ---
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = resolve_device(config.device)
    started_group = False
    if world_size > 1:
        import torch.distributed as dist

        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            started_group = True
    stop = _StopFlag()
    stop.install()
    try:
        with contextlib.ExitStack() as cleanup:
            return _train(config, run_dir, checkpoint, device, rank, world_size, stop, callback, cleanup, on_start)
    finally:
        stop.restore()
        if started_group:
            torch.distributed.destroy_process_group()


def _other_files(folder: str) -> int:
    """Files below ``folder`` that training leaves out because their ending is not an image's."""
    return sum(1 for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() not in IMAGE_SUFFIXES)


def _load_checkpoint(path: Path) -> tuple[dict[str, Any], TrainConfig]:
    """A checkpoint and its config, or :class:`PainterlyError` in one line (torn, foreign, incomplete)."""
    checkpoint = load_torch(path, what="a readable training checkpoint")
    if not isinstance(checkpoint, dict):
        raise PainterlyError(f"{path}: not a painterly training checkpoint")
    missing = [key for key in CHECKPOINT_KEYS if key not in checkpoint]
    if missing:
        raise PainterlyError(f"{path}: an incomplete training checkpoint (no {', '.join(missing)})")
    try:
        config = TrainConfig(**checkpoint["config"])
    except (TypeError, SettingsError) as error:
        raise PainterlyError(f"{path}: the checkpoint's config is not this version's ({error})") from None
    return checkpoint, config


def _newest_readable_checkpoint(run_dir: Path, note: Callable[[str], None] | None) -> tuple[dict[str, Any], TrainConfig]:
    """The newest checkpoint that loads; the unreadable ones after it are reported to ``note``."""
    paths = checkpoint_paths(run_dir)
    if not paths:
        raise SettingsError(f"{run_dir} holds no checkpoint to resume from")
    problems = []
    for path in reversed(paths):
        try:
            checkpoint, config = _load_checkpoint(path)
        except PainterlyError as problem:
            problems.append(str(problem))
            continue
        if problems and note is not None:
            note(f"skipped {len(problems)} unreadable checkpoint(s) ({problems[0]}); resuming from {path.name}")
        return checkpoint, config
    raise PainterlyError(f"{run_dir}: no readable checkpoint to resume from ({problems[0]})")


# ---------------------------------------------------------------------------------------------
# The state a checkpoint carries, and what a run sets up once.


def _empty_window() -> dict[str, float]:
    return {**dict.fromkeys(LOSS_KEYS, 0.0), "count": 0}


@dataclass
class RunState:
    """Where a run stands, saved whole in every checkpoint and restored whole on resume: its
    fields are the checkpoint's keys (beside the weights, optimiser, RNGs and config)."""

    #: Iterations done.
    iteration: int = 0
    #: Samples drawn from each stream so far: where the samplers carry on.
    sampler: dict[str, int] = field(default_factory=lambda: {"content": 0, "style": 0})
    #: Images trained on, over all ranks.
    images_seen: int = 0
    #: Samples dropped because their file could not be read, over all ranks.
    skipped: int = 0
    #: Sums of the losses since the last log row, which holds their means, and their count.
    window: dict[str, float] = field(default_factory=_empty_window)

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any]) -> "RunState":
        state = cls(**{f.name: copy.deepcopy(checkpoint[f.name]) for f in fields(cls)})
        state.window = {**_empty_window(), **state.window}  # checkpoints from before the identity loss
        return state

    def to_checkpoint(self) -> dict[str, Any]:
        return asdict(self)

    def add_losses(self, losses: dict[str, float]) -> None:
        for key in LOSS_KEYS:
            self.window[key] += losses[key]
        self.window["count"] += 1

    def take_window(self) -> dict[str, float]:
        """The means of the losses since the last log row; the sums start again."""
        means = {key: self.window[key] / self.window["count"] for key in LOSS_KEYS}
        self.window = _empty_window()
        return means


#: What a training checkpoint must hold to be resumed from.
CHECKPOINT_KEYS = (*(f.name for f in fields(RunState)), "decoder", "optimizer", "scaler", "rng", "config")


@dataclass
class _Data:
    """The image files, split into training and held-out ones, and the training datasets."""

    content: list[str]
    style: list[str]
    val_content: list[str]
    val_style: list[str]
    content_set: ImageFolder
    style_set: ImageFolder


@dataclass
class _Session:
    """What a run sets up once: where it runs, its data, networks and optimiser, its log writer."""

    config: TrainConfig
    run_dir: Path
    device: torch.device
    rank: int
    world_size: int
    data: _Data
    encoder: torch.nn.Module
    encoder_label: str
    #: What decoder.pth records of its encoder.
    decoder_record: dict[str, str]
    decoder: torch.nn.Module
    #: The decoder, or under torchrun its DistributedDataParallel wrapper.
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    amp: torch.dtype | None
    memory_format: torch.memory_format
    writer: Any = None
    #: The fixed (content, style) batch of the monitor grid (rank 0).
    monitor: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def main_process(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def csv_path(self) -> Path:
        return self.run_dir / "losses.csv"

    def lr_at(self, step: int) -> float:
        return self.config.lr / (1.0 + self.config.lr_decay * step)

    def all_ranks_sum(self, values: list[float]) -> list[float]:
        if not self.distributed:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(tensor)
        return tensor.tolist()


def _find_data(config: TrainConfig) -> _Data:
    """Held-out files split off by seed; each rank later draws its own shard of the rest."""
    content, val_content = split_files(find_images(config.content_dir, what="content"), fraction=config.val_fraction, seed=config.seed)
    style, val_style = split_files(find_images(config.style_dir, what="style"), fraction=config.val_fraction, seed=config.seed + 1)
    sizes = {"image_size": config.image_size, "crop_size": config.crop_size}
    return _Data(content, style, val_content, val_style, ImageFolder(content, **sizes), ImageFolder(style, **sizes))


def _start_session(config: TrainConfig, run_dir: Path, checkpoint: dict[str, Any] | None, device: torch.device,
                   rank: int, world_size: int) -> tuple[_Session, RunState]:
    """The data, a frozen encoder and a learning decoder, and where the run stands (restored from
    ``checkpoint``, RNGs included, when resuming)."""
    data = _find_data(config)
    torch.manual_seed(config.seed)
    encoder, encoder_label = load_encoder(config.encoder, last_layer=ADAIN_LAYER, seed=config.encoder_seed, device=device,
                                          pooling=config.encoder_pooling)
    # Taken before any change of memory layout.
    decoder_record = encoder_record(encoder, encoder_label)
    decoder = build_decoder().to(device)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    encoder.to(memory_format=memory_format)
    decoder.to(memory_format=memory_format)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=config.lr)
    amp = None
    if config.amp:
        amp = torch.bfloat16 if device.type == "cpu" else torch.float16
    # fp16 gradients underflow without loss scaling; bf16 has float32's range and needs none.
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    state = RunState()
    if checkpoint is not None:
        decoder.load_state_dict(checkpoint["decoder"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if checkpoint["scaler"]:
            scaler.load_state_dict(checkpoint["scaler"])
        state = RunState.from_checkpoint(checkpoint)
        _set_rng_state(checkpoint["rng"])
    model = decoder
    if world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(decoder, device_ids=[device.index] if device.type == "cuda" else None)
    session = _Session(config, run_dir, device, rank, world_size, data, encoder, encoder_label, decoder_record, decoder,
                       model, optimizer, scaler, amp, memory_format)
    return session, state


# ---------------------------------------------------------------------------------------------
# The phases of a run.


def _open_run_folder(session: _Session, state: RunState, *, resumed: bool, cleanup: contextlib.ExitStack) -> list[str]:
    """Make the run folder (rank 0): config.json, the loss log (cut back to the checkpoint when
    resuming), TensorBoard's writer. Returns notes on what was asked for and will not happen."""
    config, run_dir, notes = session.config, session.run_dir, []
    try:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        (run_dir / "monitor").mkdir(exist_ok=True)
    except OSError as error:
        raise PainterlyError(f"{run_dir}: cannot make the run folder ({error.strerror or error})") from None
    # encoder and encoder_seed say which encoder to stylise with: the decoder only fits that one.
    run_info = {**config.to_dict(), "encoder_label": session.encoder_label, "world_size": session.world_size}
    _atomic_write(run_dir / "config.json", lambda f: json.dump(run_info, f, indent=2), binary=False)
    if not resumed or not session.csv_path.exists():
        _atomic_write(session.csv_path, lambda f: f.write(",".join(CSV_COLUMNS) + "\n"), binary=False)
    else:
        _truncate_csv(session.csv_path, state.iteration)
    if config.tensorboard is not False:
        try:
            from torch.utils.tensorboard import SummaryWriter

            session.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=state.iteration or None)
            cleanup.callback(session.writer.close)
        except ImportError:
            if config.tensorboard:  # asked for: say why there will be no logs
                notes.append("TensorBoard logs were asked for but tensorboard is not installed "
                             "(pip install 'painterly[tensorboard]'): training without them")
    return notes


def _monitor_batch(config: TrainConfig, data: _Data) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The fixed monitor batch: held-out images when there are some, else the first training ones."""
    sizes = {"image_size": config.image_size, "crop_size": config.crop_size}
    count = config.val_images if data.val_content else min(4, config.batch_size)
    content, _ = load_fixed(ImageFolder(data.val_content or data.content, **sizes), count)
    style, _ = load_fixed(ImageFolder(data.val_style or data.style, **sizes), count)
    if content is None or style is None:
        return None
    return content, style[torch.arange(content.shape[0]) % style.shape[0]]


def _start_summary(session: _Session, state: RunState, notes: list[str]) -> TrainStart:
    config, data = session.config, session.data
    return TrainStart(
        content_images=len(data.content) + len(data.val_content), style_images=len(data.style) + len(data.val_style),
        held_out_content=len(data.val_content), held_out_style=len(data.val_style),
        not_images=sum(_other_files(folder) for folder in (config.content_dir, config.style_dir)),
        unreadable=state.skipped, iteration=state.iteration + 1, iterations=config.iterations,
        encoder=session.encoder_label, device=str(session.device), notes=notes,
    )


class _Batches:
    """The content and style streams of this rank, drawn in step, with the files they drop."""

    def __init__(self, session: _Session, state: RunState, cleanup: contextlib.ExitStack) -> None:
        self.session, self.state = session, state
        config = session.config
        options = {"batch_size": config.batch_size, "seed": config.seed, "rank": session.rank,
                   "world_size": session.world_size, "workers": config.workers, "pin_memory": session.device.type == "cuda"}
        self.streams = {
            "content": infinite_loader(session.data.content_set, stream=0, start=state.sampler["content"], **options),
            "style": infinite_loader(session.data.style_set, stream=1, start=state.sampler["style"], **options),
        }
        for batches in self.streams.values():
            cleanup.callback(stop_workers, batches)
        # This rank's count of dropped samples; the ranks' counts sum to state.skipped.
        self.skipped = state.skipped if session.main_process else 0
        self.logged: set[str] = set()

    def _draw(self, stream: str) -> tuple[torch.Tensor, list[Skipped]]:
        new: list[Skipped] = []
        for _ in range(100):
            batch = next(self.streams[stream])
            self.state.sampler[stream] += self.session.config.batch_size
            self.skipped += len(batch.skipped)
            new += [s for s in batch.skipped if s.path not in self.logged]
            self.logged.update(s.path for s in batch.skipped)
            if batch.images is not None:
                return batch.images, new
        raise PainterlyError(f"100 batches in a row held no readable image: check the {stream} folder "
                             f"(see {self.session.run_dir / 'skipped.txt'})")

    def next(self) -> tuple[torch.Tensor, torch.Tensor, list[Skipped]]:
        """A content and a style batch of one size on the device, and the newly dropped files."""
        content, new_content = self._draw("content")
        style, new_style = self._draw("style")
        new = new_content + new_style
        if new:  # every rank logs its own shard's files (rank 0 may not have made the folder yet)
            self.session.run_dir.mkdir(parents=True, exist_ok=True)
            with open(self.session.run_dir / "skipped.txt", "a") as log:
                log.write("".join(f"{s.path}\t{s.reason}\n" for s in new))
        n = min(content.shape[0], style.shape[0])  # a skipped file shortens one of the batches
        move = {"non_blocking": True, "memory_format": self.session.memory_format}
        return content[:n].to(self.session.device, **move), style[:n].to(self.session.device, **move), new


def _step(session: _Session, state: RunState, content: torch.Tensor, style: torch.Tensor,
          rank_skipped: int) -> tuple[dict[str, float], float]:
    """One optimiser step on a batch: the losses averaged over ranks, and the lr it used.
    Raises :class:`NonFiniteLossError` before stepping when the loss is not finite."""
    config, optimizer, scaler = session.config, session.optimizer, session.scaler
    lr = session.lr_at(state.iteration)
    for group in optimizer.param_groups:
        group["lr"] = lr
    identity = bool(config.identity_pixel_weight or config.identity_feature_weight)
    loss_c, loss_s, _, given_back = decoder_losses(session.encoder, session.model, content, style, amp=session.amp,
                                                   identity=identity)
    loss_id = torch.zeros_like(loss_c)
    if given_back is not None:
        loss_id = config.identity_pixel_weight * given_back[0] + config.identity_feature_weight * given_back[1]
    loss = config.content_weight * loss_c + config.style_weight * loss_s + loss_id
    # One device-to-host copy per iteration: each .item() would wait for the GPU on its own.
    reduced = session.all_ranks_sum(torch.stack([loss_c, loss_s, loss_id, loss]).tolist()
                                    + [float(content.shape[0]), float(rank_skipped)])
    losses = {key: value / session.world_size for key, value in zip(LOSS_KEYS, reduced)}
    if not math.isfinite(losses["total"]):
        kept = checkpoint_paths(session.run_dir)
        raise NonFiniteLossError(
            f"the loss became {losses['total']} at iteration {state.iteration + 1} (content {losses['content']:.4g}, "
            f"style {losses['style']:.4g}): training diverged; "
            + (f"the last good checkpoint is {kept[-1]}: resume with --resume {session.run_dir} and a lower --lr" if kept
               else "no checkpoint was written yet: start again with a lower --lr")
        )
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    state.iteration += 1
    state.add_losses(losses)
    state.images_seen += int(reduced[4])
    state.skipped = int(reduced[5])
    return losses, lr


class _Clock:
    """Images per second since the run (or its resumption) started."""

    def __init__(self, state: RunState) -> None:
        self.started, self.images_at_start = time.perf_counter(), state.images_seen

    def images_per_second(self, state: RunState) -> float | None:
        elapsed = time.perf_counter() - self.started
        return (state.images_seen - self.images_at_start) / elapsed if elapsed > 0 else None


def _log(session: _Session, state: RunState, lr: float, validation: dict[str, float] | None, clock: _Clock) -> dict[str, Any]:
    """Append a row of the mean losses since the last one to losses.csv (and TensorBoard)."""
    row = {"iteration": state.iteration, "lr": lr, "skipped": state.skipped, **state.take_window(),
           **(validation or {}), "images_per_second": clock.images_per_second(state)}
    _append_csv_row(session.csv_path, row)
    if session.writer is not None:
        for key in (*LOSS_KEYS, *(validation or {})):
            session.writer.add_scalar(f"loss/{key}", row[key], state.iteration)
        session.writer.add_scalar("lr", lr, state.iteration)
    return row


def _save_checkpoint(session: _Session, state: RunState) -> Path:
    """Write ``checkpoints/ckpt_<iteration>.pt`` and keep only the newest ``keep``."""
    config, run_dir = session.config, session.run_dir
    path = run_dir / "checkpoints" / f"ckpt_{state.iteration:07d}.pt"
    checkpoint = {
        **state.to_checkpoint(),
        "decoder": session.decoder.state_dict(),
        "optimizer": session.optimizer.state_dict(),
        "scaler": session.scaler.state_dict() if session.scaler.is_enabled() else {},
        "schedule": {"lr": config.lr, "lr_decay": config.lr_decay, "current_lr": session.lr_at(state.iteration)},
        "rng": _rng_state(),
        "config": config.to_dict(),
    }
    save_torch(checkpoint, path)
    for old in checkpoint_paths(run_dir)[: -config.keep]:
        old.unlink(missing_ok=True)
    return path


def _finish(session: _Session, state: RunState, last_row: dict[str, Any], clock: _Clock) -> TrainResult:
    """The end: a final checkpoint, the decoder in the released layout, the loss curves, summary.json."""
    config, run_dir = session.config, session.run_dir
    images_per_second = clock.images_per_second(state) or 0.0
    checksums = _rank_checksums(session.decoder, session.distributed)
    losses = {k: last_row.get(k) for k in ("content", "style", "total")}
    decoder_path, plot_path = run_dir / "decoder.pth", None
    if session.main_process:
        if state.iteration % config.checkpoint_every != 0:
            _save_checkpoint(session, state)
        weights = {key: value.detach().float().cpu().contiguous() for key, value in session.decoder.state_dict().items()}
        save_torch(with_record(weights, session.decoder_record), decoder_path)
        plot_path = _plot(read_losses(session.csv_path), run_dir)
        summary = {"iteration": state.iteration, "losses": losses, "skipped": state.skipped, "encoder": session.encoder_label,
                   "images_per_second": images_per_second, "world_size": session.world_size, "decoder_checksums": checksums}
        _atomic_write(run_dir / "summary.json", lambda f: json.dump(summary, f, indent=2), binary=False)
    if session.distributed:
        torch.distributed.barrier()  # every rank returns once the files exist
    return TrainResult(run_dir, decoder_path, state.iteration, losses, state.skipped, session.encoder_label,
                       images_per_second, plot_path)


def _train(
    config: TrainConfig,
    run_dir: Path,
    checkpoint: dict[str, Any] | None,
    device: torch.device,
    rank: int,
    world_size: int,
    stop: _StopFlag,
    callback: TrainCallback | None,
    cleanup: contextlib.ExitStack,
    on_start: StartCallback | None = None,
) -> TrainResult:
    """Set up, then ``while`` iterations remain: draw, step, monitor, log, checkpoint, report."""
    session, state = _start_session(config, run_dir, checkpoint, device, rank, world_size)
    if session.main_process:
        notes = _open_run_folder(session, state, resumed=checkpoint is not None, cleanup=cleanup)
        session.monitor = _monitor_batch(config, session.data)
        if on_start is not None:
            on_start(_start_summary(session, state, notes))
    batches = _Batches(session, state, cleanup)
    clock, last_row = _Clock(state), {}
    while state.iteration < config.iterations:
        # Stop on every rank at the same iteration, or DDP's collectives would wait forever.
        if session.all_ranks_sum([float(stop.requested)])[0] > 0:
            path = _save_checkpoint(session, state) if session.main_process else None
            raise Cancelled(f"training stopped at iteration {state.iteration}; checkpoint {path or 'written by rank 0'}: "
                            f"continue with --resume {run_dir}")
        content, style, new_skips = batches.next()
        losses, lr = _step(session, state, content, style, batches.skipped)
        if not session.main_process:
            continue
        iteration, last = state.iteration, state.iteration == config.iterations
        validation = _monitor(session, iteration) if iteration % config.monitor_every == 0 or last else None
        if iteration % config.log_every == 0 or validation or last:
            last_row = _log(session, state, lr, validation, clock)
        if iteration % config.checkpoint_every == 0:
            _save_checkpoint(session, state)
        if callback is not None:
            try:
                callback(TrainProgress(iteration, config.iterations, losses, lr, state.skipped, new_skips, validation))
            except Cancelled:
                stop.requested = True
    return _finish(session, state, last_row, clock)


@torch.no_grad()
def _monitor(session: _Session, iteration: int) -> dict[str, float] | None:
    """Write the monitor grid for the fixed batch; with held-out images, return their losses."""
    if session.monitor is None:
        return None
    config = session.config
    content_all, style_all = session.monitor
    sums = {"val_content": 0.0, "val_style": 0.0, "val_total": 0.0}
    results = []
    for start in range(0, content_all.shape[0], config.batch_size):
        content = content_all[start : start + config.batch_size].to(session.device, memory_format=session.memory_format)
        style = style_all[start : start + config.batch_size].to(session.device, memory_format=session.memory_format)
        loss_c, loss_s, output, _ = decoder_losses(session.encoder, session.decoder, content, style, amp=session.amp)
        share = content.shape[0] / content_all.shape[0]
        sums["val_content"] += loss_c.item() * share
        sums["val_style"] += loss_s.item() * share
        sums["val_total"] += (config.content_weight * loss_c.item() + config.style_weight * loss_s.item()) * share
        results.append(output.float().clamp(0, 1).cpu())
    shown = min(4, content_all.shape[0])
    grid = _monitor_grid(style_all[:shown], content_all[:shown], torch.cat(results)[:shown])
    save_image(grid, session.run_dir / "monitor" / f"iter_{iteration:07d}.png",
               metadata={"iteration": iteration, "columns": "style | content | result"})
    if session.writer is not None:
        session.writer.add_image("monitor", np.asarray(grid), iteration, dataformats="HWC")
    return sums if session.data.val_content else None


def _rank_checksums(decoder: torch.nn.Module, distributed: bool) -> list[float]:
    """Sum of every decoder parameter, per rank: equal on all ranks when DDP kept them in step."""
    total = sum(p.detach().double().sum() for p in decoder.parameters()).reshape(1)
    if not distributed:
        return [total.item()]
    gathered = [torch.zeros_like(total) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(gathered, total)
    return [g.item() for g in gathered]


def _plot(rows: list[dict[str, float | None]], run_dir: Path) -> Path | None:
    from .plotting import plot_losses

    history = [{k: row[k] for k in ("iteration", "content", "style", "total")} for row in rows]
    validation = [{k: row[k] for k in ("iteration", "val_content", "val_style", "val_total")} for row in rows if row["val_total"] is not None]
    try:
        path = plot_losses(history, run_dir / "losses.png", title="painterly train") if history else None
        if validation:
            plot_losses(validation, run_dir / "val_losses.png", title="painterly train, held-out images")
    except PainterlyError:
        return None  # matplotlib is missing: the CSV holds the same numbers
    return path
