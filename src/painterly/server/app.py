"""The web studio: one page and the small JSON API behind it (described in :mod:`.openapi`).

Routes, limits and the glue to the job queue. What a client sends is checked here, before any
work is queued: uploads larger than ``max_upload_bytes`` in all (413), files that are not
images (400, with :func:`painterly.images.load_image`'s message), settings out of range (400),
example names not in the bundled list (400; a client never names a file), and a full queue
(429, checked before anything is read or decoded). Images are decoded at most
:data:`DECODE_SLOTS` at a time, JPEGs at a reduced scale, and an image whose header declares
more than :attr:`Limits.max_decode_pixels` is refused before decoding (400). Unsafe requests
from another site's page are refused (403), and every response carries headers that keep
browsers from sniffing, framing or leaking it (:class:`Guard`). Nothing is fetched from the
internet, by the server or by the page.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
import threading
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, AsyncIterator, Sequence

from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, Headers, MutableHeaders, UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..device import resolve_device
from ..errors import ImageError, PainterlyError, SettingsError
from ..encoder import deepest_layer, smallest_input_side
from ..gatys import PRESETS, STYLE_LOSSES, get_preset
from ..losses import normalized_weights
from ..images import MIN_SIZE, check_min_side, load_image, resize_longer_side
from ..weights import BUNDLED_DECODER_PATH, REGISTRY, is_cached, is_registry_name, load_weights
from ..reproduce import describe_input
from .form import FORM_FIELDS, Limits, parse_settings
from .jobs import JobQueue, JobRequest, QueueFull, working_size
from .openapi import openapi_document

__all__ = ["FORM_FIELDS", "Limits", "StudioServer", "create_app", "parse_job"]

#: Content-Security-Policy of the page: it may talk to this server only, never to the internet.
PAGE_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src 'self' blob: data:; connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
#: Uploads decoded at once (each in a worker thread): a burst of requests cannot multiply the
#: memory that decoding takes.
DECODE_SLOTS = 2
#: On every response: no MIME sniffing, no framing by other sites, no Referer sent onwards.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
#: Methods that change something: refused when another site's page sends them.
UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


class RequestTooLarge(PainterlyError):
    """An upload over the size cap."""


def bundled_examples() -> dict[str, bytes]:
    """The example images shipped with painterly (a few small JPEGs), by file name without ``.jpg``."""
    folder = resources.files("painterly") / "examples"
    files = sorted((item.name, item) for item in folder.iterdir() if item.name.endswith(".jpg"))
    return {name[: -len(".jpg")]: item.read_bytes() for name, item in files}


def weights_ready(spec: str) -> bool:
    """A weight file that exists, ``random``, ``bundled`` when shipped, or a registry name whose
    files are cached."""
    if spec == "bundled":
        return BUNDLED_DECODER_PATH.is_file()
    if is_registry_name(spec):
        return is_cached(spec)
    return Path(spec).expanduser().is_file()


def methods_available(*, encoder: str = "auto", decoder: str = "auto") -> dict[str, dict[str, Any]]:
    """Each method with whether it can run now, and why not (AdaIN: ``encoder`` and ``decoder``
    as ``painterly serve --encoder/--decoder`` name them; ``auto`` as for painterly stylize)."""
    if encoder == decoder == "auto":
        released, bundled = is_cached("adain"), BUNDLED_DECODER_PATH.is_file()
        available, weights = released or bundled, "adain" if released else "bundled" if bundled else None
        if released:
            reason = None
        elif bundled:
            reason = ("the released AdaIN weights are not cached: painterly's bundled decoder for random weights "
                      "runs instead: the photo in the painting's palette and brushwork")
        else:
            reason = "neither the released AdaIN weights nor the bundled decoder are installed: run painterly stylize once"
    else:
        missing = [spec for spec in dict.fromkeys((encoder, decoder)) if spec != "auto" and not weights_ready(spec)]
        available, weights = not missing, f"{encoder} + {decoder}"
        reason = None
        if missing:
            reason = f"the AdaIN weights {' and '.join(missing)} are not cached or not found: " + (
                "run painterly stylize once to download them" if set(missing) <= {"adain", "vgg19-normalised"}
                else "give existing files to painterly serve --encoder/--decoder")
    return {
        "optimize": {"available": True, "label": "Optimisation (Gatys et al.)", "reason": None},
        "stylize": {"available": available, "label": "AdaIN (fast)", "weights": weights, "reason": reason},
    }


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(host_header: str) -> str:
    """The name in a Host header, without its port: ``[::1]:8000`` -> ``::1``."""
    host_header = host_header.strip().lower()
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class Guard:
    """ASGI middleware in front of every route.

    * With ``allowed_hosts``, a Host header naming another host gets 400 (DNS rebinding);
      IPv6 literals are understood (``[::1]:8000``).
    * A request that changes something (POST, DELETE ...) sent by another site's page gets 403:
      its ``Origin`` must be this server's own, or, without one, ``Sec-Fetch-Site`` must be
      ``same-origin`` or ``none``. Clients that send neither (curl, scripts) are not browsers
      acting for a web page, and pass.
    * Every response gets :data:`SECURITY_HEADERS`.
    """

    def __init__(self, app: ASGIApp, *, allowed_hosts: Sequence[str] | None = None) -> None:
        self.app = app
        self.allowed_hosts = {host_name(host) for host in allowed_hosts} if allowed_hosts else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await (refusal or self.app)(scope, receive, send_with_headers)

    def refusal(self, scope: Scope) -> Response | None:
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if self.allowed_hosts is not None and host_name(host) not in self.allowed_hosts:
            return PlainTextResponse("Invalid host header", status_code=400)
        if scope["method"] not in UNSAFE_METHODS:
            return None
        origin = headers.get("origin")
        if origin is not None:
            own = f"{scope.get('scheme', 'http')}://{host}".lower()
            if origin.strip().lower() != own:
                return error(403, f"cross-site request refused: origin {origin[:80]!r} is not this studio's")
        elif headers.get("sec-fetch-site", "none").lower() not in ("same-origin", "none"):
            return error(403, "cross-site request refused: sent by another site's page")
        return None


def encoder_flavour(weights: str) -> str:
    """The encoder layout optimisation will run with, for the smallest image it can take; a
    weight file is read now, so a bad one stops the studio at start, not every job later."""
    if weights in ("auto", "random"):
        return "torchvision"  # the presets' vgg19, or random weights in its layout
    if is_registry_name(weights):
        if "encoder" not in REGISTRY[weights].files:
            raise SettingsError(f"weights {weights!r} have no encoder for optimisation")
        return REGISTRY[weights].files["encoder"].layout
    return load_weights(weights, role="encoder")[1]


@dataclass(frozen=True)
class Studio:
    """What the routes share, kept on ``app.state.studio``: the page, the examples, the weights
    and device, the limits, and the slots that bound decoding."""

    page: bytes
    examples: dict[str, bytes]
    device: Any
    weights: str
    encoder: str
    decoder: str
    flavour: str
    limits: Limits
    decodes: asyncio.Semaphore


def create_app(
    *,
    device: str = "auto",
    weights: str = "auto",
    encoder: str = "auto",
    decoder: str = "auto",
    limits: Limits = Limits(),
    allowed_hosts: Sequence[str] | None = None,
) -> Starlette:
    """The studio as an ASGI app; its job queue starts and stops with the app's lifespan.

    ``weights`` is what optimisation uses, as ``painterly optimize --weights`` (``auto``: the
    preset's pretrained weights if cached or downloadable, else seeded random ones);
    ``encoder`` and ``decoder`` are AdaIN's, as ``painterly stylize`` takes them (a trained
    decoder file with ``random`` or a VGG-19 file works offline).
    ``allowed_hosts`` restricts the Host header (a guard against DNS rebinding when serving
    on loopback); None allows any.
    """
    studio = Studio(page=(resources.files("painterly.server") / "static" / "index.html").read_bytes(),
                    examples=bundled_examples(), device=resolve_device(device), weights=weights, encoder=encoder,
                    decoder=decoder, flavour=encoder_flavour(weights), limits=limits,
                    decodes=asyncio.Semaphore(DECODE_SLOTS))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.queue = JobQueue(device=studio.device, weights=weights, encoder=encoder, decoder=decoder,
                                   queue_size=limits.queue_size, max_jobs=limits.max_jobs, job_ttl=limits.job_ttl)
        try:
            yield
        finally:
            await run_in_threadpool(app.state.queue.close)

    middleware = [Middleware(Guard, allowed_hosts=list(allowed_hosts) if allowed_hosts else None)]
    app = Starlette(routes=ROUTES, middleware=middleware, lifespan=lifespan, exception_handlers={HTTPException: http_error})
    app.state.studio = studio
    return app


def queue(request: Request) -> JobQueue:
    return request.app.state.queue


def studio_of(request: Request) -> Studio:
    return request.app.state.studio


async def index(request: Request) -> Response:
    return Response(studio_of(request).page, media_type="text/html",
                    headers={"Content-Security-Policy": PAGE_POLICY, "Cache-Control": "no-cache"})


async def info(request: Request) -> Response:
    studio = studio_of(request)
    limits = studio.limits
    return JSONResponse(
        {
            "version": __version__,
            "device": str(studio.device),
            "weights": studio.weights,
            "adain_weights": {"encoder": studio.encoder, "decoder": studio.decoder},
            "methods": methods_available(encoder=studio.encoder, decoder=studio.decoder),
            "limits": asdict(limits) | {"min_size": MIN_SIZE, "workers": queue(request).workers,
                                        "max_decode_pixels": limits.max_decode_pixels},
            "defaults": limits.defaults(),
            "presets": list(PRESETS),
            "preset_tv_weights": {name: preset.tv_weight for name, preset in PRESETS.items()},
            "style_losses": list(STYLE_LOSSES),
            "examples": [example_entry(name) for name in studio.examples],
        }
    )


async def openapi(request: Request) -> Response:
    studio = studio_of(request)
    return JSONResponse(openapi_document(limits=studio.limits, examples=list(studio.examples)))


async def list_examples(request: Request) -> Response:
    return JSONResponse([example_entry(name) for name in studio_of(request).examples])


async def get_example(request: Request) -> Response:
    name, examples = request.path_params["name"], studio_of(request).examples
    if name not in examples:
        return error(404, f"no example named {name!r}")
    return Response(examples[name], media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})


async def create_job(request: Request) -> Response:
    studio = studio_of(request)
    try:
        queue(request).check_room()  # before reading, let alone decoding, anything
        form = await read_form(request, studio.limits)
        try:
            decoding = Decoding(slots=studio.decodes, max_pixels=studio.limits.max_decode_pixels, flavour=studio.flavour)
            adain = methods_available(encoder=studio.encoder, decoder=studio.decoder)
            job = queue(request).submit(await parse_job(form, limits=studio.limits, examples=studio.examples,
                                                         decoding=decoding, adain=adain))
        finally:
            await form.close()
    except RequestTooLarge as problem:
        return error(413, str(problem))
    except QueueFull as problem:
        return error(429, str(problem), headers={"Retry-After": "5"})
    except (SettingsError, ImageError) as problem:
        return error(400, str(problem))
    status = queue(request).status(job.id)
    return JSONResponse(status, status_code=202, headers={"Location": f"/api/jobs/{job.id}"})


async def job_status(request: Request) -> Response:
    status = queue(request).status(request.path_params["id"])
    if status is None:
        return unknown_job(request)
    return JSONResponse(status, headers={"Cache-Control": "no-store"})


async def cancel_job(request: Request) -> Response:
    status = queue(request).cancel(request.path_params["id"])
    if status is None:
        return unknown_job(request)
    return JSONResponse(status, status_code=202 if status["status"] == "running" else 200)


async def job_preview(request: Request) -> Response:
    if queue(request).status(request.path_params["id"]) is None:
        return unknown_job(request)
    preview = queue(request).preview(request.path_params["id"])
    if preview is None:
        return error(404, "no preview yet: optimisation shows one after its first iteration")
    return Response(preview, media_type="image/png", headers={"Cache-Control": "no-store"})


async def job_result(request: Request) -> Response:
    job_id = request.path_params["id"]
    found = queue(request).result(job_id)
    if found is None:
        return unknown_job(request)
    status, path = found
    if path is None:
        return error(409, f"job {job_id} has no result: it is {status}")
    try:
        data = await run_in_threadpool(path.read_bytes)
    except FileNotFoundError:  # evicted between the lookup and the read
        return unknown_job(request)
    job = queue(request).status(job_id) or {}
    name = download_name(job.get("content", "result"), (job.get("styles") or ["style"])[0])
    return Response(data, media_type="image/png", headers={"Content-Disposition": f'attachment; filename="{name}"'})


async def http_error(request: Request, problem: Exception) -> Response:
    assert isinstance(problem, HTTPException)
    return error(problem.status_code, str(problem.detail))


ROUTES = [
    Route("/", index),
    Route("/api/info", info),
    Route("/api/openapi.json", openapi),
    Route("/api/examples", list_examples),
    Route("/api/examples/{name}", get_example),
    Route("/api/jobs", create_job, methods=["POST"]),
    Route("/api/jobs/{id}", job_status),
    Route("/api/jobs/{id}", cancel_job, methods=["DELETE"]),
    Route("/api/jobs/{id}/preview", job_preview),
    Route("/api/jobs/{id}/result", job_result),
]


def error(status: int, message: str, *, headers: dict[str, str] | None = None) -> JSONResponse:
    """Every error the API gives: ``{"error": message}`` with its HTTP status."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def unknown_job(request: Request) -> JSONResponse:
    return error(404, f"no job {request.path_params['id']!r} (unknown, or finished long ago and evicted)")


