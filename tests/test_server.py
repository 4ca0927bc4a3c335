"""The web studio's API: every limit, a job run to completion, cancelling, eviction, the CLI."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from painterly import optimize
from painterly.images import load_image
from painterly.server import Limits, create_app
from painterly.server.app import bundled_examples

from conftest import SRC, make_scene, make_stripes

FINISHED = ("done", "failed", "cancelled")


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@contextmanager
def studio(**limits: Any) -> Iterator[TestClient]:
    with TestClient(create_app(device="cpu", weights=limits.pop("weights", "random"), limits=Limits(**limits))) as client:
        yield client


def post_job(client: TestClient, *, content: Any = None, styles: list[Any] | None = None, **fields: Any):
    """POST /api/jobs; ``content`` and ``styles`` are images (uploaded) or example names."""
    content = make_scene(48, 32) if content is None else content
    styles = [make_stripes(48, 32)] if styles is None else styles
    files, data = [], {key: str(value) for key, value in fields.items()}
    for field, items in (("content", [content]), ("style", styles)):
        for index, item in enumerate(items):
            if isinstance(item, Image.Image):
                files.append((field, (f"{field}{index}.png", png(item), "image/png")))
            elif isinstance(item, bytes):
                files.append((field, (f"{field}{index}.bin", item, "application/octet-stream")))
            else:
                files.append((field, (None, item)))  # a plain form field: an example's name
    return client.post("/api/jobs", files=files, data=data)


def wait(client: TestClient, job_id: str, *, until: Any = FINISHED, timeout: float = 60.0) -> dict[str, Any]:
    """Poll the job until ``until(status)`` (or its status is one of ``until``)."""
    check = until if callable(until) else (lambda status: status["status"] in until)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/api/jobs/{job_id}").json()
        if check(status):
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {status['status']} after {timeout} s")


def test_page_is_self_contained_and_info_describes_the_studio() -> None:
    with studio(max_size=128) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert not re.search(rb"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", page.content), "the page must load nothing from elsewhere"
        info = client.get("/api/info").json()
    assert info["methods"]["optimize"]["available"] is True
    # The test's weight cache is empty: AdaIN runs on the bundled decoder, and the page says so.
    assert info["methods"]["stylize"]["available"] is True and info["methods"]["stylize"]["weights"] == "bundled"
    assert "bundled decoder" in info["methods"]["stylize"]["reason"]
    assert info["limits"]["max_size"] == 128 and info["limits"]["workers"] == 1
    assert info["defaults"]["size"] == 128  # the page's default is brought within the limit
    assert [entry["name"] for entry in info["examples"]] == list(bundled_examples())


def test_openapi_describes_every_route() -> None:
    app = create_app(device="cpu")
    with TestClient(app) as client:
        document = client.get("/api/openapi.json").json()
    routes = {(route.path, method.lower()) for route in app.routes for method in route.methods - {"HEAD"}}
    api_routes = {(path, method) for path, method in routes if path.startswith("/api/") and path != "/api/openapi.json"}
    described = {(path, method) for path, operations in document["paths"].items() for method in operations}
    assert api_routes == described
    assert set(document["paths"]["/api/jobs"]["post"]["responses"]) == {"202", "400", "403", "413", "429"}


def test_examples_by_name_only() -> None:
    with studio() as client:
        names = [entry["name"] for entry in client.get("/api/examples").json()]
        assert "starry_night" in names
        image = Image.open(io.BytesIO(client.get("/api/examples/starry_night").content))
        assert image.format == "JPEG"
        assert client.get("/api/examples/nope").status_code == 404
        for path_like in ("..%2F..%2Fpyproject.toml", "..%2Fexamples%2Fstarry_night.jpg", "starry_night.jpg"):
            response = client.get(f"/api/examples/{path_like}")
            assert response.status_code == 404 and "error" in response.json()
        for path_like in ("../../pyproject.toml", "/etc/passwd", "examples/starry_night.jpg", "starry_night.jpg"):
            response = post_job(client, content=path_like, styles=["starry_night"])
            assert response.status_code == 400, path_like
            assert "no example named" in response.json()["error"]


def test_upload_over_the_cap_is_413() -> None:
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 80, 3), dtype=np.uint8))
    with studio(max_upload_bytes=10_000) as client:
        response = post_job(client, content=noise)
        assert response.status_code == 413
        assert "limit" in response.json()["error"]
        # A chunked upload announces no length: the body is counted as it arrives.
        chunked = client.post(
            "/api/jobs",
            content=iter([b"x" * 6000, b"x" * 6000]),
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
        assert chunked.status_code == 413
        assert post_job(client, size=4096).status_code == 400  # a small upload is read and checked


@pytest.mark.parametrize(
    ("content", "fields", "message"),
    [
        (b"just some text", {}, "not an image"),
        (png(make_scene())[:200], {}, "content file 'content0.bin' refused"),
        (None, {"size": 4096}, "size 4096 is out of range"),
        (None, {"size": "big"}, "size must be a whole number"),
        (None, {"iterations": 0}, "iterations 0 is out of range"),
        (None, {"alpha": 1.5}, "alpha must be a number from 0 to 1"),
        (None, {"preserve_color": "maybe"}, "preserve_color must be one of none, luminance, match"),
        (None, {"method": "deepdream"}, "unknown method"),
        (None, {"preset": "nope"}, "unknown preset"),
        (None, {"style_loss": "l2"}, "unknown style_loss 'l2'"),
        (None, {"style_weights": "1 2"}, "2 style weights given for 1 style images"),
        (None, {"style_weights": "nan"}, "finite"),
    ],
)
def test_bad_input_is_400_with_a_clear_message(content: Any, fields: dict[str, Any], message: str) -> None:
    with studio(max_size=1024) as client:
        response = post_job(client, content=content, **fields)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_style_count_is_bounded() -> None:
    with studio(max_styles=2) as client:
        assert "at least one style" in post_job(client, styles=[]).json()["error"]
        response = post_job(client, styles=["mondrian", "the_scream", "starry_night"])
        assert response.status_code == 400 and "up to 2" in response.json()["error"]
        assert post_job(client, styles=[b"not an image"]).json()["error"].startswith("style file")


def test_a_job_runs_to_completion() -> None:
    """weights=auto falls back to seeded random ones offline, as the CLI does."""
    with studio(weights="auto") as client:
        folder = client.app.state.queue.folder
        response = post_job(client, styles=[make_stripes(48, 32), "starry_night"], size=32, iterations=3,
                            style_weights="1 3", seed=5, preserve_color="luminance")
        assert response.status_code == 202
        job = response.json()
        assert response.headers["location"] == f"/api/jobs/{job['id']}"
        assert job["status"] in ("queued", "running")
        status = wait(client, job["id"])
        assert status["status"] == "done", status["error"]
        assert status["iteration"] == status["iterations"] == 3
        assert len(status["history"]) == 3 and set(status["losses"]) == {"content", "style", "tv", "total"}
        assert status["weights"] == "random(seed=5)" and "seeded random weights" in status["note"]
        assert status["styles"] == ["style0.png", "starry_night.jpg"]

        preview = Image.open(io.BytesIO(client.get(status["preview_url"]).content))
        result = client.get(status["result_url"])
        assert result.status_code == 200 and result.headers["content-type"] == "image/png"
        assert result.headers["content-disposition"] == 'attachment; filename="content0_style0.png"'
        image = Image.open(io.BytesIO(result.content))
        assert image.size == preview.size == (32, 21)
        assert image.text["iterations"] == "3" and image.text["seed"] == "5"
        assert image.text["preserve_color"] == "luminance"
        assert image.text["profile"] == "random-features"  # offline, the studio paints with the profile too
        assert image.text["style"] == '["style0.png", "starry_night.jpg"]'
        start = np.asarray(make_scene(48, 32).resize((32, 21), Image.Resampling.LANCZOS), dtype=float)
        assert np.abs(np.asarray(image, dtype=float) - start).mean() > 0.5  # it was repainted
        # ... exactly as the Python API repaints it with the same settings.
        starry = load_image(bundled_examples()["starry_night"])
        direct = optimize(make_scene(48, 32), [make_stripes(48, 32), starry], size=32, iterations=3, weights="random",
                          style_weights=(1, 3), seed=5, init="content", device="cpu", preserve_color="luminance")
        assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(direct.image))

        assert client.delete(f"/api/jobs/{job['id']}").status_code == 200  # a finished job is forgotten
        assert client.get(f"/api/jobs/{job['id']}").status_code == 404
        assert client.get(f"/api/jobs/{job['id']}/result").status_code == 404
        assert not list(folder.iterdir())
    assert not folder.exists()  # the results folder goes with the app


def test_the_style_loss_field_reaches_the_optimisation() -> None:
    with studio() as client:
        job = post_job(client, size=32, iterations=1, style_loss="histogram").json()
        status = wait(client, job["id"])
        assert status["status"] == "done", status["error"]
        assert status["settings"]["style_loss"] == "histogram"
        image = Image.open(io.BytesIO(client.get(status["result_url"]).content))
        assert image.text["style_loss"] == "histogram" and image.text["profile"] == "random-features"


def test_full_queue_429_cancelling_and_eviction() -> None:
    with studio(queue_size=2, max_jobs=2) as client:
        running = post_job(client, size=32, iterations=1000).json()
        wait(client, running["id"], until=lambda status: status["iteration"] >= 1)
        first, second = (post_job(client, size=32).json() for _ in range(2))
        assert (first["position"], second["position"]) == (1, 2)
        refused = post_job(client, size=32)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "5"
        assert "busy" in refused.json()["error"]
        assert client.get(f"/api/jobs/{first['id']}/result").status_code == 409

        for queued in (first, second):  # a waiting job is cancelled at once
            response = client.delete(f"/api/jobs/{queued['id']}")
            assert response.status_code == 200 and response.json()["status"] == "cancelled"
        later = post_job(client, size=32)  # room again; the oldest finished job is evicted
        assert later.status_code == 202
        assert client.get(f"/api/jobs/{first['id']}").status_code == 404
        assert client.get(f"/api/jobs/{second['id']}").json()["status"] == "cancelled"

        response = client.delete(f"/api/jobs/{running['id']}")
        assert response.status_code == 202  # running: it stops after the current iteration
        status = wait(client, running["id"])
        assert status["status"] == "cancelled" and status["iteration"] < 1000
        assert client.get(f"/api/jobs/{running['id']}/result").status_code == 409
        assert client.delete(f"/api/jobs/{later.json()['id']}").json()["status"] in ("cancelled", "running")
        assert client.delete("/api/jobs/unknown").status_code == 404


def test_stylize_is_offered_and_runs_when_its_weights_are_cached(adain_weights: None) -> None:
    with studio() as client:
        assert client.get("/api/info").json()["methods"]["stylize"]["available"] is True
        response = post_job(client, styles=["mondrian", make_stripes(48, 32)], method="stylize", size=40, alpha=0.5,
                            preserve_color="match", style_weights="2 1")
        assert response.status_code == 202
        status = wait(client, response.json()["id"])
        assert status["status"] == "done", status["error"]
        assert status["settings"] == {"size": 40, "preserve_color": "match", "style_weights": [2.0, 1.0], "alpha": 0.5,
                                      "crop": False, "feature_transform": None}  # None: the decoder's
        image = Image.open(io.BytesIO(client.get(status["result_url"]).content))
    assert image.size == (40, 27)
    assert image.text["painterly.method"] == "stylize"
    assert float(image.text["alpha"]) == 0.5 and image.text["preserve_color"] == "match"
    assert image.text["feature_transform"] == "adain"  # the released decoder's, as the paper


def test_cli_serves_and_warns_when_exposed() -> None:
    """``painterly serve`` on all interfaces: a warning line, the page, Ctrl+C stops it (exit 0)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "painterly", "serve", "--host", "0.0.0.0", "--port", "0", "--device", "cpu"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    try:
        warning = process.stderr.readline()
        assert warning.startswith("painterly: warning: listening on 0.0.0.0")
        url = re.search(r"at (http://\S+)", process.stderr.readline()).group(1)
        with urllib.request.urlopen(url.replace("0.0.0.0", "127.0.0.1") + "api/info", timeout=30) as response:
            assert response.status == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
        process.stderr.close()


def test_cli_port_in_use_is_one_line_and_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "painterly", "serve", "--port", str(port)],
            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(SRC)}, timeout=60,
        )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"painterly: error: cannot listen on 127.0.0.1:{port} (Address already in use)"]
