"""``painterly serve``: the web studio, a page and a JSON API on this machine."""

from __future__ import annotations

import argparse

from pathlib import Path

from ..device import DEVICE_CHOICES
from ..errors import PainterlyError
from ..weights import REGISTRY, is_registry_name
from .common import add_subcommand, info, positive_int

EXAMPLES = """\
  painterly serve                     # http://127.0.0.1:8000/
  painterly serve --port 8080 --max-size 512
  painterly serve --host 0.0.0.0      # reachable from the network: anyone there can use it
  PAINTERLY_OFFLINE=1 painterly serve # never download weights; random ones when not cached
  painterly serve --encoder random --decoder runs/quick/decoder.pth   # AdaIN with a decoder you trained
the API is described at /api/openapi.json"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(
        subparsers, "serve", help="the web studio: stylise in a browser (needs the 'web' extra)", examples=EXAMPLES
    )
    parser.add_argument("--port", type=int, default=8000, help="TCP port, 0 for any free one (default: 8000)")
    parser.add_argument(
        "--host", default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only); another exposes the studio, unauthenticated",
    )
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="where jobs run, one at a time (default: auto)")
    parser.add_argument(
        "--weights", default="auto",
        help="optimisation's encoder weights, as for 'painterly optimize' (default: auto)",
    )
    parser.add_argument("--encoder", default="auto",
                        help="AdaIN's encoder, as for 'painterly stylize': adain, vgg19-normalised, random, bundled or a "
                        "VGG-19 file (default: auto, the decoder's partner)")
    parser.add_argument("--decoder", default="auto",
                        help="AdaIN's decoder: adain (the released one), bundled, or a decoder file, e.g. one painterly "
                        "train wrote (default: auto, adain when cached or downloadable, else bundled)")
    parser.add_argument("--max-size", type=positive_int, default=1024, help="largest output side in pixels (default: 1024)")
    parser.add_argument("--max-iterations", type=positive_int, default=1000, help="most optimisation iterations (default: 1000)")
    parser.add_argument("--max-upload-mb", type=positive_int, default=25, help="largest upload per job in MB (default: 25)")
    parser.add_argument("--queue-size", type=positive_int, default=4, help="jobs that may wait behind the running one (default: 4)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        from ..server import Limits, StudioServer, create_app
        from ..server.app import LOOPBACK_NAMES, is_loopback
    except ImportError as missing:
        raise PainterlyError(f"the web studio needs the 'web' extra ({missing.name} is missing): pip install 'painterly[web]'") from None
    if not 0 <= args.port <= 65535:
        raise PainterlyError(f"--port {args.port} is not a TCP port (0 to 65535)")
    loopback = is_loopback(args.host)
    limits = Limits(
        max_upload_bytes=args.max_upload_mb * 2**20,
        max_size=args.max_size,
        max_iterations=args.max_iterations,
        queue_size=args.queue_size,
    )
    # On loopback, refuse other Host headers: a web page elsewhere cannot reach the studio
    # through a DNS name rebound to 127.0.0.1.
    allowed_hosts = [*LOOPBACK_NAMES, args.host] if loopback else None
    for role, spec in (("encoder", args.encoder), ("decoder", args.decoder)):
        if spec != "auto" and not is_registry_name(spec) and not Path(spec).expanduser().is_file():
            raise PainterlyError(f"--{role} {spec}: no such file, and not one of {', '.join(REGISTRY)}")
    app = create_app(device=args.device, weights=args.weights, encoder=args.encoder, decoder=args.decoder,
                     limits=limits, allowed_hosts=allowed_hosts)
    server = StudioServer(app, host=args.host, port=args.port)
    if not loopback:
        info(f"warning: listening on {args.host}: anyone who can reach this machine can use the studio (no authentication)")
    info(f"web studio at {server.url} (Ctrl+C to stop)")
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn shuts down cleanly on Ctrl+C, then raises it again
        pass
    info("stopped")
    return 0
