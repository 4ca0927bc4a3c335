"""Decoder training: the loss falls, runs resume exactly, bad files and divergence are survived,
two processes train under torchrun, and the result loads as an AdaIN decoder."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SRC, make_scene, make_stripes, run_cli
from PIL import Image

import painterly
from painterly import training
from painterly.adain import build_decoder
from painterly.cli import main as cli_main
from painterly.errors import Cancelled, NonFiniteLossError, SettingsError
from painterly.training import CHECKPOINT_KEYS, RECIPES, RunState, TrainConfig, read_losses, train
from painterly.weights import load_weights

#: Tiny settings: 32 px crops, random encoder, data in the loading process.
TINY = dict(encoder="random", image_size=40, crop_size=32, batch_size=2, workers=0, log_every=1)


@pytest.fixture(autouse=True)
def one_thread():
    """The suite shares two cores with other jobs: one thread per core oversubscribes them, and
    OpenMP's spinning threads then make an iteration several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_dataset(root: Path, *, contents: int = 8, styles: int = 4) -> tuple[Path, Path]:
    """Scenes of varied sizes (some nested) and stripes in varied colours and phases."""
    content, style = root / "content", root / "style"
    (content / "nested").mkdir(parents=True)
    style.mkdir()
    for i in range(contents):
        folder = content / "nested" if i % 3 == 0 else content
        make_scene(48 + 4 * i, 40 + 2 * i, seed=i).save(folder / f"scene_{i}.png")
    for i in range(styles):
        stripes = np.roll(np.asarray(make_stripes(44, 52)), 5 * i, axis=1)
        Image.fromarray(stripes[..., np.random.default_rng(i).permutation(3)]).save(style / f"stripes_{i}.jpg")
    return content, style


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, Path]:
    return make_dataset(tmp_path_factory.mktemp("data"), styles=2)


def test_short_run_learns_and_writes_a_complete_run_folder(dataset, tmp_path):
    content, style = dataset
    seen = []
    result = painterly.train(content_dir=content, style_dir=style, run_dir=tmp_path / "run", iterations=24, checkpoint_every=8, keep=2, monitor_every=12, val_fraction=0.25, val_images=2,
                             callback=seen.append, **TINY)
    rows = read_losses(tmp_path / "run" / "losses.csv")
    totals = [row["total"] for row in rows]
    assert [row["iteration"] for row in rows] == list(range(1, 25))
    # The reference recipe's lr (1e-4) on one training style (the other is held out).
    assert np.mean(totals[-6:]) < 0.97 * np.mean(totals[:6]), totals
    assert [p.iteration for p in seen] == list(range(1, 25)) and seen[-1].losses["total"] == pytest.approx(totals[-1])
    # Validation losses at the monitor steps, on held-out images.
    assert [row["iteration"] for row in rows if row["val_total"] is not None] == [12, 24]
    assert seen[11].validation["val_total"] == pytest.approx(rows[11]["val_total"])

    run = tmp_path / "run"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["ckpt_0000016.pt", "ckpt_0000024.pt"]
    grid = Image.open(run / "monitor" / "iter_0000024.png")
    assert grid.size == (3 * 32, 2 * 32)  # style | content | result, one row per held-out image
    assert (run / "losses.png").stat().st_size > 0 and (run / "val_losses.png").is_file()
    config = json.loads((run / "config.json").read_text())
    assert config["encoder"] == "random" and config["encoder_seed"] == 0 and config["encoder_label"] == "random(seed=0)"
    assert not list(run.rglob("*.part"))
    if importlib.util.find_spec("tensorboard") is not None:
        assert list((run / "tensorboard").glob("events.out.tfevents.*"))

    # The decoder is a plain state dict in the released decoder.pth layout.
    assert result.decoder_path == run / "decoder.pth"
    state, layout, _ = load_weights(result.decoder_path, role="decoder")
    assert layout == "decoder"
    decoder = build_decoder()
    decoder.load_state_dict(state)
    # It stylises through the CLI with the encoder it was trained against.
    make_scene(48, 40, seed=9).save(tmp_path / "photo.png")
    make_stripes(40, 40).save(tmp_path / "painting.png")
    assert cli_main(["stylize", str(tmp_path / "photo.png"), "--style", str(tmp_path / "painting.png"),
                     "-o", str(tmp_path / "out.png"), "--decoder", str(result.decoder_path),
                     "--encoder", config["encoder"], "--seed", str(config["encoder_seed"]), "--quiet"]) == 0
    assert Image.open(tmp_path / "out.png").size == (48, 40)
    checkpoint = torch.load(run / "checkpoints" / "ckpt_0000024.pt", weights_only=True)
    assert all(torch.equal(state[k], checkpoint["decoder"][k]) for k in state)
    assert json.loads((run / "summary.json").read_text())["decoder_checksums"] == [
        pytest.approx(sum(v.double().sum().item() for v in state.values() if v.dim() > 0))
    ]


