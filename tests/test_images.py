import io
import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from painterly.errors import ImageError, SettingsError
from painterly.images import (
    image_to_tensor,
    load_image,
    merge_alpha,
    read_metadata,
    resize_longer_side,
    save_image,
    split_alpha,
    tensor_to_image,
)

from conftest import make_scene


@pytest.mark.parametrize("fmt,suffix", [("JPEG", ".jpg"), ("PNG", ".png"), ("WEBP", ".webp"), ("TIFF", ".tif"), ("BMP", ".bmp")])
def test_reads_common_formats(tmp_path, fmt, suffix):
    scene = make_scene()
    path = tmp_path / f"scene{suffix}"
    scene.save(path, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
    image = load_image(path)
    assert image.mode == "RGB" and image.size == scene.size
    error = np.abs(np.asarray(image, np.float32) - np.asarray(scene, np.float32)).mean()
    assert error < 8  # lossy formats blur the noise; a wrong decode is off by far more


def test_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (20, 10), colour) for colour in ("red", "blue")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    pixel = load_image(tmp_path / "anim.gif").getpixel((5, 5))
    assert pixel[0] > 200 and pixel[2] < 50


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), "white")
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert load_image(tmp_path / "rotated.jpg").size == (20, 40)


def test_alpha_composited_on_white_or_kept(tmp_path):
    image = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    image.save(tmp_path / "clear.png")
    assert load_image(tmp_path / "clear.png").getpixel((0, 0)) == (255, 255, 255)
    kept = load_image(tmp_path / "clear.png", keep_alpha=True)
    assert kept.mode == "RGBA" and kept.getpixel((0, 0))[3] == 0
    rgb, alpha = split_alpha(kept)
    assert rgb.mode == "RGB" and alpha is not None
    merged = merge_alpha(rgb.resize((20, 20)), alpha)
    assert merged.mode == "RGBA" and merged.size == (20, 20)


def test_grayscale_cmyk_palette_and_16_bit(tmp_path):
    Image.new("L", (8, 8), 128).save(tmp_path / "gray.png")
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    Image.new("RGB", (8, 8), (0, 0, 255)).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16)).save(tmp_path / "deep.png")
    assert load_image(tmp_path / "gray.png").getpixel((0, 0)) == (128, 128, 128)
    red = load_image(tmp_path / "cmyk.jpg").getpixel((0, 0))
    assert red[0] > 200 and red[1] < 60 and red[2] < 60
    assert load_image(tmp_path / "palette.png").getpixel((0, 0)) == (0, 0, 255)
    # 16-bit half scale is mid grey, not clipped to white
    assert abs(load_image(tmp_path / "deep.png").getpixel((0, 0))[0] - 128) <= 1


def test_icc_profiles_are_converted_and_broken_ones_tolerated(tmp_path):
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    scene = make_scene()
    scene.save(tmp_path / "tagged.png", icc_profile=srgb)
    scene.save(tmp_path / "broken.png", icc_profile=b"not a profile")
    tagged = np.asarray(load_image(tmp_path / "tagged.png"), np.float32)
    assert np.abs(tagged - np.asarray(scene, np.float32)).max() <= 2
    assert load_image(tmp_path / "broken.png").size == scene.size


@pytest.mark.parametrize("content", [b"", b"hello, not an image", None])
def test_unreadable_files_raise_image_error(tmp_path, content):
    path = tmp_path / "bad.png"
    if content is None:  # truncated PNG
        buffer = io.BytesIO()
        make_scene().save(buffer, format="PNG")
        content = buffer.getvalue()[: len(buffer.getvalue()) // 2]
    path.write_bytes(content)
    with pytest.raises(ImageError, match="bad.png"):
        load_image(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


def test_decompression_bomb_refused(tmp_path, monkeypatch):
    make_scene(64, 64).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(tmp_path / "big.png")


def test_resize_longer_side_keeps_aspect():
    image = Image.new("RGB", (300, 200))
    assert resize_longer_side(image, 150).size == (150, 100)
    assert resize_longer_side(Image.new("RGB", (200, 300)), 60).size == (40, 60)
    with pytest.raises(SettingsError):
        resize_longer_side(image, 4)


def test_tensor_round_trip():
    scene = make_scene()
    tensor = image_to_tensor(scene)
    assert tensor.shape == (1, 3, 64, 96) and tensor.dtype == torch.float32
    assert 0 <= tensor.min() and tensor.max() <= 1
    assert np.array_equal(np.asarray(tensor_to_image(tensor)), np.asarray(scene))


def test_save_png_with_metadata_atomically(tmp_path):
    path = save_image(make_scene(), tmp_path / "sub" / "out.png", metadata={"seed": 3, "preset": "d2l", "layers": ["relu1_1"]})
    assert read_metadata(path) == {"seed": 3, "preset": "d2l", "layers": ["relu1_1"]}
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.png"]


def test_save_jpeg_metadata_in_comment(tmp_path):
    path = save_image(make_scene(), tmp_path / "out.jpg", metadata={"seed": 7})
    assert read_metadata(path) == {"seed": 7}
    with Image.open(path) as image:
        assert json.loads(image.info["comment"]) == {"seed": 7}


def test_failed_save_leaves_nothing(tmp_path):
    with pytest.raises(ImageError, match="must end in"):
        save_image(make_scene(), tmp_path / "out.gif")
    (tmp_path / "clash.png").mkdir()  # the rename onto a folder fails after the temp file is written
    with pytest.raises(ImageError, match="cannot be written"):
        save_image(make_scene(), tmp_path / "clash.png")
    assert [p.name for p in tmp_path.iterdir()] == ["clash.png"]
