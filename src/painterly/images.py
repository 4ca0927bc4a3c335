"""Reading, resizing and writing images, and converting them to and from tensors.

Every method and interface goes through these functions, so an image is read the same way
everywhere: EXIF orientation applied, ICC profile converted to sRGB, the first frame of an
animation, 16-bit and palette files made 8-bit RGB, alpha composited on white unless asked to
keep it. Tensors are float32, shape (1, 3, H, W), values in [0, 1].
"""

from __future__ import annotations

import io
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from PIL import Image, ImageCms, ImageOps, PngImagePlugin, UnidentifiedImageError

from .errors import ImageError, SettingsError
from .files import atomic_path, same_file

#: File endings we read (Pillow decides by content; this list is for folders and globs).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif")
#: File endings we write.
OUTPUT_SUFFIXES = (".png", ".jpg", ".jpeg")
#: Larger images are refused as possible decompression bombs (Pillow's own warning threshold).
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
#: Sizes (longer side, pixels) that a method may be asked for.
MIN_SIZE, MAX_SIZE = 16, 16384

_SRGB = ImageCms.createProfile("sRGB")


def load_image(
    source: str | os.PathLike | bytes,
    *,
    keep_alpha: bool = False,
    reduce_to: int | None = None,
    max_pixels: int | None = None,
) -> Image.Image:
    """Read an image file (or its bytes) as an 8-bit RGB image, or RGBA with ``keep_alpha``.

    ``reduce_to``: the longer side the caller will resize to. A JPEG at least four times that
    (with ``max_pixels``: one over that) is then decoded at a reduced scale (libjpeg's DCT
    scaling, Pillow's ``draft``) to no less than twice it, so a huge photo never needs its
    full-size pixels in memory. ``max_pixels`` refuses an image whose header declares more
    pixels than that (after any reduced decode) before decoding it. Raises :class:`ImageError` for a missing, empty, truncated, non-image,
    oversized or over-``max_pixels`` file.
    """
    name = "the uploaded image" if isinstance(source, bytes) else str(source)
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that; we refuse both.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            fp = io.BytesIO(source) if isinstance(source, bytes) else source
            with Image.open(fp) as image:
                image.seek(0)  # first frame of a GIF or a multi-page TIFF
                if reduce_to is not None and image.format == "JPEG":
                    _draft(image, reduce_to, max_pixels)
                if max_pixels is not None and image.width * image.height > max_pixels:
                    raise ImageError(
                        f"{name}: declares {image.width}x{image.height} pixels, more than the {max_pixels:,} "
                        "allowed here; scale it down first"
                    )
                image.load()  # decode now, so a truncated file fails here
                image = _to_rgb(ImageOps.exif_transpose(image), keep_alpha=keep_alpha)
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: is a folder, not an image") from None
    except PermissionError:
        raise ImageError(f"{name}: permission denied") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(
            f"{name}: more than {MAX_PIXELS:,} pixels; refused as a possible decompression bomb"
        ) from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file, or a format Pillow cannot read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageError(f"{name}: cannot be decoded ({error})") from None
    return image


def _draft(image: Image.Image, reduce_to: int, max_pixels: int | None) -> None:
    """Ask libjpeg for a reduced decode whose longer side stays at least ``2 * reduce_to`` (so
    the final resize still starts from twice the pixels it keeps): with ``max_pixels``, only
    for an image over it (one within it decodes exactly as without ``reduce_to``); without,
    for an image at least four times ``reduce_to``."""
    longer = max(image.size)
    needed = image.width * image.height > max_pixels if max_pixels is not None else longer >= 4 * reduce_to
    if needed and longer > 2 * reduce_to:
        scale = 2 * reduce_to / longer
        image.draft(None, (math.ceil(image.width * scale), math.ceil(image.height * scale)))


def _to_rgb(image: Image.Image, *, keep_alpha: bool) -> Image.Image:
    """Bring any Pillow mode to RGB (or RGBA), in sRGB, 8 bits per channel."""
    if image.mode.startswith("I") or image.mode == "F":
        image = _high_bit_depth_to_l(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )
    icc = image.info.get("icc_profile")
    target = "RGBA" if has_alpha else "RGB"
    if image.mode not in ("RGB", "RGBA", "L", "CMYK"):
        image = image.convert(target)
    if icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            image = ImageCms.profileToProfile(image, source, _SRGB, outputMode=target)
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken or mismatched profile: keep the pixels as they are
    image = image.convert(target)
    if has_alpha and not keep_alpha:
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image).convert("RGB")
    return image


def _high_bit_depth_to_l(image: Image.Image) -> Image.Image:
    # Pillow's own I;16 -> L conversion clips at 255 instead of scaling, which whitens the image.
    array = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        peak = max(float(array.max()), 1.0)
    else:
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
    return Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")


def check_size(size: int, *, what: str = "size") -> int:
    """Return ``size`` if a method can work at it, else raise :class:`SettingsError`."""
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise SettingsError(f"{what} {size} is impossible: choose {MIN_SIZE} to {MAX_SIZE} pixels")
    return size


def shorter_side_at(size: tuple[int, int], longer_side: int) -> int:
    """The shorter side, in pixels, of an image of ``size`` resized to ``longer_side``
    (as :func:`resize_longer_side` rounds it)."""
    return max(1, round(min(size) * longer_side / max(size)))