def test_interrupted_and_resumed_run_gives_the_same_losses(dataset, tmp_path):
    content, style = dataset
    settings = dict(content_dir=content, style_dir=style, iterations=6, checkpoint_every=100, **TINY)
    train(run_dir=tmp_path / "straight", **settings)

    def interrupt_at_3(progress):
        if progress.iteration == 3:
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C would; the handler lets the loop save and stop

    with pytest.raises(Cancelled, match="iteration 3"):
        train(run_dir=tmp_path / "resumed", callback=interrupt_at_3, **settings)
    assert [p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir()] == ["ckpt_0000003.pt"]
    assert not (tmp_path / "resumed" / "decoder.pth").exists()
    # Settings come from the checkpoint; a loader worker now prefetches ahead, which must not
    # change the data: draw i of a stream is a function of (seed, i), not of the loader's state.
    result = train(run_dir=tmp_path / "resumed", resume=True, workers=1)

    straight = read_losses(tmp_path / "straight" / "losses.csv")
    resumed = read_losses(tmp_path / "resumed" / "losses.csv")
    assert [r["iteration"] for r in resumed] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(straight, resumed):
        for key in ("content", "style", "total"):
            assert b[key] == pytest.approx(a[key], rel=1e-5), (a, b)
    assert result.iteration == 6
    a = torch.load(tmp_path / "straight" / "decoder.pth", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "decoder.pth", weights_only=True)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)

    with pytest.raises(SettingsError, match="encoder"):
        train(run_dir=tmp_path / "resumed", resume=True, encoder="vgg19-normalised")
    with pytest.raises(SettingsError, match="--resume"):
        train(run_dir=tmp_path / "resumed", **settings)


def test_the_run_state_is_saved_whole_in_each_checkpoint(dataset, tmp_path):
    content, style = dataset
    train(content_dir=content, style_dir=style, run_dir=tmp_path / "run", iterations=2, checkpoint_every=2, **TINY)
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "ckpt_0000002.pt", weights_only=True)
    assert set(CHECKPOINT_KEYS) <= set(checkpoint)
    state = RunState.from_checkpoint(checkpoint)
    # Two iterations of batch 2, every one logged (so the loss window is empty again).
    assert state == RunState(iteration=2, sampler={"content": 4, "style": 4}, images_seen=4, skipped=0)
    assert state.to_checkpoint() == {key: checkpoint[key] for key in state.to_checkpoint()}


def test_unreadable_files_are_skipped_counted_and_logged(dataset, tmp_path):
    content, style = make_dataset(tmp_path / "data", contents=4, styles=2)
    (content / "truncated.png").write_bytes((content / "scene_1.png").read_bytes()[:200])
    (content / "nested" / "empty.jpg").write_bytes(b"")
    # 6 content files in batches of 2: three iterations draw every file once.
    result = train(content_dir=content, style_dir=style, run_dir=tmp_path / "run", iterations=3, checkpoint_every=100, **TINY)
    logged = (tmp_path / "run" / "skipped.txt").read_text().splitlines()
    assert sorted(Path(line.split("\t")[0]).name for line in logged) == ["empty.jpg", "truncated.png"]
    assert result.skipped == 2 and read_losses(tmp_path / "run" / "losses.csv")[-1]["skipped"] == 2
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["skipped"] == 2


