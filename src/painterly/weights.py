"""Named weight sets: where they come from, how they are laid out, how they are fetched.

A weight file is downloaded once into torch's hub cache (``torch.hub.get_dir()/checkpoints``,
so files fetched by torchvision or torch.hub are reused), streamed to a temporary file that is
renamed only after its size, checksum (where known) and key layout have been verified.

Environment variables:

* ``PAINTERLY_OFFLINE=1`` never touches the network; a missing file is an error that names
  the URL and the path to put it at.
* ``PAINTERLY_WEIGHTS_MIRROR=URL`` fetches every file from ``URL/<file name>`` instead (a
  local mirror, or an HTTP server in the tests).
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from .errors import WeightsError
from .files import atomic_path, load_torch

Progress = Callable[[int, "int | None"], None]
"""Download progress: called with (bytes so far, total bytes or None)."""

# ---------------------------------------------------------------------------------------------
# Key layouts. VGG-19 has 16 3x3 convolutions; the layouts differ only in where they sit.

VGG19_CONV_NAMES = tuple(
    f"conv{block}_{index}"
    for block, count in enumerate((2, 2, 4, 4, 4), start=1)
    for index in range(1, count + 1)
)
VGG19_CONV_CHANNELS = (
    (3, 64), (64, 64),
    (64, 128), (128, 128),
    (128, 256), (256, 256), (256, 256), (256, 256),
    (256, 512), (512, 512), (512, 512), (512, 512),
    (512, 512), (512, 512), (512, 512), (512, 512),
)  # fmt: skip
#: Index of each conv in torchvision's ``features`` Sequential.
TORCHVISION_INDICES = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
#: Index of each conv in the AdaIN normalised VGG Sequential (index 0 is the 1x1 RGB->BGR conv).
NORMALISED_INDICES = (2, 5, 9, 12, 16, 19, 22, 25, 29, 32, 35, 38, 42, 45, 48, 51)
#: The AdaIN decoder, the one description its module, key layout and layer shapes are built
#: from: VGG-19 to relu4_1 mirrored, each (in, out) a reflection-padded 3x3 conv followed by a
#: ReLU (all but the last), each "up" a x2 nearest upsampling.
DECODER_PLAN: tuple[tuple[int, int] | str, ...] = (
    (512, 256), "up", (256, 256), (256, 256), (256, 256), (256, 128), "up",
    (128, 128), (128, 64), "up", (64, 64), (64, 3),
)  # fmt: skip


def _decoder_convs() -> dict[int, tuple[int, int]]:
    """Sequential index -> (in, out) of each conv: a pad, the conv and a ReLU take three
    indices, an upsampling one (the released ``decoder.pth`` keys)."""
    convs, index = {}, 0
    for step in DECODER_PLAN:
        if step == "up":
            index += 1
        else:
            convs[index + 1] = step
            index += 3
    return convs


#: The released AdaIN decoder: Sequential index -> (in, out) channels of each 3x3 conv.
DECODER_CONVS = _decoder_convs()

LAYOUTS = ("torchvision", "normalised", "decoder")


def layout_keys(layout: str, *, convs: int = 16) -> dict[str, tuple[int, ...]]:
    """Expected ``key -> shape`` of a layout; for the VGG layouts, its first ``convs`` convs."""
    shapes: dict[str, tuple[int, ...]] = {}
    if layout == "decoder":
        for index, (c_in, c_out) in DECODER_CONVS.items():
            shapes[f"{index}.weight"] = (c_out, c_in, 3, 3)
            shapes[f"{index}.bias"] = (c_out,)
        return shapes
    if layout == "torchvision":
        prefix, indices = "features.", TORCHVISION_INDICES
    elif layout == "normalised":
        prefix, indices = "", NORMALISED_INDICES
        shapes["0.weight"], shapes["0.bias"] = (3, 3, 1, 1), (3,)
    else:
        raise ValueError(f"unknown layout {layout!r}")
    for index, (c_in, c_out) in list(zip(indices, VGG19_CONV_CHANNELS))[:convs]:
        shapes[f"{prefix}{index}.weight"] = (c_out, c_in, 3, 3)
        shapes[f"{prefix}{index}.bias"] = (c_out,)
    return shapes


def detect_layout(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Name the layout of ``state_dict`` from its first keys; :class:`WeightsError` if none."""
    for layout in LAYOUTS:
        first = next(iter(layout_keys(layout, convs=1)))
        if first in state_dict:
            return layout
    sample = ", ".join(list(state_dict)[:4]) or "no keys"
    raise WeightsError(
        f"unrecognised weight layout (keys: {sample}); expected torchvision's VGG-19 "
        "(features.N.weight), the normalised VGG-19 (N.weight) or an AdaIN decoder"
    )


