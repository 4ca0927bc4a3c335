"""Exporting the AdaIN network to ONNX (the ``onnx`` extra: onnx, onnxscript; onnxruntime to run it).

The exported graph is :meth:`painterly.adain.AdaINModel.forward`: inputs ``content`` (1, 3, H, W)
and ``style`` (1, 3, H', W'), RGB in [0, 1], any heights and widths, and ``alpha`` (a float
scalar); output ``image`` (1, 3, H, W), not clamped. Padding to a multiple of 8 and cropping
back are part of the graph.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import warnings
from pathlib import Path

import torch

from .adain import AdaINModel
from .speed import SpeedSettings
from .errors import PainterlyError, SettingsError
from .files import atomic_path

FORMATS = ("onnx",)


def export_onnx(model: AdaINModel, path: str | os.PathLike, *, opset: int = 18) -> Path:
    """Write ``model`` as an ONNX file with dynamic sizes, through a temporary file."""
    try:
        import onnx  # noqa: F401 (torch.onnx needs both)
        import onnxscript  # noqa: F401
    except ImportError:
        raise PainterlyError("ONNX export needs onnx and onnxscript: pip install 'painterly[onnx]'") from None
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise SettingsError(f"{path}: an ONNX model's file name must end in .onnx")
    path.parent.mkdir(parents=True, exist_ok=True)
    # A CPU copy of the network: the caller's model stays on its device.
    # The exported graph is plain float32 NCHW: onnxruntime picks its own kernels.
    plain = SpeedSettings(precision="float32", channels_last=False)
    model = AdaINModel(copy.deepcopy(model.encoder).cpu(), copy.deepcopy(model.decoder).cpu(), speed=plain)
    example = (torch.rand(1, 3, 64, 48), torch.rand(1, 3, 48, 64), torch.tensor(1.0))
    dims = {name: torch.export.Dim(name, min=16, max=16384) for name in ("height", "width", "style_height", "style_width")}
    shapes = {
        "content": {2: dims["height"], 3: dims["width"]},
        "style": {2: dims["style_height"], 3: dims["style_width"]},
        "alpha": {},
    }
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    try:
        exporter_log.setLevel(logging.ERROR)
        # The exporter reports its steps on stdout; the library stays quiet.
        with atomic_path(path) as temporary, contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, example, str(temporary), input_names=["content", "style", "alpha"],
                              output_names=["image"], dynamic_shapes=shapes, opset_version=opset, dynamo=True,
                              external_data=False, verbose=False)
    finally:
        exporter_log.setLevel(level)
    return path
