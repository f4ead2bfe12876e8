"""Attacks on the worker protocol by the code under test, shared by the fault tier (host
processes) and the docker tier (the sandbox's containers).

Each attack is a scenario whose ``build`` (code that runs inside the worker, as a Lambda
from a hostile file would) replaces a file of its control folder — found as the worker's
last argument — with something the host must not follow: a symbolic link to a host path,
a hard link, a FIFO, a flood. Then it stops answering (``os._exit`` or a sleep the host
ends). The host's side of each is checked by :func:`check_host`: the host paths are
untouched, no secret reached the record, the cell is ``protocol_error`` with the error
type ``runner.control_tampered`` naming the file. Every attack has a benign twin
(:data:`BENIGN`): the same scenario doing the same work without the attack, which must
save ``ok`` through the same runtime — so a runner that runs nothing cannot pass.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from runner import execute

TAMPERED = execute.TAMPERED
SECRET = "host-secret-" + uuid.uuid4().hex

# What each attack does to the control folder ``ctl`` (Python source, indented 4). The
# targets are host paths: ``target`` must never be created, ``secret`` (exists, holds
# SECRET) never read nor written.
ATTACKS: dict[str, str] = {
    # The host touches the heartbeat every 5 s: it would create `target`.
    "heartbeat-symlink": """
    hb = os.path.join(ctl, "heartbeat")
    if os.path.lexists(hb):
        os.remove(hb)
    os.symlink(target, hb)
    time.sleep(60)
""",
    # The host reads the log's tail into crash records: it would copy the secret.
    "log-symlink": """
    os.remove(os.path.join(ctl, "log.txt"))
    os.symlink(secret, os.path.join(ctl, "log.txt"))
    os._exit(3)
""",
    # A hard link to another file of the folder: the host would read (and append to) it.
    "log-hardlink": """
    os.remove(os.path.join(ctl, "log.txt"))
    os.link(os.path.join(ctl, "request.json"), os.path.join(ctl, "log.txt"))
    os._exit(3)
""",
    # The host reads the events: through the link it would take the secret file's lines.
    "events-symlink": """
    ev = os.path.join(ctl, "events.jsonl")
    os.rename(ev, ev + ".old")
    os.symlink(secret, ev)
    time.sleep(60)
""",
    # A FIFO: a plain open() would block the host's supervisor forever.
    "events-fifo": """
    ev = os.path.join(ctl, "events.jsonl")
    os.rename(ev, ev + ".old")
    os.mkfifo(ev)
    time.sleep(60)
""",
    # A flood: the host would read it all into memory.
    "events-flood": """
    with open(os.path.join(ctl, "events.jsonl"), "ab") as fh:
        block = b"x" * (1 << 20)
        for _ in range(80):
            fh.write(block)
    time.sleep(60)
""",
}
# Docker only: the supervisor appends a note to the log after an OOM kill.
OOM_ATTACK = """
    os.remove(os.path.join(ctl, "log.txt"))
    os.symlink(secret, os.path.join(ctl, "log.txt"))
    hog = []
    while True:
        hog.append(bytearray(64 << 20))
"""
BENIGN = """
    with open(os.path.join(os.environ.get("TMPDIR", "/tmp"), "scratch.txt"), "w") as fh:
        fh.write("the benign twin ran")