def check_layout(
    state_dict: Mapping[str, torch.Tensor], layout: str, *, convs: int = 16, name: str = "weights"
) -> None:
    """Raise :class:`WeightsError` unless ``state_dict`` has every key and shape of ``layout``."""
    for key, shape in layout_keys(layout, convs=convs).items():
        if key not in state_dict:
            raise WeightsError(f"{name}: key {key!r} of the {layout} layout is missing")
        if tuple(state_dict[key].shape) != shape:
            raise WeightsError(
                f"{name}: {key!r} has shape {tuple(state_dict[key].shape)}, "
                f"the {layout} layout needs {shape}"
            )


def random_vgg19_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded random VGG-19 weights in torchvision's layout (Kaiming-normal, zero biases).

    He et al.'s fan-in initialisation keeps activations at a steady scale through the ReLUs,
    which is what makes Gram statistics of a random network meaningful for style transfer.
    """
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for index, (c_in, c_out) in zip(TORCHVISION_INDICES, VGG19_CONV_CHANNELS):
        std = (2.0 / (c_in * 9)) ** 0.5
        weight = torch.randn((c_out, c_in, 3, 3), generator=generator) * std
        state[f"features.{index}.weight"] = weight
        state[f"features.{index}.bias"] = torch.zeros(c_out)
    return state


# ---------------------------------------------------------------------------------------------
# The registry.


@dataclass(frozen=True)
class WeightFile:
    """One downloadable file: its URL, key layout and (where known) checksum."""

    url: str
    layout: str
    sha256: str | None = None  # full digest or a prefix of it (torch.hub names carry one)

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class WeightSet:
    """A named set: one file per role (``encoder``, ``decoder``)."""

    name: str
    description: str
    files: dict[str, WeightFile] = field(default_factory=dict)


_NORMALISED_VGG = WeightFile(
    url="https://github.com/naoto0804/pytorch-AdaIN/releases/download/v0.0.0/vgg_normalised.pth",
    layout="normalised",
)
REGISTRY: dict[str, WeightSet] = {
    "vgg19": WeightSet(
        "vgg19",
        "torchvision's ImageNet VGG-19 (548 MB)",
        {
            "encoder": WeightFile(
                url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
                layout="torchvision",
                sha256="dcbb9e9d",
            )
        },
    ),
    "vgg19-normalised": WeightSet(
        "vgg19-normalised",
        "the normalised VGG-19 of Gatys et al. and AdaIN (80 MB)",
        {"encoder": _NORMALISED_VGG},
    ),
    "adain": WeightSet(
        "adain",
        "the released AdaIN encoder and decoder of Huang and Belongie (94 MB)",
        {
            "encoder": _NORMALISED_VGG,
            "decoder": WeightFile(
                url="https://github.com/naoto0804/pytorch-AdaIN/releases/download/v0.0.0/decoder.pth",
                layout="decoder",
            ),
        },
    ),
    "random": WeightSet("random", "seeded random VGG-19 weights (Kaiming init), no download"),
    "bundled": WeightSet(
        "bundled",
        "seeded random VGG-19 (seed 0) and painterly's AdaIN decoder trained for it, shipped in the package",
    ),
}

#: painterly's own AdaIN decoder for ``random`` encoder weights of seed 0, shipped inside the
#: package (half precision) so that AdaIN runs with nothing downloaded. docs/offline-decoder.md
#: says how it was trained and on what; ``tools/offline_decoder.py`` rebuilds it.
BUNDLED_DECODER_PATH = Path(__file__).parent / "bundled" / "decoder-random0.pth"
BUNDLED_DECODER_SHA256 = "49be8a6d1500bee194cbb3f88d0d541e9e88ec3ab0c321208cf2294eb3104616"
BUNDLED_ENCODER_SEED = 0


def cache_dir() -> Path:
    """Where weight files are kept: torch's hub cache, shared with torchvision."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def is_offline() -> bool:
    return os.environ.get("PAINTERLY_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def source_url(file: WeightFile) -> str:
    """The URL a file is fetched from, honouring ``PAINTERLY_WEIGHTS_MIRROR``."""
    mirror = os.environ.get("PAINTERLY_WEIGHTS_MIRROR", "").strip()
    return f"{mirror.rstrip('/')}/{file.filename}" if mirror else file.url


def cached_path(file: WeightFile) -> Path:
    return cache_dir() / file.filename


def is_cached(name: str) -> bool:
    """True when every file of the named set is in the cache (``random`` always is)."""
    return all(cached_path(file).is_file() for file in _weight_set(name).files.values())


def fetch(file: WeightFile, *, progress: Progress | None = None) -> Path:
    """Return the cached path of ``file``, downloading and verifying it first if needed."""
    path = cached_path(file)
    if path.is_file():
        return path
    url = source_url(file)
    if is_offline():
        raise WeightsError(
            f"{file.filename} is not cached and PAINTERLY_OFFLINE is set: "
            f"download {url} and put it at {path}"
        )
    download(url, path, layout=file.layout, sha256=file.sha256, progress=progress)
    return path


def download(
    url: str,
    destination: Path,
    *,
    layout: str,
    sha256: str | None = None,
    progress: Progress | None = None,
    timeout: float = 30.0,
) -> Path:
    """Download ``url`` to ``destination`` through a temporary file, verified before renaming."""
    digest = hashlib.sha256()
    with atomic_path(destination, error=WeightsError) as temporary:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(temporary, "wb") as out:
                total = response.headers.get("Content-Length")
                total = int(total) if total and total.isdigit() else None
                done = 0
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            raise WeightsError(
                f"cannot download {url} ({reason}); without network, fetch it elsewhere and "
                f"put it at {destination}, or pass the file's path instead of the name"
            ) from None
        if total is not None and done != total:
            raise WeightsError(f"download of {url} was cut short ({done} of {total} bytes); try again")
        if sha256 and not digest.hexdigest().startswith(sha256):
            raise WeightsError(
                f"{url}: checksum {digest.hexdigest()[:16]}... does not match the expected {sha256}"
            )
        check_layout(read_state_dict(temporary, name=url), layout, name=url)
    return destination


def read_state_dict(path: str | os.PathLike, *, name: str | None = None) -> dict[str, torch.Tensor]:
    """Load a weight file safely (tensors only), unwrapping ``{"state_dict": ...}`` wrappers."""
    name = name or str(path)
    if not Path(path).is_file():
        raise WeightsError(f"{name}: no such weight file")
    state = load_torch(path, what="a readable PyTorch weight file", error=WeightsError, name=name)
    for wrapper in ("state_dict", "model", "decoder"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{name}: does not hold a state dict of tensors")
    broken = next((key for key, value in state.items() if value.is_floating_point() and not torch.isfinite(value).all()), None)
    if broken is not None:  # a diverged training run: it would paint black (NaN) images
        raise WeightsError(f"{name}: {broken!r} holds NaN or infinite values; these weights cannot be used")
    return state


#: Where painterly's own decoder files record what they were trained with: the state dict's
#: ``_metadata`` (which torch saves with it and ``load_state_dict`` reads only under module
#: names), so the file stays a plain state dict in the released layout, loadable anywhere.
RECORD_KEY = "painterly"


def with_record(state: Mapping[str, torch.Tensor], record: Mapping[str, Any]) -> "OrderedDict[str, torch.Tensor]":
    """``state`` as an OrderedDict carrying ``record`` (plain strings and numbers)."""
    recorded = OrderedDict(state)
    metadata = OrderedDict(getattr(state, "_metadata", None) or {})  # module versions, when it has them
    metadata[RECORD_KEY] = dict(record)
    recorded._metadata = metadata  # type: ignore[attr-defined]
    return recorded


def read_record(state: Mapping[str, torch.Tensor]) -> dict[str, Any] | None:
    """What :func:`with_record` stored in ``state``, or None (released and foreign files)."""
    record = (getattr(state, "_metadata", None) or {}).get(RECORD_KEY)
    return dict(record) if isinstance(record, Mapping) else None


def read_bundled_decoder() -> dict[str, torch.Tensor]:
    """The bundled decoder's state dict in float32, after checking the file is the one shipped."""
    path = BUNDLED_DECODER_PATH
    if not path.is_file():
        raise WeightsError(f"the bundled decoder is missing from this installation ({path}): reinstall painterly")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != BUNDLED_DECODER_SHA256:
        raise WeightsError(f"{path}: checksum {digest[:16]}... is not the bundled decoder's; reinstall painterly")
    state = read_state_dict(path, name="the bundled decoder")
    check_layout(state, "decoder", name="the bundled decoder")
    floats = {key: value.float() for key, value in state.items()}
    record = read_record(state)  # what it was trained with (its encoder's pooling, above all)
    return with_record(floats, record) if record else floats


def _weight_set(name: str) -> WeightSet:
    if name not in REGISTRY:
        raise WeightsError(f"unknown weights {name!r}: choose one of {', '.join(REGISTRY)} or a file path")
    return REGISTRY[name]


def is_registry_name(spec: str | os.PathLike) -> bool:
    return isinstance(spec, str) and spec in REGISTRY


def weight_file(spec: str | os.PathLike, role: str) -> Path | None:
    """The file on disk that :func:`load_weights` reads for ``spec`` in ``role``: a registry
    set's cached download, the bundled decoder, or the path given; None for generated weights."""
    if not is_registry_name(spec):
        return Path(spec).expanduser()
    if spec == "bundled":
        return BUNDLED_DECODER_PATH if role == "decoder" else None
    file = REGISTRY[str(spec)].files.get(role)
    return None if file is None else cached_path(file)


def load_weights(
    spec: str | os.PathLike,
    *,
    role: str = "encoder",
    seed: int = 0,
    progress: Progress | None = None,
) -> tuple[dict[str, torch.Tensor], str, str]:
    """Resolve a registry name or a file path to ``(state_dict, layout, label)``.

    ``label`` says what was loaded, for metadata and messages (``random(seed=3)``, ``vgg19``,
    or the file's path).
    """
    if is_registry_name(spec):
        name = str(spec)
        if name == "random":
            if role != "encoder":
                raise WeightsError("random weights exist for the encoder only; pass a decoder file, or bundled")
            return random_vgg19_state_dict(seed), "torchvision", f"random(seed={seed})"
        if name == "bundled":
            if role == "encoder":  # the encoder the bundled decoder was trained with, whatever ``seed``
                return random_vgg19_state_dict(BUNDLED_ENCODER_SEED), "torchvision", f"random(seed={BUNDLED_ENCODER_SEED})"
            return read_bundled_decoder(), "decoder", "bundled"
        files = _weight_set(name).files
        if role not in files:
            raise WeightsError(f"weights {name!r} have no {role}")
        path = fetch(files[role], progress=progress)
        state = read_state_dict(path)
        check_layout(state, files[role].layout, name=str(path))
        return state, files[role].layout, name
    path = Path(spec).expanduser()
    if not path.exists():
        raise WeightsError(f"unknown weights {str(spec)!r}: no such file, and not one of {', '.join(REGISTRY)}")
    state = read_state_dict(path)
    layout = detect_layout(state)
    if role == "decoder" and layout != "decoder":
        raise WeightsError(f"{path}: holds a VGG-19 encoder ({layout} layout), not a decoder")
    if role == "encoder" and layout == "decoder":
        raise WeightsError(f"{path}: holds an AdaIN decoder, not a VGG-19 encoder")
    if layout == "decoder":
        check_layout(state, layout, name=str(path))
    return state, layout, str(path)


def choose_weights(spec: str | os.PathLike, *, preferred: str, progress: Progress | None = None) -> tuple[str | os.PathLike, str | None]:
    """Resolve ``auto`` to ``preferred`` when it is cached or can be downloaded, else ``random``.

    Returns the spec to load and, when falling back, a note saying why (for the user).
    """
    if spec != "auto":
        return spec, None
    try:
        for file in _weight_set(preferred).files.values():
            fetch(file, progress=progress)
    except WeightsError as error:
        return "random", f"pretrained {preferred} weights unavailable ({error}); using seeded random weights"
    return preferred, None


def choose_adain_weights(
    encoder: str | os.PathLike, decoder: str | os.PathLike, *, progress: Progress | None = None
) -> tuple[str | os.PathLike, str | os.PathLike, str | None]:
    """Resolve ``auto`` for AdaIN's encoder and decoder; returns both and a note when falling back.

    Both ``auto``: the released ``adain`` pair when cached or downloadable, else the ``bundled``
    pair (seeded random encoder, painterly's own decoder). One ``auto``: the partner of the
    other (a decoder file is taken to go with the released encoder, as before ``auto`` existed).
    """
    partners = {"adain": "adain", "vgg19-normalised": "adain", "random": "bundled", "bundled": "bundled"}
    if encoder == "auto" and decoder == "auto":
        try:
            for file in REGISTRY["adain"].files.values():
                fetch(file, progress=progress)
        except WeightsError as error:
            return "bundled", "bundled", (
                f"released AdaIN weights unavailable ({error}); using painterly's bundled decoder "
                "for seeded random encoder weights: the photo in the painting's palette and brushwork "
                "(docs/offline-decoder.md)"
            )
        return "adain", "adain", None
    if decoder == "auto":
        if not (isinstance(encoder, str) and encoder in partners):
            raise WeightsError(f"no decoder is known for encoder {str(encoder)!r}: pass --decoder with the one trained for it")
        return encoder, partners[encoder], None
    if encoder == "auto":
        return ("bundled" if decoder == "bundled" else "adain"), decoder, None
    return encoder, decoder, None
