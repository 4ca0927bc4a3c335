"""Videos: AdaIN frame by frame, optionally steadied over time, with the sound kept (the ``video`` extra).

The clip goes through three stages, so that the costly one can be shared and resumed:

1. (with ``hold_statistics``) each frame's content statistics, then smoothed within shots
   (:func:`painterly.temporal.smooth_statistics`);
2. each frame stylised on its own and kept as a PNG in a work folder beside the output. A run
   that stops (Ctrl-C, a crash, a full disk) leaves these frames, and the next run with the
   same settings reuses them; under ``torchrun`` each process takes a contiguous run of frames;
3. rank 0 streams the stylised frames through :class:`painterly.temporal.TemporalFilter`
   (the flow-guided blend with ``temporal``, and the flicker score E_warp in any case) into
   ffmpeg, then muxes the video with the input's audio, copied unchanged, and the settings
   in the container's ``comment`` tag into a temporary file renamed onto the output.

Stage 3 is the only sequential one, and it is cheap beside the networks (docs/video.md gives
the figures); because the blend runs there, a video made by several processes is the same as
one made by one, and trying another ``temporal_strength`` reuses every stylised frame.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field, fields
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from .distributed import SINGLE, Shard
from .errors import ImageError, PainterlyError, SettingsError
from .files import atomic_path
from .temporal import FLOW_PRESETS, TemporalFilter, frame_pair_flow, smooth_statistics, warp

#: Files read as videos; outputs are H.264 (VP9 for .webm).
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm")
#: How much of the warped previous output a visible pixel keeps (docs/video.md: the measurements).
DEFAULT_TEMPORAL_STRENGTH = 0.8
#: Weight of Ruder et al.'s short-term temporal loss in :func:`optimize_video` (docs/video.md).
DEFAULT_TEMPORAL_WEIGHT = 1e4
#: Frames on each side whose content statistics are averaged with ``hold_statistics``.
HOLD_RADIUS = 4

VideoProgress = Callable[[str, int, int], None]
"""Called with (stage, frames done, frames in the stage): stages ``statistics``, ``stylising``
(this process's frames) and ``encoding`` (all frames, rank 0)."""


@dataclass(frozen=True)
class VideoInfo:
    """What the output copies from the input."""

    frames: int
    fps: Fraction
    width: int
    height: int
    audio_codec: str | None


@dataclass
class VideoResult:
    """What :func:`stylize_video` did; ``path`` is None on ranks other than 0 (they write no file)."""

    path: Path | None
    frames: int
    fps: Fraction
    warping_error: float | None = None
    warping_error_per_frame: float | None = None
    reused_frames: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)


def _ffmpeg() -> str:
    try:
        import imageio_ffmpeg
    except ImportError:
        raise PainterlyError("videos need ffmpeg: pip install 'painterly[video]'") from None
    return imageio_ffmpeg.get_ffmpeg_exe()


