"""Flicker (E_warp) and cost of painterly's video modes on a camera pan over a bundled painting.

Makes the clip (a window panning 2.5 px right and 0.5 px down a frame across shipwreck.jpg,
H.264 at 12 fps as a phone would save it), then stylises it with starry_night.jpg in each mode:
frame by frame, ``temporal`` at several strengths, ``hold_statistics``, and both. For each it
reports E_warp, the style distance (relu4_1 channel means and stds against the style's; lower
is closer to the style), the mean change from the per-frame result, and the seconds spent
stylising and in the sequential flow-and-encode stage. Writes JSON and a contact sheet of frame
12 in every mode.

    python benchmarks/video_flicker.py --decoder my_decoder.pth --out benchmarks/results/video
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from painterly.adain import AdaINModel, pad_to_multiple  # noqa: E402
from painterly.images import image_to_tensor  # noqa: E402
from painterly.losses import channel_mean_std  # noqa: E402
from painterly.speed import SpeedSettings  # noqa: E402
from painterly.temporal import frame_pair_flow  # noqa: E402
from painterly.video import _ffmpeg, read_frames, stylize_video  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "painterly" / "examples"
MODES = {
    "per-frame": {},
    "temporal 0.5": {"temporal": True, "temporal_strength": 0.5},
    "temporal 0.8": {"temporal": True, "temporal_strength": 0.8},
    "temporal 0.9": {"temporal": True, "temporal_strength": 0.9},
    "hold statistics": {"hold_statistics": True},
    "temporal 0.8 + hold": {"temporal": True, "temporal_strength": 0.8, "hold_statistics": True},
}


def make_pan(path: Path, *, frames: int, width: int, height: int) -> Path:
    painting = Image.open(EXAMPLES / "shipwreck.jpg").convert("RGB")
    data = []
    for t in range(frames):
        # A sub-pixel pan: Pillow's affine takes output -> input coordinates.
        moved = painting.transform(painting.size, Image.Transform.AFFINE, (1, 0, 2.5 * t, 0, 1, 0.5 * t),
                                   resample=Image.Resampling.BILINEAR)
        data.append(np.asarray(moved.crop((40, 40, 40 + width, 40 + height))).tobytes())
    subprocess.run([_ffmpeg(), "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
                    "-framerate", "12", "-i", "-", "-c:v", "libx264", "-crf", "20", "-pix_fmt", "yuv420p", str(path)],
                   input=b"".join(data), check=True)
    return path


def style_distance(model: AdaINModel, frames: list[np.ndarray], style: Image.Image) -> float:
    with torch.no_grad():
        target_mean, target_std = channel_mean_std(model.encode(pad_to_multiple(image_to_tensor(style))))
        total = 0.0
        for frame in frames:
            mean, std = channel_mean_std(model.encode(pad_to_multiple(image_to_tensor(Image.fromarray(frame)))))
            total += float(((mean - target_mean) ** 2).mean() + ((std - target_std) ** 2).mean())
    return total / len(frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decoder", required=True, help="a decoder trained with the seeded random encoder")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=224)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/video"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    clip = make_pan(args.out / "pan.mp4", frames=args.frames, width=args.width, height=args.height)
    model = AdaINModel.load(encoder="random", decoder=args.decoder, speed=SpeedSettings(precision="float32"))
    style = Image.open(EXAMPLES / "starry_night.jpg").convert("RGB").resize((256, 160), Image.Resampling.LANCZOS)
    rows, sheet, reference = {}, [], None
    for name, mode in MODES.items():
        stamps: dict[str, float] = {}

        def progress(stage: str, done: int, total: int) -> None:
            stamps.setdefault(stage, time.perf_counter())
            stamps[stage + " end"] = time.perf_counter()

        start = time.perf_counter()
        output = args.out / f"{name.replace(' ', '_').replace('+', 'and')}.mp4"
        result = stylize_video(clip, output, style, model=model, style_size=256, progress=progress, **mode)
        total = time.perf_counter() - start
        frames = list(read_frames(output))
        reference = frames if reference is None else reference
        rows[name] = {
            "warping_error": result.warping_error,
            "warping_error_as_stylised": result.warping_error_per_frame,
            "style_distance": style_distance(model, frames, style),
            "mean_change_from_per_frame": float(np.mean([np.abs(a.astype(float) - b).mean() for a, b in zip(frames, reference)])),
            "seconds_total": total,
            "seconds_stylising": stamps["stylising end"] - stamps.get("statistics", stamps["stylising"]),
            "seconds_flow_and_encode": stamps["encoding end"] - stamps["encoding"],
        }
        print(name, json.dumps(rows[name]), flush=True)
        sheet.append(Image.fromarray(frames[min(12, len(frames) - 1)]))
    flow_seconds = {}
    source = list(read_frames(clip))
    for preset in ("ultrafast", "fast", "medium"):
        begin = time.perf_counter()
        for previous, current in zip(source[:8], source[1:9]):
            frame_pair_flow(previous, current, preset=preset)
        flow_seconds[preset] = (time.perf_counter() - begin) / 8
    big = np.asarray(Image.fromarray(source[0]).resize((1280, 720)))
    begin = time.perf_counter()
    frame_pair_flow(big, np.roll(big, 4, axis=1))
    flow_seconds["medium 1280x720"] = time.perf_counter() - begin
    (args.out / "video_flicker.json").write_text(json.dumps({"modes": rows, "flow_pair_seconds": flow_seconds}, indent=1))
    print("flow pair seconds", flow_seconds)
    contact = Image.new("RGB", (args.width * 3, args.height * 2))
    for index, image in enumerate(sheet):
        contact.paste(image, ((index % 3) * args.width, (index // 3) * args.height))
    contact.save(args.out / "frame12_modes.png")


if __name__ == "__main__":
    main()
