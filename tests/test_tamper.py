"""Fault tier: code under test attacks the worker protocol from inside a host worker process.

The same attacks run in docker containers in tests/test_sandbox_real.py. Here the worker
is a real host process (fake Keras) and every attack touches the real filesystem: the
host follows no link it planted, blocks on no FIFO, reads no flood, and records each as
``protocol_error`` / ``runner.control_tampered``; the benign twin saves ``ok``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tamper
from conftest import FakeStack

pytestmark = pytest.mark.faults

CONTROL_FILE = {"heartbeat-symlink": "heartbeat", "log-symlink": "log.txt", "log-hardlink": "log.txt",
                "events-symlink": "events.jsonl", "events-fifo": "events.jsonl", "events-flood": "events.jsonl"}


EXPECTED = "host file untouched, no secret in the record; the cell is the attack"


@pytest.fixture(scope="module", autouse=True)
def _attacks_section() -> Iterator[None]:
    yield
    tamper.write_section()


def _runner(fake: FakeStack) -> Any:
    from conftest import by_id

    return lambda cells: by_id(fake.run("save", cells, cell_timeout=40))


@pytest.mark.parametrize("attack", sorted(tamper.ATTACKS))
def test_an_attack_on_the_control_folder_is_contained_and_recorded(fake: FakeStack, tmp_path: Path,
                                                                   attack: str) -> None:
    result, target, secret, before = tamper.run_attack(tmp_path / "attack", attack, tamper.ATTACKS[attack],
                                                       _runner(fake))
    tamper.check_host(result, target, secret, before, CONTROL_FILE[attack])
    tamper.observe("host worker", attack, EXPECTED, result)


def test_the_benign_twin_saves_ok_through_the_same_runner(fake: FakeStack, tmp_path: Path) -> None:
    result, target, secret, before = tamper.run_attack(tmp_path / "twin", "benign", tamper.BENIGN, _runner(fake))
    assert result["outcome"] == "ok", result
    assert (Path(result.get("details", {}).get("artifact_dir") or tmp_path / "twin" / "artifacts" / "benign")).exists()
    assert tamper.digest(secret) == before and not target.exists()
    tamper.observe("host worker", "benign twin (same scenario, no attack)", "saves ok", result)