def _run(arguments: list[str], *, what: str, frames: Iterable[bytes] = ()) -> None:
    """Run ffmpeg, feeding ``frames`` to its standard input; a failure becomes an ImageError
    with ffmpeg's last words (its log goes to a file: a full pipe would stall it)."""
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen([_ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", *arguments],
                                   stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log)
        try:
            for frame in frames:
                process.stdin.write(frame)
            process.stdin.close()
        except BrokenPipeError:
            pass  # ffmpeg stopped early: its exit code and log say why
        except BaseException:
            process.kill()
            process.wait()
            raise
        code = process.wait()
        if code != 0:
            log.seek(0)
            lines = [line for line in log.read().decode(errors="replace").splitlines() if line.strip()]
            raise ImageError(f"{what} ({lines[-1].strip()[:200] if lines else f'ffmpeg exit code {code}'})")


def frame_rate(fps: float) -> Fraction:
    """ffmpeg's rounded frame rate as a fraction: NTSC rates (29.97 and the like) are n/1.001."""
    ntsc = round(fps * 1.001)
    if abs(fps - ntsc / 1.001) < 0.005 and abs(fps - round(fps)) > 0.005:
        return Fraction(ntsc * 1000, 1001)
    return Fraction(fps).limit_denominator(1000)


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Frame count (by decoding), frame rate, size and audio codec of a video file."""
    _ffmpeg()
    import imageio_ffmpeg

    try:
        reader = imageio_ffmpeg.read_frames(str(path))
        meta = next(reader)
        reader.close()
        frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    except (OSError, RuntimeError, StopIteration, ValueError) as error:
        first = (str(error).strip().splitlines() or ["no video stream"])[0]
        raise ImageError(f"{path}: cannot be read as a video ({first[:120]})") from None
    if not frames:
        raise ImageError(f"{path}: the video has no frames")
    width, height = meta["size"]
    return VideoInfo(frames=frames, fps=frame_rate(float(meta.get("fps") or 25.0)), width=width, height=height,
                     audio_codec=meta.get("audio_codec"))


def read_frames(path: str | os.PathLike, *, start: int = 0, stop: int | None = None,
                info: VideoInfo | None = None) -> Iterator[np.ndarray]:
    """Frames ``start`` to ``stop`` (exclusive) as (H, W, 3) uint8, every decoded frame once
    (no frame-rate conversion), in the size :func:`probe_video` reports (pass its ``info`` if
    you have it: probing decodes the whole file to count the frames)."""
    info = info or probe_video(path)
    size = info.width * info.height * 3
    command = [_ffmpeg(), "-hide_banner", "-loglevel", "error", "-nostdin", "-i", str(path), "-map", "0:v:0",
               "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        index = 0
        while stop is None or index < stop:
            data = process.stdout.read(size)
            if len(data) < size:
                break
            if index >= start:
                yield np.frombuffer(data, np.uint8).reshape(info.height, info.width, 3)
            index += 1
    finally:
        process.kill()
        process.wait()


def _codec_arguments(suffix: str, width: int, height: int) -> list[str]:
    """H.264 (VP9 for WebM) in 4:2:0, which every player shows; odd sides need 4:4:4, whose
    chroma has every pixel, so the last row and column are kept rather than cropped away."""
    chroma = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
    if suffix == ".webm":
        return ["-c:v", "libvpx-vp9", "-crf", "24", "-b:v", "0", "-pix_fmt", chroma]
    return ["-c:v", "libx264", "-crf", "16", "-preset", "medium", "-pix_fmt", chroma]


def encode_frames(frames: Iterable[np.ndarray], path: Path, *, fps: Fraction, width: int, height: int) -> None:
    """Encode (H, W, 3) uint8 frames, video only, into ``path`` (its suffix picks the codec)."""
    arguments = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", str(fps),
                 "-i", "pipe:0", "-an", *_codec_arguments(path.suffix.lower(), width, height), str(path)]
    _run(arguments, what=f"{path}: cannot be encoded",
         frames=(np.ascontiguousarray(frame, dtype=np.uint8).tobytes() for frame in frames))


def mux(video: Path, destination: str | os.PathLike, *, audio_source: str | os.PathLike,
        comment: dict[str, Any]) -> Path:
    """Write ``destination`` atomically: ``video``'s stream, every audio track of ``audio_source``
    copied unchanged (and its container tags), and ``comment`` as JSON in the ``comment`` tag."""
    destination = Path(destination)
    with atomic_path(destination, error=ImageError) as temporary:
        faststart = ["-movflags", "+faststart"] if destination.suffix.lower() in (".mp4", ".mov") else []
        _run(["-nostdin", "-i", str(video), "-i", str(audio_source), "-map", "0:v:0", "-map", "1:a?", "-c", "copy",
              "-map_metadata", "1", "-metadata", f"comment={json.dumps(comment, sort_keys=True)}", *faststart,
              str(temporary)], what=f"{destination}: cannot be written")
    return destination


def read_video_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The settings :func:`stylize_video` put in a video's ``comment`` tag ({} if none)."""
    result = subprocess.run([_ffmpeg(), "-hide_banner", "-loglevel", "error", "-nostdin", "-i", str(path),
                             "-f", "ffmetadata", "-"], capture_output=True)
    if result.returncode != 0:
        raise ImageError(f"{path}: cannot be read as a video")
    for line in result.stdout.decode(errors="replace").splitlines():
        if line.startswith("comment="):
            # ffmetadata escapes = ; # \ and newlines with a backslash.
            text = re.sub(r"\\(.)", r"\1", line[len("comment="):])
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                return {"comment": text}
    return {}


def check_video_output(output: str | os.PathLike, *, inputs: Sequence[str | os.PathLike]) -> Path:
    """Refuse an output that is not a video file name, or that is one of the ``inputs``."""
    output = Path(output)
    if output.suffix.lower() not in VIDEO_SUFFIXES:
        raise SettingsError(f"{output}: a video's output must end in {', '.join(VIDEO_SUFFIXES)}")
    for source in inputs:
        if Path(source).exists() and output.exists() and output.resolve() == Path(source).resolve():
            raise SettingsError(f"{output}: refusing to overwrite an input")
    return output


def default_work_folder(destination: str | os.PathLike) -> Path:
    """Where stylised frames wait: a hidden folder beside the output, removed once it is written."""
    destination = Path(destination)
    return destination.with_name(f".{destination.name}.frames")


def stylize_video(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    style: Image.Image | Sequence[Image.Image],
    *,
    temporal: bool = False,
    temporal_strength: float = DEFAULT_TEMPORAL_STRENGTH,
    hold_statistics: bool = False,
    flow_preset: str = "medium",
    batch_size: int = 1,
    work_folder: str | os.PathLike | None = None,
    shard: Shard = SINGLE,
    metadata: dict[str, Any] | None = None,
    progress: VideoProgress | None = None,
    **options: Any,
) -> VideoResult:
    """Stylise every frame of ``source`` with AdaIN and write ``destination`` (the stages are in
    the module docstring); ``options`` are :func:`painterly.stylize_batch`'s (``model``, ``alpha``,
    ``content_size``...).

    - ``temporal``: blend each frame with the previous output warped along the input's optical
      flow where it is visible, o_t = (1 - s m) n_t + s m W(o_{t-1}), s = ``temporal_strength``
      (:func:`painterly.temporal.blend_with_previous`).
    - ``hold_statistics``: the content's relu4_1 statistics averaged over the frames within
      :data:`HOLD_RADIUS` of each frame in the same shot (costs one more encoder pass; not with masks).
    - ``flow_preset``: DIS flow's ``ultrafast``, ``fast`` or ``medium``.
    - ``work_folder``: where stylised frames are kept until the video is written (default:
      :func:`default_work_folder`); frames made with the same input, styles and settings are reused.
    - ``shard``: this process's share under torchrun; rank 0 writes the file.

    The output has the input's frame count, frame rate and size, its audio tracks copied, and
    in its ``comment`` tag the settings, seed, ``metadata`` and the flicker score E_warp
    (:func:`painterly.temporal.warping_error`) of the result and of the frames as stylised.
    """
    from .adain import load_model

    if Path(destination).resolve() == Path(source).resolve():
        raise SettingsError(f"{destination}: refusing to overwrite an input")
    if not 0.0 <= temporal_strength <= 1.0:
        raise SettingsError(f"temporal strength must be between 0 and 1, got {temporal_strength}")
    if flow_preset not in FLOW_PRESETS:
        raise SettingsError(f"flow preset must be one of {', '.join(FLOW_PRESETS)}, got {flow_preset!r}")
    requested = options.get("settings")
    if options.get("crop") or (requested is not None and requested.crop):
        raise SettingsError("crop is for still images: a video keeps its frame size (crop the clip first, with ffmpeg's crop filter)")
    if hold_statistics and options.get("masks") is not None:
        raise SettingsError("holding the content statistics does not combine with masks")
    styles = [style] if isinstance(style, Image.Image) else list(style)
    if options.get("model") is None:
        loading = {key: options.pop(key) for key in ("encoder", "decoder", "device", "speed") if key in options}
        options["model"] = load_model(seed=options.get("seed", 0), **loading)
    info = probe_video(source)
    work = Path(work_folder) if work_folder is not None else default_work_folder(destination)
    _prepare_work(work, _work_key(source, styles, options, hold_statistics), shard)
    held = _held_statistics(source, info, work, shard, options, progress) if hold_statistics else None
    reused = _stylise_frames(source, info, work, shard, styles, options, held, batch_size, progress)
    result = VideoResult(path=None, frames=info.frames, fps=info.fps, reused_frames=reused)
    if shard.is_main:
        temporal_settings = {"temporal": temporal, "temporal_strength": temporal_strength if temporal else None,
                             "hold_statistics": hold_statistics, "flow": flow_preset}
        result = _write(source, destination, info, work, temporal_settings, dict(metadata or {}), progress)
        result.reused_frames = reused
        shutil.rmtree(work, ignore_errors=True)
    shard.barrier()  # every rank returns once the file is there
    return result


def _fingerprint(value: Any) -> Any:
    """A JSON-able stand-in for a setting: images by their pixels' SHA-256."""
    if isinstance(value, Image.Image):
        return hashlib.sha256(np.asarray(value).tobytes() + str(value.size).encode()).hexdigest()
    if isinstance(value, (list, tuple)):
        return [_fingerprint(item) for item in value]
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


def _work_key(source: str | os.PathLike, styles: list[Image.Image], options: dict[str, Any], hold: bool) -> dict[str, Any]:
    """Everything the stylised frames depend on: a work folder made with another key is stale."""
    model = options["model"]
    stat = Path(source).stat()
    settings = {key: _fingerprint(value) for key, value in sorted(options.items()) if key != "model"}
    return {"source": str(Path(source).resolve()), "source_bytes": stat.st_size, "source_mtime_ns": stat.st_mtime_ns,
            "styles": _fingerprint(styles), "settings": settings, "hold_statistics": hold, "hold_radius": HOLD_RADIUS,
            "model": [model.encoder_label, model.decoder_label, model.precision, model.device.type]}


def _prepare_work(work: Path, key: dict[str, Any], shard: Shard) -> None:
    """Rank 0 empties a work folder left by other settings and records this run's key."""
    if shard.is_main:
        key_file = work / "key.json"
        try:
            stale = key_file.exists() and json.loads(key_file.read_text()) != key
        except (OSError, ValueError):
            stale = True
        if stale:
            shutil.rmtree(work, ignore_errors=True)
        try:
            (work / "statistics").mkdir(parents=True, exist_ok=True)
            if not key_file.exists():
                with atomic_path(key_file) as temporary:
                    temporary.write_text(json.dumps(key, sort_keys=True))
        except OSError as error:
            raise ImageError(f"{work}: cannot be written ({error})") from None
    shard.barrier()


def _at_size(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An input frame at the output's (width, height), as the output was made from it."""
    if (frame.shape[1], frame.shape[0]) == size:
        return frame
    return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.LANCZOS))