def test_a_diverging_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(dataset, tmp_path, monkeypatch):
    content, style = dataset
    calls = []
    real_content_loss = training.content_loss

    def content_loss_that_explodes(*args, **kwargs):
        calls.append(1)
        loss = real_content_loss(*args, **kwargs)
        return loss * float("nan") if len(calls) == 5 else loss

    monkeypatch.setattr(training, "content_loss", content_loss_that_explodes)
    with pytest.raises(NonFiniteLossError, match=r"became nan at iteration 5.*ckpt_0000004\.pt.*lower --lr"):
        train(content_dir=content, style_dir=style, run_dir=tmp_path / "run", iterations=10, checkpoint_every=2, keep=5, **TINY)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["ckpt_0000002.pt", "ckpt_0000004.pt"]
    kept = torch.load(tmp_path / "run" / "checkpoints" / "ckpt_0000004.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in kept["decoder"].values())
    assert not (tmp_path / "run" / "decoder.pth").exists()


def test_mixed_precision_and_channels_last_train_on_cpu(dataset, tmp_path):
    content, style = dataset
    result = train(content_dir=content, style_dir=style, run_dir=tmp_path / "run", iterations=2, amp=True,
                   channels_last=True, checkpoint_every=100, **TINY)
    assert np.isfinite(result.losses["total"])
    state = torch.load(result.decoder_path, weights_only=True)
    assert all(v.dtype == torch.float32 and v.is_contiguous() for v in state.values())


def test_recipes_and_settings():
    assert RECIPES["adain"] == TrainConfig()
    adain = RECIPES["adain"]
    assert (adain.lr, adain.lr_decay, adain.batch_size, adain.image_size, adain.crop_size, adain.style_weight, adain.iterations) == (
        1e-4, 5e-5, 8, 512, 256, 10.0, 160_000)
    keras = RECIPES["keras"]
    assert (keras.lr, keras.lr_decay, keras.batch_size, keras.crop_size, keras.style_weight) == (1e-5, 0.0, 64, 224, 4.0)
    with pytest.raises(SettingsError, match="crop_size"):
        TrainConfig(crop_size=300, image_size=256)
    with pytest.raises(SettingsError, match="lr"):
        TrainConfig(lr=0)
    with pytest.raises(SettingsError, match="unknown training settings"):
        TrainConfig().updated(learning_rate=1.0)
    with pytest.raises(SettingsError, match="recipe"):
        train(content_dir=".", style_dir=".", run_dir="unused", recipe="torch")


def test_identity_losses_vanish_for_an_inverse_and_measure_what_is_lost():
    def encoder(image, layers):  # features that are the image itself, at every layer
        return {layer: image for layer in layers}

    content = torch.rand(2, 3, 8, 8)
    features = encoder(content, training.STYLE_LOSS_LAYERS)
    pixel, feature = training.identity_losses(encoder, torch.nn.Identity(), content, features)
    assert pixel.item() == 0 and feature.item() == 0
    pixel, feature = training.identity_losses(encoder, lambda x: 0.5 * x, content, features)
    expected = (0.25 * content**2).mean().item()
    assert pixel.item() == pytest.approx(expected) and feature.item() == pytest.approx(4 * expected)


def test_the_identity_loss_is_trained_on_logged_and_resumed_from_older_checkpoints(dataset, tmp_path):
    content, style = dataset
    settings = dict(content_dir=content, style_dir=style, iterations=2, checkpoint_every=1, **TINY)
    train(run_dir=tmp_path / "plain", **settings)
    train(run_dir=tmp_path / "identity", identity_pixel_weight=50.0, identity_feature_weight=1.0, **settings)
    plain, identity = (read_losses(tmp_path / name / "losses.csv") for name in ("plain", "identity"))
    assert [row["identity"] for row in plain] == [0.0, 0.0]
    for row in identity:
        assert row["identity"] > 0
        assert row["total"] == pytest.approx(row["content"] + 10 * row["style"] + row["identity"], rel=1e-5)
    # The same batches, other gradients: the identity loss moved the decoder.
    a, b = (torch.load(tmp_path / name / "decoder.pth", weights_only=True) for name in ("plain", "identity"))
    assert not all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "identity" / "config.json").read_text())["identity_pixel_weight"] == 50.0

    # A checkpoint written before the identity loss existed has no window for it.
    path = tmp_path / "plain" / "checkpoints" / "ckpt_0000002.pt"
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint["window"]["identity"]
    torch.save(checkpoint, path)
    assert cli_main(["train", "--resume", str(tmp_path / "plain"), "--iterations", "3", "--identity-pixel-weight", "1",
                     "--quiet"]) == 0
    assert read_losses(tmp_path / "plain" / "losses.csv")[-1]["identity"] > 0


