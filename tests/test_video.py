"""Video: flow and flicker functions, temporal mode, sound and metadata, resume, torchrun shards,
and the two ways a video run could lose a file (issue 12).

Clips are made in the tests with the ffmpeg that imageio-ffmpeg ships: tiny frames, a few of
them, random encoder weights and a decoder file written here.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("imageio_ffmpeg", reason="the video extra is not installed")
pytest.importorskip("cv2", reason="the video extra (opencv-python-headless) is not installed")

from painterly import AdaINModel, SpeedSettings
from painterly.adain import StylizeSettings, content_statistics, pad_to_multiple, stylize_batch
from painterly.cli import main
from painterly.images import image_to_tensor
from painterly.losses import channel_mean_std
from painterly.temporal import (
    consistency_mask,
    optical_flow,
    smooth_statistics,
    temporal_filter,
    warp,
    warping_error,
)
from painterly.video import _ffmpeg, probe_video, read_frames, read_video_metadata, stylize_video

from conftest import SRC, make_scene, make_stripes
from test_adain import write_decoder


def texture(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth random texture in [0, 1]: something optical flow can follow."""
    import cv2

    noise = np.random.default_rng(seed).random((height, width, 3))
    smooth = cv2.GaussianBlur(noise, (0, 0), 1.5)
    return (smooth - smooth.min()) / (smooth.max() - smooth.min())


def panning_frames(width: int = 40, height: int = 32, count: int = 8, step: int = 2, noise: float = 0.03) -> list[np.ndarray]:
    """A camera pan: the texture moves ``step`` px left a frame, with a little sensor noise."""
    rng = np.random.default_rng(1)
    scene = texture(width + step * count + 8, height + 8)
    frames = []
    for t in range(count):
        crop = scene[4 : 4 + height, 4 + step * t : 4 + step * t + width]
        frames.append((np.clip(crop + rng.normal(0, noise, crop.shape), 0, 1) * 255).round().astype(np.uint8))
    return frames


def write_clip(path: Path, frames: list[np.ndarray], *, rate: str = "10", audio: bool = False) -> Path:
    """Encode frames losslessly (H.264 4:4:4, qp 0), with a 440 Hz sine track if asked."""
    height, width = frames[0].shape[:2]
    command = [_ffmpeg(), "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
               "-framerate", rate, "-i", "-"]
    if audio:
        command += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=22050", "-shortest", "-c:a", "aac"]
    command += ["-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv444p", str(path)]
    subprocess.run(command, input=b"".join(f.tobytes() for f in frames), check=True)
    return path


def audio_samples(path: Path) -> bytes:
    return subprocess.run([_ffmpeg(), "-loglevel", "error", "-i", str(path), "-map", "0:a", "-f", "s16le", "-"],
                          capture_output=True, check=True).stdout


@pytest.fixture(scope="module")
def decoder_file(tmp_path_factory) -> Path:
    return write_decoder(tmp_path_factory.mktemp("decoder") / "decoder.pth")


@pytest.fixture(scope="module")
def model(decoder_file) -> AdaINModel:
    return AdaINModel.load(encoder="random", decoder=decoder_file, speed=SpeedSettings(precision="float32"))


@pytest.fixture
def offline(decoder_file) -> list[str]:
    return ["--encoder", "random", "--decoder", str(decoder_file), "--precision", "float32", "--style-size", "32", "--quiet"]


def test_flow_mask_and_warp_follow_a_translating_texture():
    first = texture(64, 48)
    second = np.roll(first, 3, axis=1)  # everything moves 3 px right; a strip wraps in on the left
    flow = optical_flow(second, first)  # backward: where each pixel of the second frame was
    assert np.allclose(flow[8:-8, 12:-8].mean(axis=(0, 1)), [-3, 0], atol=0.2)
    mask = consistency_mask(flow, optical_flow(first, second))
    assert mask[:, :3].mean() < 0.5 < 0.9 < mask[8:-8, 12:-8].mean()
    warped = warp(first, flow)
    assert np.abs(warped - second)[8:-8, 12:-8].mean() < 0.02
    # E_warp: a steady pan scores (almost) nothing; the same pan with fresh noise each frame does not.
    frames = [np.roll(first, 2 * t, axis=1) for t in range(4)]
    noisy = [np.clip(f + np.random.default_rng(t).normal(0, 0.05, f.shape), 0, 1) for t, f in enumerate(frames)]
    steady, flickering = warping_error(frames, frames), warping_error(noisy, frames)
    assert steady < 1e-3 < 0.01 < flickering
    assert warping_error(temporal_filter(frames, noisy, strength=0.8), frames) < flickering / 5