def example_entry(name: str) -> dict[str, str]:
    return {"name": name, "url": f"/api/examples/{name}"}


def download_name(content: str, style: str) -> str:
    """``{content}_{style}.png`` as the CLI names outputs, with only safe characters."""
    stem = "_".join(re.sub(r"[^A-Za-z0-9_-]+", "-", part.rsplit(".", 1)[0])[:40] for part in (content, style))
    return f"{stem}.png"


async def read_form(request: Request, limits: Limits) -> FormData:
    """The multipart form, read only as far as ``limits.max_upload_bytes`` (else RequestTooLarge)."""
    too_large = RequestTooLarge(f"the upload is over the studio's limit of {limits.max_upload_bytes / 2**20:g} MB")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_upload_bytes:
        raise too_large
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limits.max_upload_bytes:  # a chunked upload announces no length
            raise too_large
        chunks.append(chunk)
    body = b"".join(chunks)

    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    return await Request(request.scope, replay).form(max_files=limits.max_styles + 1, max_fields=32)


@dataclass(frozen=True)
class Decoding:
    """How uploads are decoded: ``slots`` bounds decodes at once, ``max_pixels`` caps what a
    header may declare, ``flavour`` is optimisation's encoder layout (its smallest image side)."""

    slots: asyncio.Semaphore
    max_pixels: int
    flavour: str = "torchvision"