def test_cli_stops_on_sigterm_with_a_checkpoint_and_resumes(dataset, tmp_path):
    content, style = dataset
    run = tmp_path / "run"
    environment = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "painterly", "train", "--content-dir", str(content), "--style-dir", str(style), "-o", str(run),
         "--encoder", "random", "--image-size", "32", "--crop-size", "32", "--batch-size", "1", "--workers", "1",
         "--log-every", "1", "--iterations", "100000", "--quiet"],
        env=environment, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not read_losses(run / "losses.csv") and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGTERM)  # the whole group, loader worker included, as a batch system does
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "continue with --resume" in stderr and "Traceback" not in stderr
    stopped_at = int(sorted((run / "checkpoints").iterdir())[-1].stem.split("_")[1])
    assert stopped_at >= 1

    finished = run_cli("train", "--resume", str(run), "--iterations", str(stopped_at + 2), "--quiet", env={"OMP_NUM_THREADS": "1"})
    assert finished.returncode == 0, finished.stderr
    assert f"trained {stopped_at + 2} iterations" in finished.stderr
    assert [r["iteration"] for r in read_losses(run / "losses.csv")][-3:] == [stopped_at, stopped_at + 1, stopped_at + 2]


@pytest.mark.parametrize("args, message", [
    (["--content-dir", "{tmp}/missing", "--style-dir", "{tmp}/styles", "-o", "{tmp}/run"], "content folder"),
    (["--content-dir", "{tmp}", "--style-dir", "{tmp}"], "-o RUN_DIR"),
    (["--resume", "{tmp}/nothing-here"], "no checkpoint"),
    (["--resume", "{tmp}/run", "--recipe", "keras"], "--recipe starts a new run"),
])
def test_cli_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, args, message):
    assert cli_main(["train", *[a.format(tmp=tmp_path) for a in args], "--encoder", "random"]) == 2
    stderr = capsys.readouterr().err
    assert message in stderr and len(stderr.strip().splitlines()) == 1


def test_two_processes_train_with_torchrun_on_gloo(dataset, tmp_path):
    content, style = dataset
    run = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "painterly", "train",
         "--content-dir", str(content), "--style-dir", str(style), "-o", str(run), "--encoder", "random",
         "--iterations", "3", "--image-size", "32", "--crop-size", "32", "--batch-size", "2", "--workers", "0", "--quiet",
         # The identity loss runs the decoder twice before one backward pass: DDP must still agree.
         "--identity-pixel-weight", "1", "--identity-feature-weight", "0.5"],
        env={**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("trained 3 iterations") == 1  # rank 0 alone reports and writes
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["ckpt_0000003.pt"]
    build_decoder().load_state_dict(torch.load(run / "decoder.pth", weights_only=True))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["iteration"] == 3
    first, second = summary["decoder_checksums"]
    assert first == second  # DDP kept both ranks' decoders identical


def test_an_unwritable_run_folder_is_one_line_and_exit_code_2(dataset, tmp_path, capsys):
    content, style = dataset
    (tmp_path / "a-file").write_text("in the way")
    code = cli_main(["train", "--content-dir", str(content), "--style-dir", str(style), "-o", str(tmp_path / "a-file" / "run"),
                     "--encoder", "random", "--workers", "0"])
    stderr = capsys.readouterr().err
    assert code == 2 and "cannot make the run folder" in stderr and len(stderr.strip().splitlines()) == 1


def test_a_decoder_trained_with_average_pooling_records_it_and_stylises_with_it(tmp_path, dataset, capsys):
    from painterly.adain import AdaINModel
    from painterly.weights import read_record, read_state_dict

    content, style = dataset
    run = tmp_path / "run"
    train(content_dir=content, style_dir=style, run_dir=run, encoder="random", encoder_pooling="avg", iterations=1,
          image_size=40, crop_size=32, batch_size=1, workers=0, checkpoint_every=1)
    assert read_record(read_state_dict(run / "decoder.pth"))["encoder_pooling"] == "avg"
    assert AdaINModel.load(encoder="random", decoder=run / "decoder.pth").encoder.pooling == "avg"
    assert cli_main(["train", "--resume", str(run), "--encoder-pooling", "max", "--quiet"]) == 2
    assert "encoder_pooling cannot change when resuming" in capsys.readouterr().err
