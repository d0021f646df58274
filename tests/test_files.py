"""sslsr.files: a file appears whole or not at all."""

import os
import stat

import pytest

from sslsr.files import atomic_path, write_text


def test_failed_writer_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "out" / "report.md"
    write_text(target, "old\n")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("writer died")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.md"]


def test_success_replaces_with_the_umask_mode(tmp_path):
    target = tmp_path / "new" / "w.bin"  # the folder is created
    with atomic_path(target) as tmp:
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600)  # like safetensors
        os.write(fd, b"data")
        os.close(fd)
    assert target.read_bytes() == b"data"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in target.parent.iterdir()] == ["w.bin"]


def test_os_errors_name_the_target(tmp_path):
    target = tmp_path / "x.txt"
    with pytest.raises(OSError) as e, atomic_path(target):
        raise OSError(28, "No space left on device")
    assert e.value.filename == str(target)
    assert not list(tmp_path.iterdir())