def _frame_path(work: Path, index: int) -> Path:
    return work / f"{index:06d}.png"


def _report(progress: VideoProgress | None, stage: str, done: int, total: int) -> None:
    if progress is not None:
        progress(stage, done, total)


def _held_statistics(source: str | os.PathLike, info: VideoInfo, work: Path, shard: Shard, options: dict[str, Any],
                     progress: VideoProgress | None) -> list[tuple[Any, Any]]:
    """Every frame's content statistics (this rank's share measured and kept in the work
    folder), smoothed within shots: one (mean, spread) per frame for :func:`stylize_batch`.
    WCT's spreads are covariances, 1 MB a frame in the work folder and in memory."""
    import torch

    from .adain import StylizeSettings, content_statistics

    # What stylize_batch will be given: a settings object, and keywords that change its fields.
    names = {item.name for item in fields(StylizeSettings)}
    changes = {key: value for key, value in options.items() if key in names}
    folder, chunk = work / "statistics", shard.chunk(info.frames)
    missing = [index for index in chunk if not (folder / f"{index:06d}.npz").exists()]
    done = len(chunk) - len(missing)
    _report(progress, "statistics", done, len(chunk))
    if missing:
        for index, frame in zip(chunk, read_frames(source, start=chunk.start, stop=chunk.stop, info=info)):
            if index in missing:
                [(mean, spread)] = content_statistics([Image.fromarray(frame)], model=options["model"],
                                                      settings=options.get("settings"), **changes)
                with atomic_path(folder / f"{index:06d}.npz", error=ImageError) as temporary:
                    with open(temporary, "wb") as file:
                        np.savez(file, mean=mean.flatten().numpy(),
                                 spread=spread.flatten().numpy() if spread.dim() == 4 else spread[0].numpy())
                done += 1
                _report(progress, "statistics", done, len(chunk))
    shard.barrier()
    measured = [np.load(folder / f"{index:06d}.npz") for index in range(info.frames)]
    means, spreads = smooth_statistics(np.stack([m["mean"] for m in measured]), np.stack([m["spread"] for m in measured]),
                                       radius=HOLD_RADIUS)
    return [(torch.from_numpy(m).view(1, -1, 1, 1),
             torch.from_numpy(s).view(1, -1, 1, 1) if s.ndim == 1 else torch.from_numpy(s).unsqueeze(0))
            for m, s in zip(means, spreads)]


