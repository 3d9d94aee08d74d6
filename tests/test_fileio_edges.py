"""weightstore.fileio where the system does not cooperate: no hard links, a move that fails
halfway through a shard set, a missing folder, a file that cannot be opened, and the
temporaries of writers that are gone (a zombie, a reused process id)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import weightstore as ws
from weightstore import fileio

W = {"a": np.arange(6, dtype=np.float32), "b": np.ones(40, np.float64)}


def test_overwrite_false_keeps_an_existing_file_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "w.npz"
    out.write_bytes(b"precious")
    with pytest.raises(ws.FileAccessError, match="destination: expected no existing file, "
                                                 "found a file; it was kept as it is"):
        ws.save(W, out, overwrite=False)
    assert out.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["w.npz"]


def _no_hard_links(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(src, dst):  # type: ignore[no-untyped-def]
        raise OSError(errno.EPERM, "Operation not permitted")  # FAT, some network shares

    monkeypatch.setattr(fileio.os, "link", refuse)


def test_overwrite_false_without_hard_links_checks_then_renames(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_hard_links(monkeypatch)
    out = tmp_path / "w.npz"
    ws.save(W, out, overwrite=False)
    assert ws.load(out).equal(ws.Weights(W))
    before = out.read_bytes()
    with pytest.raises(ws.FileAccessError, match="expected no existing file, found a file"):
        ws.save({"other": np.zeros(1)}, out, overwrite=False)
    assert out.read_bytes() == before  # kept as it is
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.npz"]  # no temporary left


def test_a_shard_set_whose_second_move_fails_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    moves: list[str] = []
    real_replace = os.replace

    def replace(src, dst):  # type: ignore[no-untyped-def]
        moves.append(str(dst))
        if len(moves) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(fileio.os, "replace", replace)
    with pytest.raises(ws.FileAccessError, match="write: expected room and permission to "
                                                 "write the file, found No space left"):
        ws.save(W, tmp_path / "model.npz", max_shard_size=100)
    assert len(moves) == 2  # the first shard was in place, then taken back
    assert list(tmp_path.iterdir()) == []  # no shard, no index, no temporary


def test_the_destination_folder_must_exist_and_be_writable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ws.FileAccessError, match="destination folder: expected an existing "
                                                 "folder, found no folder"):
        ws.save(W, tmp_path / "missing" / "w.npz")
    with pytest.raises(ws.FileAccessError, match="destination: expected a file path, "
                                                 "found a directory"):
        ws.save(W, tmp_path, "npz")

    def refuse(dest):  # type: ignore[no-untyped-def]
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(fileio, "temporary_beside", refuse)
    with pytest.raises(ws.FileAccessError, match="cannot write there: Permission denied"):
        ws.save(W, tmp_path / "w.npz")


def test_a_source_that_cannot_be_opened_is_named(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    loop = tmp_path / "loop.npz"
    loop.symlink_to(loop)
    with pytest.raises(ws.FileAccessError, match="cannot open: Too many levels of symbolic"):
        ws.load(loop)
    good = tmp_path / "w.npz"
    ws.save(W, good)

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(fileio.os, "open", refuse)
    with pytest.raises(ws.FileAccessError, match="permission denied") as e:
        ws.load(good)
    assert str(good) in str(e.value)


def test_overwrite_false_on_a_url_refuses_an_existing_object() -> None:
    pytest.importorskip("fsspec", reason="URLs need the 'remote' extra (fsspec)")
    url = f"memory://fileio-edges-{os.getpid()}/w.npz"
    ws.save(W, url, overwrite=False)
    with pytest.raises(ws.FileAccessError, match="expected no existing file"):
        ws.save({"other": np.zeros(1)}, url, overwrite=False)
    assert ws.load(url).equal(ws.Weights(W))


def _temporary_of(dest: Path, pid: int, age: float) -> Path:
    tag = f"t{len(list(dest.parent.iterdir()))}"  # a new one each time
    tmp = dest.parent / f"{fileio.TEMP_PREFIX}{dest.name}.{tag}.{fileio.HOST}-{pid}" \
                        f"{fileio.TEMP_SUFFIX}"
    tmp.write_bytes(b"half a file")
    when = time.time() - age
    os.utime(tmp, (when, when))
    return tmp


def test_temporaries_of_gone_writers_are_stale_and_live_ones_are_not(tmp_path: Path) -> None:
    dest = tmp_path / "w.npz"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        for _ in range(500):  # exited, not yet reaped: state Z
            state = fileio._process_start(zombie.pid)
            if state is not None and state[0] == "Z":
                break
            time.sleep(0.01)
        live = _temporary_of(dest, child.pid, age=0)  # being written right now
        reused = _temporary_of(dest, child.pid, age=3600)  # written before that pid started
        gone = _temporary_of(dest, zombie.pid, age=0)
        ours_old = _temporary_of(dest, os.getpid(), age=3600 * 24)  # before this process
        ours_now = _temporary_of(dest, os.getpid(), age=0)
        other_host = tmp_path / f".w.npz.abc.{'0' * 8 if fileio.HOST != '0' * 8 else '1' * 8}" \
                                f"-{zombie.pid}{fileio.TEMP_SUFFIX}"
        other_host.write_bytes(b"")
        assert sorted(fileio.stale_temporaries(dest)) == sorted([reused, gone, ours_old])
        ws.save(W, dest)  # a write removes the stale ones beside its file
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            ["w.npz", live.name, ours_now.name, other_host.name])
    finally:
        child.kill()
        child.wait()
        zombie.wait()


def test_process_start_of_no_process_is_none() -> None:
    assert fileio._process_start(2**22 + 12345) is None  # beyond pid_max: never a process


def test_a_wrapper_is_read_through_its_methods_not_the_descriptor_beneath(tmp_path) -> None:
    """gzip.GzipFile.fileno() gives the compressed file's descriptor: reading at offsets
    through it would return compressed bytes. Only plain files are read by descriptor."""
    import gzip

    data = np.arange(1 << 16, dtype=np.float32)
    with gzip.open(tmp_path / "a.gz", "wb") as f:
        f.write(data.tobytes())
    with gzip.open(tmp_path / "a.gz", "rb") as f:
        assert fileio.regular_fd(f) is None
        raw = fileio.RawFile(f, "a.gz")
        got = raw.read_array(0, data.dtype, data.shape, field="W")
    np.testing.assert_array_equal(got, data)
    (tmp_path / "b").write_bytes(data.tobytes())
    with open(tmp_path / "b", "rb") as f:
        assert fileio.regular_fd(f) == f.fileno()


@pytest.mark.parametrize("kind", ["file", "stream"])
def test_pread_into_fills_a_reused_buffer_and_stops_at_the_end(tmp_path: Path,
                                                              kind: str) -> None:
    """RawFile.pread_into reads at an offset into the caller's buffer, by positional reads
    of a regular file or through the object's own readinto; at the end of the file it
    gives how many bytes there were."""
    import io

    data = bytes(range(256)) * 40
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    with open(path, "rb") if kind == "file" else io.BytesIO(data) as f:
        raw = fileio.RawFile(f, str(path))
        assert (raw.fd is not None) == (kind == "file")
        buf = bytearray(1000)
        assert raw.pread_into(3000, buf) == 1000 and bytes(buf) == data[3000:4000]
        assert raw.pread_into(17, memoryview(buf)[:10]) == 10 and bytes(buf[:10]) == data[17:27]
        assert raw.pread_into(len(data) - 300, buf) == 300
        assert bytes(buf[:300]) == data[-300:]
        assert raw.pread_into(len(data), buf) == 0
