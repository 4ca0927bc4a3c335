"""Colour control: colour-statistics matching, luminance and histogram matching.

Gatys, Ecker, Bethge, Hertzmann and Shechtman, "Controlling Perceptual Factors in Neural Style
Transfer" (CVPR 2017), section 5, give two ways to keep the content's colours:

* colour matching: before transfer, a linear map gives the style image the content's colour
  mean and covariance (:func:`match_color`);
* luminance-only transfer: transfer on the luminance channel, the style's luminance first
  matched to the content's (:func:`match_histogram`), then recombine with the content's chroma
  (:func:`luminance`, :func:`with_chroma_of`).

Images are tensors (N, 3, H, W) in [0, 1]. Luminance and chroma are BT.601 YCbCr.
"""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from .options import option

_RGB_TO_YCBCR = torch.tensor(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]
)


def _check_images(image: torch.Tensor, name: str = "image") -> None:
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N, 3, H, W), got {tuple(image.shape)}")


def rgb_to_ycbcr(image: torch.Tensor) -> torch.Tensor:
    """RGB -> YCbCr (BT.601, full range, chroma centred on 0.5)."""
    _check_images(image)
    matrix = _RGB_TO_YCBCR.to(image)
    ycbcr = torch.einsum("ij,njhw->nihw", matrix, image)
    return ycbcr + torch.tensor([0.0, 0.5, 0.5], dtype=image.dtype, device=image.device).view(1, 3, 1, 1)


