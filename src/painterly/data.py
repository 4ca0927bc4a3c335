"""Image-folder datasets for training: endless seeded batches that skip files they cannot read.

A training run draws from two folder trees (content and style) for days, so one truncated JPEG
must not end it: :class:`ImageFolder` returns a :class:`Skipped` marker for a file that cannot
be decoded, :func:`collate_skipping` drops the markers from the batch and hands them to the
training loop, which counts and logs them.

Sampling is counter-based: draw ``i`` of a stream is a pure function of (seed, stream, rank,
i). A stream is therefore resumed exactly from the number of draws it has served, however many
batches the loader's worker processes had prefetched when the checkpoint was taken.
"""

from __future__ import annotations

import math
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .errors import SettingsError
from .images import image_to_tensor, list_images, load_image, resize_longer_side


@dataclass(frozen=True)
class Skipped:
    """A file that could not be turned into a training sample, and why."""

    path: str
    reason: str


@dataclass
class Batch:
    """Images that loaded, as one (N, 3, H, W) tensor (None when none did), and the skipped files."""

    images: torch.Tensor | None
    skipped: list[Skipped]

    def pin_memory(self) -> "Batch":  # called by DataLoader(pin_memory=True)
        return Batch(self.images.pin_memory() if self.images is not None else None, self.skipped)


def collate_skipping(items: Sequence[torch.Tensor | Skipped]) -> Batch:
    """Stack the samples that loaded; pass the :class:`Skipped` markers on beside them."""
    images = [item for item in items if isinstance(item, torch.Tensor)]
    skipped = [item for item in items if isinstance(item, Skipped)]
    return Batch(torch.stack(images) if images else None, skipped)


def resize_shorter_side(image, size: int):
    """Scale a Pillow image so its shorter side is at least ``size`` (exactly, up to rounding up).

    Goes through :func:`images.resize_longer_side` with the longer side rounded up, so the
    shorter side never comes out a pixel short of a crop of ``size``.
    """
    width, height = image.size
    longer = math.ceil(size * max(width, height) / min(width, height))
    return resize_longer_side(image, longer)


class ImageFolder(Dataset):
    """Square crops from image files: shorter side resized to ``image_size``, then a
    ``crop_size`` crop (random, from the seed the sampler passes; centred when it passes None).

    ``dataset[(index, crop_seed)]`` is a (3, crop_size, crop_size) tensor in [0, 1], or a
    :class:`Skipped` marker when the file cannot be read.
    """

    def __init__(self, files: Sequence[str | os.PathLike], *, image_size: int, crop_size: int) -> None:
        if crop_size > image_size:
            raise SettingsError(f"crop_size {crop_size} is larger than image_size {image_size}")
        self.files = [Path(f) for f in files]
        self.image_size = image_size
        self.crop_size = crop_size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: tuple[int, int | None]) -> torch.Tensor | Skipped:
        index, crop_seed = key
        path = self.files[index]
        try:
            image = resize_shorter_side(load_image(path), self.image_size)
        except Exception as error:  # noqa: BLE001 - Pillow's decoders raise many types; a bad file must not end a run
            return Skipped(str(path), str(error) or type(error).__name__)
        width, height = image.size
        if crop_seed is None:
            left, top = (width - self.crop_size) // 2, (height - self.crop_size) // 2
        else:
            rng = np.random.default_rng(crop_seed)
            left = int(rng.integers(0, width - self.crop_size + 1))
            top = int(rng.integers(0, height - self.crop_size + 1))
        crop = image.crop((left, top, left + self.crop_size, top + self.crop_size))
        return image_to_tensor(crop)[0]


