"""Protocol-buffer wire format, read without protobuf: the one reader of SavedModel files.

Standard library only, Python 3.7 syntax: the host (``runner.check``) and the check worker
inside a stack (which loads it by path, like ``worker.py``) parse ``saved_model.pb`` and
``keras_metadata.pb`` with it, before anything of the file is deserialised. Every read is
bounded by the bytes given: a malformed message raises ``ValueError``, never loops or
allocates beyond its input.
"""

from __future__ import print_function

import os

MAX_DEPTH = 64  # nested messages followed by the structure readers of the callers


def fields(data):
    """Yield ``(field number, wire type, value)`` of one message; ``ValueError`` if malformed.

    Values: varint (wire 0) an int; length-delimited (wire 2) a bytes slice; fixed64/32
    (wires 1, 5) the raw bytes. Groups (3, 4) are not used by any TensorFlow proto.
    """
    data = bytes(data)
    i, n = 0, len(data)

    def varint(at):
        shift = result = 0
        while at < n and shift < 64:
            b = data[at]
            at += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result, at
            shift += 7
        raise ValueError("truncated varint")

    while i < n:
        key, i = varint(i)
        wire = key & 7
        if key >> 3 == 0:
            raise ValueError("field number 0")
        if wire == 0:
            value, i = varint(i)
        elif wire == 2:
            length, i = varint(i)
            if i + length > n:
                raise ValueError("truncated message")
            value, i = data[i:i + length], i + length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if i + size > n:
                raise ValueError("truncated message")
            value, i = data[i:i + size], i + size
        else:
            raise ValueError("unsupported wire type %d" % wire)
        yield key >> 3, wire, value


def message(data):
    """``{field number: [values in order]}`` of one message (``ValueError`` if malformed)."""
    out = {}
    for number, _wire, value in fields(data):
        out.setdefault(number, []).append(value)
    return out


def first(msg, number, default=None):
    """The first value of field ``number`` of a :func:`message` dict."""
    values = msg.get(number)
    return values[0] if values else default


def text(value):
    """A length-delimited string field as text (``replace`` for bad UTF-8)."""
    return bytes(value).decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else ""


def read_capped(path, limit):
    """The bytes of a regular file, refusing anything else or more than ``limit`` bytes."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags)
    try:
        import stat

        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("%s is not a regular file" % os.path.basename(path))
        if st.st_size > limit:
            raise ValueError("%s has %d bytes, over the limit of %d" % (os.path.basename(path), st.st_size, limit))
        return read_fd(fd, limit, os.path.basename(path))
    finally:
        os.close(fd)


def read_fd(fd, limit, name):
    """At most ``limit`` bytes from ``fd``'s position, in 1 MiB reads; ``ValueError`` when
    there are more (the file grew while it was read)."""
    chunks, got = [], 0
    while got <= limit:
        chunk = os.read(fd, min(1 << 20, limit + 1 - got))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    if got > limit:
        raise ValueError("%s grew past the limit of %d bytes" % (name, limit))
    return b"".join(chunks)
