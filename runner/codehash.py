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
import dataclasses
import functools
import hashlib
import json
from pathlib import Path

__all__ = ["CACHE_PROTOCOL", "Definition", "UnhashableStatement", "closure", "code_digest", "file_definitions",
           "module_definitions", "source_digest"]

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


def source_digest(source: str, filename: str = "<source>", without: tuple[str, ...] = ()) -> str:
    """The behaviour digest of Python ``source``; ``without``: top-level names whose
    plain assignments are left out (a scenario's ``ATOL``, read by the host only).

    Raises:
        SyntaxError: the source does not parse.
    """
    tree = ast.parse(source, filename=filename)
    if without:
        tree.body = [s for s in tree.body if not (
            isinstance(s, ast.Assign) and len(s.targets) == 1 and isinstance(s.targets[0], ast.Name)
            and s.targets[0].id in without)]
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


# ------------------------------------------------------------------ definitions


@dataclasses.dataclass(frozen=True)
class Definition:
    """One top-level statement of a module, by the name(s) it binds.

    ``digest`` is the behaviour digest of the statement; ``refs`` the module's top-level
    names it mentions (by name, anywhere inside it); ``entries`` is set for a *dispatch
    table* (``NAME = {"key": function, ...}``): its key → function name, so a closure can
    follow only the entries a cell selects.
    """

    name: str
    digest: str
    refs: frozenset[str]
    entries: tuple[tuple[str, str], ...] | None = None


class UnhashableStatement(ValueError):
    """A top-level statement that binds no name a closure could reach."""


def _bound_names(stmt: ast.stmt) -> list[str]:
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [stmt.name]
    if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        names = []
        for target in targets:
            for node in ast.walk(target):
                if isinstance(node, ast.Name):
                    names.append(node.id)
                elif not isinstance(node, (ast.Tuple, ast.List, ast.Store)):
                    return []
        return names
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        if isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__":
            return ["__future__"]
        return [(a.asname or a.name).split(".")[0] for a in stmt.names]
    if (isinstance(stmt, ast.If) and isinstance(stmt.test, ast.Compare)
            and isinstance(stmt.test.left, ast.Name) and stmt.test.left.id == "__name__"):
        return ["__main__"]
    return []


def _stmt_digest(stmt: ast.AST) -> str:
    parts: list[str] = [f"cache-protocol:{CACHE_PROTOCOL};"]
    _emit(stmt, parts)
    return hashlib.sha256("".join(parts).encode("utf-8")).hexdigest()


def _dispatch_entries(stmt: ast.stmt) -> tuple[tuple[str, str], ...] | None:
    value = stmt.value if isinstance(stmt, (ast.Assign, ast.AnnAssign)) else None
    if not isinstance(value, ast.Dict) or not value.keys:
        return None
    entries = []
    for k, v in zip(value.keys, value.values, strict=True):
        if not (isinstance(k, ast.Constant) and isinstance(k.value, str) and isinstance(v, ast.Name)):
            return None
        entries.append((k.value, v.id))
    return tuple(entries)


def module_definitions(source: str, filename: str = "<source>") -> dict[str, Definition]:
    """Every top-level name of ``source`` → its :class:`Definition`. Docstrings are
    dropped first; a statement binding several names gives each the same digest.

    Raises:
        SyntaxError: the source does not parse.
        UnhashableStatement: a top-level statement binds no name (an expression with a
            side effect, a top-level ``try``): it cannot be assigned to any cell's key.
    """
    tree = ast.parse(source, filename=filename)
    _strip_docstrings(tree)
    stmts = tree.body
    top: dict[str, ast.stmt] = {}
    for stmt in stmts:
        names = _bound_names(stmt)
        if not names:
            raise UnhashableStatement(f"{filename}:{stmt.lineno}: a top-level {type(stmt).__name__} that "
                                      "binds no name cannot be part of any cache key")
        for name in names:
            if name in top and name != "__future__":
                raise UnhashableStatement(f"{filename}:{stmt.lineno}: {name!r} is bound twice at top level")
            top[name] = stmt
    out: dict[str, Definition] = {}
    for name, stmt in top.items():
        refs: set[str] = set()
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name) and node.id in top:
                refs.add(node.id)
            elif isinstance(node, ast.Global):
                refs.update(n for n in node.names if n in top)
        refs.discard(name)
        entries = _dispatch_entries(stmt)
        out[name] = Definition(name, _stmt_digest(stmt), frozenset(refs), entries)
    return out


def closure(defs: dict[str, Definition], roots: list[str] | tuple[str, ...],
            select: dict[str, tuple[str, ...]] | None = None) -> dict[str, str]:
    """The definitions reachable from ``roots`` by name, each with its digest.

    A name in ``select`` is a dispatch table: only the selected entries are followed, and
    its digest covers only those entries (so adding a format to ``SAVERS`` changes no
    other format's closure). Selecting a key the table lacks is an error.

    Raises:
        KeyError: a root is not defined, or a selected key is not in its table.
    """
    select = select or {}
    seen: dict[str, str] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        d = defs[name]
        if name in select:
            if d.entries is None:
                raise KeyError(f"{name} is not a dispatch table")
            table = dict(d.entries)
            chosen = sorted(set(select[name]))
            missing = [k for k in chosen if k not in table]
            if missing:
                raise KeyError(f"{name} has no entry {missing[0]!r}")
            seen[name] = hashlib.sha256(json.dumps(
                [f"cache-protocol:{CACHE_PROTOCOL}", [[k, table[k]] for k in chosen]]).encode()).hexdigest()
            todo.extend(table[k] for k in chosen)
            continue
        seen[name] = d.digest
        todo.extend(d.refs)
    return seen


@functools.lru_cache(maxsize=64)
def _cached_defs(path: str, mtime_ns: int, size: int) -> dict[str, Definition]:
    return module_definitions(Path(path).read_text(encoding="utf-8"), filename=path)


def file_definitions(path: Path | str) -> dict[str, Definition]:
    """:func:`module_definitions` of the file at ``path`` (memoised per path, mtime, size)."""
    p = Path(path)
    st = p.stat()
    return _cached_defs(str(p.resolve()), st.st_mtime_ns, st.st_size)