"""


def scenario_source(body: str, target: Path, secret: Path) -> str:
    return (
        '"""A scenario whose build attacks the worker protocol (tests/tamper.py)."""\n'
        "import os\nimport sys\nimport time\n\n"
        f"target = {str(target)!r}\nsecret = {str(secret)!r}\n\n\n"
        "def build(keras):\n"
        "    ctl = sys.argv[-1]\n"
        f"{body}"
        "    layers = keras.layers\n"
        "    return keras.Sequential([keras.Input(shape=(4,)), layers.Dense(2, name='out')], name='twin')\n\n\n"
        "def inputs(np):\n"
        "    return np.random.RandomState(0).uniform(-1.0, 1.0, size=(6, 4)).astype('float32')\n"
    )


def write_scenario(folder: Path, name: str, body: str) -> tuple[dict[str, Any], Path, Path]:
    """(save cell, target, secret) of an attack scenario written to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    target, secret = folder / f"{name}-target", folder / f"{name}-secret"
    secret.write_text(SECRET + "\n")
    scenario = name.replace("-", "_")
    (folder / f"{scenario}.py").write_text(scenario_source(body, target, secret))
    cell = {"cell_id": f"save:{name}", "scenario": scenario, "scenario_path": str(folder / f"{scenario}.py"),
            "format": "h5", "artifact_dir": str(folder / "artifacts" / name)}
    return cell, target, secret


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_host(result: Mapping[str, Any], target: Path, secret: Path, secret_digest: str,
               control_file: str) -> None:
    """The host's side of an attack: nothing followed, the cell recorded as the attack."""
    assert not target.exists(), f"the host created {target} through a planted link"
    assert digest(secret) == secret_digest, f"the host wrote to {secret} through a planted link"
    assert SECRET not in json.dumps(result), "a host file's contents reached the record"
    assert result["outcome"] == "protocol_error", result
    assert result["error"]["type"] == TAMPERED, result["error"]
    assert control_file in result["error"]["message"], result["error"]["message"]


Runner = Callable[[list[dict[str, Any]]], dict[str, dict[str, Any]]]


def run_attack(folder: Path, name: str, body: str, run: Runner) -> tuple[dict[str, Any], Path, Path, str]:
    """Write the attack's scenario, run its save cell with ``run``; (result, target, secret, secret digest)."""
    cell, target, secret = write_scenario(folder, name, body)
    before = digest(secret)
    return run([cell])[cell["cell_id"]], target, secret, before


# ----------------------------------------------------------- docs/reliability.md's attacks

SECTION = "## Attacks on the host from the code under test"
ROWS: dict[tuple[str, str], tuple[str, str]] = {}  # (where, attack) -> (expected, observed)


def observe(where: str, attack: str, expected: str, result: Mapping[str, Any]) -> None:
    """Note what an attack's run really recorded, for docs/reliability.md."""
    error = result.get("error") or {}
    message = re.sub(r"\S*/pytest-of-[^\s`:]*", "<tmp>", str(error.get("message", "")))[:220]
    ROWS[where, attack] = (expected, f"`{result.get('outcome')}`" + (f" `{error.get('type')}`: {message}"
                                                                      if error else ""))


def note(where: str, attack: str, expected: str, observed: str) -> None:
    """Note an attack's observed result given as text (a check's row, an error line)."""
    text = re.sub(r"\S*/pytest-of-[^\s`:]*", "<tmp>", " ".join(observed.split()))[:260]
    ROWS[where, attack] = (expected, text)


def write_section(path: Path | None = None) -> None:
    """Merge this session's rows into the attacks section of ``$COMPAT_RELIABILITY_OUT``
    (the fault, docker and real tiers each add theirs; rows of other tiers are kept)."""
    target = path or (Path(os.environ["COMPAT_RELIABILITY_OUT"]) if os.environ.get("COMPAT_RELIABILITY_OUT") else None)
    if target is None or not ROWS:
        return
    text = target.read_text(encoding="utf-8") if target.exists() else ""
    head, _, tail = text.partition(SECTION)
    rows = dict(ROWS)
    for line in tail.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) == 4 and cells[0] not in ("where", "---"):
            rows.setdefault((cells[0], cells[1]), (cells[2], cells[3]))
    lines = [SECTION, "", "Made by `tests/test_tamper.py` (host workers), the docker tier's attack tests "
             "(sandbox containers, a real `dockerd`) and the refusal tests of `check`, with "
             "`COMPAT_RELIABILITY_OUT=docs/reliability.md`; every row is what that run recorded. Each attack "
             "has a benign twin that must succeed through the same code.", "",
             "| where | attack | expected | observed |", "|---|---|---|---|"]
    lines += [f"| {w} | {a} | {e} | {o.replace('|', '/')} |" for (w, a), (e, o) in sorted(rows.items())]
    target.write_text(head.rstrip("\n") + ("\n\n" if head.strip() else "") + "\n".join(lines) + "\n",
                      encoding="utf-8")