def test_statistics_are_held_within_a_shot_and_released_at_a_cut():
    rng = np.random.default_rng(0)
    means = np.concatenate([np.full((6, 4), 1.0), np.full((6, 4), 5.0)]) + rng.normal(0, 0.05, (12, 4))
    stds = np.ones((12, 4))
    held_means, held_stds = smooth_statistics(means, stds, radius=2)
    assert np.abs(np.diff(held_means[:6], axis=0)).max() < np.abs(np.diff(means[:6], axis=0)).max()
    # Nothing leaks across the cut between frames 5 and 6 (an average over it would be near 3).
    assert np.allclose(held_means[:6], 1.0, atol=0.1) and np.allclose(held_means[6:], 5.0, atol=0.1)
    assert np.allclose(held_stds, 1.0)
    # A window of one frame gives each frame its own statistics back.
    assert np.allclose(smooth_statistics(means, stds, radius=0)[0], means)
    # WCT's covariances: averaged over the same windows, the cut found from their diagonals.
    covariances = np.stack([np.diag(s**2) + 0.1 * t for t, s in enumerate(stds)])
    held_means_too, held_covariances = smooth_statistics(means, covariances, radius=2)
    assert np.allclose(held_means_too, held_means)
    assert np.allclose(held_covariances[0], np.eye(4) + 0.1, atol=1e-6)  # frames 0, 1, 2: 0.1 t averages to 0.1
    assert np.allclose(held_covariances[6], np.eye(4) + 0.7, atol=1e-6)  # frames 6, 7, 8 only: after the cut


@pytest.mark.parametrize("supersample, transform, margin", [(1, "adain", 0), (1.5, "adain", 0), (1, "wct", 0),
                                                       (1, "adain", 16)])
def test_held_content_statistics_equal_measured_ones_give_the_same_image(model, supersample, transform, margin):
    content, style = make_scene(40, 32), make_stripes(32, 32)
    kwargs = dict(model=model, style_size=32, supersample=supersample, feature_transform=transform, margin=margin)
    measured = content_statistics([content], model=model, supersample=supersample, feature_transform=transform,
                                  margin=margin)
    assert measured[0][1].shape == ((1, 512, 512) if transform == "wct" else (1, 512, 1, 1))
    if supersample != 1 or margin:  # measured at the size painted at, with its margin, which changes them
        assert not torch.allclose(measured[0][1], content_statistics([content], model=model)[0][1])
    [plain] = stylize_batch([content], style, **kwargs)
    [held] = stylize_batch([content], style, content_statistics=measured, **kwargs)
    assert np.abs(np.asarray(plain.image, float) - np.asarray(held.image, float)).max() <= 1
    shifted = [(mean + 1.0, std) for mean, std in measured]
    [moved] = stylize_batch([content], style, content_statistics=shifted, **kwargs)
    assert np.abs(np.asarray(plain.image, float) - np.asarray(moved.image, float)).mean() > 1


@pytest.mark.parametrize("transform", ["adain", "wct"])
def test_holding_a_still_shots_statistics_changes_nothing(tmp_path, model, transform):
    # Every frame of a still shot has the same statistics (up to the clip's compression), so
    # holding them steady paints what each frame's own paint; settings may come as an object.
    clip = write_clip(tmp_path / "still.mp4", [np.asarray(make_scene(40, 32))] * 4)
    style, settings = make_stripes(32, 32), StylizeSettings(style_size=32, feature_transform=transform)
    own = stylize_video(clip, tmp_path / "own.mp4", style, model=model, settings=settings)
    held = stylize_video(clip, tmp_path / "held.mp4", style, model=model, settings=settings, hold_statistics=True)
    assert read_video_metadata(tmp_path / "held.mp4")["feature_transform"] == transform
    for a, b in zip(read_frames(tmp_path / "own.mp4"), read_frames(tmp_path / "held.mp4"), strict=True):
        assert np.abs(a.astype(float) - b.astype(float)).mean() < 1.5
    assert own.frames == held.frames == 4


def style_distance(model: AdaINModel, path: Path, style: Image.Image) -> float:
    """Mean over frames of the squared distance between the frame's and the style's relu4_1
    channel means and stds: how far the video is from the style, in AdaIN's own terms."""
    style_mean, style_std = channel_mean_std(model.encode(pad_to_multiple(image_to_tensor(style))))
    distances = []
    with torch.no_grad():
        for frame in read_frames(path):
            mean, std = channel_mean_std(model.encode(pad_to_multiple(image_to_tensor(Image.fromarray(frame)))))
            distances.append(float(((mean - style_mean) ** 2).mean() + ((std - style_std) ** 2).mean()))
    return float(np.mean(distances))


