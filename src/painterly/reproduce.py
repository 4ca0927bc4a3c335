"""Paint a result again from its own metadata, after checking that the inputs are the same files.

Every output (``optimize``, ``stylize``, ``sweep`` and the studio's) records its settings, seed,
weights and inputs. Each input is recorded as ``{"name", "path", "sha256"}`` (``path`` as it
was given on the command line; uploads have none) and, when its bytes are one of the bundled
examples, ``"example"`` with the example's name. :func:`reproduce` looks for each input

1. at its recorded path,
2. by name in the folders given as ``search`` and beside the output,
3. among the bundled examples (by example name, then by content),

and uses the first file whose SHA-256 is the recorded one; a file found by name with other
bytes is reported by name, never silently used. Then it runs the same method with the same
settings, seed, weights and precision: on the same device, the same pixels.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image

from .adain import StylizeSettings, stylize
from .errors import PainterlyError, SettingsError
from .files import sha256_file
from .gatys import GatysSettings, Progress, optimize
from .images import load_image, merge_alpha, read_metadata, split_alpha
from .speed import ADAIN_SPEED, GATYS_SPEED
from .sweep import sweep
from .weights import is_registry_name

#: Methods :func:`reproduce` can paint again, by their ``painterly.method``.
REPRODUCIBLE = ("optimize", "stylize", "sweep")
InputEntry = dict[str, str]


class InputMismatch(PainterlyError):
    """An input was not found, or the file found is not the one recorded."""


@lru_cache(maxsize=1)
def example_hashes() -> dict[str, str]:
    """The bundled examples' SHA-256, by example name (the file name without ``.jpg``)."""
    folder = resources.files("painterly") / "examples"
    return {item.name[: -len(".jpg")]: hashlib.sha256(item.read_bytes()).hexdigest()
            for item in folder.iterdir() if item.name.endswith(".jpg")}


def example_path(name: str) -> Path:
    """The file of the bundled example ``name``."""
    return Path(str(resources.files("painterly") / "examples" / f"{name}.jpg"))


def describe_input(source: str | os.PathLike | bytes, *, name: str | None = None) -> InputEntry:
    """How to find an input again: its name, path as given (files only), SHA-256 and, when
    its bytes are a bundled example's, the example's name."""
    if isinstance(source, bytes):
        entry = {"name": name or "upload", "sha256": hashlib.sha256(source).hexdigest()}
    else:
        entry = {"name": name or Path(source).name, "path": str(source), "sha256": sha256_file(source)}
    examples = {digest: example for example, digest in example_hashes().items()}
    if entry["sha256"] in examples:
        entry["example"] = examples[entry["sha256"]]
    return entry


def describe_inputs(**roles: Sequence[str | os.PathLike] | None) -> dict[str, list[InputEntry]]:
    """:func:`describe_input` for every file of every role (``content``, ``style``, ``mask``,
    ``init``, ``weights``, ``encoder``, ``decoder``); roles given None or nothing are left out."""
    return {role: [describe_input(path) for path in paths] for role, paths in roles.items() if paths}


def weight_file_inputs(**specs: str | os.PathLike) -> dict[str, list[InputEntry]]:
    """:func:`describe_inputs` for the weight arguments that are files (registry names are not)."""
    files = {role: [spec] for role, spec in specs.items() if not is_registry_name(spec) and Path(spec).is_file()}
    return describe_inputs(**files)


def find_input(entry: InputEntry, role: str, *, search: Sequence[Path] = ()) -> Path:
    """The file recorded by ``entry`` (see the module docstring for where it looks)."""
    candidates: list[Path] = []
    if entry.get("path"):
        candidates.append(Path(entry["path"]))
    candidates += [Path(folder) / entry["name"] for folder in search]
    stem = Path(entry["name"]).stem
    if entry.get("example") or (entry["name"] == f"{stem}.jpg" and stem in example_hashes()):
        candidates.append(example_path(entry.get("example", stem)))
    by_content = [name for name, digest in example_hashes().items() if digest == entry.get("sha256")]
    candidates += [example_path(name) for name in by_content]
    wrong: list[Path] = []
    for candidate in dict.fromkeys(candidates):
        if not candidate.is_file():
            continue
        if "sha256" not in entry or sha256_file(candidate) == entry["sha256"]:
            return candidate
        wrong.append(candidate)
    if wrong:
        raise InputMismatch(
            f"{role} {wrong[0]}: its SHA-256 is not the recorded {entry['sha256'][:16]}...: "
            "not the file this output was made from (pass the folder of the original with --inputs)"
        )
    raise InputMismatch(
        f"{role} {entry['name']!r} not found (looked at {', '.join(str(c) for c in candidates) or 'no recorded path'}): "
        "pass the folder that holds it with --inputs"
    )


