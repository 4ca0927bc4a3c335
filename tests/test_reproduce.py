"""``painterly reproduce``: every kind of output painted again, bit for bit, from its metadata."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

import painterly
from painterly.gatys import GatysSettings, get_preset
from painterly.images import read_metadata, save_image
from painterly.server import Limits, create_app

from conftest import make_scene, make_stripes
from test_adain import write_decoder

#: Small and quick: two shallow layers, a few iterations at 32 px.
FAST = ["--size", "32", "--iterations", "3", "--weights", "random", "--content-layers", "relu2_1",
        "--style-layers", "relu1_1", "relu2_1", "--quiet"]


@pytest.fixture
def pictures(tmp_path):
    make_scene(48, 32).save(tmp_path / "photo.png")
    make_stripes(40, 40).save(tmp_path / "paint.png")
    return tmp_path / "photo.png", tmp_path / "paint.png"


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def assert_reproduces(painterly_cli, output, *extra):
    again = output.with_name("again.png")
    result = painterly_cli("reproduce", output, "-o", again, "--check", "--quiet", *extra)
    assert result.returncode == 0, result.stderr
    assert "the same pixels" in result.stderr
    assert np.array_equal(pixels(again), pixels(output))
    assert read_metadata(again) == read_metadata(output)


def test_optimize_output_reproduces_and_its_inputs_are_checked(tmp_path, pictures, painterly_cli):
    photo, paint = pictures
    out = tmp_path / "out.png"
    made = painterly_cli("optimize", photo, paint, "-o", out, "--preset", "d2l", "--seed", "3", "--tv-weight", "0.5",
                         "--profile", "none", *FAST)  # the preset's own values, not the random-features profile
    assert made.returncode == 0, made.stderr
    metadata = read_metadata(out)
    assert metadata["preset"] == "d2l"
    assert metadata["inputs"]["content"][0]["name"] == "photo.png"
    assert metadata["inputs"]["style"][0]["path"] == str(paint) and len(metadata["inputs"]["style"][0]["sha256"]) == 64
    # The whole metadata reads back as the settings of the run (the preset's weights kept).
    settings = GatysSettings.from_dict(metadata)
    assert settings == get_preset("d2l").updated(size=32, iterations=3, tv_weight=0.5, content_layers=("relu2_1",),
                                                 style_layers=("relu1_1", "relu2_1"))
    with pytest.raises(painterly.SettingsError, match="unknown settings: tv_wieght"):
        GatysSettings.from_dict({"tv_wieght": 1.0})  # a plain settings dict still refuses a typo
    assert_reproduces(painterly_cli, out)

    # Moved inputs are found by name in --inputs folders; a file of the same name but other
    # bytes is named, never used.
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.move(photo, moved / "photo.png")
    assert painterly_cli("reproduce", out, "-o", tmp_path / "x.png", "--quiet").returncode == 2
    assert_reproduces(painterly_cli, out, "--inputs", moved)
    make_stripes(40, 40).rotate(90).save(paint)
    changed = painterly_cli("reproduce", out, "-o", tmp_path / "y.png", "--inputs", moved, "--quiet")
    assert changed.returncode == 2 and "style" in changed.stderr and str(paint) in changed.stderr
    assert "SHA-256" in changed.stderr and len(changed.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "y.png").exists()


def test_stylize_output_reproduces(tmp_path, pictures, painterly_cli):
    photo, paint = pictures
    decoder = write_decoder(tmp_path / "decoder.pth")
    out = tmp_path / "fast.png"
    made = painterly_cli("stylize", photo, "--style", paint, "-o", out, "--alpha", "0.7", "--style-size", "32",
                         "--encoder", "random", "--seed", "2", "--decoder", decoder, "--preserve-color", "--quiet")
    assert made.returncode == 0, made.stderr
    assert read_metadata(out)["inputs"]["decoder"][0]["name"] == "decoder.pth"
    assert_reproduces(painterly_cli, out)
    # In Python: painterly.reproduce gives the image and how it compares.
    again = painterly.reproduce(out)
    assert again.identical and again.inputs["content"] == [photo]


def test_an_output_from_before_supersample_wct_and_margin_reproduces_as_it_was_made(tmp_path, pictures, painterly_cli):
    # Older versions painted the bundled decoder at 1x with AdaIN's transform and no margin, and
    # recorded none of them; today's defaults for it (2x, WCT, 32 px) must not change such an output's pixels.
    photo, paint = pictures
    out = tmp_path / "old.png"
    made = painterly_cli("stylize", photo, "--style", paint, "-o", out, "--style-size", "32", "--encoder", "bundled",
                         "--decoder", "bundled", "--supersample", "1", "--feature-transform", "adain", "--margin", "0", "--quiet")
    assert made.returncode == 0, made.stderr
    metadata = read_metadata(out)
    old = {key: value for key, value in metadata.items() if key not in ("supersample", "feature_transform", "margin")}
    with Image.open(out) as image:
        save_image(image.copy(), out, metadata=old)
    assert "feature_transform" not in read_metadata(out)
    again = painterly.reproduce(out)
    assert again.identical
    today = painterly.stylize(Image.open(photo), Image.open(paint), style_size=32, encoder="bundled", decoder="bundled")
    assert not np.array_equal(np.asarray(today.image), pixels(out))  # the defaults did change


def test_sweep_output_reproduces(tmp_path, pictures, painterly_cli):
    photo, paint = pictures
    out = tmp_path / "sheet.png"
    made = painterly_cli("sweep", photo, paint, "-o", out, "--param", "style_weight", "1", "1e4", "--init", "content", *FAST)
    assert made.returncode == 0, made.stderr
    assert read_metadata(out)["iterations"] == 3
    assert_reproduces(painterly_cli, out)


def studio_result(client: TestClient, tmp_path, name: str, **fields) -> object:
    """Run a studio job with content ``photo.png`` (uploaded) and the bundled starry_night."""
    upload = (tmp_path / "photo.png").read_bytes()
    files = [("content", ("photo.png", upload, "image/png")), ("style", (None, "starry_night"))]
    job = client.post("/api/jobs", files=files, data={key: str(value) for key, value in fields.items()}).json()
    for _ in range(1200):
        status = client.get(f"/api/jobs/{job['id']}").json()
        if status["status"] in ("done", "failed"):
            break
        __import__("time").sleep(0.05)
    assert status["status"] == "done", status["error"]
    path = tmp_path / name
    path.write_bytes(client.get(status["result_url"]).content)
    return path


def test_studio_outputs_reproduce_with_the_bundled_example(tmp_path, pictures, painterly_cli, adain_weights):
    # Another file called starry_night.jpg beside the output is not the bundled one: its bytes say so.
    make_stripes(40, 40).save(tmp_path / "starry_night.jpg")
    with TestClient(create_app(device="cpu", weights="random", limits=Limits())) as client:
        slow = studio_result(client, tmp_path, "studio.png", size=32, iterations=3, seed=4)
        fast = studio_result(client, tmp_path, "studio_fast.png", method="stylize", size=40, alpha=0.5)
    recorded = read_metadata(slow)["inputs"]["style"][0]
    assert recorded["example"] == "starry_night" and recorded["name"] == "starry_night.jpg"
    assert read_metadata(slow)["painterly.source"] == "studio"
    assert_reproduces(painterly_cli, slow)
    assert_reproduces(painterly_cli, fast)