async def parse_job(form: FormData, *, limits: Limits, examples: dict[str, bytes], decoding: Decoding | None = None,
                    adain: dict[str, dict[str, Any]] | None = None) -> JobRequest:
    """Validate the form (:class:`SettingsError`, :class:`ImageError`) into a job request.

    The settings are read as their declarations say (:func:`.form.parse_settings`; a field not
    in :data:`.form.FORM_FIELDS` is refused). ``content`` and each ``style`` are an uploaded
    file or the name of a bundled example. Images too small or too thin for the method at this
    size are refused here, at submit. ``adain``: :func:`methods_available`'s answer.
    """
    values = parse_settings(form, limits)
    method = values["method"]
    availability = (adain or methods_available())[method]
    if not availability["available"]:
        raise SettingsError(f"method {method!r} is not available: {availability['reason']}")
    contents, styles = form.getlist("content"), form.getlist("style")
    if len(contents) != 1:
        raise SettingsError("give one content image: a file or the name of an example")
    if not styles:
        raise SettingsError("give at least one style image: a file or the name of an example")
    if len(styles) > limits.max_styles:
        raise SettingsError(f"{len(styles)} style images given: the studio takes up to {limits.max_styles}")
    if values["style_weights"] is not None:
        normalized_weights(values["style_weights"], len(styles))  # raises for a wrong count or bad values
    decoding = decoding or Decoding(slots=asyncio.Semaphore(DECODE_SLOTS), max_pixels=limits.max_decode_pixels)
    min_side = smallest_side(method, values["preset"], decoding.flavour)
    size = values["size"]
    content, content_name, content_entry = await read_image(contents[0], "content", examples,
                                                            working_size(method, "content", size),
                                                            decoding=decoding, min_side=min_side)
    loaded = [await read_image(style, "style", examples, working_size(method, "style", size), decoding=decoding,
                               min_side=min_side) for style in styles]
    return JobRequest(
        inputs={"content": [content_entry], "style": [entry for _, _, entry in loaded]},
        method=method,
        content=content,
        styles=tuple(image for image, _, _ in loaded),
        content_name=content_name,
        style_names=tuple(name for _, name, _ in loaded),
        values=values,
    )