def test_temporal_mode_flickers_a_fraction_of_per_frame_at_a_similar_style_distance(tmp_path, model):
    clip = write_clip(tmp_path / "pan.mp4", panning_frames())
    style = make_stripes(32, 32)
    per_frame = stylize_video(clip, tmp_path / "per_frame.mp4", style, model=model, style_size=32)
    steady = stylize_video(clip, tmp_path / "steady.mp4", style, model=model, style_size=32, temporal=True)
    # The same stylised frames: per-frame mode's score is temporal mode's "as stylised" one.
    assert per_frame.warping_error == pytest.approx(steady.warping_error_per_frame)
    assert steady.warping_error < per_frame.warping_error / 4, (steady.warping_error, per_frame.warping_error)
    near, far = (style_distance(model, tmp_path / name, style) for name in ("per_frame.mp4", "steady.mp4"))
    assert far < 1.3 * near, (far, near)
    # The figures are kept in the file and are measurable again from it.
    recorded = read_video_metadata(tmp_path / "steady.mp4")
    assert recorded["temporal"] is True and recorded["warping_error"] == pytest.approx(steady.warping_error)
    remeasured = warping_error(list(read_frames(tmp_path / "steady.mp4")), list(read_frames(clip)))
    assert remeasured == pytest.approx(steady.warping_error, rel=0.3, abs=2e-4)  # after H.264's rounding


def test_sound_frame_rate_odd_size_and_settings_survive(tmp_path, offline):
    frames = [np.asarray(make_scene(45, 29, seed=t)) for t in range(10)]
    clip = write_clip(tmp_path / "clip.mp4", frames, rate="30000/1001", audio=True)
    make_stripes(32, 32).save(tmp_path / "paint.png")
    out = tmp_path / "styled.mp4"
    assert main(["stylize", str(clip), "--style", str(tmp_path / "paint.png"), "-o", str(out), "--seed", "5",
                 "--alpha", "0.7", *offline]) == 0
    source, result = probe_video(clip), probe_video(out)
    assert (result.frames, result.width, result.height) == (10, 45, 29)
    assert result.fps == source.fps == Fraction(30000, 1001)
    assert result.audio_codec == source.audio_codec == "aac"
    assert audio_samples(out) == audio_samples(clip) and len(audio_samples(clip)) > 1000
    metadata = read_video_metadata(out)
    assert metadata["seed"] == 5 and metadata["alpha"] == 0.7 and metadata["style"] == "paint.png"
    assert metadata["frames"] == 10 and metadata["fps"] == "30000/1001" and metadata["warping_error"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "paint.png", "styled.mp4"]  # no work folder left


def test_an_interrupted_run_resumes_to_the_same_video(tmp_path, model):
    clip = write_clip(tmp_path / "pan.mp4", panning_frames(count=6))
    style = make_stripes(32, 32)
    whole = stylize_video(clip, tmp_path / "whole.mp4", style, model=model, style_size=32, temporal=True)

    def stop_after_three(stage: str, done: int, total: int) -> None:
        if stage == "stylising" and done >= 3:
            raise KeyboardInterrupt

    resumed_path = tmp_path / "resumed.mp4"
    with pytest.raises(KeyboardInterrupt):
        stylize_video(clip, resumed_path, style, model=model, style_size=32, temporal=True, progress=stop_after_three)
    assert not resumed_path.exists()
    resumed = stylize_video(clip, resumed_path, style, model=model, style_size=32, temporal=True)
    assert resumed.reused_frames == 3
    assert all(np.array_equal(a, b) for a, b in zip(read_frames(tmp_path / "whole.mp4"), read_frames(resumed_path), strict=True))
    assert resumed.warping_error == whole.warping_error
    # Other settings do not reuse those frames.
    other = stylize_video(clip, tmp_path / "other.mp4", style, model=model, style_size=32, alpha=0.5,
                          work_folder=tmp_path / "kept")
    assert other.reused_frames == 0


def test_a_video_output_never_replaces_its_input(tmp_path, offline, capsys):
    clip = write_clip(tmp_path / "clip.mp4", panning_frames(count=3))
    before = clip.read_bytes()
    make_stripes(32, 32).save(tmp_path / "paint.png")
    code = main(["stylize", str(clip), "--style", str(tmp_path / "paint.png"), "-o", str(clip), "--overwrite", *offline])
    error = capsys.readouterr().err
    assert code == 2 and "refusing to overwrite an input" in error and len(error.strip().splitlines()) == 1
    assert clip.read_bytes() == before


