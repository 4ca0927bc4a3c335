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

Where we depart from the recipes:

* sigma uses the biased variance (see :func:`painterly.adain.adain`).
* ``keras``: the example squashes images to 224x224, we keep the aspect ratio and crop 224
  squares; its decoder ends in a sigmoid, ours stays linear (the released ``decoder.pth``
  layout, clamped to [0, 1] at inference), so that the decoder loads in ``painterly stylize``
  and in every pytorch-AdaIN tool; its (ImageNet) VGG-19 is stood in for by the normalised one.

The loop in :func:`train` reads top to bottom: set up, then ``while iteration < iterations``:
draw, forward, check, step, log, monitor, checkpoint. Run under ``torchrun`` it trains with
DistributedDataParallel (the decoder only; each rank draws its own shard of the files) and
rank 0 alone writes files.
"""

from __future__ import annotations

import contextlib
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
from typing import Any, Callable, Iterator

import numpy as np
import torch
from PIL import Image

from .adain import ADAIN_LAYER, STYLE_LOSS_LAYERS, adain, build_decoder
from .data import Batch, ImageFolder, Skipped, find_images, infinite_loader, load_fixed, split_files, stop_workers
from .device import resolve_device
from .encoder import encoder_fingerprint, load_encoder
from .errors import Cancelled, PainterlyError, SettingsError
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
    iterations: int = option(160_000, minimum=1, help="optimiser steps in all (adain: 160000)")
    workers: int = option(4, minimum=0, help="data loader processes per training process (4; 0 loads in-process)")
    seed: int = option(0, minimum=0, maximum=2**63 - 1,
                       help="seed of the decoder's initialisation and the data order, 0 to 2**63-1 (0)")
    #: Encoder weights: a registry name (vgg19-normalised, adain, vgg19, random) or a file.
    encoder: str = option("vgg19-normalised", metavar="NAME|PATH",
                          help="frozen encoder: vgg19-normalised (default), adain, vgg19, random, or a weight file")
    #: Seed of ``random`` encoder weights: stylise with the same one.
    encoder_seed: int = option(0, minimum=0, maximum=2**63 - 1, help="seed of --encoder random weights (0)")
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
        for name in ("lr_decay", "content_weight", "style_weight"):
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


#: Columns of RUN_DIR/losses.csv; val_* are empty on rows without a validation pass.
CSV_COLUMNS = ("iteration", "lr", "content", "style", "total", "val_content", "val_style", "val_total", "skipped", "images_per_second")
#: Settings a resumed run may not change: the decoder would no longer match its encoder.
FIXED_ON_RESUME = ("encoder", "encoder_seed")


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


def decoder_losses(
    encoder: torch.nn.Module, decoder: torch.nn.Module, content: torch.Tensor, style: torch.Tensor, *, amp: torch.dtype | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(L_c, L_s, g(t)) for a batch; only the decoder's parameters get gradients.

    With ``amp`` the networks run in that dtype under autocast; statistics and losses stay
    float32, where the small differences of means and stds would otherwise round away.
    """
    with torch.autocast(content.device.type, dtype=amp or torch.float32, enabled=amp is not None):
        with torch.no_grad():
            content_features = encoder(content, [ADAIN_LAYER])[ADAIN_LAYER]
            style_features = encoder(style, STYLE_LOSS_LAYERS)
        target = adain(content_features.float(), style_features[ADAIN_LAYER].float())
        output = decoder(target)
        output_features = encoder(output, STYLE_LOSS_LAYERS)
    loss_c = content_loss(output_features[ADAIN_LAYER].float(), target)
    loss_s = sum(mean_std_style_loss(output_features[l].float(), style_features[l].float()) for l in STYLE_LOSS_LAYERS)
    return loss_c, loss_s, output


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
    callback raising Cancelled), :class:`PainterlyError` when the loss stops being finite.
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