def check_min_side(size: tuple[int, int], longer_side: int | None, *, min_side: int, what: str) -> None:
    """Refuse (:class:`SettingsError`) an image of ``size`` that at ``longer_side`` pixels
    (None: as it is) would have a side under ``min_side`` pixels, naming the smallest longer
    side that works, or saying that none does (an image too thin to use at any size)."""
    longer_side = max(size) if longer_side is None else longer_side
    if shorter_side_at(size, longer_side) >= min_side and longer_side >= min_side:
        return
    needed = max(min_side, math.ceil((min_side - 0.5) * max(size) / min(size)))
    while shorter_side_at(size, needed) < min_side:
        needed += 1
    width, height = size
    if needed > MAX_SIZE:
        raise SettingsError(
            f"{what} is {width}x{height} pixels: too thin for the network, which needs {min_side} pixels on "
            f"each side even at the largest size ({MAX_SIZE}); crop it"
        )
    scale = longer_side / max(size)
    resized = f"{max(1, round(width * scale))}x{max(1, round(height * scale))}"
    raise SettingsError(
        f"{what} would be {resized} pixels at {longer_side} px, under the {min_side} pixels a side the network "
        f"needs: the smallest size that works is {needed} px"
    )


def check_masks(masks: Sequence[Image.Image] | None, size: tuple[int, int], *, count: int) -> list[Image.Image] | None:
    """Style masks as both methods take them: one per style (``count``), each the content's
    ``size`` (width, height); returned greyscale ("L"). None passes through."""
    if masks is None:
        return None
    if len(masks) != count:
        raise SettingsError(f"{len(masks)} masks given for {count} style images: give one mask per style")
    for number, mask in enumerate(masks, start=1):
        if mask.size != tuple(size):
            raise SettingsError(
                f"mask {number} is {mask.width}x{mask.height} but the content image is {size[0]}x{size[1]}: "
                "masks must have the content's size"
            )
    return [mask.convert("L") for mask in masks]


def resize_longer_side(image: Image.Image, size: int) -> Image.Image:
    """Scale ``image`` so its longer side is ``size`` pixels, keeping the aspect ratio."""
    check_size(size)
    width, height = image.size
    scale = size / max(width, height)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if new_size == image.size:
        return image
    return image.resize(new_size, Image.Resampling.LANCZOS)


def split_alpha(image: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """Return the RGB part of ``image`` and its alpha channel (None when it has none)."""
    if image.mode == "RGBA":
        return image.convert("RGB"), image.getchannel("A")
    return image.convert("RGB"), None


def merge_alpha(image: Image.Image, alpha: Image.Image | None) -> Image.Image:
    """Attach ``alpha`` (resized to fit) to the RGB ``image``; no-op when alpha is None."""
    if alpha is None:
        return image
    if alpha.size != image.size:
        alpha = alpha.resize(image.size, Image.Resampling.LANCZOS)
    result = image.convert("RGB")
    result.putalpha(alpha)
    return result


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB Pillow image -> float32 tensor (1, 3, H, W) in [0, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()


def tensor_to_image(tensor: torch.Tensor) -> Image.Image:
    """Tensor (1, 3, H, W) or (3, H, W) in [0, 1] -> RGB Pillow image (values clamped)."""
    if tensor.dim() == 4:
        if tensor.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {tensor.shape[0]}")
        tensor = tensor[0]
    if tensor.dim() != 3 or tensor.shape[0] != 3:
        raise ValueError(f"expected shape (3, H, W), got {tuple(tensor.shape)}")
    array = (tensor.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8)
    return Image.fromarray(array.permute(1, 2, 0).cpu().numpy(), "RGB")


def check_output_path(path: str | os.PathLike, *, inputs: tuple[str | os.PathLike, ...] = ()) -> Path:
    """Check that ``path`` has a suffix we write and is not one of the ``inputs``."""
    path = Path(path)
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ImageError(f"{path}: output must end in {', '.join(OUTPUT_SUFFIXES)}")
    for source in inputs:
        if same_file(path, source):
            raise ImageError(f"{path}: refusing to overwrite an input image")
    return path


def save_image(
    image: Image.Image,
    path: str | os.PathLike,
    *,
    metadata: Mapping[str, Any] | None = None,
    quality: int = 95,
) -> Path:
    """Write ``image`` as PNG or JPEG atomically (temp file, then rename).

    ``metadata`` goes into PNG text chunks (one per key, non-strings as JSON) or, for JPEG,
    into the comment segment as one JSON object. Missing parent folders are created.
    """
    path = check_output_path(path)
    metadata = dict(metadata or {})
    is_png = path.suffix.lower() == ".png"
    if is_png:
        info = PngImagePlugin.PngInfo()
        for key, value in metadata.items():
            info.add_text(key, value if isinstance(value, str) else json.dumps(value))
        options: dict[str, Any] = {"format": "PNG", "pnginfo": info}
    else:
        if image.mode == "RGBA":  # JPEG has no alpha: composite on white
            background = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, image)
        image = image.convert("RGB")
        options = {"format": "JPEG", "quality": quality}
        if metadata:
            options["comment"] = json.dumps(metadata)
    with atomic_path(path, error=ImageError) as temporary:
        image.save(temporary, **options)
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Read back what :func:`save_image` recorded (values JSON-decoded where possible)."""
    with Image.open(path) as image:
        if image.format == "PNG":
            raw = dict(getattr(image, "text", {}))
        else:
            comment = image.info.get("comment", b"{}")
            return json.loads(comment.decode() if isinstance(comment, bytes) else comment)
    decoded = {}
    for key, value in raw.items():
        try:
            decoded[key] = json.loads(value)
        except json.JSONDecodeError:
            decoded[key] = value
    return decoded


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The image files (by suffix) anywhere below ``folder``, sorted."""
    return sorted(
        p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
