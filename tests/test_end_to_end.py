"""Whole journeys through the command line, as a newcomer would take them."""

import io

import torch

from painterly.images import read_metadata
from painterly.weights import layout_keys

from conftest import run_cli


def test_weights_download_from_a_mirror_then_stylise(weights_server, scene_path, stripes_path, tmp_path, isolated_torch_home):
    base, handler = weights_server
    generator = torch.Generator().manual_seed(0)
    state = {key: torch.randn(shape, generator=generator) * 0.05 for key, shape in layout_keys("normalised").items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    handler.files["vgg_normalised.pth"] = buffer.getvalue()
    env = {"PAINTERLY_OFFLINE": "0", "PAINTERLY_WEIGHTS_MIRROR": base, "TORCH_HOME": str(isolated_torch_home)}
    out = tmp_path / "out.png"
    result = run_cli("optimize", str(scene_path), str(stripes_path), "-o", str(out), "--weights", "vgg19-normalised",
                     "--size", "40", "--iterations", "3", env=env)
    assert result.returncode == 0, result.stderr
    assert "downloading weights" in result.stderr  # the progress bar
    assert (isolated_torch_home / "hub" / "checkpoints" / "vgg_normalised.pth").is_file()
    assert read_metadata(out)["weights"] == "vgg19-normalised"
    # A second run is served from the cache: the mirror is gone and nothing is downloaded.
    handler.files.clear()
    again = run_cli("optimize", str(scene_path), str(stripes_path), "-o", str(tmp_path / "again.png"),
                    "--weights", "vgg19-normalised", "--size", "40", "--iterations", "3", env=env)
    assert again.returncode == 0, again.stderr
    assert "downloading" not in again.stderr


def test_truncated_download_through_the_cli_fails_cleanly(weights_server, scene_path, stripes_path, tmp_path, isolated_torch_home):
    base, handler = weights_server
    handler.files["vgg_normalised.pth"] = b"x" * 4096
    handler.truncate.add("vgg_normalised.pth")
    env = {"PAINTERLY_OFFLINE": "0", "PAINTERLY_WEIGHTS_MIRROR": base, "TORCH_HOME": str(isolated_torch_home)}
    out = tmp_path / "out.png"
    result = run_cli("optimize", str(scene_path), str(stripes_path), "-o", str(out), "--weights", "vgg19-normalised",
                     "--size", "40", "--iterations", "2", "--quiet", env=env)
    assert result.returncode == 2 and "cut short" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()
    assert not any((isolated_torch_home / "hub" / "checkpoints").iterdir())
