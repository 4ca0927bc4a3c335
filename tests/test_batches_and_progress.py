"""One rule for outputs, batches that survive a bad file, and progress a log file can read."""

from __future__ import annotations

import importlib.util

import pytest

from painterly.cli import main
from painterly.images import read_metadata

from conftest import make_scene, make_stripes
from test_adain import write_decoder
from test_training import make_dataset


@pytest.fixture
def adain_flags(tmp_path) -> list[str]:
    return ["--encoder", "random", "--decoder", str(write_decoder(tmp_path / "decoder.pth")), "--style-size", "32", "--quiet"]


def test_an_unreadable_image_in_a_folder_is_skipped_listed_and_the_rest_is_done(tmp_path, adain_flags, painterly_cli):
    photos = tmp_path / "photos"
    photos.mkdir()
    for index in range(3):
        make_scene(40, 32, seed=index).save(photos / f"photo{index}.png")
    (photos / "photo1.png").write_bytes((photos / "photo0.png").read_bytes()[:100])  # truncated
    (photos / "notes.jpg").write_bytes(b"not an image")
    make_stripes(32, 32).save(tmp_path / "paint.png")
    for batch in ("1", "4"):
        out = tmp_path / f"out{batch}"
        result = painterly_cli("stylize", photos, "--style", tmp_path / "paint.png", "-o", out, "--batch-size", batch,
                               *adain_flags)
        assert result.returncode == 1, result.stderr
        assert sorted(p.name for p in out.iterdir()) == ["photo0_paint.png", "photo2_paint.png"]
        assert "wrote 2 output(s)" in result.stderr and "skipped 2 unreadable" in result.stderr
        assert "notes.jpg" in result.stderr and "photo1.png" in result.stderr and "Traceback" not in result.stderr
    # A single unreadable content, with nothing written, stays one line and exit code 2.
    alone = painterly_cli("stylize", photos / "notes.jpg", "--style", tmp_path / "paint.png", "-o", tmp_path / "x.png",
                          *adain_flags)
    assert alone.returncode == 2 and len(alone.stderr.strip().splitlines()) == 1


def test_a_file_named_with_o_is_always_written_a_folder_skips_what_exists_and_says_so(tmp_path, adain_flags, painterly_cli):
    make_scene(40, 32).save(tmp_path / "photo.png")
    make_stripes(32, 32).save(tmp_path / "paint.png")
    out = tmp_path / "out.png"
    common = ("stylize", tmp_path / "photo.png", "--style", tmp_path / "paint.png", *adain_flags)
    assert painterly_cli(*common, "-o", out, "--alpha", "0.2").returncode == 0
    again = painterly_cli(*common, "-o", out, "--alpha", "0.9")
    assert again.returncode == 0 and read_metadata(out)["alpha"] == 0.9  # a re-run with a new alpha is the new picture
    folder = tmp_path / "results"
    assert painterly_cli(*common, "-o", folder).returncode == 0
    skipped = painterly_cli(*common, "-o", folder, "--alpha", "0.5")
    assert skipped.returncode == 0 and "skipped all 1" in skipped.stderr and "--overwrite" in skipped.stderr
    # optimize and sweep write the named file too.
    for command in (("optimize", tmp_path / "photo.png", tmp_path / "paint.png"),
                    ("sweep", tmp_path / "photo.png", tmp_path / "paint.png", "--param", "tv_weight", "0", "1")):
        target = tmp_path / f"{command[0]}.png"
        for seed in ("1", "2"):
            result = painterly_cli(*command, "-o", target, "--size", "24", "--iterations", "1", "--weights", "random",
                                   "--content-layers", "relu1_1", "--style-layers", "relu1_1", "--quiet", "--seed", seed)
            assert result.returncode == 0, result.stderr
            assert read_metadata(target)["seed"] == int(seed)


def test_training_starts_with_a_summary_and_logs_lines_without_a_terminal(tmp_path, capsys):
    content, style = make_dataset(tmp_path / "data", contents=5, styles=2)
    (content / "README.txt").write_text("photos from the garden")
    args = ["train", "--content-dir", str(content), "--style-dir", str(style), "-o", str(tmp_path / "run"),
            "--iterations", "4", "--val-fraction", "0.2", "--print-every", "2", "--tensorboard", "--checkpoint-every", "100",
            "--monitor-every", "100", "--encoder", "random", "--image-size", "40", "--crop-size", "32", "--batch-size", "2",
            "--workers", "0"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "training on 5 content and 2 style images (1 and 1 held out for validation)" in err
    assert "1 other files left out" in err and "iterations 1 to 4" in err
    assert [line.split("iteration ")[1].split(":")[0] for line in err.splitlines() if "training: iteration" in line] == \
        ["2/4", "4/4"]
    assert "\r" not in err
    if importlib.util.find_spec("tensorboard") is None:
        assert "tensorboard is not installed" in err