def _stylise_frames(source: str | os.PathLike, info: VideoInfo, work: Path, shard: Shard, styles: list[Image.Image],
                    options: dict[str, Any], held: list[Any] | None, batch_size: int,
                    progress: VideoProgress | None) -> int:
    """Stylise this rank's frames that the work folder lacks, ``batch_size`` at a time; returns
    how many were there already."""
    from .adain import stylize_batch

    chunk = shard.chunk(info.frames)
    missing = {index for index in chunk if not _frame_path(work, index).exists()}
    reused = done = len(chunk) - len(missing)
    _report(progress, "stylising", done, len(chunk))
    batch: list[tuple[int, Image.Image]] = []

    def flush() -> None:
        nonlocal done, batch
        statistics = None if held is None else [held[index] for index, _ in batch]
        results = stylize_batch([image for _, image in batch], styles, batch_size=batch_size,
                                content_statistics=statistics, **options)
        for (index, _), result in zip(batch, results):
            if index == 0:  # the settings every frame shares, for the video's metadata
                with atomic_path(work / "settings.json", error=ImageError) as temporary:
                    temporary.write_text(json.dumps(result.metadata()))
            with atomic_path(_frame_path(work, index), error=ImageError) as temporary:
                result.image.save(temporary, format="PNG", compress_level=1)
        done += len(batch)
        batch = []
        _report(progress, "stylising", done, len(chunk))

    if missing:
        for index, frame in zip(chunk, read_frames(source, start=chunk.start, stop=chunk.stop, info=info)):
            if index in missing:
                batch.append((index, Image.fromarray(frame)))
            if len(batch) == batch_size:
                flush()
        if batch:
            flush()
    shard.barrier()
    return reused


