"""The studio's job queue: bounded, one worker thread per device, results in a temporary folder.

A job holds images already at the size they are used at (:func:`working_size`) and settings,
never a client's path. The queue refuses new jobs
(:class:`QueueFull`) when ``workers + queue_size`` jobs are waiting or running, so a flood of
requests costs memory for at most that many jobs. Finished jobs are kept for ``job_ttl``
seconds, at most ``max_jobs`` of them; older ones are evicted with their result files, and the
folder is removed when the queue is closed.
"""

from __future__ import annotations

import io
import logging
import tempfile
import threading
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..errors import Cancelled, PainterlyError
from ..gatys import Progress, get_preset, optimize
from ..weights import choose_weights
from ..images import save_image, tensor_to_image

logger = logging.getLogger(__name__)

#: Methods, by the name the API, the form and the PNG metadata use.
METHODS = ("optimize", "stylize")  # painterly.optimize and painterly.stylize (AdaIN)
FINISHED = ("done", "failed", "cancelled")
#: The live preview is re-encoded at most this often (seconds); the last iteration always is.
PREVIEW_INTERVAL = 0.25


class QueueFull(PainterlyError):
    """Every worker is busy and the waiting line is full."""


@dataclass(frozen=True)
class JobRequest:
    """One transfer, validated: decoded images and settings (names as in the CLI and the API)."""

    method: str
    content: Image.Image
    styles: tuple[Image.Image, ...]
    content_name: str
    style_names: tuple[str, ...]
    #: Every studio setting by name (:data:`painterly.server.form.STUDIO_FIELDS`), parsed; None
    #: where the method's own default applies (the preset's, or the random-features profile's).
    values: dict[str, Any] = field(default_factory=dict, compare=False)
    #: Each input's name, SHA-256 and example name, as outputs record them (:mod:`painterly.reproduce`).
    inputs: dict[str, list[dict[str, str]]] = field(default_factory=dict, compare=False)

    @property
    def seed(self) -> int:
        return self.values["seed"]

    @property
    def iterations(self) -> int:
        return self.values["iterations"]

    def method_settings(self) -> dict[str, Any]:
        """The keywords of the method's own studio settings."""
        from .form import method_settings

        return method_settings(self.method, self.values)

    def settings(self) -> dict[str, Any]:
        """The settings as the status reports them (the method's own ones only)."""
        common = {"size": self.values["size"], "style_weights": self.values["style_weights"]}
        if self.method == "stylize":
            return {**common, **self.method_settings()}
        preset = self.values["preset"]
        tv_weight = self.values["tv_weight"]
        return {**common, **self.method_settings(), "preset": preset, "seed": self.seed,
                "tv_weight": tv_weight if tv_weight is not None else get_preset(preset).tv_weight}


@dataclass
class Job:
    """A job's state; the worker writes it under the queue's lock, handlers read snapshots."""

    request: JobRequest
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    status: str = "queued"  # queued, running, done, failed, cancelled
    iteration: int = 0
    losses: dict[str, float] = field(default_factory=dict)
    history: list[float] = field(default_factory=list)  # total loss per iteration
    note: str | None = None  # what the worker is doing, or why it fell back to other weights
    error: str | None = None
    weights: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    preview: bytes | None = None
    preview_iteration: int = 0
    #: Iterations over all scales, once the run has said how many scales it has.
    total_iterations: int | None = None
    result_path: Path | None = None
    cancel_requested: threading.Event = field(default_factory=threading.Event)

    @property
    def iterations(self) -> int:
        if self.request.method != "optimize":
            return 1
        return self.total_iterations or self.request.iterations

    def snapshot(self, *, position: int | None) -> dict[str, Any]:
        """The JSON status: progress, losses, links."""
        end = self.finished or time.time()
        return {
            "id": self.id,
            "method": self.request.method,
            "status": self.status,
            "position": position,
            "iteration": self.iteration,
            "iterations": self.iterations,
            "losses": dict(self.losses),
            "history": list(self.history),
            "note": self.note,
            "error": self.error,
            "weights": self.weights,
            "content": self.request.content_name,
            "styles": list(self.request.style_names),
            "settings": self.request.settings(),
            "seconds": round(end - self.started, 3) if self.started else 0.0,
            "preview_iteration": self.preview_iteration,
            "preview_url": f"/api/jobs/{self.id}/preview" if self.preview is not None else None,
            "result_url": f"/api/jobs/{self.id}/result" if self.status == "done" else None,
        }


