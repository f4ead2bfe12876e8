"""merge: store parts of split jobs become one store; conflicts and bad input are loud."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from runner import cli, records
from runner.cells import artifact_digest
from runner.records import Outcome, Record, Store, load_cell_id, save_cell_id

CATALOG = """
[[stack]]
id = "a1"
python = "3.11"
requirements = ["x==1"]

[[stack]]
id = "b2"
python = "3.11"
requirements = ["y==2"]
"""


def _save(store: Store, saver: str, scenario: str = "dense", outcome: Outcome = Outcome.OK,
          key: str = "k-save", payload: bytes = b"model") -> Record:
    art = store.artifact_dir(saver, scenario, "h5")
    details = {}
    if outcome is Outcome.OK:
        art.mkdir(parents=True, exist_ok=True)
        (art / "model.h5").write_bytes(payload)
        (art / "save.json").write_text("{}")
        details["artifact_sha256"] = artifact_digest(art)
    rec = Record(record_type="save", cell_id=save_cell_id(scenario, "h5", saver), stack=saver,
                 outcome=outcome, key=key, saver=saver, scenario=scenario, format="h5", details=details)
    store.write(rec)
    return rec


def _load(store: Store, saver: str, loader: str, outcome: Outcome = Outcome.OK, key: str = "k-load") -> Record:
    rec = Record(record_type="load", cell_id=load_cell_id("dense", "h5", saver, loader, "default"),
                 stack=loader, outcome=outcome, key=key, saver=saver, loader=loader, scenario="dense",
                 format="h5", variant="default")
    store.write(rec)
    return rec


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(CATALOG)
    return path


def _merge(catalog: Path, target: Path, *parts: Path) -> int:
    return cli.main(["merge", *map(str, parts), "--store", str(target), "--catalog", str(catalog)])


def test_parts_are_copied_with_their_artifacts(tmp_path: Path, catalog: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    p1, p2, target = Store(tmp_path / "p1"), Store(tmp_path / "p2"), tmp_path / "merged"
    _save(p1, "a1")
    _save(p2, "b2", payload=b"other")
    _load(p2, "a1", "b2")
    assert _merge(catalog, target, p1.root, p2.root) == 0
    out = capsys.readouterr().out
    assert "3 records copied, 0 identical, 2 artifacts copied, 0 conflicts" in out
    merged = Store(target)
    assert sorted(r.cell_id for r in merged.iter_records()) == [
        "dense:h5:a1", "dense:h5:a1->b2:default", "dense:h5:b2"]
    assert (merged.artifact_dir("b2", "dense", "h5") / "model.h5").read_bytes() == b"other"


def test_identical_cells_are_fine_and_merging_twice_is_a_no_op(tmp_path: Path, catalog: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    p1, p2, target = Store(tmp_path / "p1"), Store(tmp_path / "p2"), tmp_path / "merged"
    _save(p1, "a1")
    _save(p2, "a1")  # a load job's part carries the saves it downloaded
    assert _merge(catalog, target, p1.root, p2.root) == 0
    assert _merge(catalog, target, p1.root, p2.root) == 0
    out = capsys.readouterr().out
    assert "1 records copied, 1 identical" in out and "0 records copied, 2 identical" in out


def test_a_conflict_lists_both_records_and_overwrites_nothing(tmp_path: Path, catalog: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    p1, p2, target = Store(tmp_path / "p1"), Store(tmp_path / "p2"), tmp_path / "merged"
    _load(p1, "a1", "b2", Outcome.OK)
    _load(p2, "a1", "b2", Outcome.TIMEOUT)
    assert _merge(catalog, target, p1.root, p2.root) == 1
    out = capsys.readouterr().out
    assert "CONFLICT dense:h5:a1->b2:default" in out
    assert "ok key k-load" in out and "timeout key k-load" in out
    assert [r.outcome for r in Store(target).iter_records()] == [Outcome.OK]


def test_a_different_key_is_a_conflict(tmp_path: Path, catalog: Path) -> None:
    p1, p2, target = Store(tmp_path / "p1"), Store(tmp_path / "p2"), tmp_path / "merged"
    _load(p1, "a1", "b2", key="one")
    _load(p2, "a1", "b2", key="two")
    assert _merge(catalog, target, p1.root, p2.root) == 1


def test_an_empty_part_is_reported_not_an_error(tmp_path: Path, catalog: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    p1 = Store(tmp_path / "p1")
    _save(p1, "a1")
    assert _merge(catalog, tmp_path / "merged", empty, p1.root) == 0
    assert f"{empty}: 0 records (an empty part)" in capsys.readouterr().out


@pytest.mark.parametrize("fault", ["newer_schema", "garbage", "unknown_stack", "not_a_dir",
                                   "artifact_mismatch"])
def test_bad_parts_are_one_line_exit_2_and_copy_nothing(tmp_path: Path, catalog: Path, fault: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    good, bad, target = Store(tmp_path / "good"), Store(tmp_path / "bad"), tmp_path / "merged"
    _save(good, "a1")
    part = bad.root
    if fault == "not_a_dir":
        part = tmp_path / "file"
        part.write_text("x")
    elif fault == "artifact_mismatch":
        _save(bad, "b2")
        (bad.artifact_dir("b2", "dense", "h5") / "model.h5").write_bytes(b"tampered")
    else:
        rec = _load(bad, "a1", "b2")
        path = bad.record_path(rec)
        if fault == "newer_schema":
            path.write_text(json.dumps({**rec.to_dict(), "schema_version": 99}))
        elif fault == "garbage":
            path.write_text("{not json")
        else:
            path.write_text(json.dumps({**rec.to_dict(), "saver": "zz9", "cell_id": "x"}))
    code = _merge(catalog, target, good.root, part)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("runner: error: "), err
    if fault != "artifact_mismatch":  # found while reading the parts: nothing copied
        assert not (target / "records").exists()


def test_a_file_many_parts_carry_is_parsed_once_and_a_different_one_still_conflicts(
        tmp_path: Path, catalog: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Every load job's part carries every save record: the same bytes are validated once.
    Twin: the same cell with other bytes (another key) is parsed and is a conflict."""
    parsed: list[str] = []
    real = Record.from_dict.__func__  # type: ignore[attr-defined]

    def counting(cls: type[Record], raw: dict) -> Record:
        parsed.append(raw.get("cell_id", ""))
        return real(cls, raw)

    monkeypatch.setattr(Record, "from_dict", classmethod(counting))
    parts = [Store(tmp_path / f"p{i}") for i in range(4)]
    for part in parts:
        _save(part, "a1")  # byte-identical in all four
    _load(parts[0], "a1", "b2")
    assert _merge(catalog, tmp_path / "merged", *(p.root for p in parts)) == 0
    assert "2 records copied, 3 identical" in capsys.readouterr().out
    assert sorted(parsed) == ["dense:h5:a1", "dense:h5:a1->b2:default"]
    odd = Store(tmp_path / "odd")
    _save(odd, "a1", key="another-key")
    parsed.clear()
    assert _merge(catalog, tmp_path / "merged2", *(p.root for p in parts), odd.root) == 1
    out = capsys.readouterr().out
    assert "CONFLICT dense:h5:a1:" in out and "another-key"[:12] in out
    assert sorted(parsed).count("dense:h5:a1") >= 2  # the other bytes were read as a record


def test_records_are_copied_as_they_are_and_older_schemas_upgraded(tmp_path: Path, catalog: Path) -> None:
    part = Store(tmp_path / "p1")
    rec = _load(part, "a1", "b2")
    path = part.record_path(rec)
    raw = json.loads(path.read_text())
    path.write_text(json.dumps(raw, indent=2) + "\n")  # the same record, formatted otherwise
    old = _load(part, "b2", "a1")
    raw_old = {k: v for k, v in old.to_dict().items() if k != "key_parts"}
    raw_old["schema_version"] = 3
    part.record_path(old).write_text(json.dumps(raw_old))
    assert _merge(catalog, tmp_path / "merged", part.root) == 0
    merged = Store(tmp_path / "merged")
    assert merged.record_path(rec).read_bytes() == path.read_bytes()  # a copy: the part's bytes
    upgraded = json.loads(merged.record_path(old).read_text())
    assert upgraded["schema_version"] == records.SCHEMA_VERSION and upgraded["key_parts"] == {}
    assert merged.read(merged.record_path(old)) == dataclasses.replace(old)
