"""Writing files so that nothing half-written is ever left behind.

Every output (images, checkpoints, plots, videos, ONNX files, downloads) is written to a
temporary file beside its destination and renamed onto it only when complete: a crash, a
Ctrl-C or a full disk leaves the old file or none, never a truncated one. And before a
command writes anything, :func:`check_writes` makes sure that no path it will write is one of
its inputs.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import PainterlyError, SettingsError

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


def save_torch(obj: Any, path: str | os.PathLike, *, error: type[PainterlyError] = PainterlyError) -> Path:
    """``torch.save(obj)`` through :func:`atomic_path`. torch reports a full disk or a failed
    write as RuntimeError (from its zip writer), not OSError: that, too, becomes ``error``."""
    import torch

    path = Path(path)
    with atomic_path(path, error=error) as temporary:
        try:
            torch.save(obj, temporary)
        except RuntimeError as failure:
            reason = str(failure).strip().splitlines()[-1][:160] if str(failure).strip() else type(failure).__name__
            raise error(f"{path}: cannot be written ({reason})") from None
    return path


def load_torch(path: str | os.PathLike, *, what: str, error: type[PainterlyError] = PainterlyError,
               name: str | None = None) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU: tensors and plain data only, nothing
    that runs. Any failure is ``error`` in one line naming the file (``name``, default ``path``)
    and ``what`` it should be (torch's own message runs to paragraphs, with advice to turn the
    safety off)."""
    import torch  # here, not at the top: writing images needs no torch

    name = name or str(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols before failing
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise error(f"{name}: no such file") from None
    except Exception as failure:  # noqa: BLE001 - torch raises many kinds for a foreign or torn file
        raise error(f"{name}: not {what} ({_torch_reason(failure)})") from None


def _torch_reason(failure: Exception) -> str:
    text = str(failure).strip()
    if "WeightsUnpickler error" in text or "Weights only load failed" in text:
        return "not a PyTorch file of tensors and plain data"
    return text.splitlines()[0][:120] if text else type(failure).__name__


def same_file(first: str | os.PathLike, second: str | os.PathLike) -> bool:
    """Whether two paths name one file: the same resolved path, or (links) the same inode."""
    first, second = Path(first), Path(second)
    try:
        if first.resolve() == second.resolve():
            return True
        return first.exists() and second.exists() and os.path.samefile(first, second)
    except (OSError, RuntimeError):  # a loop of links, a vanished file: not provably the same
        return False


def check_writes(
    writes: Iterable[str | os.PathLike],
    inputs: Iterable[str | os.PathLike],
    *,
    folders: Iterable[str | os.PathLike] = (),
    families: Iterable[tuple[str | os.PathLike, str]] = (),
) -> None:
    """Refuse (:class:`SettingsError`) to run a command that would write over one of its inputs.

    The one check every command makes, before it reads or computes anything. ``writes`` are the
    files it will write, each once (outputs, plots, state files, exports, sheets), ``inputs`` every file or
    folder it reads (a batch's inputs all together, not one job's). ``folders`` are folders it
    fills (a training run's): no input may lie below one, and none may lie inside an input
    folder, whose images the run would then read back. ``families`` are ``(folder, regex)``
    pairs for numbered files not known in advance (snapshots every N iterations): an input in
    that folder whose name matches is refused too.
    """
    inputs, writes = [Path(source) for source in inputs], [Path(target) for target in writes]
    for index, target in enumerate(writes):
        if any(same_file(target, other) for other in writes[:index]):
            raise SettingsError(f"{target} would be written twice (say, as the output and the plot); choose other names")
        for source in inputs:
            if same_file(target, source):
                raise SettingsError(f"{target}: would overwrite an input ({source}); choose another output")
    for folder in map(Path, folders):
        for source in inputs:
            if _below(source, folder) or (source.is_dir() and _below(folder, source)):
                raise SettingsError(f"{folder}: the run folder and the input {source} overlap; keep them apart")
    for folder, pattern in families:
        for source in inputs:
            if same_file(source.parent, folder) and re.fullmatch(pattern, source.name):
                raise SettingsError(
                    f"{source}: an input that the run's numbered snapshots would overwrite; choose another output name"
                )


def _below(path: Path, folder: Path) -> bool:
    """``path`` is ``folder`` or lies below it (paths resolved, so links and ``..`` count)."""
    try:
        path.resolve().relative_to(folder.resolve())
    except (ValueError, OSError, RuntimeError):
        return False
    return True


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()
