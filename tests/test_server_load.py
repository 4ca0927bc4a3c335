"""The studio under load on loopback: 50 concurrent requests, every one answered correctly."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx2

from painterly.server import Limits, StudioServer, create_app

from conftest import make_scene, make_stripes

CLIENTS = 50


def png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_fifty_concurrent_requests_all_answered_correctly() -> None:
    files = [("content", ("scene.png", png(make_scene(48, 32)), "image/png")),
             ("style", ("stripes.png", png(make_stripes(48, 32)), "image/png"))]
    app = create_app(device="cpu", weights="random", limits=Limits(queue_size=2))
    with StudioServer(app) as server, httpx2.Client(base_url=server.url, timeout=60) as client:
        job = client.post("/api/jobs", files=files, data={"size": "32", "iterations": "2"}).json()
        while (status := client.get(f"/api/jobs/{job['id']}").json())["status"] not in ("done", "failed", "cancelled"):
            time.sleep(0.05)
        assert status["status"] == "done", status["error"]
        expected = client.get(status["result_url"]).content

        # 20 ask for the studio's info, 20 for the finished result, 10 post long jobs at once:
        # exactly as many jobs are accepted as the queue holds (one running, two waiting).
        kinds = ["info"] * 20 + ["result"] * 20 + ["post"] * 10
        start = threading.Barrier(CLIENTS)

        def request(kind: str) -> tuple[str, int, bool, float]:
            start.wait()
            began = time.monotonic()
            with httpx2.Client(base_url=server.url, timeout=60) as own:  # one connection per client
                if kind == "info":
                    response = own.get("/api/info")
                    correct = response.status_code == 200 and "stylize" in response.json()["methods"]
                elif kind == "result":
                    response = own.get(status["result_url"])
                    correct = response.status_code == 200 and response.content == expected
                else:
                    response = own.post("/api/jobs", files=files, data={"size": "32", "iterations": "1000"})
                    correct = response.status_code == 202 or (
                        response.status_code == 429 and "busy" in response.json()["error"]
                    )
            return kind, response.status_code, correct, time.monotonic() - began

        began = time.monotonic()
        with ThreadPoolExecutor(CLIENTS) as pool:
            answers = list(pool.map(request, kinds))
        elapsed = time.monotonic() - began

        assert all(correct for _, _, correct, _ in answers), [a for a in answers if not a[2]]
        posted = [code for kind, code, _, _ in answers if kind == "post"]
        assert posted.count(202) == 3 and posted.count(429) == 7
        assert elapsed < 30, f"50 requests took {elapsed:.1f} s"
    # Leaving the server cancels the accepted jobs (the queue closes with the app).