def _write(source: str | os.PathLike, destination: str | os.PathLike, info: VideoInfo, work: Path,
           temporal: dict[str, Any], metadata: dict[str, Any], progress: VideoProgress | None) -> VideoResult:
    """Rank 0's stage: the temporal filter over the stylised frames, encoding, then the mux."""
    strength = temporal["temporal_strength"] or 0.0
    flicker = TemporalFilter(strength=strength, preset=temporal["flow"])
    with Image.open(_frame_path(work, 0)) as first:
        width, height = first.size

    def frames() -> Iterator[np.ndarray]:
        count = 0
        for index, frame in enumerate(read_frames(source, info=info)):
            path = _frame_path(work, index)
            if not path.exists():
                raise ImageError(f"{source}: frame {index} was not stylised (the video changed while it ran?)")
            with Image.open(path) as image:
                stylised = np.asarray(image.convert("RGB"))
            frame = _at_size(frame, (width, height))  # the flow is taken on the input at the output's size
            output = flicker.step(frame, stylised)
            yield stylised if strength == 0 else (np.clip(output, 0, 1) * 255 + 0.5).astype(np.uint8)
            count += 1
            _report(progress, "encoding", count, info.frames)
        if count != info.frames:
            raise ImageError(f"{source}: decoded {count} frames, expected {info.frames}")

    video = work / f"video{Path(destination).suffix.lower()}"
    encode_frames(frames(), video, fps=info.fps, width=width, height=height)
    settings = json.loads((work / "settings.json").read_text())
    comment = {**settings, **metadata, **temporal, "frames": info.frames, "fps": str(info.fps),
               "warping_error": flicker.warping_error, "warping_error_per_frame": flicker.warping_error_per_frame}
    path = mux(video, destination, audio_source=source, comment=comment)
    return VideoResult(path=path, frames=info.frames, fps=info.fps, warping_error=flicker.warping_error,
                       warping_error_per_frame=flicker.warping_error_per_frame, metadata=comment)


