"""ONNX export: onnxruntime runs the exported network and agrees with torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from painterly.adain import AdaINModel
from painterly.errors import SettingsError
from painterly.export import export_onnx

from test_adain import write_decoder

ort = pytest.importorskip("onnxruntime", reason="the onnx extra (onnx, onnxscript, onnxruntime) is not installed")
pytest.importorskip("onnxscript", reason="the onnx extra (onnx, onnxscript, onnxruntime) is not installed")


def test_onnxruntime_matches_torch_at_sizes_other_than_the_traced_one(tmp_path):
    model = AdaINModel.load(encoder="random", decoder=write_decoder(tmp_path / "decoder.pth"))
    path = export_onnx(model, tmp_path / "adain.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adain.onnx", "decoder.pth"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["content", "style", "alpha"]
    generator = torch.Generator().manual_seed(0)
    for (height, width), alpha in (((37, 53), 0.7), ((32, 24), 1.0)):
        content = torch.rand(1, 3, height, width, generator=generator)
        style = torch.rand(1, 3, 40, 48, generator=generator)
        alpha = torch.tensor(alpha)
        (output,) = session.run(None, {"content": content.numpy(), "style": style.numpy(), "alpha": alpha.numpy()})
        with torch.no_grad():
            expected = model(content, style, alpha).numpy()
        assert output.shape == (1, 3, height, width)
        assert np.abs(output - expected).max() < 1e-4


def test_export_refuses_other_file_names(tmp_path):
    model = AdaINModel.load(encoder="random", decoder=write_decoder(tmp_path / "decoder.pth"))
    with pytest.raises(SettingsError, match=r"\.onnx"):
        export_onnx(model, tmp_path / "adain.pt")


def test_exporting_the_bundled_decoder_says_what_the_graph_leaves_out(tmp_path, capsys):
    from painterly.cli import main

    assert main(["export", "-o", str(tmp_path / "bundled.onnx"), "--encoder", "bundled", "--decoder", "bundled"]) == 0
    said = capsys.readouterr().err
    assert "stylize paints this decoder at 2x with wct" in said and (tmp_path / "bundled.onnx").stat().st_size > 1e6
    assert main(["export", "-o", str(tmp_path / "mine.onnx"), "--encoder", "random",
                 "--decoder", str(write_decoder(tmp_path / "decoder.pth"))]) == 0
    assert "stylize paints" not in capsys.readouterr().err  # the graph is all a decoder of one's own needs
