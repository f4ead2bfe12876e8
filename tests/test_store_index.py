"""The store's record index: a cache of parsed records that costs speed, never correctness.

Every test that shows a failure being caught (a rewritten, deleted, damaged record or
index) has a twin showing the index really served the unchanged case, so a test cannot
pass merely because the index was never used.
"""

from __future__ import annotations

import dataclasses
import json
import marshal
import os
import sqlite3
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest

from runner import records
from runner.records import (
    ErrorInfo,
    NewerSchemaError,
    Outcome,
    Record,
    RecordIndex,
    Store,
    atomic_write_many,
    load_cell_id,
)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _quick_trust(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files count as settled 50 ms after they changed (2 s in use), so tests need not
    wait; the clock is read afresh for every file."""
    monkeypatch.setattr(RecordIndex, "RACY_NS", 50_000_000)
    monkeypatch.setenv("COMPAT_STORE_INDEX", "on")


def _settle() -> None:
    time.sleep(0.12)


def _rec(n: int, key: str = "k", outcome: Outcome = Outcome.OK, **kw: object) -> Record:
    loader, saver = ("a1", "b2") if n % 2 else ("b2", "a1")
    return Record(record_type="load", cell_id=load_cell_id(f"sc{n}", "h5", saver, loader, "default"),
                  stack=loader, outcome=outcome, key=key, saver=saver, loader=loader, scenario=f"sc{n}",
                  format="h5", variant="default", env={"python": "3.11", "dists": {"keras": "3.5"}},
                  details={"limit_s": 10.0, "prediction": "match"}, key_parts={"env": "e"},
                  duration_s=0.25, max_abs_diff=1e-7, **kw)  # type: ignore[arg-type]


def _store(tmp_path: Path, n: int = 6) -> tuple[Store, list[Path]]:
    store = Store(tmp_path / "s")
    paths = [store.write(_rec(i)) for i in range(n)]
    _settle()
    return store, paths


def _warm(root: Path, paths: list[Path]) -> Store:
    """A fresh Store (a new process, as far as the index knows) that read every path with
    the store's lock held, so the index exists and holds them."""
    st = Store(root)
    with st.running():
        for p in paths:
            st.read(p)
    assert st.index is not None
    st.index.flush()
    return st


def _fresh(root: Path) -> Store:
    st = Store(root)
    assert st.index is not None
    return st


@pytest.fixture
def no_file_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records the record files opened (os.open for the indexed path, Path.read_text for
    the plain one)."""
    opened: list[str] = []
    real_open, real_read_text = os.open, Path.read_text

    def spy_open(path: object, *a: object, **k: object) -> int:
        if str(path).endswith(".json"):
            opened.append(str(path))
        return real_open(path, *a, **k)  # type: ignore[arg-type]

    def spy_read_text(self: Path, *a: object, **k: object) -> str:
        if self.suffix == ".json":
            opened.append(str(self))
        return real_read_text(self, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(records.os, "open", spy_open)
    monkeypatch.setattr(Path, "read_text", spy_read_text)
    return opened


def test_a_warm_index_serves_every_record_without_opening_a_file(tmp_path: Path, no_file_reads: list[str]) -> None:
    store, paths = _store(tmp_path)
    _warm(store.root, paths)
    assert (store.root / RecordIndex.NAME).is_file()
    no_file_reads.clear()
    st = _fresh(store.root)
    got = [st.read(p) for p in paths]
    assert got == [_rec(i) for i in range(len(paths))]
    assert no_file_reads == [] and st.index.hits == len(paths) and st.index.misses == 0
    scan = _fresh(store.root).scan()
    assert scan.records == sorted(got, key=lambda r: str(store.record_path(r))) and scan.skipped == []
    assert no_file_reads == []
    assert [r.cell_id for r in _fresh(store.root).iter_records()] == [r.cell_id for r in scan.records]
    assert no_file_reads == []


def test_records_round_trip_through_the_index_unchanged(tmp_path: Path) -> None:
    odd = [_rec(0), _rec(1, outcome=Outcome.LOAD_ERROR, error=ErrorInfo("builtins.ValueError", "bad ü\n", "tb")),
           dataclasses.replace(_rec(2), warnings=(("UserWarning", "w"),), duration_s=3, max_abs_diff=None,
                               details={"nested": {"a": [1, 2.5, None, True]}}, key_parts={}),
           dataclasses.replace(_rec(3), error=ErrorInfo("", "", ""), env={}, saver_env={"x": "y"})]
    store = Store(tmp_path / "s")
    paths = [store.write(r) for r in odd]
    _settle()
    _warm(store.root, paths)
    st = _fresh(store.root)
    assert [st.read(p) for p in paths] == [Record.from_dict(json.loads(p.read_text())) for p in paths] == odd
    assert st.index.hits == len(odd)


def test_every_record_field_survives_the_index(tmp_path: Path) -> None:
    """Each field of Record set away from its default comes back from the index as written:
    a field added to Record can never be dropped by the index's fast path."""
    rec = dataclasses.replace(
        _rec(0, outcome=Outcome.TRAINING_MISMATCH, error=ErrorInfo("t", "m", "tb")), phase="compare",
        warnings=(("W", "w"),), saver_env={"python": "3.8"}, worker_sha256="w" * 64, scenario_sha256="s" * 64,
        observed={"outputs": [{"dtype": "<f4", "shape": [1], "zlib": "eJw="}], "worker_outcome": "observed"},
        judged_with="j" * 64)
    defaults = Record(record_type="load", cell_id="x", stack="y", outcome=Outcome.OK)
    unset = [f.name for f in dataclasses.fields(Record) if getattr(rec, f.name) == getattr(defaults, f.name)
             and f.name not in ("record_type",)]
    assert unset == [], f"set these fields in the test too: {unset}"
    store = Store(tmp_path / "s")
    path = store.write(rec)
    _settle()
    _warm(store.root, [path])
    st = _fresh(store.root)
    assert st.read(path) == rec and st.index.hits == 1


def test_a_rewrite_of_the_same_size_in_the_same_tick_is_read_again(tmp_path: Path) -> None:
    store, paths = _store(tmp_path)
    _warm(store.root, paths)
    before = os.stat(paths[0])
    new = _rec(0, key="K")  # same size: one character differs
    store.write(new)  # a new inode renamed in
    os.utime(paths[0], ns=(before.st_atime_ns, before.st_mtime_ns))  # the old mtime, to the ns
    assert os.stat(paths[0]).st_size == before.st_size and os.stat(paths[0]).st_mtime_ns == before.st_mtime_ns
    st = _fresh(store.root)
    assert st.read(paths[0]) == new
    assert st.read(paths[1]) == _rec(1)  # twin: the unchanged one is served
    assert (st.index.hits, st.index.misses) == (1, 1)


def test_an_edit_in_place_with_the_old_mtime_is_read_again(tmp_path: Path) -> None:
    store, paths = _store(tmp_path)
    _warm(store.root, paths)
    before = os.stat(paths[0])
    text = paths[0].read_text().replace('"key": "k"', '"key": "Q"')
    with paths[0].open("r+") as fh:  # same inode, same size
        fh.write(text)
    os.utime(paths[0], ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(paths[0])
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    st = _fresh(store.root)
    assert st.read(paths[0]).key == "Q"  # the ctime moved: nobody can set it back
    assert st.read(paths[2]) == _rec(2) and st.index.hits == 1


def test_a_file_changed_just_now_is_not_indexed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Git's racily-clean rule: a row is written only for a file that had not changed for
    RACY_NS before the file system's clock was read (before the file was)."""
    monkeypatch.setattr(RecordIndex, "RACY_NS", 3_600 * 10**9)  # an hour: everything here is new
    store = Store(tmp_path / "s")
    path = store.write(_rec(0))
    _warm(store.root, [path])
    st = _fresh(store.root)
    assert st.read(path) == _rec(0) and (st.index.hits, st.index.misses) == (0, 1)
    monkeypatch.setattr(RecordIndex, "RACY_NS", 0)  # twin: once settled, it is indexed
    _settle()
    _warm(store.root, [path])
    st = _fresh(store.root)
    assert st.read(path) == _rec(0) and (st.index.hits, st.index.misses) == (1, 0)


def test_a_deleted_record_is_gone_and_a_new_one_appears(tmp_path: Path) -> None:
    store, paths = _store(tmp_path)
    _warm(store.root, paths)
    paths[0].unlink()
    extra = store.write(_rec(9))
    st = _fresh(store.root)
    assert st.read(paths[0]) is None
    assert st.read(extra) == _rec(9)
    scan = _fresh(store.root).scan()
    assert sorted(r.cell_id for r in scan.records) == sorted(_rec(i).cell_id for i in [1, 2, 3, 4, 5, 9])
    assert st.read(paths[1]) == _rec(1) and st.index.hits == 1  # twin: the others are served


@pytest.mark.parametrize("damage", ["deleted", "garbage", "truncated", "zeroed-page", "body", "stamp"])
def test_a_damaged_index_costs_speed_only(tmp_path: Path, damage: str) -> None:
    store, paths = _store(tmp_path, n=40)
    _warm(store.root, paths)
    db = store.root / RecordIndex.NAME
    if damage == "deleted":
        db.unlink()
    elif damage == "garbage":
        db.write_bytes(b"this is not a database\n" * 100)
    elif damage == "truncated":
        db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])
    elif damage == "zeroed-page":
        data = bytearray(db.read_bytes())
        page = int.from_bytes(data[16:18], "big") or 65536  # the file's own page size (header)
        data[page:2 * page] = bytes(page)  # the second page: rows
        db.write_bytes(bytes(data))
    elif damage == "body":  # every row's record replaced by another valid one; the CRCs kept
        with sqlite3.connect(db) as conn:
            other = zlib.compress(marshal.dumps(_rec(1, key="WRONG").to_dict()), 1)
            conn.execute("UPDATE rec SET body = ?", (other,))
    elif damage == "stamp":  # written by another version of the record code
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE meta SET v = 'another runner' WHERE k = 'stamp'")
    st = _fresh(store.root)
    assert [st.read(p) for p in paths] == [_rec(i) for i in range(len(paths))]
    assert st.index.hits == 0
    assert _fresh(store.root).scan().records == sorted((_rec(i) for i in range(len(paths))),
                                                      key=lambda r: str(store.record_path(r)))
    # twin: rebuilt as it was read, the next reader is served from it
    _warm(store.root, paths)
    again = _fresh(store.root)
    assert [again.read(p) for p in paths] == [_rec(i) for i in range(len(paths))]
    assert again.index.hits == len(paths)