class JobQueue:
    """Runs jobs one at a time per worker on ``device``; see the module docstring for limits."""

    def __init__(
        self,
        *,
        device: str | torch.device = "cpu",
        weights: str = "auto",
        encoder: str = "auto",
        decoder: str = "auto",
        workers: int = 1,
        queue_size: int = 4,
        max_jobs: int = 50,
        job_ttl: float = 3600.0,
    ) -> None:
        self.device = device
        self.weights = weights
        self.encoder, self.decoder = encoder, decoder
        self.workers = workers
        self.queue_size = queue_size
        self.max_jobs = max_jobs
        self.job_ttl = job_ttl
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._waiting: deque[Job] = deque()
        self._running = 0
        self._closed = False
        self._lock = threading.Condition()
        self._folder = tempfile.TemporaryDirectory(prefix="painterly-studio-")
        self._threads = [threading.Thread(target=self._work, name=f"painterly-worker-{i}", daemon=True) for i in range(workers)]
        for thread in self._threads:
            thread.start()

    @property
    def folder(self) -> Path:
        """Where results are kept until evicted; removed by :meth:`close`."""
        return Path(self._folder.name)

    @property
    def capacity(self) -> int:
        return self.workers + self.queue_size

    def check_room(self) -> None:
        """:class:`QueueFull` now if a job could not be queued: checked before a request's
        images are read, so a flood costs no decoding."""
        with self._lock:
            self._check_room()

    def _check_room(self) -> None:
        if self._closed:
            raise QueueFull("the studio is shutting down")
        if len(self._waiting) + self._running >= self.capacity:
            raise QueueFull(f"the studio is busy ({self._running} running, {len(self._waiting)} waiting): try again shortly")

    def submit(self, request: JobRequest) -> Job:
        """Queue ``request``; :class:`QueueFull` when ``capacity`` jobs are waiting or running."""
        with self._lock:
            self._check_room()
            self._evict()
            job = Job(request)
            self._jobs[job.id] = job
            self._waiting.append(job)
            self._lock.notify()
            return job

    def status(self, job_id: str) -> dict[str, Any] | None:
        """A snapshot of the job's status, or None for an unknown (or evicted) job."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            position = self._waiting.index(job) + 1 if job.status == "queued" else None
            return job.snapshot(position=position)

    def preview(self, job_id: str) -> bytes | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return job.preview if job is not None else None

    def result(self, job_id: str) -> tuple[str, Path | None] | None:
        """``(status, result file or None)``, or None for an unknown job."""
        with self._lock:
            job = self._jobs.get(job_id)
            return (job.status, job.result_path) if job is not None else None

    def cancel(self, job_id: str) -> dict[str, Any] | None:
        """Cancel a waiting or running job; forget a finished one. Returns the last status."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            if job.status == "queued":
                self._waiting.remove(job)
                self._finish(job, "cancelled")
            elif job.status == "running":
                job.cancel_requested.set()  # the progress callback raises Cancelled
            else:
                self._forget(job)
            return job.snapshot(position=None)

    def close(self) -> None:
        """Cancel everything, stop the workers and remove the results folder."""
        with self._lock:
            self._closed = True
            for job in list(self._jobs.values()):
                job.cancel_requested.set()
            self._lock.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)
        self._folder.cleanup()

    # -- the worker ------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._closed:
                    self._lock.wait()
                if self._closed:
                    return
                job = self._waiting.popleft()
                job.status, job.started = "running", time.time()
                self._running += 1
            outcome: tuple[str, str | None, Path | None] = ("failed", "the worker stopped", None)
            try:
                outcome = self._run(job)
            finally:
                with self._lock:
                    self._running -= 1
                    self._finish(job, *outcome)

    def _run(self, job: Job) -> tuple[str, str | None, Path | None]:
        """Run one job: ``(status, error message, result file)``."""
        try:
            image, metadata = self._stylize(job) if job.request.method == "stylize" else self._optimize(job)
            path = self.folder / f"{job.id}.png"
            save_image(image, path, metadata=metadata)
            return "done", None, path
        except Cancelled:
            return "cancelled", None, None
        except PainterlyError as error:
            return "failed", str(error), None
        except Exception as error:  # a bug must fail the job, not kill the worker
            logger.exception("job %s failed", job.id)
            return "failed", f"internal error ({type(error).__name__}: {error})", None

    def _optimize(self, job: Job) -> tuple[Image.Image, dict[str, Any]]:
        request = job.request
        last_preview = 0.0
        done_before = {1: 0}  # iterations of the scales before each scale (coarse to fine)

        def on_iteration(progress: Progress) -> None:
            nonlocal last_preview
            if job.cancel_requested.is_set():
                raise Cancelled("cancelled from the studio")
            preview = None
            now = time.monotonic()
            last = progress.iteration == progress.iterations
            if now - last_preview >= PREVIEW_INTERVAL or last:
                preview, last_preview = png_bytes(tensor_to_image(progress.image.cpu())), now
            offset = done_before[progress.scale]
            if last:
                done_before[progress.scale + 1] = offset + progress.iterations
            with self._lock:
                # One count over all scales; later scales are assumed as long as this one.
                job.iteration = offset + progress.iteration
                job.total_iterations = offset + progress.iterations * (progress.scales - progress.scale + 1)
                job.losses = dict(progress.losses)
                job.history.append(progress.losses["total"])
                job.note = None
                if preview is not None:
                    job.preview, job.preview_iteration = preview, job.iteration

        def on_download(done: int, total: int | None) -> None:
            self._check_cancelled(job)  # the partial download is removed
            size = f" of {total / 1e6:.0f} MB" if total else ""
            job.note = f"downloading weights: {done / 1e6:.0f} MB{size}"

        self._check_cancelled(job)
        job.note = "loading weights"
        # Resolved here, not inside optimize, so the status names the weights from the start.
        spec, fallback = choose_weights(self.weights, preferred=get_preset(request.values["preset"]).weights,
                                        progress=on_download)
        with self._lock:
            job.weights = f"random(seed={request.seed})" if spec == "random" else str(spec)
            job.note = fallback or "loading weights"
        result = optimize(request.content, list(request.styles), preset=request.values["preset"], weights=spec,
                          style_weights=request.values["style_weights"], seed=request.seed, device=self.device,
                          callback=on_iteration, download_progress=on_download, **request.method_settings())
        with self._lock:
            job.weights, job.note = result.weights, fallback
        return result.image, {**result.metadata(), **self._names(request)}

    def _stylize(self, job: Job) -> tuple[Image.Image, dict[str, Any]]:
        from ..adain import load_model, stylize  # loads nothing until an AdaIN job comes

        request = job.request

        def on_tile(done: int, total: int) -> None:  # once per tile, once in all for small images
            self._check_cancelled(job)
            with self._lock:
                job.iteration, job.note = done, f"tile {done} of {total}" if total > 1 else None

        self._check_cancelled(job)
        job.note = "loading weights"
        model = load_model(encoder=self.encoder, decoder=self.decoder, seed=request.seed, device=self.device)
        with self._lock:  # the status names the weights before the image is painted
            job.weights = f"{model.encoder_label} + {model.decoder_label}"
        # The form's size is the output's: AdaIN's content size.
        result = stylize(request.content, list(request.styles), content_size=request.values["size"], seed=request.seed,
                         model=model, callback=on_tile, **request.method_settings())
        with self._lock:
            job.note = model.weights_note
        return result.image, {**result.metadata(), **self._names(request)}

    @staticmethod
    def _names(request: JobRequest) -> dict[str, Any]:
        return {"content": request.content_name, "style": list(request.style_names), "inputs": request.inputs,
                "painterly.source": "studio"}

    @staticmethod
    def _check_cancelled(job: Job) -> None:
        if job.cancel_requested.is_set():
            raise Cancelled("cancelled from the studio")

    # -- bookkeeping, under the lock ---------------------------------------------------------------

    def _finish(self, job: Job, status: str, error: str | None = None, path: Path | None = None) -> None:
        job.status, job.error, job.result_path, job.finished = status, error, path, time.time()

    def _forget(self, job: Job) -> None:
        self._jobs.pop(job.id, None)
        if job.result_path is not None:
            job.result_path.unlink(missing_ok=True)

    def _evict(self) -> None:
        finished = [job for job in self._jobs.values() if job.status in FINISHED]
        expired = time.time() - self.job_ttl
        excess = len(finished) - self.max_jobs + 1  # room for the job about to be added
        for index, job in enumerate(finished):  # oldest first: the dict keeps creation order
            if index < excess or (job.finished or 0) < expired:
                self._forget(job)


def working_size(method: str, role: str, size: int) -> int:
    """The longer side the method uses an input at: the output's size, except AdaIN's styles,
    which it encodes at its own default size. Inputs are shrunk to it on arrival (the method's
    own resize is then a no-op), so a waiting job holds small images, not whole uploads."""
    if method == "stylize" and role == "style":
        from ..adain import DEFAULT_STYLE_SIZE

        return DEFAULT_STYLE_SIZE
    return size


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)  # a preview: speed over size
    return buffer.getvalue()
