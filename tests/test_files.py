import os
import stat

import pytest

from painterly.errors import ImageError, PainterlyError
from painterly.files import atomic_path


def test_renamed_into_place_with_a_new_files_usual_mode(tmp_path):
    target = tmp_path / "deep" / "out.bin"
    with atomic_path(target) as temporary:
        assert temporary.parent == target.parent and temporary.suffix == ".bin" and temporary != target
        temporary.write_bytes(b"done")
    assert target.read_bytes() == b"done"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in target.parent.iterdir()] == ["out.bin"]


def test_a_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as temporary:
            temporary.write_bytes(b"half")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_os_errors_become_the_callers_error(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(ImageError, match="taken: cannot be written"):
        with atomic_path(tmp_path / "taken", error=ImageError) as temporary:
            temporary.write_bytes(b"x")
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(PainterlyError, match="cannot be written"):
        with atomic_path(tmp_path / "file" / "below.png"):
            pass
