"""neural-style's options that painterly offers: normalised gradients, L-BFGS history, --print-every."""

from __future__ import annotations


import pytest
import torch

from painterly.cli import main
from painterly.encoder import load_encoder
from painterly.gatys import GatysObjective, GatysSettings, make_optimizer
from painterly.images import image_to_tensor, read_metadata

from conftest import make_scene, make_stripes

LAYERS = dict(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"), tv_weight=0.0)


def gradient(settings: GatysSettings) -> torch.Tensor:
    encoder, _ = load_encoder("random", last_layer="relu2_1", seed=0)
    content, style = image_to_tensor(make_scene(32, 24)), image_to_tensor(make_stripes(32, 24))
    objective = GatysObjective(encoder, content, [style], settings)
    pixels = (torch.rand(content.shape, generator=torch.Generator().manual_seed(1)) * 255).requires_grad_(True)
    objective(pixels)["total"].backward()
    return pixels.grad


def test_normalized_gradients_ignore_each_terms_scale():
    # neural-style divides each term's gradient by its L1 norm: then a term's reduction (mean or
    # sum, which only rescales it) no longer matters, while the weights still do.
    plain = {reduction: gradient(GatysSettings(content_reduction=reduction, **LAYERS)) for reduction in ("mean", "sum")}
    assert not torch.allclose(plain["mean"], plain["sum"], rtol=1e-3)
    normalized = {reduction: gradient(GatysSettings(content_reduction=reduction, normalize_gradients=True, **LAYERS))
                  for reduction in ("mean", "sum")}
    assert torch.allclose(normalized["mean"], normalized["sum"], rtol=1e-4, atol=1e-6)
    weighted = gradient(GatysSettings(content_reduction="mean", normalize_gradients=True, content_weight=50.0, **LAYERS))
    assert not torch.allclose(weighted, normalized["mean"], rtol=1e-3)


def test_lbfgs_history_is_a_setting():
    pixels = torch.zeros(1, 3, 8, 8, requires_grad=True)
    assert make_optimizer(pixels, GatysSettings()).defaults["history_size"] == 100  # neural-style's default
    optimizer = make_optimizer(pixels, GatysSettings(lbfgs_history=3))
    target = torch.rand(1, 3, 8, 8)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = ((pixels - target) ** 4).sum()
        loss.backward()
        return loss

    for _ in range(8):
        optimizer.step(closure)
    assert len(optimizer.state[pixels]["old_dirs"]) <= 3
    with pytest.raises(Exception, match="lbfgs_history"):
        GatysSettings(lbfgs_history=0)


def test_cli_flags_are_recorded_and_progress_is_lines_without_a_terminal(tmp_path, capsys):
    make_scene(48, 32).save(tmp_path / "photo.png")
    make_stripes(40, 40).save(tmp_path / "paint.png")
    out = tmp_path / "out.png"
    code = main(["optimize", str(tmp_path / "photo.png"), str(tmp_path / "paint.png"), "-o", str(out), "--size", "32",
                 "--iterations", "5", "--weights", "random", "--content-layers", "relu2_1", "--style-layers", "relu1_1",
                 "--normalize-gradients", "--lbfgs-history", "7", "--print-every", "2"])
    err = capsys.readouterr().err
    assert code == 0, err
    metadata = read_metadata(out)
    assert metadata["normalize_gradients"] is True and metadata["lbfgs_history"] == 7
    lines = [line for line in err.splitlines() if "iteration" in line]
    assert [line.split("iteration ")[1].split(":")[0] for line in lines] == ["2/5", "4/5", "5/5"]
    assert "\r" not in err and "total" in lines[0]
    # Without a terminal and without --print-every: a line every 50 iterations and at the end, no bar.
    main(["optimize", str(tmp_path / "photo.png"), str(tmp_path / "paint.png"), "-o", str(out), "--size", "32",
          "--iterations", "3", "--weights", "random", "--content-layers", "relu2_1", "--style-layers", "relu1_1"])
    err = capsys.readouterr().err
    assert "\r" not in err and "iteration 3/3" in err
    for command in ("optimize", "sweep", "stylize", "reproduce", "train"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "--print-every" in capsys.readouterr().out, command
