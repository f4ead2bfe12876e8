"""Cache keys from behaviour, not bytes: a digest of a Python file's syntax tree.

Stdlib only. A comment, a docstring, a blank line or a re-wrapped call does not change
what the worker or a scenario does, so it must not recompute hours of cells. The digest
walks the module's AST (docstrings dropped; line/column attributes never included) and
serialises it by hand, skipping fields that are ``None`` or empty, so the same source
gives the same digest on every host Python from 3.11 on (3.12 added ``type_params``,
always empty in this code base). ``CACHE_PROTOCOL`` is bumped by hand when the meaning
of a record changes without any code the digest sees changing (the host's comparison or
record layout, say).
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

__all__ = ["CACHE_PROTOCOL", "code_digest", "source_digest"]

CACHE_PROTOCOL = 3  # 1: raw sha256 of the worker's bytes; 2: unused; 3: AST digests

_DOCSTRING_OWNERS = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _strip_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if not isinstance(node, _DOCSTRING_OWNERS):
            continue
        body = node.body
        if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]


def _emit(node: object, out: list[str]) -> None:
    if isinstance(node, ast.AST):
        out.append(type(node).__name__ + "(")
        for name, value in ast.iter_fields(node):
            if value is None or (isinstance(value, list) and not value):
                continue
            out.append(name + "=")
            _emit(value, out)
            out.append(",")
        out.append(")")
    elif isinstance(node, list):
        out.append("[")
        for item in node:
            _emit(item, out)
            out.append(",")
        out.append("]")
    else:  # constants: str, bytes, int, float, complex, bool, Ellipsis
        out.append(type(node).__name__ + ":" + repr(node))


def source_digest(source: str, filename: str = "<source>") -> str:
    """The behaviour digest of Python ``source``.

    Raises:
        SyntaxError: the source does not parse.
    """
    tree = ast.parse(source, filename=filename)
    _strip_docstrings(tree)
    parts: list[str] = [f"cache-protocol:{CACHE_PROTOCOL};"]
    _emit(tree, parts)
    return hashlib.sha256("".join(parts).encode("utf-8")).hexdigest()


@functools.lru_cache(maxsize=256)
def _cached(path: str, mtime_ns: int, size: int) -> str:
    return source_digest(Path(path).read_text(encoding="utf-8"), filename=path)


def code_digest(path: Path | str) -> str:
    """:func:`source_digest` of the file at ``path`` (memoised per path, mtime and size)."""
    p = Path(path)
    st = p.stat()
    return _cached(str(p.resolve()), st.st_mtime_ns, st.st_size)