def ycbcr_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """YCbCr -> RGB, the inverse of :func:`rgb_to_ycbcr` (not clamped)."""
    _check_images(image)
    centred = image - torch.tensor([0.0, 0.5, 0.5], dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    matrix = torch.linalg.inv(_RGB_TO_YCBCR.double()).to(image)
    return torch.einsum("ij,njhw->nihw", matrix, centred)


def luminance(image: torch.Tensor) -> torch.Tensor:
    """The Y channel (N, 1, H, W)."""
    return rgb_to_ycbcr(image)[:, :1]


def with_chroma_of(luma: torch.Tensor, chroma_source: torch.Tensor) -> torch.Tensor:
    """RGB from luminance ``luma`` (N, 1 or 3, H, W) and the chroma of ``chroma_source``.

    A three-channel ``luma`` (a stylised grey image) contributes its mean over channels.
    """
    if luma.shape[1] == 3:
        luma = luma.mean(dim=1, keepdim=True)
    source = rgb_to_ycbcr(chroma_source)
    if source.shape[-2:] != luma.shape[-2:]:
        source = torch.nn.functional.interpolate(source, size=luma.shape[-2:], mode="bilinear", align_corners=False)
    return ycbcr_to_rgb(torch.cat([luma, source[:, 1:]], dim=1)).clamp(0, 1)


def with_chroma_of_image(luma_source: Image.Image, chroma_source: Image.Image) -> Image.Image:
    """:func:`with_chroma_of` for Pillow images of the same size (uint8, so a huge tiled result
    never has to be held in float): the luminance of one, the Cb and Cr of the other."""
    luma = luma_source.convert("L")  # BT.601 luma, Pillow's YCbCr Y
    _, cb, cr = chroma_source.convert("RGB").resize(luma.size).convert("YCbCr").split()
    return Image.merge("YCbCr", (luma, cb, cr)).convert("RGB")


def color_statistics(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image colour mean (N, 3) and covariance (N, 3, 3) over all pixels."""
    _check_images(image)
    pixels = image.flatten(2)  # N, 3, P
    mean = pixels.mean(dim=2)
    centred = pixels - mean.unsqueeze(2)
    return mean, centred @ centred.transpose(1, 2) / pixels.shape[2]


def _matrix_power(matrix: torch.Tensor, power: float, eps: float) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return vectors @ torch.diag_embed(values.clamp_min(eps).pow(power)) @ vectors.transpose(-1, -2)


def match_color(image: torch.Tensor, reference: torch.Tensor, *, eps: float = 1e-5) -> torch.Tensor:
    """Give ``image`` the colour mean and covariance of ``reference`` by a linear map.

    x' = C_r^{1/2} C_i^{-1/2} (x - mu_i) + mu_r, with symmetric matrix square roots (Gatys et al.
    2017's "image analogies" variant), then clamped to [0, 1]. Batches broadcast.
    """
    _check_images(image)
    _check_images(reference, "reference")
    work = torch.float64
    mean_i, cov_i = color_statistics(image.to(work))
    mean_r, cov_r = color_statistics(reference.to(work))
    transform = _matrix_power(cov_r, 0.5, eps) @ _matrix_power(cov_i, -0.5, eps)
    pixels = image.to(work).flatten(2) - mean_i.unsqueeze(2)
    matched = transform @ pixels + mean_r.unsqueeze(2)
    return matched.view(image.shape).clamp(0, 1).to(image.dtype)


def match_histogram(source: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Map the values of ``source`` so their histogram is that of ``reference`` (per channel).

    Exact quantile matching: each value takes the reference value of the same rank (the
    reference's sorted values interpolated when the sizes differ). Shapes (N, C, H, W).
    """
    if source.dim() != 4 or reference.dim() != 4 or source.shape[:2] != reference.shape[:2]:
        raise ValueError(f"shapes (N, C, H, W) with equal N and C needed, got {tuple(source.shape)}, {tuple(reference.shape)}")
    flat = source.flatten(2)
    reference_sorted = reference.flatten(2).sort(dim=2).values
    ranks = flat.argsort(dim=2).argsort(dim=2).to(source.dtype)
    positions = ranks / max(flat.shape[2] - 1, 1) * (reference_sorted.shape[2] - 1)
    low = positions.floor().long()
    high = positions.ceil().long()
    weight = positions - low
    matched = torch.gather(reference_sorted, 2, low) * (1 - weight) + torch.gather(reference_sorted, 2, high) * weight
    return matched.view(source.shape)


#: Values of the ``preserve_color`` setting, shared by every method.
PRESERVE_COLOR_CHOICES = ("none", "luminance", "match")


def preserve_color_option() -> Any:
    """The ``preserve_color`` setting's declaration, the same for every method (checked, and
    refused with one message, by :func:`painterly.options.check_options`)."""
    return option("none", choices=PRESERVE_COLOR_CHOICES, flag="--preserve-color", studio=True, studio_default="none",
                  help="keep the content's colours: 'match' (the flag alone) first gives the style images the "
                  "content's colour mean and covariance; 'luminance' transfers on the luminance only (the style's "
                  "histogram matched to the content's) and puts back the content's chroma (default: none)")


def grey(image: torch.Tensor) -> torch.Tensor:
    """The luminance of ``image`` repeated in three channels, as a network that wants RGB reads it."""
    return luminance(image).repeat(1, 3, 1, 1)


def prepare_colors(
    content: torch.Tensor, styles: list[torch.Tensor], mode: str
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The content and styles a transfer should see under ``preserve_color`` = ``mode``.

    * ``none``: unchanged.
    * ``match``: each style is given the content's colour mean and covariance (:func:`match_color`).
    * ``luminance``: content and styles become grey (:func:`grey`), each style's luminance first
      histogram-matched to the content's; undo with :func:`restore_colors` after the transfer.
    """
    if mode == "none":
        return content, list(styles)
    if mode == "match":
        return content, [match_color(style, content) for style in styles]
    if mode == "luminance":
        content_luma = luminance(content)
        matched = [match_histogram(luminance(style), content_luma).repeat(1, 3, 1, 1) for style in styles]
        return grey(content), matched
    raise ValueError(f"unknown preserve_color mode {mode!r}: choose {', '.join(PRESERVE_COLOR_CHOICES)}")


def restore_colors(result: torch.Tensor, content: torch.Tensor, mode: str) -> torch.Tensor:
    """Finish a transfer made under ``mode``: for ``luminance``, the result's luminance with the
    content's chroma; otherwise the result as it is."""
    return with_chroma_of(result, content) if mode == "luminance" else result


def keep_luminance(result: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Colour-only transfer: the content's luminance (its detail and shading) with the chroma
    (Cb, Cr) of the stylised ``result``, the mirror image of luminance-only transfer."""
    return with_chroma_of(luminance(content), result)
