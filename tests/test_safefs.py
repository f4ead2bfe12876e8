"""runner.safefs on the real filesystem: each access refuses what a worker could plant (a
symlink, a hard link, a FIFO, a directory, a flood) without following, blocking or reading
it — and does its job on the plain file a worker really writes (the twin of every case)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from runner import safefs


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    (ctl / "plain").write_bytes(b"line 1\nline 2\n")
    return ctl


@pytest.fixture
def host(tmp_path: Path) -> Path:
    secret = tmp_path / "host-file"
    secret.write_text("host secret\n")
    return secret


def plant(folder: Path, kind: str, host: Path) -> str:
    name = f"planted-{kind}"
    if kind == "symlink":
        (folder / name).symlink_to(host)
    elif kind == "dangling":
        (folder / name).symlink_to(host.parent / "not-yet")
    elif kind == "hardlink":
        os.link(folder / "plain", folder / name)
    elif kind == "fifo":
        os.mkfifo(folder / name)
    elif kind == "dir":
        (folder / name).mkdir()
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(folder / name))
        sock.close()
    return name


KINDS = ["symlink", "dangling", "hardlink", "fifo", "dir", "socket"]


def test_plain_file_reads_appends_touches(folder: Path) -> None:
    assert safefs.read_bytes(folder, "plain", 100) == b"line 1\nline 2\n"
    assert safefs.read_bytes(folder, "plain", 100, offset=7) == b"line 2\n"
    assert safefs.read_tail(folder, "plain", 7) == "line 2\n"
    assert safefs.read_tail(folder, "plain", 1000) == "line 1\nline 2\n"  # shorter than the tail: all of it
    safefs.append_text(folder, "plain", "line 3\n")
    assert (folder / "plain").read_text().endswith("line 2\nline 3\n")
    safefs.append_text(folder, "new", "created\n")
    assert (folder / "new").read_text() == "created\n"
    os.utime(folder / "plain", (1, 1))
    safefs.touch(folder, "plain")
    assert (folder / "plain").stat().st_mtime > 1e9
    safefs.touch(folder, "beat")
    assert (folder / "beat").is_file()
    assert safefs.read_tail(folder, "missing", 10) == ""
    with pytest.raises(FileNotFoundError):
        safefs.read_bytes(folder, "missing", 10)


@pytest.mark.parametrize("kind", KINDS)
def test_what_a_worker_plants_is_never_followed(folder: Path, host: Path, kind: str) -> None:
    name = plant(folder, kind, host)
    before = host.read_text()
    for call in (lambda: safefs.read_bytes(folder, name, 1 << 20), lambda: safefs.read_tail(folder, name, 100),
                 lambda: safefs.append_text(folder, name, "appended"), lambda: safefs.touch(folder, name)):
        with pytest.raises(safefs.Tampered) as info:
            call()
        assert name in str(info.value.strerror)
    assert host.read_text() == before and not (host.parent / "not-yet").exists()
    if kind == "hardlink":
        assert (folder / "plain").read_bytes() == b"line 1\nline 2\n"  # nothing appended through the link


def test_a_flood_is_not_read(folder: Path) -> None:
    (folder / "events").write_bytes(b"x" * 5000)
    assert len(safefs.read_bytes(folder, "events", 5000)) == 5000
    with pytest.raises(safefs.Tampered, match="over the cap of 4999"):
        safefs.read_bytes(folder, "events", 4999)
    assert len(safefs.read_bytes(folder, "events", 1000, offset=4000)) == 1000  # only new bytes count


def test_the_folder_itself_is_not_followed(tmp_path: Path, folder: Path) -> None:
    link = tmp_path / "link-to-ctl"
    link.symlink_to(folder)
    with pytest.raises(OSError):
        safefs.read_bytes(link, "plain", 100)
    with pytest.raises(ValueError, match="plain file name"):
        safefs.read_bytes(folder, "../ctl/plain", 100)