def _entries(metadata: dict[str, Any], role: str) -> list[InputEntry]:
    """The recorded inputs of ``role``; outputs made before inputs were recorded give names only."""
    if "inputs" in metadata:
        return list(metadata["inputs"].get(role, []))
    legacy = metadata.get(role)
    names = [legacy] if isinstance(legacy, str) else list(legacy or [])
    return [{"name": name} for name in names]


def _weights_spec(label: str, role: str, found: dict[str, list[Path]]) -> str:
    """The weights to load for a recorded label: ``random(seed=N)`` -> ``random``, a file -> the
    file found for ``role``, a registry name as it is."""
    if label.startswith("random("):
        return "random"
    if found.get(role):
        return str(found[role][0])
    return label


def _adain_specs(metadata: dict[str, Any], found: dict[str, list[Path]]) -> tuple[str, str]:
    """AdaIN's encoder and decoder to load: the bundled decoder's partner is ``bundled`` (random
    weights of its own seed, whatever the run's seed was)."""
    decoder = _weights_spec(metadata.get("decoder", "auto"), "decoder", found)
    encoder = "bundled" if decoder == "bundled" else _weights_spec(metadata.get("encoder", "auto"), "encoder", found)
    return encoder, decoder


def _label_seed(label: str, default: int) -> int:
    """N of a ``random(seed=N)`` label (the bundled decoder's encoder has its own), else ``default``."""
    match = re.fullmatch(r"random\(seed=(-?\d+)\)", label)
    return int(match.group(1)) if match else default


@dataclass
class Reproduction:
    """What :func:`reproduce` returns: the new image and how it compares with the original."""

    image: Image.Image
    metadata: dict[str, Any]
    original: Image.Image
    inputs: dict[str, list[Path]] = field(default_factory=dict)
    #: Inputs recorded without a SHA-256 (outputs from before it was recorded): not checked.
    unchecked: list[str] = field(default_factory=list)

    @property
    def max_difference(self) -> int | None:
        """The largest difference from the original in grey levels (None: other sizes or modes)."""
        if self.image.size != self.original.size or self.image.mode != self.original.mode:
            return None
        new, old = (np.asarray(image, dtype=np.int16) for image in (self.image, self.original))
        return int(np.abs(new - old).max()) if new.size else 0

    @property
    def identical(self) -> bool:
        return self.max_difference == 0


def reproduce(
    path: str | os.PathLike,
    *,
    search: Sequence[str | os.PathLike] = (),
    device: str | torch.device = "auto",
    callback: Callable[[Progress], None] | None = None,
) -> Reproduction:
    """Paint the output at ``path`` again from its metadata; ``search``: more folders in which
    to look for inputs by name. :class:`InputMismatch` names an input that is missing or not
    the recorded file. ``callback`` receives optimisation's progress (sweeps: each cell's).

    Batched AdaIN outputs are painted one at a time (equal within the batch tolerance, one
    grey level); a video has no metadata to reproduce from.
    """
    path = Path(path)
    try:
        metadata = read_metadata(path)
    except (OSError, ValueError) as error:
        raise PainterlyError(f"{path}: cannot read its metadata ({error})") from None
    method = metadata.get("painterly.method")
    if method not in REPRODUCIBLE:
        raise SettingsError(f"{path}: no painterly metadata to reproduce from (method {method!r}); "
                            f"painterly reproduces {', '.join(REPRODUCIBLE)} outputs")
    folders = [Path(folder) for folder in search] + [path.parent]
    roles = ("content", "style", "mask", "init", "weights", "encoder", "decoder")
    found: dict[str, list[Path]] = {}
    unchecked: list[str] = []
    for role in roles:
        for entry in _entries(metadata, role):
            found.setdefault(role, []).append(find_input(entry, role, search=folders))
            if "sha256" not in entry:
                unchecked.append(f"{role} {entry['name']}")
    if not found.get("content") or not found.get("style"):
        raise SettingsError(f"{path}: its metadata names no content or style image")
    runner = {"optimize": _optimize, "stylize": _stylize, "sweep": _sweep}[method]
    image = runner(metadata, found, device=device, callback=callback)
    with Image.open(path) as original:
        original.load()
        original_image = original.convert(image.mode)
    return Reproduction(image, metadata, original_image, found, unchecked)


