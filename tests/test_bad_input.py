"""The bad-input corpus: what a hostile or careless user tried, one row each, kept fixed.

Every command-line row must end in exit code 2 with one line on stderr (no traceback) and leave
every input file byte for byte as it was; every studio row must get its refusal status. The
inputs are generated here, small, and the networks are seeded random ones, so the table runs in
seconds.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from PIL import Image
from starlette.testclient import TestClient

from conftest import make_scene, make_stripes
from painterly.adain import build_decoder
from painterly.cli import main
from painterly.encoder import load_encoder
from painterly.server import Limits, create_app
from painterly.server.jobs import QueueFull

RANDOM = ("--weights", "random", "--iterations", "1", "--quiet")
ADAIN = ("--encoder", "random", "--decoder", "decoder.pth", "--quiet")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_decoder(path: Path, *, nan: bool = False, trained_with_seed: int | None = None) -> None:
    """A random decoder in the released layout; NaN weights; or one recording the random
    encoder of ``trained_with_seed``, as ``painterly train`` records its encoder."""
    torch.manual_seed(0)
    state = build_decoder().state_dict()
    if nan:
        state["28.weight"][0, 0, 0, 0] = float("nan")
    if trained_with_seed is not None:
        from painterly.encoder import encoder_fingerprint
        from painterly.weights import with_record

        encoder, label = load_encoder("random", last_layer="relu4_1", seed=trained_with_seed)
        state = with_record(state, {"encoder": label, "encoder_sha256": encoder_fingerprint(encoder)})
    torch.save(state, path)


def thin(path: Path) -> None:
    Image.new("RGB", (1, 50000), (200, 120, 40)).save(path)


def make_run_without_config(root: Path) -> None:
    (root / "run" / "checkpoints").mkdir(parents=True)
    torch.save({"iteration": 1, "decoder": {}}, root / "run" / "checkpoints" / "ckpt_0000001.pt")


def make_batch_folder(root: Path) -> None:
    (root / "dir").mkdir()
    make_scene(40, 32).save(root / "dir" / "x.png")
    make_scene(40, 32, seed=1).save(root / "dir" / "x_style.png")
    make_stripes(40, 32).save(root / "style.png")


def make_state_with_other_style(root: Path) -> None:
    assert main(["optimize", "c.png", "s.png", "-o", "run.png", "--size", "32", "--save-every", "1", *RANDOM]) == 0
    make_stripes(48, 40).rotate(90).save(root / "s.png")  # the style changes before the resume


def disk_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.save as it fails on a full disk: a RuntimeError from its zip writer, not OSError."""

    def full(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 512 vs 448: No space left on device")

    monkeypatch.setattr(torch, "save", full)


@dataclass
class Case:
    """argv for ``painterly``, what stderr must say, and the setup that makes the files."""

    args: tuple[str, ...]
    says: str
    setup: Callable[[Path], None] | None = None
    patch: Callable[[pytest.MonkeyPatch], None] | None = None
    not_written: tuple[str, ...] = field(default_factory=tuple)


CASES = {
    # 1. Inputs overwritten.
    "plot onto the content": Case(("optimize", "c.png", "s.png", "-o", "out.png", "--plot", "c.png", "--size", "32", *RANDOM),
                                  "would overwrite an input (c.png)"),
    "plot onto the output": Case(("optimize", "c.png", "s.png", "-o", "out.png", "--plot", "out.png", "--size", "32", *RANDOM),
                                 "would be written twice", not_written=("out.png",)),
    "plot with a .txt name": Case(("optimize", "c.png", "s.png", "-o", "out.png", "--plot", "plot.txt", "--size", "32", *RANDOM),
                                  "a loss curve is a PNG", not_written=("plot.txt", "out.png")),
    "batch output onto another job's input": Case(
        ("stylize", "dir", "--style", "style.png", "-o", "dir", "--overwrite", *ADAIN),
        "would overwrite an input (dir/x_style.png)", setup=make_batch_folder),
    "snapshots onto the content": Case(("optimize", "o_00001.png", "s.png", "-o", "o.png", "--save-every", "1", "--size", "32", *RANDOM),
                                       "numbered snapshots would overwrite", setup=lambda root: make_scene(48, 40).save(root / "o_00001.png")),
    "export onto its decoder": Case(("export", "-o", "decoder.pth", "--encoder", "random", "--decoder", "decoder.pth"),
                                    "would overwrite an input (decoder.pth)"),
    "run folder inside the content folder": Case(
        ("train", "--content-dir", "dir", "--style-dir", "dir", "-o", "dir/run", "--encoder", "random", "--iterations", "1"),
        "overlap", setup=make_batch_folder),
    # 2. Full disk: torch.save's RuntimeError.
    "optimize state on a full disk": Case(("optimize", "c.png", "s.png", "-o", "o.png", "--save-every", "1", "--size", "32", *RANDOM),
                                          "o.state.pt: cannot be written", patch=disk_full, not_written=("o.state.pt", "o.png")),
    "train checkpoint on a full disk": Case(
        ("train", "--content-dir", "dir", "--style-dir", "styles", "-o", "run", "--encoder", "random", "--iterations", "1",
         "--image-size", "40", "--crop-size", "32", "--batch-size", "1", "--workers", "0", "--quiet"),
        "ckpt_0000001.pt: cannot be written", patch=disk_full,
        setup=lambda root: (make_batch_folder(root), (root / "styles").mkdir(), make_stripes(40, 40).save(root / "styles" / "s.png"))),
    # 4. Small and thin images: refused up front, with the smallest size that works.
    "size 16 on 128x85": Case(("optimize", "wide.png", "s.png", "-o", "o.png", "--size", "16", *RANDOM),
                              "the smallest size that works is 24 px", setup=lambda root: make_scene(128, 85).save(root / "wide.png")),
    "20 scales": Case(("optimize", "wide.png", "s.png", "-o", "o.png", "--scales", "20", *RANDOM),
                      "scale 1 of 20", setup=lambda root: make_scene(128, 85).save(root / "wide.png")),
    "1x50000 content, optimize": Case(("optimize", "thin.png", "s.png", "-o", "o.png", "--size", "32", *RANDOM),
                                      "too thin", setup=lambda root: thin(root / "thin.png")),
    "1x50000 content, sweep": Case(("sweep", "thin.png", "s.png", "-o", "sheet.png", "--param", "tv_weight", "0", "1", *RANDOM),
                                   "too thin", setup=lambda root: thin(root / "thin.png")),
    "1x50000 content, stylize": Case(("stylize", "thin.png", "--style", "s.png", "-o", "o.png", *ADAIN),
                                     "too thin", setup=lambda root: thin(root / "thin.png")),
    "1x50000 style, stylize": Case(("stylize", "c.png", "--style", "thin.png", "-o", "o.png", *ADAIN),
                                   "style image 1 is 1x50000 pixels: too thin", setup=lambda root: thin(root / "thin.png")),
    # 5. Seeds, at parse time.
    "huge seed, optimize": Case(("optimize", "c.png", "s.png", "--seed", "99999999999999999999999", *RANDOM), "a seed must be 0 to"),
    "huge seed, stylize": Case(("stylize", "c.png", "--style", "s.png", "-o", "o.png", "--seed", "99999999999999999999999", *ADAIN),
                               "a seed must be 0 to"),
    "huge seed, export": Case(("export", "-o", "a.onnx", "--seed", "99999999999999999999999"), "a seed must be 0 to"),
    "huge seed, train": Case(("train", "-o", "run", "--seed", "99999999999999999999999"), "a seed must be 0 to"),
    "negative seed, train": Case(("train", "-o", "run", "--seed", "-1"), "a seed must be 0 to"),
    # 6. Weights that overflow when summed.
    "style weights summing to infinity": Case(
        ("optimize", "c.png", "s.png", "s.png", "--style-weights", "1e308", "1e308", "-o", "o.png", "--size", "32", *RANDOM),
        "add up to more than a float can hold"),
    # 7. Smaller ones.
    "resume from garbage": Case(("optimize", "c.png", "s.png", "-o", "o.png", "--resume", "garbage.txt", *RANDOM),
                                "not a PyTorch file", setup=lambda root: (root / "garbage.txt").write_text("garbage\n")),
    "output .bmp": Case(("stylize", "c.png", "--style", "s.png", "-o", "out.bmp", *ADAIN), "choose one of those endings",
                        not_written=("out.bmp",)),
    "decoder with NaN weights": Case(("stylize", "c.png", "--style", "s.png", "-o", "o.png", *ADAIN), "NaN or infinite",
                                     setup=lambda root: write_decoder(root / "decoder.pth", nan=True), not_written=("o.png",)),
    "decoder from another encoder": Case(("stylize", "c.png", "--style", "s.png", "-o", "o.png", *ADAIN, "--encoder-seed", "1"),
                                         "was trained with the encoder random(seed=0), not random(seed=1)",
                                         setup=lambda root: write_decoder(root / "decoder.pth", trained_with_seed=0)),
    "resume with another style": Case(("optimize", "c.png", "s.png", "-o", "run.png", "--size", "32", "--resume", "run.state.pt", *RANDOM),
                                      "style image(s) differ from the checkpoint's run", setup=make_state_with_other_style),
    "serve a garbage weight file": Case(("serve", "--weights", "garbage.pth", "--port", "0"), "not a readable PyTorch weight file",
                                        setup=lambda root: (root / "garbage.pth").write_bytes(b"\x80\x02garbage")),
    "train checkpoint without config": Case(("train", "--resume", "run"), "an incomplete training checkpoint",
                                            setup=make_run_without_config),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_exit_2(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    case = CASES[name]
    monkeypatch.chdir(tmp_path)
    make_scene(48, 40).save("c.png")
    make_stripes(48, 40).save("s.png")
    write_decoder(tmp_path / "decoder.pth")
    if case.setup is not None:
        case.setup(tmp_path)
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    capsys.readouterr()
    if case.patch is not None:
        case.patch(monkeypatch)
    try:
        code = main(list(case.args))
    except SystemExit as exit:  # argparse's refusals
        code = exit.code
    error = capsys.readouterr().err
    assert code == 2, error
    lines = [line for line in error.splitlines() if line.strip()]
    assert len(lines) == 1 and case.says in lines[0], error
    assert all(path.read_bytes() == data for path, data in before.items()), "an input changed"
    for name in case.not_written:
        assert not (tmp_path / name).exists(), f"{name} was written"
    assert not list(tmp_path.rglob("*.part*")), "a temporary file was left behind"


# ---------------------------------------------------------------------------------------------
# The studio.


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def declared_png(width: int, height: int) -> bytes:
    """A 16x16 PNG whose header claims ``width`` x ``height``: a pixel bomb in a few hundred bytes."""
    data = bytearray(png(Image.new("RGB", (16, 16), (90, 90, 90))))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def post(client: TestClient, *, content: bytes | None = None, headers: dict[str, str] | None = None, styles: int = 1,
         **fields: str):
    files = [("content", ("c.png", content or png(make_scene(48, 32)), "image/png"))]
    files += [("style", (f"s{index}.png", png(make_stripes(48, 32)), "image/png")) for index in range(styles)]
    return client.post("/api/jobs", files=files, data={"size": "32", "iterations": "1", **fields}, headers=headers or {})


def full_queue(client: TestClient) -> None:
    def refuse() -> None:
        raise QueueFull("the studio is busy: try again shortly")

    client.app.state.queue.check_room = refuse


STUDIO_CASES = {
    "form from another site": (dict(headers={"Origin": "https://evil.example"}), 403, "cross-site"),
    "no-cors fetch from another site": (dict(headers={"Sec-Fetch-Site": "cross-site"}), 403, "cross-site"),
    "origin 'null' (a sandboxed page)": (dict(headers={"Origin": "null"}), 403, "cross-site"),
    "style weights summing to infinity": (dict(style_weights="1e308 1e308", styles=2), 400, "float can hold"),
    "header declares 9000x9000": (dict(content=declared_png(9000, 9000)), 400, "declares 9000x9000"),
    "1x50000 content": (dict(content=png(Image.new("RGB", (1, 50000)))), 400, "too thin"),
    "8x512 content at size 32": (dict(content=png(Image.new("RGB", (8, 512)))), 400, "smallest size that works"),
    "bomb while the queue is full": (dict(content=declared_png(9000, 9000), setup=full_queue), 429, "busy"),
}


@pytest.mark.parametrize("name", list(STUDIO_CASES))
def test_studio_refuses(name: str) -> None:
    request, status, says = STUDIO_CASES[name]
    request = dict(request)
    setup = request.pop("setup", None)
    with TestClient(create_app(device="cpu", weights="random", limits=Limits(max_size=64))) as client:
        if setup is not None:
            setup(client)
        response = post(client, **request)
        assert response.status_code == status and says in response.json()["error"], response.text
        assert response.headers["x-content-type-options"] == "nosniff"


def test_studio_same_origin_curl_and_ipv6_hosts_pass_and_every_response_is_hardened() -> None:
    app = create_app(device="cpu", weights="random", limits=Limits(max_size=64), allowed_hosts=["::1", "localhost"])
    with TestClient(app, base_url="http://[::1]:8000") as client:
        assert client.get("/api/info").status_code == 200  # starlette's own check read "[" as the host
        assert post(client, headers={"Origin": "http://[::1]:8000"}).status_code == 202  # the page itself
        assert post(client, headers={"Sec-Fetch-Site": "same-origin"}).status_code in (202, 429)
        assert post(client).status_code in (202, 429)  # curl sends no Origin
        for path in ("/", "/api/info", "/api/jobs/nothing", "/api/openapi.json"):
            headers = client.get(path).headers
            assert headers["x-content-type-options"] == "nosniff", path
            assert headers["x-frame-options"] == "DENY" and headers["referrer-policy"] == "no-referrer", path
        assert client.get("/api/info", headers={"Host": "evil.example"}).status_code == 400


def test_huge_jpeg_is_decoded_reduced() -> None:
    """The CLI's care for huge photos: a JPEG many times the working size is decoded by libjpeg
    at a reduced scale (never at full size), to at least twice the size it is used at."""
    from painterly.images import load_image

    buffer = io.BytesIO()
    Image.fromarray(np.tile(np.asarray(make_scene(256, 192)), (8, 8, 1))).save(buffer, format="JPEG")
    image = load_image(buffer.getvalue(), reduce_to=128)
    assert image.size == (256, 192)  # 2048x1536 at 1/8 scale
    assert load_image(buffer.getvalue()).size == (2048, 1536)


# ---------------------------------------------------------------------------------------------
# Training: the run survives a torn newest checkpoint, and its decoder names its encoder.


def test_train_resumes_from_the_last_good_checkpoint_and_its_decoder_records_the_encoder(tmp_path, capsys) -> None:
    import painterly
    from painterly.adain import AdaINModel
    from painterly.errors import SettingsError
    from painterly.weights import read_record, read_state_dict

    make_batch_folder(tmp_path)
    (tmp_path / "styles").mkdir()
    make_stripes(40, 40).save(tmp_path / "styles" / "s.png")
    run = tmp_path / "run"
    tiny = dict(encoder="random", image_size=40, crop_size=32, batch_size=1, workers=0, log_every=1, checkpoint_every=1)
    painterly.train(content_dir=tmp_path / "dir", style_dir=tmp_path / "styles", run_dir=run, iterations=2, **tiny)
    newest = run / "checkpoints" / "ckpt_0000002.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # torn, as by a crash mid-copy
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--iterations", "3", "--quiet"]) == 0
    assert "resuming from ckpt_0000001.pt" in capsys.readouterr().err

    decoder = run / "decoder.pth"
    state = read_state_dict(decoder)
    record = read_record(state)
    assert record is not None and record["encoder"] == "random(seed=0)"
    build_decoder().load_state_dict(torch.load(decoder, weights_only=True))  # still the released layout, strictly
    AdaINModel.load(encoder="random", decoder=decoder, seed=0)  # its own encoder: fine
    with pytest.raises(SettingsError, match="trained with the encoder random"):
        AdaINModel.load(encoder="random", decoder=decoder, seed=1)


def test_studio_decodes_two_uploads_at_a_time(monkeypatch) -> None:
    """Six simultaneous submissions: never more than DECODE_SLOTS decodes at once."""
    import threading
    import time

    from painterly.server import app as studio_app

    active, peak, lock = [0], [0], threading.Lock()
    real_load = studio_app.load_image

    def slow_load(*args: Any, **kwargs: Any) -> Image.Image:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.2)
        try:
            return real_load(*args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(studio_app, "load_image", slow_load)
    with TestClient(create_app(device="cpu", weights="random", limits=Limits(max_size=64, queue_size=8))) as client:
        statuses = []
        threads = [threading.Thread(target=lambda: statuses.append(post(client).status_code)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert statuses == [202] * 6
    assert peak[0] == studio_app.DECODE_SLOTS
