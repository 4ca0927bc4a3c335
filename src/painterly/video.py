"""Videos frame by frame, through imageio's ffmpeg plugin (the ``video`` extra).

Any per-frame function works (:func:`painterly.stylize` in the CLI); the output keeps the
input's frame rate and is written to a temporary file that is renamed when complete.
"""

from __future__ import annotations

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
    transform: Callable[[Image.Image], Image.Image],
    *,
    progress: FrameProgress | None = None,
) -> int:
    """Apply ``transform`` to every frame of ``source`` and write ``destination`` (H.264) at the
    same frame rate; returns the number of frames. Odd sides lose their last row or column
    (H.264's 4:2:0 chroma needs even sides)."""
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
            for frame in reader:
                image = transform(Image.fromarray(np.asarray(frame)[..., :3]))
                array = np.asarray(image.convert("RGB"))
                writer.append_data(array[: array.shape[0] // 2 * 2, : array.shape[1] // 2 * 2])
                frames += 1
                if progress is not None:
                    progress(frames)
        if frames == 0:
            raise ImageError(f"{source}: the video has no frames")
    return frames