def test_an_index_update_killed_mid_transaction_is_rolled_back(tmp_path: Path) -> None:
    store, paths = _store(tmp_path)
    _warm(store.root, paths)
    db = store.root / RecordIndex.NAME
    # A process that replaces every row with a wrong record and dies before committing.
    code = ("import os, sqlite3, sys\nconn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "conn.execute('PRAGMA cache_size=1')\nconn.execute('BEGIN IMMEDIATE')\n"
            "conn.execute(\"UPDATE rec SET body = zeroblob(5000), crc = 0\")\n"
            "conn.execute(\"INSERT INTO rec SELECT path || 'x', dev, ino, size, mtime, ctime, crc, body FROM rec\")\n"
            "os._exit(9)\n")
    assert subprocess.run([sys.executable, "-c", code, str(db)], check=False).returncode == 9
    st = _fresh(store.root)
    assert [st.read(p) for p in paths] == [_rec(i) for i in range(len(paths))]
    assert st.index.hits == len(paths)  # the journal rolled the update back: the rows are intact


def test_a_newer_schema_record_still_raises(tmp_path: Path) -> None:
    store, paths = _store(tmp_path)
    _warm(store.root, paths)
    raw = json.loads(paths[0].read_text())
    raw["schema_version"] = records.SCHEMA_VERSION + 1
    records.atomic_write_text(paths[0], json.dumps(raw))
    _settle()
    for _ in range(2):  # never indexed: it raises every time
        st = _fresh(store.root)
        with pytest.raises(NewerSchemaError, match=str(paths[0])):
            st.read(paths[0])
        with pytest.raises(NewerSchemaError, match=str(paths[0])):
            _fresh(store.root).scan()
        with pytest.raises(records.RecordError):
            list(_fresh(store.root).iter_records())
    st = _fresh(store.root)
    assert st.read(paths[1]) == _rec(1) and st.index.hits == 1  # twin


