"""Speed settings: precision, autocast, layout."""

from __future__ import annotations

import pytest
import torch

from painterly import speed
from painterly.errors import SettingsError
from painterly.speed import SpeedSettings, resolve_precision

CPU = torch.device("cpu")


def test_auto_precision_follows_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speed, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", CPU) == "bfloat16"
    monkeypatch.setattr(speed, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", CPU) == "float32"
    assert resolve_precision("bfloat16", CPU) == "bfloat16"
    with pytest.raises(SettingsError, match="unknown precision"):
        resolve_precision("float16", CPU)
    with pytest.raises(SettingsError, match="not on mps"):
        resolve_precision("bfloat16", torch.device("mps"))


def test_speed_settings_run_convolutions_as_asked() -> None:
    conv = torch.nn.Conv2d(3, 8, 3)
    image = torch.rand(1, 3, 16, 16)
    for precision, dtype in (("bfloat16", torch.bfloat16), ("float32", torch.float32)):
        speed = SpeedSettings(precision=precision)
        with speed.running(CPU):
            assert torch.is_inference_mode_enabled()
            output = speed.prepare(conv)(speed.input(image))
        assert output.dtype == dtype
        assert output.is_contiguous(memory_format=torch.channels_last)
    with SpeedSettings().running(CPU, grad=True):
        assert not torch.is_inference_mode_enabled()
    with pytest.raises(SettingsError):
        SpeedSettings(precision="half")