class InfiniteSampler(Sampler):
    """An endless stream of ``(index, crop_seed)``: each epoch a fresh seeded permutation of the
    dataset, of which each of ``world_size`` ranks takes every ``world_size``-th entry (the
    permutation wraps around to a multiple of the rank count, as DistributedSampler pads).

    ``start`` is the number of draws already served: the stream continues from there.
    """

    def __init__(self, size: int, *, seed: int, stream: int, rank: int = 0, world_size: int = 1, start: int = 0) -> None:
        if size < 1:
            raise SettingsError("cannot sample from an empty dataset")
        self.size, self.seed, self.stream = size, seed, stream
        self.rank, self.world_size, self.start = rank, world_size, start
        self.per_rank = math.ceil(size / world_size)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        order = np.random.default_rng([self.seed, self.stream, epoch]).permutation(self.size)
        padded = np.resize(order, self.per_rank * self.world_size)
        return padded[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        draw, epoch, order = self.start, -1, np.empty(0, dtype=np.int64)
        while True:
            draw_epoch, position = divmod(draw, self.per_rank)
            if draw_epoch != epoch:
                epoch, order = draw_epoch, self._epoch_order(draw_epoch)
            crop_seed = np.random.SeedSequence([self.seed, self.stream, self.rank, draw]).generate_state(1)[0]
            yield int(order[position]), int(crop_seed)
            draw += 1


def split_files(files: Sequence[Path], *, fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """Hold out a seeded ``fraction`` of ``files`` (at least one, when the fraction is not 0):
    returns (training files, held-out files), each in the original order."""
    if not 0 <= fraction < 1:
        raise SettingsError(f"val_fraction must be in [0, 1), got {fraction}")
    if fraction == 0:
        return list(files), []
    held = max(1, round(fraction * len(files)))
    if held >= len(files):
        raise SettingsError(f"val_fraction {fraction} leaves no training images out of {len(files)}")
    chosen = set(np.random.default_rng(seed).permutation(len(files))[:held].tolist())
    return [f for i, f in enumerate(files) if i not in chosen], [f for i, f in enumerate(files) if i in chosen]


def find_images(folder: str | os.PathLike, *, what: str) -> list[Path]:
    """The image files below ``folder``; :class:`SettingsError` when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SettingsError(f"{what} folder {folder} does not exist")
    files = list_images(folder)
    if not files:
        raise SettingsError(f"{what} folder {folder} holds no image files")
    return files


def infinite_loader(
    dataset: ImageFolder,
    *,
    batch_size: int,
    seed: int,
    stream: int,
    rank: int = 0,
    world_size: int = 1,
    start: int = 0,
    workers: int = 0,
    pin_memory: bool = False,
) -> Iterator[Batch]:
    """Endless :class:`Batch` es from ``dataset``, continuing after ``start`` draws."""
    sampler = InfiniteSampler(len(dataset), seed=seed, stream=stream, rank=rank, world_size=world_size, start=start)
    return iter(
        DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=workers,
            collate_fn=collate_skipping,
            pin_memory=pin_memory,
            worker_init_fn=_leave_stop_signals_to_the_trainer if workers > 0 else None,
        )
    )


def _leave_stop_signals_to_the_trainer(worker_id: int) -> None:
    # Ctrl-C (and a batch system's SIGTERM) reach the whole process group. A loader worker killed
    # by one would fail the batch the training loop waits for, before the loop could save a
    # checkpoint; the loop stops the workers itself once it has saved.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def stop_workers(batches: Iterator[Batch]) -> None:
    """Stop a loader's worker processes now rather than at garbage collection, which a lingering
    reference can put off until exit, where they ignore the interpreter's SIGTERM."""
    shutdown = getattr(batches, "_shutdown_workers", None)  # torch's own orderly shutdown
    if shutdown is not None:
        shutdown()


def load_fixed(dataset: ImageFolder, count: int) -> tuple[torch.Tensor | None, list[Skipped]]:
    """Centre crops of the first ``count`` readable files, as one batch (for monitoring)."""
    images, skipped = [], []
    for index in range(len(dataset)):
        if len(images) == count:
            break
        item = dataset[(index, None)]
        (images if isinstance(item, torch.Tensor) else skipped).append(item)
    return (torch.stack(images) if images else None), skipped
