"""``painterly export``: the AdaIN network as an ONNX file."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..adain import AdaINModel
from ..export import FORMATS, export_onnx
from ..files import check_writes
from .common import SEED_HELP, add_subcommand, download_bar, info, seed

EXAMPLES = """\
  painterly export --format onnx -o adain.onnx                     # released weights, else the bundled decoder
  painterly export -o offline.onnx --encoder bundled --decoder bundled   # nothing to download
  painterly export -o mine.onnx --encoder random --decoder my_decoder.pth --seed 0
inputs: content (1,3,H,W) and style (1,3,H',W') RGB in [0,1], alpha (float); output: image (1,3,H,W)"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(subparsers, "export", help="export the AdaIN network (for onnxruntime and friends)",
                            examples=EXAMPLES)
    parser.add_argument("--format", default="onnx", choices=FORMATS, help="file format (default: onnx)")
    parser.add_argument("-o", "--output", required=True, help="the file to write, e.g. adain.onnx")
    parser.add_argument("--decoder", default="auto",
                        help="decoder: adain, bundled or a decoder .pth file (default: auto, adain when cached or "
                        "downloadable, else bundled)")
    parser.add_argument("--encoder", default="auto",
                        help="encoder: adain / vgg19-normalised, random, bundled, or a VGG-19 .pth (default: auto)")
    parser.add_argument("--seed", type=seed, default=0, help=f"seed of random encoder weights, {SEED_HELP} (default: 0)")
    parser.add_argument("--quiet", action="store_true", help="no download progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    check_writes([args.output], [path for path in (args.encoder, args.decoder) if Path(path).is_file()])
    model = AdaINModel.load(encoder=args.encoder, decoder=args.decoder, seed=args.seed, progress=download_bar(args.quiet))
    if model.weights_note:
        info(model.weights_note)
    if (model.supersample, model.feature_transform, model.margin) != (1.0, "adain", 0):
        info(f"the graph does AdaIN's transform at the size it is given; stylize paints this decoder at "
             f"{model.supersample:g}x with {model.feature_transform}, which ONNX cannot do (it has no "
             f"eigendecomposition): enlarge the content {model.supersample:g}x and reflect it {model.margin} px past "
             "each edge before the graph, then crop and shrink its output")
    path = export_onnx(model, Path(args.output))
    info(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB; encoder {model.encoder_label}, decoder {model.decoder_label})")
    return 0
