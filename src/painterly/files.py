"""Writing files so that nothing half-written is ever left behind.

Every output (images, checkpoints, plots, videos, ONNX files, downloads) is written to a
temporary file beside its destination and renamed onto it only when complete: a crash, a
Ctrl-C or a full disk leaves the old file or none, never a truncated one.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import PainterlyError

# Read once, at import, while no other thread can be racing on the process-wide umask.
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | os.PathLike, *, error: type[PainterlyError] = PainterlyError) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, so tools that look at it still
    work) to write to; when the block ends normally it is renamed onto ``path``, otherwise
    removed. Missing folders are created; an OSError becomes ``error`` naming ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".part{path.suffix}")
        os.close(handle)
    except OSError as failure:
        raise error(f"{path}: cannot be written ({failure})") from None
    temporary = Path(name)
    try:
        yield temporary
        # mkstemp's 0600 suits the half-written file; the result gets a new file's usual mode.
        os.chmod(temporary, 0o666 & ~_UMASK)
        os.replace(temporary, path)
    except OSError as failure:
        raise error(f"{path}: cannot be written ({failure})") from None
    finally:
        temporary.unlink(missing_ok=True)


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()