def test_a_full_disk_means_exit_2_and_no_file(tmp_path, offline, monkeypatch, capsys):
    clip = write_clip(tmp_path / "clip.mp4", panning_frames(count=4))
    make_stripes(32, 32).save(tmp_path / "paint.png")
    # An ffmpeg whose writes fail past 4 blocks when it encodes or muxes, as on a full disk.
    wrapper = tmp_path / "ffmpeg"
    wrapper.write_text(f'#!/bin/sh\ncase "$*" in *comment=*|*libx264*) ulimit -f 4; trap "" XFSZ ;; esac\n'
                       f'exec {_ffmpeg()} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(wrapper))
    out = tmp_path / "out" / "styled.mp4"
    code = main(["stylize", str(clip), "--style", str(tmp_path / "paint.png"), "-o", str(out), *offline])
    error = capsys.readouterr().err
    assert code == 2 and "styled.mp4" in error and len(error.strip().splitlines()) == 1, error
    assert [p.name for p in out.parent.iterdir() if not p.name.endswith(".frames")] == []


def test_torchrun_shards_equal_one_process(tmp_path, offline):
    clip = write_clip(tmp_path / "clip.mp4", panning_frames(count=5))
    photos = tmp_path / "photos"
    photos.mkdir()
    for seed in range(3):
        make_scene(40, 32, seed=seed).save(photos / f"photo{seed}.png")
    make_stripes(32, 32).save(tmp_path / "paint.png")
    arguments = ["stylize", str(clip), str(photos), "--style", str(tmp_path / "paint.png"), "--temporal", *offline]
    environment = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "painterly", *arguments, "-o", str(tmp_path / "one")],
                            capture_output=True, text=True, env=environment, timeout=300)
    assert single.returncode == 0, single.stderr
    shared = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "painterly", *arguments, "-o", str(tmp_path / "two")],
                            capture_output=True, text=True, env=environment, timeout=300)
    assert shared.returncode == 0, shared.stderr[-3000:]
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == ["clip_paint.mp4", "photo0_paint.png", "photo1_paint.png", "photo2_paint.png"]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == names
    for name in names[1:]:
        with Image.open(tmp_path / "one" / name) as one, Image.open(tmp_path / "two" / name) as two:
            assert np.array_equal(np.asarray(one), np.asarray(two)), name
    one, two = (list(read_frames(tmp_path / folder / "clip_paint.mp4")) for folder in ("one", "two"))
    assert len(one) == 5 and all(np.array_equal(a, b) for a, b in zip(one, two, strict=True))
    # A re-run skips what exists, on every rank.
    again = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                            "-m", "painterly", *arguments, "-o", str(tmp_path / "two")],
                           capture_output=True, text=True, env=environment, timeout=300)
    assert again.returncode == 0 and "exist already" in again.stderr, again.stderr[-3000:]


def test_temporal_loss_counts_only_trusted_pixels():
    from painterly.losses import temporal_loss

    image, target = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1
    assert float(temporal_loss(image, target, mask)) == pytest.approx(0.5)  # half the pixels, each off by 1
    assert float(temporal_loss(image, target, torch.zeros_like(mask))) == 0


def test_optimize_takes_a_video_and_holds_frames_to_their_predecessor(tmp_path, capsys):
    clip = write_clip(tmp_path / "pan.mp4", panning_frames(width=32, height=24, count=2), audio=True)
    make_stripes(32, 32).save(tmp_path / "paint.png")
    scores = {}
    for weight in ("0", "1e4"):
        out = tmp_path / f"out_{weight}.mp4"
        assert main(["optimize", str(clip), str(tmp_path / "paint.png"), "-o", str(out), "--weights", "random",
                     "--size", "32", "--iterations", "5", "--optimizer", "adam", "--temporal-weight", weight, "--quiet"]) == 0
        metadata = read_video_metadata(out)
        assert metadata["painterly.method"] == "optimize" and metadata["temporal_weight"] == float(weight)
        assert probe_video(out).frames == 2 and audio_samples(out) == audio_samples(clip)
        scores[weight] = metadata["warping_error"]
    assert "flicker E_warp" in capsys.readouterr().err
    assert scores["1e4"] < scores["0"] / 2, scores


def test_crop_is_refused_for_a_video_which_keeps_its_frame_size(tmp_path, offline, capsys):
    clip = write_clip(tmp_path / "clip.mp4", panning_frames(count=3))
    make_stripes(32, 32).save(tmp_path / "paint.png")
    out = tmp_path / "out.mp4"
    code = main(["stylize", str(clip), "--style", str(tmp_path / "paint.png"), "-o", str(out), "--crop", *offline])
    error = capsys.readouterr().err
    assert code == 2 and "crop is for still images" in error and len(error.strip().splitlines()) == 1
    assert not out.exists()