#: What a training checkpoint must hold to be resumed from.
CHECKPOINT_KEYS = ("iteration", "decoder", "optimizer", "scaler", "sampler", "skipped", "images_seen", "window", "rng", "config")


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
    distributed = world_size > 1
    main_process = rank == 0
    csv_path = run_dir / "losses.csv"

    # --- data: held-out split by seed, then each rank its shard of the training files ---
    content_files, val_content_files = split_files(find_images(config.content_dir, what="content"), fraction=config.val_fraction, seed=config.seed)
    style_files, val_style_files = split_files(find_images(config.style_dir, what="style"), fraction=config.val_fraction, seed=config.seed + 1)
    sizes = {"image_size": config.image_size, "crop_size": config.crop_size}
    content_set, style_set = ImageFolder(content_files, **sizes), ImageFolder(style_files, **sizes)

    # --- model: frozen encoder, learning decoder ---
    torch.manual_seed(config.seed)
    encoder, encoder_label = load_encoder(config.encoder, last_layer=ADAIN_LAYER, seed=config.encoder_seed, device=device)
    # What decoder.pth records of its encoder, taken before any change of memory layout.
    decoder_record = {"encoder": encoder_label, "encoder_sha256": encoder_fingerprint(encoder)}
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

    # Sums of the losses since the last log row, which holds their means.
    iteration, drawn, images_seen, total_skipped = 0, {"content": 0, "style": 0}, 0, 0
    window: dict[str, float] = {"content": 0.0, "style": 0.0, "total": 0.0, "count": 0}
    if checkpoint is not None:
        decoder.load_state_dict(checkpoint["decoder"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if checkpoint["scaler"]:
            scaler.load_state_dict(checkpoint["scaler"])
        iteration, drawn, images_seen = checkpoint["iteration"], dict(checkpoint["sampler"]), checkpoint["images_seen"]
        total_skipped, window = checkpoint["skipped"], dict(checkpoint["window"])
        _set_rng_state(checkpoint["rng"])
    # This rank's count of dropped samples; the ranks' counts sum to total_skipped.
    skipped = total_skipped if main_process else 0
    model = decoder
    if distributed:
        model = torch.nn.parallel.DistributedDataParallel(decoder, device_ids=[device.index] if device.type == "cuda" else None)

    # --- run folder (rank 0) ---
    writer = None
    notes: list[str] = []
    if main_process:
        try:
            (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            (run_dir / "monitor").mkdir(exist_ok=True)
        except OSError as error:
            raise PainterlyError(f"{run_dir}: cannot make the run folder ({error.strerror or error})") from None
        # encoder and encoder_seed say which encoder to stylise with: the decoder only fits that one.
        run_info = {**config.to_dict(), "encoder_label": encoder_label, "world_size": world_size}
        _atomic_write(run_dir / "config.json", lambda f: json.dump(run_info, f, indent=2), binary=False)
        if checkpoint is None or not csv_path.exists():
            _atomic_write(csv_path, lambda f: f.write(",".join(CSV_COLUMNS) + "\n"), binary=False)
        else:
            _truncate_csv(csv_path, iteration)
        if config.tensorboard is not False:
            try:
                from torch.utils.tensorboard import SummaryWriter

                writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=iteration or None)
                cleanup.callback(writer.close)
            except ImportError:
                if config.tensorboard:  # asked for: say why there will be no logs
                    notes.append("TensorBoard logs were asked for but tensorboard is not installed "
                                 "(pip install 'painterly[tensorboard]'): training without them")

    # --- the fixed monitor batch: held-out images when there are some, else the first training ones ---
    monitor = None
    if main_process:
        fixed_content = ImageFolder(val_content_files or content_files, **sizes)
        fixed_style = ImageFolder(val_style_files or style_files, **sizes)
        count = config.val_images if val_content_files else min(4, config.batch_size)
        monitor_content, _ = load_fixed(fixed_content, count)
        monitor_style, _ = load_fixed(fixed_style, count)
        if monitor_content is not None and monitor_style is not None:
            index = torch.arange(monitor_content.shape[0]) % monitor_style.shape[0]
            monitor = (monitor_content, monitor_style[index])

    if main_process and on_start is not None:
        on_start(TrainStart(
            content_images=len(content_files) + len(val_content_files), style_images=len(style_files) + len(val_style_files),
            held_out_content=len(val_content_files), held_out_style=len(val_style_files),
            not_images=sum(_other_files(folder) for folder in (config.content_dir, config.style_dir)),
            unreadable=total_skipped, iteration=iteration + 1, iterations=config.iterations, encoder=encoder_label,
            device=str(device), notes=notes,
        ))

    def save_checkpoint() -> Path:
        path = run_dir / "checkpoints" / f"ckpt_{iteration:07d}.pt"
        state = {
            "iteration": iteration,
            "decoder": decoder.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else {},
            "schedule": {"lr": config.lr, "lr_decay": config.lr_decay, "current_lr": lr_at(iteration)},
            "sampler": dict(drawn),
            "skipped": total_skipped,
            "images_seen": images_seen,
            "window": dict(window),
            "rng": _rng_state(),
            "config": config.to_dict(),
        }
        save_torch(state, path)
        for old in checkpoint_paths(run_dir)[: -config.keep]:
            old.unlink(missing_ok=True)
        return path

    def lr_at(step: int) -> float:
        return config.lr / (1.0 + config.lr_decay * step)

    def all_ranks_sum(values: list[float]) -> list[float]:
        if not distributed:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        torch.distributed.all_reduce(tensor)
        return tensor.tolist()

    loader_options = {"batch_size": config.batch_size, "seed": config.seed, "rank": rank, "world_size": world_size,
                      "workers": config.workers, "pin_memory": device.type == "cuda"}
    content_batches = infinite_loader(content_set, stream=0, start=drawn["content"], **loader_options)
    style_batches = infinite_loader(style_set, stream=1, start=drawn["style"], **loader_options)
    cleanup.callback(stop_workers, content_batches)
    cleanup.callback(stop_workers, style_batches)
    logged_bad: set[str] = set()

    def next_batch(batches: Iterator[Batch], stream: str) -> tuple[torch.Tensor, list[Skipped]]:
        nonlocal skipped
        new: list[Skipped] = []
        for _ in range(100):
            batch = next(batches)
            drawn[stream] += config.batch_size
            skipped += len(batch.skipped)
            new += [s for s in batch.skipped if s.path not in logged_bad]
            logged_bad.update(s.path for s in batch.skipped)
            if batch.images is not None:
                return batch.images, new
        raise PainterlyError(f"100 batches in a row held no readable image: check the {stream} folder (see {run_dir / 'skipped.txt'})")

    started, images_at_start = time.perf_counter(), images_seen
    last_row: dict[str, Any] = {}
    while iteration < config.iterations:
        # Stop on every rank at the same iteration, or DDP's collectives would wait forever.
        if all_ranks_sum([float(stop.requested)])[0] > 0:
            path = save_checkpoint() if main_process else None
            raise Cancelled(f"training stopped at iteration {iteration}; checkpoint {path or 'written by rank 0'}: continue with --resume {run_dir}")

        content, new_content_skips = next_batch(content_batches, "content")
        style, new_style_skips = next_batch(style_batches, "style")
        new_skips = new_content_skips + new_style_skips
        if new_skips:  # every rank logs its own shard's files (rank 0 may not have made the folder yet)
            run_dir.mkdir(parents=True, exist_ok=True)
            with open(run_dir / "skipped.txt", "a") as log:
                log.write("".join(f"{s.path}\t{s.reason}\n" for s in new_skips))
        n = min(content.shape[0], style.shape[0])  # a skipped file shortens one of the batches
        content = content[:n].to(device, non_blocking=True, memory_format=memory_format)
        style = style[:n].to(device, non_blocking=True, memory_format=memory_format)

        lr = lr_at(iteration)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss_c, loss_s, _ = decoder_losses(encoder, model, content, style, amp=amp)
        loss = config.content_weight * loss_c + config.style_weight * loss_s
        # One device-to-host copy per iteration: each .item() would wait for the GPU on its own.
        reduced = all_ranks_sum(torch.stack([loss_c, loss_s, loss]).tolist() + [float(n), float(skipped)])
        losses = {"content": reduced[0] / world_size, "style": reduced[1] / world_size, "total": reduced[2] / world_size}
        if not math.isfinite(losses["total"]):
            kept = checkpoint_paths(run_dir)
            raise PainterlyError(
                f"the loss became {losses['total']} at iteration {iteration + 1} (content {losses['content']:.4g}, "
                f"style {losses['style']:.4g}): training diverged; "
                + (f"the last good checkpoint is {kept[-1]}: resume with --resume {run_dir} and a lower --lr" if kept
                   else "no checkpoint was written yet: start again with a lower --lr")
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        iteration += 1

        for key in ("content", "style", "total"):
            window[key] += losses[key]
        window["count"] += 1
        images_seen += int(reduced[3])
        total_skipped = int(reduced[4])
        if not main_process:
            continue

        validation = None
        if iteration % config.monitor_every == 0 or iteration == config.iterations:
            validation = _monitor(encoder, decoder, monitor, config, amp, device, memory_format, run_dir, iteration, writer,
                                  score=bool(val_content_files))
        if iteration % config.log_every == 0 or validation or iteration == config.iterations:
            elapsed = time.perf_counter() - started
            last_row = {"iteration": iteration, "lr": lr, "skipped": total_skipped,
                        **{k: window[k] / window["count"] for k in ("content", "style", "total")},
                        **(validation or {}),
                        "images_per_second": (images_seen - images_at_start) / elapsed if elapsed > 0 else None}
            _append_csv_row(csv_path, last_row)
            if writer is not None:
                for key in ("content", "style", "total", *(validation or {})):
                    writer.add_scalar(f"loss/{key}", last_row[key], iteration)
                writer.add_scalar("lr", lr, iteration)
            window.update({"content": 0.0, "style": 0.0, "total": 0.0, "count": 0})
        if iteration % config.checkpoint_every == 0:
            save_checkpoint()
        if callback is not None:
            try:
                callback(TrainProgress(iteration, config.iterations, losses, lr, total_skipped, new_skips, validation))
            except Cancelled:
                stop.requested = True

    # --- the end: final checkpoint, the decoder in the released layout, the loss curve ---
    elapsed = time.perf_counter() - started
    images_per_second = (images_seen - images_at_start) / elapsed if elapsed > 0 else 0.0
    checksums = _rank_checksums(decoder, distributed)
    decoder_path, plot_path = run_dir / "decoder.pth", None
    if main_process:
        if iteration % config.checkpoint_every != 0:
            save_checkpoint()
        state = {key: value.detach().float().cpu().contiguous() for key, value in decoder.state_dict().items()}
        save_torch(with_record(state, decoder_record), decoder_path)
        rows = read_losses(csv_path)
        plot_path = _plot(rows, run_dir)
        summary = {"iteration": iteration, "losses": {k: last_row.get(k) for k in ("content", "style", "total")},
                   "skipped": total_skipped, "encoder": encoder_label,
                   "images_per_second": images_per_second, "world_size": world_size, "decoder_checksums": checksums}
        _atomic_write(run_dir / "summary.json", lambda f: json.dump(summary, f, indent=2), binary=False)
    if distributed:
        torch.distributed.barrier()  # every rank returns once the files exist
    return TrainResult(run_dir, decoder_path, iteration, {k: last_row.get(k) for k in ("content", "style", "total")},
                       total_skipped, encoder_label, images_per_second, plot_path)


@torch.no_grad()
def _monitor(
    encoder: torch.nn.Module,
    decoder: torch.nn.Module,
    monitor: tuple[torch.Tensor, torch.Tensor] | None,
    config: TrainConfig,
    amp: torch.dtype | None,
    device: torch.device,
    memory_format: torch.memory_format,
    run_dir: Path,
    iteration: int,
    writer: Any,
    *,
    score: bool,
) -> dict[str, float] | None:
    """Write the monitor grid for the fixed batch; with held-out images, return their losses."""
    if monitor is None:
        return None
    content_all, style_all = monitor
    sums = {"val_content": 0.0, "val_style": 0.0, "val_total": 0.0}
    results = []
    for start in range(0, content_all.shape[0], config.batch_size):
        content = content_all[start : start + config.batch_size].to(device, memory_format=memory_format)
        style = style_all[start : start + config.batch_size].to(device, memory_format=memory_format)
        loss_c, loss_s, output = decoder_losses(encoder, decoder, content, style, amp=amp)
        share = content.shape[0] / content_all.shape[0]
        sums["val_content"] += loss_c.item() * share
        sums["val_style"] += loss_s.item() * share
        sums["val_total"] += (config.content_weight * loss_c.item() + config.style_weight * loss_s.item()) * share
        results.append(output.float().clamp(0, 1).cpu())
    shown = min(4, content_all.shape[0])
    grid = _monitor_grid(style_all[:shown], content_all[:shown], torch.cat(results)[:shown])
    save_image(grid, run_dir / "monitor" / f"iter_{iteration:07d}.png", metadata={"iteration": iteration, "columns": "style | content | result"})
    if writer is not None:
        writer.add_image("monitor", np.asarray(grid), iteration, dataformats="HWC")
    return sums if score else None


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
