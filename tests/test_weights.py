import io

import pytest
import torch

from painterly import weights as w
from painterly.errors import WeightsError


def serialised(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def fake_state(layout: str) -> dict:
    """Small random tensors in exactly the real key layout (the real files are 80-548 MB)."""
    return {key: torch.randn(shape) * 0.01 for key, shape in w.layout_keys(layout).items()}


def test_layouts_match_the_published_indices():
    tv = w.layout_keys("torchvision")
    assert "features.34.weight" in tv and tv["features.0.weight"] == (64, 3, 3, 3) and len(tv) == 32
    norm = w.layout_keys("normalised")
    assert norm["0.weight"] == (3, 3, 1, 1) and norm["29.weight"] == (512, 256, 3, 3) and len(norm) == 34
    dec = w.layout_keys("decoder")
    assert dec["1.weight"] == (256, 512, 3, 3) and dec["28.weight"] == (3, 64, 3, 3) and len(dec) == 18
    assert w.layout_keys("torchvision", convs=9)["features.19.weight"] == (512, 256, 3, 3)


def test_the_decoder_described_once_gives_the_released_keys_module_and_shapes():
    from painterly.adain import build_decoder
    from painterly.memory import decoder_layers

    assert sorted(w.DECODER_CONVS) == [1, 5, 8, 11, 14, 18, 21, 25, 28]
    decoder = build_decoder()
    assert {key: tuple(value.shape) for key, value in decoder.state_dict().items()} == w.layout_keys("decoder")
    assert isinstance(decoder[-1], torch.nn.Conv2d)  # no ReLU after the last convolution
    convs = [layer for layer in decoder_layers(64, 64) if layer.is_conv]
    assert [(layer.in_channels, layer.channels) for layer in convs] == list(w.DECODER_CONVS.values())


@pytest.mark.parametrize("layout", w.LAYOUTS)
def test_detect_layout(layout):
    assert w.detect_layout(fake_state(layout)) == layout


def test_detect_and_check_refuse_foreign_weights():
    with pytest.raises(WeightsError, match="unrecognised"):
        w.detect_layout({"fc.weight": torch.zeros(2, 2)})
    state = fake_state("torchvision")
    state["features.5.weight"] = torch.zeros(1)
    with pytest.raises(WeightsError, match="features.5.weight"):
        w.check_layout(state, "torchvision")


def test_random_weights_are_seeded_and_kaiming_scaled():
    a, b, c = w.random_vgg19_state_dict(1), w.random_vgg19_state_dict(1), w.random_vgg19_state_dict(2)
    assert torch.equal(a["features.10.weight"], b["features.10.weight"])
    assert not torch.equal(a["features.10.weight"], c["features.10.weight"])
    w.check_layout(a, "torchvision")
    std = a["features.28.weight"].std().item()
    assert abs(std - (2 / (512 * 9)) ** 0.5) < 0.002


def test_download_verifies_and_caches(weights_server, monkeypatch, isolated_torch_home):
    base, handler = weights_server
    handler.files["vgg_normalised.pth"] = serialised(fake_state("normalised"))
    monkeypatch.setenv("PAINTERLY_WEIGHTS_MIRROR", base)
    monkeypatch.delenv("PAINTERLY_OFFLINE")
    seen = []
    state, layout, label = w.load_weights("vgg19-normalised", progress=lambda done, total: seen.append((done, total)))
    assert layout == "normalised" and label == "vgg19-normalised"
    assert seen[-1][0] == seen[-1][1] == len(handler.files["vgg_normalised.pth"])
    cached = isolated_torch_home / "hub" / "checkpoints" / "vgg_normalised.pth"
    assert cached.is_file() and w.is_cached("vgg19-normalised")
    handler.files.clear()  # served from the cache from now on
    assert w.load_weights("vgg19-normalised")[1] == "normalised"


def test_truncated_download_leaves_nothing(weights_server, monkeypatch, isolated_torch_home):
    base, handler = weights_server
    handler.files["decoder.pth"] = serialised(fake_state("decoder"))
    handler.files["vgg_normalised.pth"] = serialised(fake_state("normalised"))
    handler.truncate.add("decoder.pth")
    monkeypatch.setenv("PAINTERLY_WEIGHTS_MIRROR", base)
    monkeypatch.delenv("PAINTERLY_OFFLINE")
    with pytest.raises(WeightsError, match="cut short|cannot download"):
        w.load_weights("adain", role="decoder")
    folder = isolated_torch_home / "hub" / "checkpoints"
    assert not list(folder.iterdir())  # neither the file nor a partial one


def test_wrong_layout_and_checksum_are_refused(weights_server, monkeypatch, isolated_torch_home):
    base, handler = weights_server
    handler.files["vgg_normalised.pth"] = serialised(fake_state("torchvision"))  # right name, wrong content
    handler.files["vgg19-dcbb9e9d.pth"] = serialised(fake_state("torchvision"))  # right layout, wrong hash
    monkeypatch.setenv("PAINTERLY_WEIGHTS_MIRROR", base)
    monkeypatch.delenv("PAINTERLY_OFFLINE")
    with pytest.raises(WeightsError, match="normalised layout"):
        w.load_weights("vgg19-normalised")
    with pytest.raises(WeightsError, match="checksum"):
        w.load_weights("vgg19")
    assert not list((isolated_torch_home / "hub" / "checkpoints").iterdir())


def test_offline_error_names_url_and_path():
    with pytest.raises(WeightsError) as error:
        w.load_weights("vgg19")
    message = str(error.value)
    assert "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth" in message
    assert "checkpoints/vgg19-dcbb9e9d.pth" in message


def test_unreachable_server_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("PAINTERLY_OFFLINE")
    monkeypatch.setenv("PAINTERLY_WEIGHTS_MIRROR", "http://127.0.0.1:9")  # discard port: refused
    with pytest.raises(WeightsError, match="cannot download http://127.0.0.1:9/vgg19-dcbb9e9d.pth"):
        w.load_weights("vgg19")


def test_choose_weights_falls_back_to_random():
    spec, note = w.choose_weights("auto", preferred="vgg19")
    assert spec == "random" and "vgg19" in note
    assert w.choose_weights("vgg19-normalised", preferred="vgg19") == ("vgg19-normalised", None)


def test_local_files_in_either_layout(tmp_path):
    for layout in ("torchvision", "normalised"):
        path = tmp_path / f"{layout}.pth"
        torch.save({"state_dict": fake_state(layout)}, path)
        assert w.load_weights(path)[1] == layout
    torch.save(fake_state("decoder"), tmp_path / "dec.pth")
    with pytest.raises(WeightsError, match="not a VGG-19 encoder"):
        w.load_weights(tmp_path / "dec.pth")
    assert w.load_weights(tmp_path / "dec.pth", role="decoder")[1] == "decoder"
    (tmp_path / "junk.pth").write_bytes(b"\x00" * 100)
    with pytest.raises(WeightsError, match="not a readable PyTorch weight file"):
        w.load_weights(tmp_path / "junk.pth")
    with pytest.raises(WeightsError, match="unknown weights"):
        w.load_weights("vgg16")
