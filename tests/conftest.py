"""Shared fixtures: generated images, the CLI as a subprocess, a local weights server."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SRC = Path(__file__).resolve().parents[1] / "src"


def make_scene(width: int = 96, height: int = 64, seed: int = 0) -> Image.Image:
    """A photo-like test scene: a sky gradient, a dark hill and a bright disc."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    sky = np.stack([0.4 + 0.3 * y / height, 0.6 + 0.2 * y / height, 0.9 - 0.1 * y / height], axis=-1)
    hill = (y > height * 0.6 + 6 * np.sin(x / 9.0))[..., None]
    image = np.where(hill, np.array([0.2, 0.45, 0.15]), sky)
    disc = ((x - width * 0.7) ** 2 + (y - height * 0.3) ** 2) < (height * 0.15) ** 2
    image[disc] = [1.0, 0.9, 0.3]
    image += rng.normal(0, 0.02, image.shape)
    return Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8), "RGB")


def make_stripes(width: int = 96, height: int = 64) -> Image.Image:
    """A style-like test image: saturated diagonal stripes, nothing like the scene's colours."""
    y, x = np.mgrid[0:height, 0:width]
    band = ((x + y) // 6) % 3
    palette = np.array([[230, 40, 40], [250, 220, 30], [20, 20, 160]], dtype=np.uint8)
    return Image.fromarray(palette[band], "RGB")


@pytest.fixture
def scene_path(tmp_path: Path) -> Path:
    path = tmp_path / "scene.png"
    make_scene().save(path)
    return path


@pytest.fixture
def stripes_path(tmp_path: Path) -> Path:
    path = tmp_path / "stripes.png"
    make_stripes().save(path)
    return path


def run_in_process(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    """``painterly ARGS`` in this process (no interpreter start-up): exit code and stderr."""
    from painterly.cli import main

    try:
        code = main(list(args))
    except SystemExit as exit:  # argparse's usage errors
        code = exit.code
    return code, capsys.readouterr().err


@pytest.fixture
def painterly_cli(capsys: pytest.CaptureFixture):
    """``painterly ARGS`` in this process, as a CompletedProcess (stdout and stderr captured)."""
    from painterly.cli import main

    def run(*args) -> subprocess.CompletedProcess:
        code = main([str(arg) for arg in args])
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, captured.out, captured.err)

    return run


@pytest.fixture
def adain_weights() -> None:
    """Seeded weight files in the released AdaIN layouts, in the (per-test) weights cache."""
    import torch

    from painterly.weights import REGISTRY, cached_path, layout_keys

    generator = torch.Generator().manual_seed(0)
    for file in REGISTRY["adain"].files.values():
        state = {key: torch.randn(shape, generator=generator) * 0.05 for key, shape in layout_keys(file.layout).items()}
        cached_path(file).parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, cached_path(file))


@pytest.fixture(autouse=True)
def isolated_torch_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets an empty weights cache and no network: nothing reaches the internet."""
    home = tmp_path_factory.mktemp("torch_home")
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setenv("PAINTERLY_OFFLINE", "1")
    monkeypatch.delenv("PAINTERLY_WEIGHTS_MIRROR", raising=False)
    return home


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m painterly ARGS`` as a user would, with this checkout's sources."""
    environment = {**os.environ, "PYTHONPATH": str(SRC), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "painterly", *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=cwd,
        timeout=timeout,
    )


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    truncate: set[str] = set()

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        name = self.path.rsplit("/", 1)[-1]
        if name not in self.files:
            self.send_error(404)
            return
        body = self.files[name]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # A truncated file: announce the full length, send half, hang up.
        self.wfile.write(body[: len(body) // 2] if name in self.truncate else body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def weights_server():
    """An HTTP server on 127.0.0.1 serving ``server.files[name] = bytes``; yields (base URL, handler)."""
    handler = type("Handler", (_Handler,), {"files": {}, "truncate": set()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
