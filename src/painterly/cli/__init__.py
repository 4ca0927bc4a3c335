"""The ``painterly`` command: one subcommand per module in this package.

The CLI parses arguments, calls the library, draws progress bars and owns files and exit codes:
0 on success, 2 for anything the user can fix (one line on stderr, never a traceback), 130 when
interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from ..errors import PainterlyError

#: Subcommand modules, in the order ``--help`` lists them. Each defines ``register(subparsers)``.
COMMANDS = ("demo", "optimize", "sweep", "stylize", "reproduce", "export", "train", "serve", "bench")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="painterly",
        description="Neural style transfer: repaint a photo in the style of a painting.",
        epilog="Run 'painterly COMMAND --help' for a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def _version() -> str:
    from .. import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except PainterlyError as error:
        print(f"painterly: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("painterly: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