def test_unreadable_records_are_still_reported_every_time(tmp_path: Path) -> None:
    store, paths = _store(tmp_path)
    _warm(store.root, paths)
    paths[0].write_text('{"schema_version": 4, "outcome": "ok"')  # truncated
    paths[1].unlink()
    paths[1].symlink_to(paths[2])  # a symlink is not a record file of the scan
    _settle()
    for _ in range(2):
        _warm(store.root, paths)
        st = _fresh(store.root)
        assert st.read(paths[0]) is None and st.unreadable == [paths[0]]
        scan = _fresh(store.root).scan()
        assert sorted((p.name, why.split(":")[0]) for p, why in scan.skipped) == sorted(
            [(paths[0].name, "JSONDecodeError"), (paths[1].name, "RecordError")])
        assert len(scan.records) == len(paths) - 2
        assert st.read(paths[3]) == _rec(3) and st.index.hits == 1  # twin: the rest is served


def test_a_reader_uses_but_never_creates_the_index(tmp_path: Path) -> None:
    store, paths = _store(tmp_path)
    reader = Store(store.root)
    with reader.running(reader=True):
        assert [reader.read(p) for p in paths] == [_rec(i) for i in range(len(paths))]
    reader.scan()
    assert reader.index is not None and reader.index.close() is None
    assert not (store.root / RecordIndex.NAME).exists()
    assert not (tmp_path / "nothing").exists() and Store(tmp_path / "nothing").scan().records == []
    assert not (tmp_path / "nothing").exists()
    _warm(store.root, paths)  # twin: a writer creates it, and a reader is then served
    reader = Store(store.root)
    with reader.running(reader=True):
        reader.read(paths[0])
    assert reader.index is not None and reader.index.hits == 1