def smallest_side(method: str, preset: str, flavour: str) -> int:
    """The shortest image side the method can take (optimisation's: the preset's deepest layer's)."""
    if method == "stylize":
        from ..adain import MIN_SIDE

        return MIN_SIDE
    settings = get_preset(preset)
    return smallest_input_side(flavour=flavour, last_layer=deepest_layer(settings.content_layers + settings.style_layers))


async def read_image(item: UploadFile | str, field: str, examples: dict[str, bytes], size: int, *,
                     decoding: Decoding, min_side: int = 1) -> tuple[Image.Image, str, dict[str, str]]:
    """Decode an uploaded file, or a bundled example by name, at ``size`` pixels on its longer
    side: ``(image, name for metadata, the input as recorded for painterly reproduce)``. At most ``decoding.slots`` decodes run at once; a
    header declaring more than ``decoding.max_pixels`` is refused, and an image whose shorter
    side would fall under ``min_side`` at ``size`` too."""
    if isinstance(item, str):
        name = item.strip()
        if name not in examples:
            raise SettingsError(f"{field}: no example named {name[:60]!r}; the examples are {', '.join(examples)}")
        data, label = examples[name], f"{name}.jpg"
    else:
        data = await item.read()
        label = (item.filename or field).replace("\\", "/").rsplit("/", 1)[-1][:100]
    async with decoding.slots:
        try:
            image = await run_in_threadpool(lambda: load_image(data, reduce_to=size, max_pixels=decoding.max_pixels))
        except ImageError as problem:
            raise ImageError(f"{field} file {label!r} refused: {problem}") from None
        check_min_side(image.size, size, min_side=min_side, what=f"{field} file {label!r}")
        return await run_in_threadpool(resize_longer_side, image, size), label, describe_input(data, name=label)


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: one the OS picks)."""
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as problem:
        raise PainterlyError(f"cannot listen on {host}:{port} ({problem.strerror or problem})") from None
    return sock


class StudioServer:
    """Serve ``app`` with uvicorn on a socket from :func:`listen`.

    :meth:`run` blocks until Ctrl+C (the CLI); as a context manager it serves from a background
    thread until the block ends (tests, notebooks). ``url`` is where the page is.
    """

    def __init__(self, app: Starlette, *, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        self.socket = listen(host, port)
        bound_host, bound_port = self.socket.getsockname()[:2]
        self.url = f"http://{f'[{bound_host}]' if ':' in bound_host else bound_host}:{bound_port}/"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread: threading.Thread | None = None

    def run(self) -> None:
        self.server.run(sockets=[self.socket])

    def __enter__(self) -> "StudioServer":
        self.thread = threading.Thread(target=self.run, name="painterly-studio", daemon=True)
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise PainterlyError("the studio server stopped while starting")
            self.thread.join(timeout=0.02)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=60)
        self.socket.close()
