"""Videos frame by frame, through imageio's ffmpeg plugin (the ``video`` extra).

Any function from a list of frames to as many images works (:func:`painterly.stylize_batch` in
the CLI, which puts same-size frames through the networks together); the output keeps the
input's frame rate and is written to a temporary file that is renamed when complete.
"""

from __future__ import annotations

import itertools
import os
from typing import Callable

import numpy as np
from PIL import Image

from .errors import ImageError, PainterlyError
from .files import atomic_path

FrameProgress = Callable[[int], None]
"""Called with the number of frames written so far."""


def _imageio():
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401 (imageio needs its ffmpeg binary)
    except ImportError:
        raise PainterlyError("videos need imageio and its ffmpeg: pip install 'painterly[video]'") from None
    return imageio


def stylize_video(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    transform: Callable[[list[Image.Image]], list[Image.Image]],
    *,
    batch_size: int = 1,
    progress: FrameProgress | None = None,
) -> int:
    """Apply ``transform`` to the frames of ``source``, ``batch_size`` at a time, and write
    ``destination`` (H.264) at the same frame rate; returns the number of frames. Odd sides lose
    their last row or column (H.264's 4:2:0 chroma needs even sides)."""
    imageio = _imageio()
    frames = 0
    with atomic_path(destination, error=ImageError) as temporary:
        try:
            reader = imageio.get_reader(source, "ffmpeg")
            fps = float(reader.get_meta_data().get("fps") or 25.0)
        except (OSError, ValueError, RuntimeError) as error:
            raise ImageError(f"{source}: cannot be read as a video ({str(error).splitlines()[0][:120]})") from None
        with reader, imageio.get_writer(temporary, "ffmpeg", fps=fps, codec="libx264", macro_block_size=1,
                                        quality=8, pixelformat="yuv420p") as writer:
            batch: list[Image.Image] = []
            for frame in itertools.chain(reader, [None]):  # None: the end, flush what is left
                if frame is not None:
                    batch.append(Image.fromarray(np.asarray(frame)[..., :3]))
                if batch and (len(batch) == batch_size or frame is None):
                    for image in transform(batch):
                        array = np.asarray(image.convert("RGB"))
                        writer.append_data(array[: array.shape[0] // 2 * 2, : array.shape[1] // 2 * 2])
                    frames += len(batch)
                    batch = []
                    if progress is not None:
                        progress(frames)
        if frames == 0:
            raise ImageError(f"{source}: the video has no frames")
    return frames