def test_the_index_can_be_switched_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, paths = _store(tmp_path)
    monkeypatch.setenv("COMPAT_STORE_INDEX", "off")
    st = Store(store.root)
    with st.running():
        assert [st.read(p) for p in paths] == [_rec(i) for i in range(len(paths))]
    assert st.index is None and not (store.root / RecordIndex.NAME).exists()


def test_concurrent_readers_and_a_writer_see_old_or_new_records_only(tmp_path: Path) -> None:
    store, paths = _store(tmp_path, n=30)
    _warm(store.root, paths)
    st = _fresh(store.root)
    versions = {p: [_rec(i, key=k) for k in ("k", "x", "y")] for i, p in enumerate(paths)}
    bad: list[object] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            for p in paths:
                got = st.read(p)
                if got not in versions[p]:
                    bad.append(got)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    with st.running():
        for key in ("x", "y", "k", "x"):
            for i in range(len(paths)):
                store.write(_rec(i, key=key))
            time.sleep(0.06)
    stop.set()
    for t in threads:
        t.join()
    assert bad == []
    _settle()
    assert [_fresh(store.root).read(p) for p in paths] == [_rec(i, key="x") for i in range(len(paths))]
    _warm(store.root, paths)
    again = _fresh(store.root)
    assert [again.read(p) for p in paths] == [_rec(i, key="x") for i in range(len(paths))]
    assert again.index.hits == len(paths)  # twin


def test_atomic_write_many_writes_everything_or_leaves_the_old_files(tmp_path: Path) -> None:
    files = [(tmp_path / f"d{i % 3}" / f"r{i}.json", f"{i}\n".encode()) for i in range(50)]
    assert atomic_write_many(files, chunk=7, threads=4) == 50
    assert all(p.read_bytes() == data for p, data in files)
    assert sorted(p.name for p in tmp_path.rglob(".*")) == []
    umask = os.umask(0)
    os.umask(umask)
    assert {p.stat().st_mode & 0o777 for p, _ in files} == {0o666 & ~umask}  # not mkstemp's 0600
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a directory should be")
    with pytest.raises(OSError):
        atomic_write_many([(p, b"new\n") for p, _ in files[:5]] + [(blocked / "x.json", b"y")], chunk=10)
    assert all(p.read_bytes() == data for p, data in files)  # the failing chunk changed nothing
    assert sorted(p.name for p in tmp_path.rglob(".*")) == []


def test_record_relpath_is_record_path_under_records(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    recs = [_rec(1), Record(record_type="env", cell_id="env:a1", stack="a1", outcome=Outcome.OK),
            Record(record_type="save", cell_id="sc:h5:a1", stack="a1", outcome=Outcome.OK, saver="a1",
                   scenario="sc", format="json+weights")]
    for rec in recs:
        assert store.records_dir / store.record_relpath(rec) == store.record_path(rec)