def _images(found: dict[str, list[Path]], role: str, reduce_to: int | None = None) -> list[Image.Image] | None:
    return [load_image(p, reduce_to=reduce_to) for p in found[role]] if found.get(role) else None


def _reduce_to(metadata: dict[str, Any], found: dict[str, list[Path]], size: int | None) -> int | None:
    """The ``reduce_to`` the command read huge JPEGs with (the studio reads them whole; masks
    need the content's own size), so that they decode the same way again."""
    return None if metadata.get("painterly.source") == "studio" or found.get("mask") else size


def _gatys_keywords(metadata: dict[str, Any], found: dict[str, list[Path]], settings: GatysSettings, *,
                    device: Any) -> dict[str, Any]:
    """The keywords an optimisation (or a sweep of them) was run with, read back from its output."""
    init = _images(found, "init")
    return {
        "settings": settings,
        "preset": metadata.get("preset") or "gatys2016",
        "weights": _weights_spec(metadata["weights"], "weights", found),
        "style_weights": metadata.get("style_weights") or None,
        "masks": _images(found, "mask"),
        "init_image": init[0] if init else None,
        "seed": int(metadata["seed"]),
        "device": device,
        "speed": replace(GATYS_SPEED, precision=metadata.get("precision", GATYS_SPEED.precision)),
    }


def _optimize(metadata: dict[str, Any], found: dict[str, list[Path]], *, device: Any, callback: Any) -> Image.Image:
    keep_alpha = bool(metadata.get("keep_alpha"))
    settings = GatysSettings.from_dict(metadata)
    content, alpha = split_alpha(load_image(found["content"][0], keep_alpha=keep_alpha,
                                            reduce_to=_reduce_to(metadata, found, settings.size)))
    studio = metadata.get("painterly.source") == "studio"
    result = optimize(
        content, _images(found, "style", None if studio else round(settings.size * settings.style_scale)),
        **_gatys_keywords(metadata, found, settings, device=device),
        callback=callback,
    )
    return merge_alpha(result.image, alpha)


#: What ``stylize`` did before these settings were added: outputs of older versions lack them.
STYLIZE_SETTINGS_BEFORE_THEY_EXISTED = {"supersample": 1.0, "feature_transform": "adain", "margin": 0}


def _stylize(metadata: dict[str, Any], found: dict[str, list[Path]], *, device: Any, callback: Any) -> Image.Image:
    masks = _images(found, "mask")
    seed = _label_seed(metadata["encoder"], int(metadata.get("seed", 0)))
    encoder, decoder = _adain_specs(metadata, found)
    studio = metadata.get("painterly.source") == "studio"
    # As done: the tiling the output records, and no weights beside masks (they were normalised).
    # An output made before a setting existed was painted as without it, whatever today's default.
    settings = StylizeSettings.from_dict({**STYLIZE_SETTINGS_BEFORE_THEY_EXISTED, **metadata,
                                          "tile": bool(metadata.get("tile", False)),
                                          "style_weights": None if masks else metadata.get("style_weights")})
    result = stylize(
        load_image(found["content"][0], reduce_to=_reduce_to(metadata, found, settings.content_size)),
        _images(found, "style", None if studio else settings.style_size),
        settings=settings,
        masks=masks,
        encoder=encoder,
        decoder=decoder,
        seed=seed,
        device=device,
        speed=replace(ADAIN_SPEED, precision=metadata.get("precision", ADAIN_SPEED.precision)),
    )
    return result.image


def _sweep(metadata: dict[str, Any], found: dict[str, list[Path]], *, device: Any, callback: Any) -> Image.Image:
    rows = metadata.get("rows")
    encoder, decoder = _adain_specs(metadata, found)
    settings = GatysSettings.from_dict(metadata)
    scales = [value for key, values in (metadata["columns"], rows or ("", [])) if key == "style_scale" for value in values]
    result = sweep(
        load_image(found["content"][0], reduce_to=_reduce_to(metadata, found, settings.size)),
        _images(found, "style", round(settings.size * max([settings.style_scale, *scales]))),
        param=tuple(metadata["columns"]),
        param2=tuple(rows) if rows else None,
        size=None,
        iterations=None,
        **_gatys_keywords(metadata, found, settings, device=device),
        encoder=encoder,
        decoder=decoder,
        callback=None if callback is None else lambda number, label, progress: callback(progress),
    )
    return result.image
