import pytest
import torch
from torch import nn

from painterly.encoder import LAYER_NAMES, ReflectionPad2d, VGG19Encoder, deepest_layer, load_encoder
from painterly.errors import SettingsError
from painterly.weights import layout_keys, random_vgg19_state_dict


def test_layer_names():
    assert LAYER_NAMES[:5] == ("conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1")
    assert len([n for n in LAYER_NAMES if n.startswith("conv")]) == 16
    assert LAYER_NAMES[-1] == "pool5" and "relu4_1" in LAYER_NAMES and "conv5_2" in LAYER_NAMES
    assert deepest_layer(["relu1_1", "conv4_4", "relu3_1"]) == "conv4_4"
    with pytest.raises(SettingsError, match="relu9_1"):
        deepest_layer(["relu9_1"])


def test_truncated_at_the_deepest_layer():
    encoder = VGG19Encoder(last_layer="relu4_1")
    assert list(encoder.convs) == ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv3_4", "conv4_1"]
    with pytest.raises(SettingsError, match="deeper"):
        encoder(torch.rand(1, 3, 32, 32), ["relu5_1"])


def torchvision_reference(state: dict) -> nn.Sequential:
    """torchvision's vgg19().features, written out, to check our encoder against."""
    layers, c_in = [], 3
    for item in [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(c_in, item, 3, padding=1), nn.ReLU()]
            c_in = item
    model = nn.Sequential(*layers)
    model.load_state_dict({k[len("features."):]: v for k, v in state.items()})
    return model


def test_torchvision_layout_matches_reference():
    state = random_vgg19_state_dict(0)
    encoder = VGG19Encoder(flavour="torchvision", last_layer="relu5_1")
    encoder.load_vgg_state_dict(state)
    image = torch.rand(2, 3, 40, 56)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    reference = torchvision_reference(state)[:30]  # up to relu5_1 (index 29)
    expected = reference((image - mean) / std)
    features = encoder(image, ["relu1_1", "relu5_1"])
    assert set(features) == {"relu1_1", "relu5_1"}
    torch.testing.assert_close(features["relu5_1"], expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(features["relu1_1"], reference[:2]((image - mean) / std), rtol=1e-4, atol=1e-5)


def normalised_reference(state: dict) -> nn.Sequential:
    """The released AdaIN vgg_normalised Sequential up to relu4_1 (indices 0-30)."""
    layers: list[nn.Module] = [nn.Conv2d(3, 3, 1)]
    c_in = 3
    for item in [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512]:
        if item == "M":
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        else:
            layers += [nn.ReflectionPad2d(1), nn.Conv2d(c_in, item, 3), nn.ReLU()]
            c_in = item
    model = nn.Sequential(*layers)
    model.load_state_dict({k: v for k, v in state.items() if int(k.split(".")[0]) <= 29})
    return model


def test_normalised_layout_matches_reference():
    torch.manual_seed(0)
    state = {key: torch.randn(shape) * 0.1 for key, shape in layout_keys("normalised").items()}
    encoder = VGG19Encoder(flavour="normalised", last_layer="relu4_1")
    encoder.load_vgg_state_dict(state)
    image = torch.rand(1, 3, 37, 45)  # odd sizes exercise ceil_mode pooling
    torch.testing.assert_close(encoder(image)["relu4_1"], normalised_reference(state)(image), rtol=1e-4, atol=1e-5)


def test_load_encoder_random_is_frozen_and_deterministic():
    a, label = load_encoder("random", last_layer="relu2_1", seed=5)
    b, _ = load_encoder("random", last_layer="relu2_1", seed=5)
    assert label == "random(seed=5)"
    assert not any(p.requires_grad for p in a.parameters())
    image = torch.rand(1, 3, 32, 32)
    assert torch.equal(a(image)["relu2_1"], b(image)["relu2_1"])


def test_reflection_padding_stays_in_bfloat16_under_autocast():
    # torch's own module pads in float32 under autocast, and the next convolution casts back:
    # two copies of every activation, a fifth of AdaIN's time on a CPU (benchmarks/NOTES.md).
    x = torch.randn(1, 4, 8, 8).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert nn.ReflectionPad2d(1)(x).dtype == torch.float32
        assert ReflectionPad2d(1)(x).dtype == torch.bfloat16
    assert torch.equal(ReflectionPad2d(1)(x), nn.ReflectionPad2d(1)(x))
