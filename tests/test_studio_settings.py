"""The studio: a trained decoder, preset and TV controls, unknown fields refused, weights named early."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from starlette.testclient import TestClient

from painterly.cli import main
from painterly.server import Limits, create_app
from painterly.server.app import FORM_FIELDS

from test_adain import write_decoder
from test_server import post_job, wait


def test_unknown_fields_are_refused_and_tv_weight_is_a_setting(tmp_path):
    with TestClient(create_app(device="cpu", weights="random", limits=Limits())) as client:
        refused = post_job(client, size=32, iterations=2, tv_wieght="1")
        assert refused.status_code == 400 and "unknown form field 'tv_wieght'" in refused.json()["error"]
        assert "tv_weight" in FORM_FIELDS and "tv_weight" in client.get("/api/openapi.json").text
        info = client.get("/api/info").json()
        assert info["preset_tv_weights"]["d2l"] == 10.0 and "d2l" in info["presets"]
        assert post_job(client, size=32, tv_weight="-1").status_code == 400
        accepted = post_job(client, size=32, iterations=2, preset="d2l", tv_weight="0.25")
        assert accepted.status_code == 202, accepted.json()
        status = wait(client, accepted.json()["id"])
        assert status["status"] == "done", status["error"]
        assert status["settings"]["tv_weight"] == 0.25 and status["settings"]["preset"] == "d2l"
        result = Image.open(io.BytesIO(client.get(status["result_url"]).content))
        assert result.text["tv_weight"] == "0.25" and result.text["preset"] == "d2l"


def test_weights_are_named_while_the_job_runs():
    with TestClient(create_app(device="cpu", weights="random", limits=Limits())) as client:
        job = post_job(client, size=32, iterations=1000, seed=3).json()
        running = wait(client, job["id"], until=lambda status: status["iteration"] >= 1)
        assert running["status"] == "running" and running["weights"] == "random(seed=3)"
        client.delete(f"/api/jobs/{job['id']}")
        wait(client, job["id"])


def test_a_trained_decoder_serves_adain(tmp_path):
    decoder = write_decoder(tmp_path / "decoder.pth")
    app = create_app(device="cpu", weights="random", encoder="random", decoder=str(decoder), limits=Limits())
    with TestClient(app) as client:
        info = client.get("/api/info").json()
        assert info["methods"]["stylize"]["available"] is True
        assert info["adain_weights"] == {"encoder": "random", "decoder": str(decoder)}
        response = post_job(client, method="stylize", size=40, alpha=0.8)
        assert response.status_code == 202, response.json()
        status = wait(client, response.json()["id"])
        assert status["status"] == "done", status["error"]
        assert status["weights"] == f"random(seed=0) + {decoder}"
        image = Image.open(io.BytesIO(client.get(status["result_url"]).content))
        assert image.text["decoder"] == str(decoder) and np.asarray(image).std() > 1
    missing = create_app(device="cpu", decoder=str(tmp_path / "nothing.pth"), limits=Limits())
    with TestClient(missing) as client:
        assert client.get("/api/info").json()["methods"]["stylize"]["available"] is False


def test_serve_refuses_a_missing_decoder_in_one_line(tmp_path, capsys):
    assert main(["serve", "--port", "0", "--decoder", str(tmp_path / "nothing.pth")]) == 2
    err = capsys.readouterr().err
    assert "nothing.pth: no such file" in err and len(err.strip().splitlines()) == 1


def test_the_page_has_preset_and_tv_controls():
    from importlib import resources

    page = (resources.files("painterly.server") / "static" / "index.html").read_text()
    for control in ('id="preset"', 'id="tv_weight"', 'id="weights"', 'form.append("tv_weight"', 'form.append("preset"'):
        assert control in page
