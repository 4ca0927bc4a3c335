"""``painterly stylize`` as a user runs it: batches, skipping, files, errors, video.

One test runs the command as a subprocess; the others call the same ``main`` in-process, which
saves a torch import per run (seconds each on a busy machine).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from painterly.cli import main
from painterly.images import read_metadata

from conftest import make_scene, make_stripes, run_cli
from test_adain import write_decoder


@pytest.fixture
def painterly(capsys):
    """Run the CLI in-process; returns (exit code, stderr) like a finished process."""

    def run(*args: str) -> subprocess.CompletedProcess:
        code = main([str(arg) for arg in args])
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, captured.out, captured.err)

    return run


def one_clear_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture
def offline_weights(tmp_path) -> list[str]:
    """Flags for a decoder file in the released layout with seeded random encoder weights."""
    return ["--encoder", "random", "--decoder", str(write_decoder(tmp_path / "my_decoder.pth")), "--quiet"]


def test_help_lists_every_flag_with_examples(capsys):
    with pytest.raises(SystemExit):
        main(["stylize", "--help"])
    result = capsys.readouterr()
    for flag in ("--style", "--alpha", "--style-weights", "--preserve-color", "--mask", "--decoder", "--encoder",
                 "--content-size", "--style-size", "--tile", "--no-tile", "--device", "--seed", "--overwrite",
                 "--batch-size", "--precision", "--compile", "--quiet", "examples:"):
        assert flag in result.out


def test_decoder_file_in_the_released_layout_stylises_an_odd_sized_image(tmp_path, offline_weights):
    make_scene(53, 37).save(tmp_path / "photo.png")
    make_stripes(32, 32).save(tmp_path / "paint.png")
    out = tmp_path / "out.png"
    result = run_cli("stylize", str(tmp_path / "photo.png"), "--style", str(tmp_path / "paint.png"), "-o", str(out),
                     "--alpha", "0.8", "--style-size", "32", *offline_weights)
    assert result.returncode == 0, result.stderr
    with Image.open(out) as image:
        assert image.size == (53, 37) and np.asarray(image).std() > 1
    metadata = read_metadata(out)
    assert metadata["alpha"] == 0.8 and metadata["encoder"] == "random(seed=0)"
    assert metadata["decoder"].endswith("my_decoder.pth") and metadata["style"] == "paint.png"
    # train's --encoder-seed names the random encoder a decoder was trained with: stylize takes it too.
    again = run_cli("stylize", str(tmp_path / "photo.png"), "--style", str(tmp_path / "paint.png"), "-o",
                    str(tmp_path / "seeded.png"), "--style-size", "32", "--encoder-seed", "3", *offline_weights)
    assert again.returncode == 0, again.stderr
    assert read_metadata(tmp_path / "seeded.png")["encoder"] == "random(seed=3)"


def test_batch_writes_every_pair_then_skips_or_overwrites(tmp_path, offline_weights, painterly):
    photos, styles = tmp_path / "photos", tmp_path / "styles"
    photos.mkdir(), styles.mkdir()
    make_scene(40, 32).save(photos / "hill.png")
    make_scene(32, 40, seed=3).save(photos / "sun.jpg")
    make_stripes(32, 32).save(styles / "stripes.png")
    make_scene(32, 32, seed=7).save(styles / "noise.png")
    out = tmp_path / "results"
    args = ("stylize", str(photos), "--style", str(styles / "*.png"), "-o", str(out), "--style-size", "32", *offline_weights)
    result = painterly(*args)
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["hill_noise.png", "hill_stripes.png", "sun_noise.png", "sun_stripes.png"]
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    (out / "sun_noise.png").unlink()
    again = painterly(*args)
    assert again.returncode == 0 and "skipped 3" in again.stderr
    assert all((out / name).stat().st_mtime_ns == stamps[name] for name in stamps if name != "sun_noise.png")
    assert (out / "sun_noise.png").is_file()
    redo = painterly(*args, "--overwrite")
    assert redo.returncode == 0 and "skipped" not in redo.stderr
    assert all((out / name).stat().st_mtime_ns != stamps[name] for name in stamps if name != "sun_noise.png")


def test_batches_write_what_single_images_write(tmp_path, offline_weights, painterly, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for seed, size in enumerate([(40, 32), (40, 32), (32, 40), (40, 32)]):
        make_scene(*size, seed=seed).save(photos / f"photo{seed}.png")
    make_stripes(32, 32).save(tmp_path / "paint.png")
    outputs = {}
    for batch in ("1", "3"):
        outputs[batch] = tmp_path / f"batch{batch}"
        result = painterly("stylize", photos, "--style", tmp_path / "paint.png", "-o", outputs[batch], "--style-size", "32",
                           "--batch-size", batch, "--precision", "float32", *offline_weights)
        assert result.returncode == 0, result.stderr
    for seed in range(4):
        single, batched = (outputs[b] / f"photo{seed}_paint.png" for b in ("1", "3"))
        assert read_metadata(batched)["precision"] == "float32"
        with Image.open(single) as one, Image.open(batched) as other:
            assert np.abs(np.asarray(one, float) - np.asarray(other, float)).max() <= 1
    with pytest.raises(SystemExit) as exit:
        main(["stylize", str(photos), "--style", str(tmp_path / "paint.png"), "-o", str(tmp_path / "x"), "--precision", "float16"])
    assert exit.value.code == 2 and "--precision: invalid choice" in capsys.readouterr().err


def test_bad_settings_are_one_clear_error(tmp_path, offline_weights, painterly):
    make_scene(40, 32).save(tmp_path / "photo.png")
    make_stripes(32, 32).save(tmp_path / "a.png")
    make_stripes(24, 24).save(tmp_path / "b.png")
    (tmp_path / "empty").mkdir()
    photo, a, b = (str(tmp_path / name) for name in ("photo.png", "a.png", "b.png"))
    out = str(tmp_path / "out.png")
    one_clear_error(painterly("stylize", photo, "--style", a, b, "-o", out, "--style-weights", "1", *offline_weights),
                    "1 style weights given for 2 style images")
    one_clear_error(painterly("stylize", photo, "--style", a, "-o", out, "--alpha", "1.5", *offline_weights),
                    "alpha must be between 0 and 1")
    one_clear_error(painterly("stylize", photo, "--style", a, "-o", out, "--supersample", "8", *offline_weights),
                    "supersample must be between 1 and 4")
    one_clear_error(painterly("stylize", photo, "--style", a, "-o", out, "--margin", "-8", *offline_weights),
                    "margin must be at least 0")
    one_clear_error(painterly("stylize", photo, "--style", str(tmp_path / "empty"), "-o", out, *offline_weights),
                    "style folder", "has no images")
    one_clear_error(painterly("stylize", photo, "--style", a, "-o", out, "--mask", b, *offline_weights),
                    "mask 1 is 24x24 but the content image is 40x32")
    # The released weights named explicitly, offline and not cached (auto would take the bundled decoder).
    one_clear_error(painterly("stylize", photo, "--style", a, "-o", out, "--encoder", "adain", "--decoder", "adain"),
                    "PAINTERLY_OFFLINE", "--encoder bundled --decoder bundled")
    one_clear_error(painterly("stylize", photo, "--style", a, b, "-o", out, *offline_weights),
                    "names one file but there are 2 outputs")
    (tmp_path / "other").mkdir()
    make_scene(40, 32).save(tmp_path / "other" / "photo.jpg")
    one_clear_error(painterly("stylize", photo, str(tmp_path / "other"), "--style", a, "-o", str(tmp_path / "results"),
                              *offline_weights), "several inputs would be written to photo_a.png")
    assert not Path(out).exists() and not (tmp_path / "results").exists()


def test_video_frame_by_frame_keeps_the_frame_rate(tmp_path, offline_weights, painterly):
    imageio = pytest.importorskip("imageio.v2", reason="the video extra (imageio[ffmpeg]) is not installed")
    pytest.importorskip("imageio_ffmpeg", reason="the video extra (imageio[ffmpeg]) is not installed")
    clip = tmp_path / "clip.mp4"
    with imageio.get_writer(clip, fps=12, codec="libx264", macro_block_size=1) as writer:
        for frame in range(8):
            writer.append_data(np.asarray(make_scene(32, 32, seed=frame)))
    make_stripes(32, 32).save(tmp_path / "paint.png")
    out = tmp_path / "styled.mp4"
    # Batches of 3 frames: 3, 3, then the last 2.
    result = painterly("stylize", str(clip), "--style", str(tmp_path / "paint.png"), "-o", str(out), "--style-size", "32",
                       "--batch-size", "3", *offline_weights)
    assert result.returncode == 0, result.stderr
    with imageio.get_reader(out) as reader:
        assert reader.get_meta_data()["fps"] == 12
        frames = [frame for frame in reader]
    assert len(frames) == 8 and frames[0].shape == (32, 32, 3)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".mp4") == ["clip.mp4", "styled.mp4"]


def test_feature_transform_flag_is_recorded_and_checked(tmp_path, offline_weights, painterly, capsys):
    make_scene(40, 32).save(tmp_path / "photo.png")
    make_stripes(32, 32).save(tmp_path / "paint.png")
    outputs = {}
    for transform in ("default", "wct"):
        outputs[transform] = tmp_path / f"{transform}.png"
        chosen = [] if transform == "default" else ["--feature-transform", transform]
        result = painterly("stylize", tmp_path / "photo.png", "--style", tmp_path / "paint.png", "-o", outputs[transform],
                           "--style-size", "32", *chosen, *offline_weights)
        assert result.returncode == 0, result.stderr
    assert read_metadata(outputs["default"])["feature_transform"] == "adain"  # a decoder file's default
    assert read_metadata(outputs["wct"])["feature_transform"] == "wct"
    with Image.open(outputs["wct"]) as wct, Image.open(outputs["default"]) as adain:
        assert np.abs(np.asarray(wct, float) - np.asarray(adain, float)).mean() > 1
    with pytest.raises(SystemExit) as exit:
        main(["stylize", str(tmp_path / "photo.png"), "--style", str(tmp_path / "paint.png"), "-o", str(tmp_path / "x.png"),
              "--feature-transform", "gram"])
    assert exit.value.code == 2 and "--feature-transform: invalid choice: 'gram'" in capsys.readouterr().err
