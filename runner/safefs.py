"""Host file access to folders that code under test can write (stdlib).

A worker's control folder and a check's outputs folder are written by the worker — in the
docker sandbox, by code from a file nobody trusts. The host process (often root) must
never follow what that code planted there: every access here opens the folder itself
with ``O_DIRECTORY | O_NOFOLLOW`` (the folder is the host's: a bind mount's target the
container cannot replace) and the entry relative to that directory fd with ``O_NOFOLLOW``
(a symlink fails with ``ELOOP``) and ``O_NONBLOCK`` (a FIFO cannot block the host), then
accepts only a regular file with one link (a hard link the container made to another file
of its mounts is refused) and reads at most a cap. Anything else raises :class:`Tampered`
naming the file and what it was, so the caller records the cell as the attack it is.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from runner._worker import pbwire

__all__ = ["Tampered", "append_text", "read_bytes", "read_tail", "touch"]

_NOFOLLOW = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class Tampered(OSError):
    """An entry the host reads or writes is not a plain file of its own: a symbolic link,
    a hard link, a FIFO, a device, a directory, or larger than its cap."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


@contextlib.contextmanager
def _dir(folder: Path) -> Iterator[int]:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW)
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def _open(folder: Path, name: str, flags: int, mode: int = 0o644) -> Iterator[tuple[int, os.stat_result]]:
    """An fd of ``folder/name`` that is a regular file with one link, or :class:`Tampered`."""
    if "/" in name or name in ("", ".", ".."):
        raise ValueError(f"not a plain file name: {name!r}")
    with _dir(folder) as dfd:
        try:
            fd = os.open(name, flags | _NOFOLLOW, mode, dir_fd=dfd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR, errno.ENOTDIR):
                try:
                    what = _kind(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode)
                except OSError:
                    what = os.strerror(exc.errno)
                raise Tampered(exc.errno, f"{name} in the worker's folder is {what}: not followed") from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise Tampered(errno.EPERM, f"{name} in the worker's folder is {_kind(st.st_mode)}: not read")
            if st.st_nlink > 1:
                raise Tampered(errno.EPERM, f"{name} in the worker's folder has {st.st_nlink} hard links "
                                            "(another file's contents): not read")
            yield fd, st
        finally:
            os.close(fd)


def read_bytes(folder: Path, name: str, limit: int, offset: int = 0) -> bytes:
    """Up to ``limit`` bytes of ``folder/name`` from ``offset``; :class:`Tampered` when the
    file (from ``offset``) holds more than ``limit`` bytes or is not a plain file."""
    with _open(folder, name, os.O_RDONLY) as (fd, st):
        if st.st_size - offset > limit:
            raise Tampered(errno.EFBIG, f"{name} in the worker's folder has {st.st_size - offset} new bytes, "
                                        f"over the cap of {limit}: not read")
        os.lseek(fd, offset, os.SEEK_SET)
        try:
            return bytes(pbwire.read_fd(fd, limit, name))  # type: ignore[no-untyped-call]
        except ValueError:
            raise Tampered(errno.EFBIG, f"{name} in the worker's folder grew past the cap of {limit} bytes") from None


def read_tail(folder: Path, name: str, limit: int) -> str:
    """The last ``limit`` bytes of ``folder/name`` as text ("" when it does not exist)."""
    try:
        with _open(folder, name, os.O_RDONLY) as (fd, st):
            os.lseek(fd, max(0, st.st_size - limit), os.SEEK_SET)
            return os.read(fd, limit).decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def append_text(folder: Path, name: str, text: str) -> None:
    """Append to ``folder/name`` (created when missing), never through a planted link."""
    with _open(folder, name, os.O_WRONLY | os.O_APPEND | os.O_CREAT) as (fd, _):
        os.write(fd, text.encode("utf-8", "replace"))


def touch(folder: Path, name: str) -> None:
    """Create ``folder/name`` or set its times to now, never through a planted link."""
    with _open(folder, name, os.O_WRONLY | os.O_CREAT) as (fd, _):
        os.utime(fd)
