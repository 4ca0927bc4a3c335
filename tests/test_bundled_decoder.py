"""The decoder that ships in the package: AdaIN with nothing downloaded."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from painterly.adain import AdaINModel, build_decoder, stylize
from painterly.errors import SettingsError, WeightsError
from painterly.weights import (
    BUNDLED_DECODER_PATH,
    BUNDLED_DECODER_SHA256,
    REGISTRY,
    cached_path,
    choose_adain_weights,
    layout_keys,
    read_bundled_decoder,
    read_record,
)

from conftest import make_scene, make_stripes, run_cli


def test_the_bundled_file_is_small_half_precision_and_in_the_released_layout():
    assert BUNDLED_DECODER_PATH.stat().st_size < 15e6  # small enough for a wheel
    assert hashlib.sha256(BUNDLED_DECODER_PATH.read_bytes()).hexdigest() == BUNDLED_DECODER_SHA256
    raw = torch.load(BUNDLED_DECODER_PATH, map_location="cpu", weights_only=True)
    assert {key: tuple(value.shape) for key, value in raw.items()} == layout_keys("decoder")
    assert all(value.dtype == torch.float16 for value in raw.values())
    state = read_bundled_decoder()
    assert all(value.dtype == torch.float32 and torch.isfinite(value).all() for value in state.values())
    build_decoder().load_state_dict(state)  # strict: every key of the decoder, nothing else


def test_a_changed_bundled_file_is_refused(tmp_path, monkeypatch):
    copy = tmp_path / "decoder-random0.pth"
    data = bytearray(BUNDLED_DECODER_PATH.read_bytes())
    data[len(data) // 2] ^= 1  # one flipped bit inside a weight
    copy.write_bytes(bytes(data))
    monkeypatch.setattr("painterly.weights.BUNDLED_DECODER_PATH", copy)
    with pytest.raises(WeightsError, match="reinstall painterly"):
        read_bundled_decoder()
    monkeypatch.setattr("painterly.weights.BUNDLED_DECODER_PATH", tmp_path / "gone.pth")
    with pytest.raises(WeightsError, match="missing from this installation"):
        read_bundled_decoder()


def test_auto_falls_back_to_the_bundled_pair_offline_and_says_so():
    result = stylize(make_scene(64, 48), make_stripes(48, 48), style_size=None, device="cpu")
    assert result.metadata()["encoder"] == "random(seed=0)" and result.metadata()["decoder"] == "bundled"
    assert "bundled decoder" in result.weights_note and "PAINTERLY_OFFLINE" in result.weights_note
    assert np.asarray(result.image).std() > 5  # a picture, not a flat field
    assert result.metadata()["supersample"] == 2 and result.image.size == (64, 48)  # its strokes, finer
    assert result.metadata()["feature_transform"] == "wct"  # random filters' correlations carry the strokes
    assert result.metadata()["margin"] == 32  # no frame along the borders


def test_auto_prefers_the_released_pair_when_it_is_cached():
    generator = torch.Generator().manual_seed(0)
    for file in REGISTRY["adain"].files.values():
        state = {key: torch.randn(shape, generator=generator) * 0.05 for key, shape in layout_keys(file.layout).items()}
        cached_path(file).parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, cached_path(file))
    assert choose_adain_weights("auto", "auto") == ("adain", "adain", None)
    model = AdaINModel.load(device="cpu")
    assert (model.encoder_label, model.decoder_label, model.weights_note) == ("adain", "adain", None)


@pytest.mark.parametrize(
    ("encoder", "decoder", "expected"),
    [("random", "auto", ("random", "bundled")), ("auto", "bundled", ("bundled", "bundled")),
     ("adain", "auto", ("adain", "adain")), ("auto", "my.pth", ("adain", "my.pth"))],
)
def test_one_auto_takes_the_partner_of_the_other(encoder, decoder, expected):
    assert choose_adain_weights(encoder, decoder)[:2] == expected


def test_the_bundled_decoder_goes_only_with_random_weights_of_seed_0():
    model = AdaINModel.load(encoder="bundled", decoder="bundled", seed=7)  # the pair ignores the seed
    assert model.encoder_label == "random(seed=0)"
    with pytest.raises(SettingsError, match="random weights of seed 0"):
        AdaINModel.load(encoder="random", decoder="bundled", seed=3)
    with pytest.raises(WeightsError, match="no decoder is known"):
        choose_adain_weights("vgg19", "auto")


def test_stylize_and_export_run_offline_from_the_command_line(tmp_path):
    make_scene(40, 32).save(tmp_path / "photo.png")
    make_stripes(32, 32).save(tmp_path / "style.png")
    result = run_cli("stylize", str(tmp_path / "photo.png"), "--style", str(tmp_path / "style.png"),
                     "-o", str(tmp_path / "out.png"), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "bundled decoder" in result.stderr and (tmp_path / "out.png").is_file()
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    result = run_cli("export", "-o", str(tmp_path / "offline.onnx"), "--encoder", "bundled", "--decoder", "bundled", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "decoder bundled" in result.stderr


def test_an_alpha_sweep_runs_offline_on_the_bundled_decoder(tmp_path):
    from painterly.cli import main

    make_scene(48, 32).save(tmp_path / "photo.png")
    make_stripes(32, 32).save(tmp_path / "style.png")
    sheet = tmp_path / "alpha.png"
    assert main(["sweep", str(tmp_path / "photo.png"), str(tmp_path / "style.png"), "--size", "48", "--quiet",
                 "-o", str(sheet), "--param", "alpha", "0", "1"]) == 0
    assert sheet.is_file()


def test_the_bundled_decoder_records_its_encoder_and_is_loaded_with_its_pooling():
    record = read_record(read_bundled_decoder())
    assert record["encoder"] == "random(seed=0)" and record["encoder_pooling"] == "avg"
    # Built with max pooling the same weights give other features, which this decoder never saw.
    assert AdaINModel.load(encoder="bundled", decoder="bundled").encoder.pooling == "avg"