def optimize_video(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    style: Image.Image | Sequence[Image.Image],
    *,
    temporal_weight: float = DEFAULT_TEMPORAL_WEIGHT,
    flow_preset: str = "medium",
    work_folder: str | os.PathLike | None = None,
    metadata: dict[str, Any] | None = None,
    progress: VideoProgress | None = None,
    **options: Any,
) -> VideoResult:
    """Gatys optimisation of every frame (``options`` are :func:`painterly.optimize`'s), after
    Ruder et al. (2016): each frame after the first starts from the previous result warped
    along the input's optical flow and adds ``temporal_weight`` x their short-term temporal loss
    (:func:`painterly.losses.temporal_loss`) towards it where the flow is trusted. 0 gives
    independent frames (each from the preset's start).

    Frames depend on their predecessor, so this runs in one process; finished frames are kept in
    the work folder and an interrupted run resumes from them. The output is written as by
    :func:`stylize_video` (sound, metadata, E_warp); the long-term terms of Ruder et al. are not
    implemented.
    """
    from .gatys import optimize

    if Path(destination).resolve() == Path(source).resolve():
        raise SettingsError(f"{destination}: refusing to overwrite an input")
    if not temporal_weight >= 0:
        raise SettingsError(f"the temporal weight must be >= 0, got {temporal_weight}")
    if flow_preset not in FLOW_PRESETS:
        raise SettingsError(f"flow preset must be one of {', '.join(FLOW_PRESETS)}, got {flow_preset!r}")
    styles = [style] if isinstance(style, Image.Image) else list(style)
    info = probe_video(source)
    work = Path(work_folder) if work_folder is not None else default_work_folder(destination)
    stat = Path(source).stat()
    settings = {key: _fingerprint(value) for key, value in sorted(options.items())
                if key not in ("callback", "download_progress")}
    _prepare_work(work, {"method": "optimize", "source": str(Path(source).resolve()), "source_bytes": stat.st_size,
                         "source_mtime_ns": stat.st_mtime_ns, "styles": _fingerprint(styles), "settings": settings,
                         "temporal_weight": temporal_weight, "flow": flow_preset}, SINGLE)
    previous: tuple[np.ndarray, np.ndarray] | None = None  # the input at the output's size, the output
    reused = 0
    _report(progress, "optimising", 0, info.frames)
    for index, frame in enumerate(read_frames(source, info=info)):
        path = _frame_path(work, index)
        if path.exists():
            reused += 1
        else:
            temporal, init = None, options.get("init_image")
            if previous is not None and temporal_weight > 0:
                temporal = _temporal_target(frame, previous, temporal_weight, flow_preset)
                init = temporal[0]
            result = optimize(Image.fromarray(frame), styles, **{**options, "init_image": init, "temporal": temporal})
            if index == 0:
                with atomic_path(work / "settings.json", error=ImageError) as temporary:
                    temporary.write_text(json.dumps(result.metadata()))
            with atomic_path(path, error=ImageError) as temporary:
                result.image.save(temporary, format="PNG", compress_level=1)
        with Image.open(path) as image:
            output = np.asarray(image.convert("RGB"))
        previous = (_at_size(frame, (output.shape[1], output.shape[0])), output)
        _report(progress, "optimising", index + 1, info.frames)
    temporal_settings = {"temporal": temporal_weight > 0, "temporal_strength": None,
                         "temporal_weight": temporal_weight, "flow": flow_preset}
    result = _write(source, destination, info, work, temporal_settings, dict(metadata or {}), progress)
    result.reused_frames = reused
    shutil.rmtree(work, ignore_errors=True)
    return result


def _temporal_target(frame: np.ndarray, previous: tuple[np.ndarray, np.ndarray], weight: float,
                     preset: str) -> tuple[Image.Image, Image.Image, float]:
    """(the previous output warped onto ``frame``, where that is trusted, ``weight``) for
    :func:`painterly.optimize`'s ``temporal``; the flow is taken on the inputs at the output's size."""
    previous_input, previous_output = previous
    current = _at_size(frame, (previous_output.shape[1], previous_output.shape[0]))
    flow, mask = frame_pair_flow(previous_input, current, preset=preset)
    warped = np.clip(warp(previous_output.astype(np.float32) / 255.0, flow), 0, 1)
    return (Image.fromarray((warped * 255 + 0.5).astype(np.uint8)),
            Image.fromarray((mask * 255).astype(np.uint8), "L"), weight)
