"""Worker recycling (issue 24 item 7): a worker whose resident memory is over the limit
after a cell's result is retired between cells and a fresh one takes the other cells.

Real processes throughout: the real worker, the fake framework, and a scenario that leaves
``MB`` MiB of live memory behind per cell in the worker (as TF 1.15's graph-mode loads
leave objects behind: 4.4 GB over a loader's run). The memory is read from ``/proc``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from conftest import FAKES, by_id, consume, spawned_batches

from runner import execute
from runner._worker import worker as w

pytestmark = pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc (Linux)")

MIB = 1 << 20
LIMIT = 160 * MIB  # a fake-framework worker starts near 40 MiB (python + numpy)
LEAK_MB = 16

# Keeps its blocks in a module of its own, which the worker's between-cells restore leaves
# alone (it drops only the scenario modules), so the memory stays live for the process.
HOARDER = '''"""Fake-tier MLP whose build leaves MB MiB of live memory in the worker."""
import os
import sys
import time
import types

ATOL = 1e-6
RTOL = 1e-6
MB = {mb}


def build(keras):
    hoard = sys.modules.setdefault("_recycle_test_hoard", types.ModuleType("_recycle_test_hoard"))
    blocks = hoard.__dict__.setdefault("blocks", [])
    blocks.append(b"\\x01" * (MB << 20))  # written, so resident
    print("hoard pid=%d cells=%d" % (os.getpid(), len(blocks)), flush=True)
    time.sleep(0.05)  # a cell's worth of time: the host reads each result before the next few
    layers = keras.layers
    return keras.Sequential([keras.Input(shape=(4,)), layers.Dense(2, name="out")], name="hoarder")


def inputs(np):
    return np.random.RandomState(0).uniform(-1.0, 1.0, size=(3, 4)).astype("float32")
'''


def _scenario(tmp_path: Path, mb: int) -> Path:
    path = tmp_path / "scenarios" / f"hoarder{mb}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HOARDER.format(mb=mb))
    return path


def _cells(tmp_path: Path, scenario: Path, n: int) -> list[dict[str, Any]]:
    return [{"cell_id": f"save:c{i:02d}", "scenario": scenario.stem, "scenario_path": str(scenario),
             "format": "h5", "artifact_dir": str(tmp_path / "artifacts" / f"c{i:02d}")}
            for i in range(n)]


def _run(tmp_path: Path, cells: list[dict[str, Any]], worker_python: str,
         **kwargs: Any) -> tuple[list[dict[str, Any]], Path]:
    workdir = tmp_path / "work"
    gen = execute.run_cells(worker_python, "save", cells, workdir=workdir, env=execute.child_env({}),
                            cell_timeout=30.0, import_timeout=60.0, extra_sys_path=[str(FAKES)], **kwargs)
    return consume(gen, workdir), workdir


def _events(ctl: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (ctl / w.EVENTS_FILE).read_text().splitlines() if line.strip()]


def _pids(ctl: Path) -> set[int]:
    return {int(p) for p in re.findall(r"hoard pid=(\d+)", (ctl / w.LOG_FILE).read_text())}


def _request(ctl: Path) -> Mapping[str, Any]:
    request: Mapping[str, Any] = json.loads((ctl / w.REQUEST_FILE).read_text())
    return request


def test_a_growing_worker_is_recycled_and_every_cell_is_recorded_once(
        tmp_path: Path, worker_python: str, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(execute.RSS_LIMIT_VAR, f"{LIMIT // MIB}m")  # the documented override
    monkeypatch.setattr(execute, "RECYCLE_MIN_CELLS", 4)  # so the later, shorter batches recycle too
    cells = _cells(tmp_path, _scenario(tmp_path, LEAK_MB), 30)
    before = execute.recycled_workers()
    results, workdir = _run(tmp_path, cells, worker_python)

    got = by_id(results)  # fails on a cell recorded twice
    assert sorted(got) == [c["cell_id"] for c in cells]
    assert {r["outcome"] for r in results} == {"ok"}, [r["error"] for r in results if r["outcome"] != "ok"]

    ctls = sorted(p for p in workdir.iterdir() if p.is_dir())
    assert len(ctls) >= 3, "16 MiB a cell against a 160 MiB limit: several workers"
    assert execute.recycled_workers() - before == len(ctls) - 1
    # Each worker started only cells no earlier worker started, in order, and every
    # worker but the last ended between cells: its last event is a result (no "done",
    # no cell started and left), and its process exited with the protocol's status 3.
    started: list[str] = []
    batches = spawned_batches(workdir)
    for i, ctl in enumerate(ctls):
        events = _events(ctl)
        mine = [e["cell_id"] for e in events if e["event"] == "started"]
        assert mine == batches[i][:len(mine)] and not set(mine) & set(started)
        started += mine
        # Recyclable (a batch of at least RECYCLE_MIN_CELLS): it obeys the heartbeat.
        assert (_request(ctl)["parent_pid"] is None) == (len(batches[i]) >= 4)
        if i < len(ctls) - 1:
            assert events[-1]["event"] == "result" and events[-1]["cell_id"] == mine[-1]
            assert batches[i + 1] == batches[i][len(mine):]
            assert "[recycle]" in (ctl / w.LOG_FILE).read_text()
        else:
            assert events[-1]["event"] == "done"
    assert started == [c["cell_id"] for c in cells]
    # One process per worker, a different one each time.
    pids = [_pids(ctl) for ctl in ctls]
    assert all(len(p) == 1 for p in pids) and len(set().union(*pids)) == len(ctls)
    # The record says where it happened; outcomes are untouched.
    notes = [r for r in results if "worker_over_limit" in r["details"]]
    # (The last worker may be found over the limit too, and finish its batch before it
    # looks at the heartbeat: fast cells.)
    assert len(ctls) - 1 <= len(notes) <= len(ctls)
    for rec in notes:
        assert rec["outcome"] == "ok"
        note = rec["details"]["worker_over_limit"]
        assert note["rss_mib"] > note["limit_mib"] == LIMIT // MIB
    # Nothing was killed inside a save: every artifact complete, no temp dir left behind.
    arts = sorted((tmp_path / "artifacts").iterdir())
    assert [a.name for a in arts] == [f"c{i:02d}" for i in range(30)]
    assert all((a / w.SAVE_INFO_FILE).is_file() for a in arts)
    assert "[recycle] work: worker w001" in capfd.readouterr().err


@pytest.mark.parametrize(("leak_mb", "limit"), [(0, LIMIT), (LEAK_MB, 4 << 30)],
                         ids=["no-growth-same-limit", "same-growth-under-a-higher-limit"])
def test_under_the_limit_one_worker_serves_every_cell(tmp_path: Path, worker_python: str,
                                                      leak_mb: int, limit: int) -> None:
    """The twin: the same batch (recyclable: parent_pid null) never crosses its limit, so
    the same process serves every cell and no record mentions a retirement."""
    n = execute.RECYCLE_MIN_CELLS + 4
    cells = _cells(tmp_path, _scenario(tmp_path, leak_mb), n)
    before = execute.recycled_workers()
    results, workdir = _run(tmp_path, cells, worker_python, rss_limit=limit)
    assert sorted(by_id(results)) == [c["cell_id"] for c in cells]
    assert {r["outcome"] for r in results} == {"ok"}
    [ctl] = sorted(p for p in workdir.iterdir() if p.is_dir())
    assert _request(ctl)["parent_pid"] is None
    assert len(_pids(ctl)) == 1
    assert not any("worker_over_limit" in r["details"] for r in results)
    assert execute.recycled_workers() == before
    assert _events(ctl)[-1]["event"] == "done"


def test_a_small_batch_keeps_its_parent_pid_and_is_never_recycled(tmp_path: Path, worker_python: str) -> None:
    """Under RECYCLE_MIN_CELLS cells a fresh import costs more than the cells can leak: the
    worker keeps the pid-based orphan check and runs to the end even over the limit."""
    cells = _cells(tmp_path, _scenario(tmp_path, LEAK_MB), 6)
    results, workdir = _run(tmp_path, cells, worker_python, rss_limit=20 * MIB)
    assert {r["outcome"] for r in results} == {"ok"} and len(by_id(results)) == 6
    [ctl] = sorted(p for p in workdir.iterdir() if p.is_dir())
    assert _request(ctl)["parent_pid"] == os.getpid()
    assert not any("worker_over_limit" in r["details"] for r in results)


def test_a_zero_limit_never_recycles(tmp_path: Path, worker_python: str) -> None:
    cells = _cells(tmp_path, _scenario(tmp_path, LEAK_MB), execute.RECYCLE_MIN_CELLS)
    results, workdir = _run(tmp_path, cells, worker_python, rss_limit=0)
    assert {r["outcome"] for r in results} == {"ok"}
    [ctl] = sorted(p for p in workdir.iterdir() if p.is_dir())
    assert _request(ctl)["parent_pid"] == os.getpid()  # not recyclable: the pid check stays
    assert len(_pids(ctl)) == 1


def test_the_limit_comes_from_the_environment_or_the_machine(capsys: pytest.CaptureFixture[str]) -> None:
    var = execute.RSS_LIMIT_VAR
    assert execute.rss_limit_from_env({var: "2g"}) == 2 << 30
    assert execute.rss_limit_from_env({var: "2.5GiB"}) == int(2.5 * (1 << 30))
    assert execute.rss_limit_from_env({var: "1536M"}) == 1536 * MIB
    assert execute.rss_limit_from_env({var: "3221225472"}) == 3 << 30
    assert execute.rss_limit_from_env({var: "off"}) == 0 == execute.rss_limit_from_env({var: "0"})
    default = execute.default_rss_limit()
    assert execute.rss_limit_from_env({}) == default
    assert execute.RSS_LIMIT_FLOOR <= default <= execute.RSS_LIMIT_CAP
    total = execute._machine_memory()
    if total is not None and total // 4 < execute.RSS_LIMIT_CAP:
        assert default == max(execute.RSS_LIMIT_FLOOR, total // 4)
    assert execute.rss_limit_from_env({var: "lots"}) == default
    assert f"{var}='lots' is not a size" in capsys.readouterr().err


def test_memory_is_read_from_proc_for_this_process_tree() -> None:
    rss = execute._tree_rss(os.getpid())
    assert rss is not None and 5 * MIB < rss < 64 << 30
    assert execute._tree_rss(2 ** 22 + 7) is None  # no such process


class _Container:
    """The two things the executor reads of a docker-py container: ``attrs`` after
    ``reload()`` and ``id`` (a real container's State.Pid is its init in the host's pid
    namespace; here it is this test's own process, whose cgroup path we name)."""

    def __init__(self, pid: int, cid: str) -> None:
        self.attrs = {"State": {"Pid": pid}}
        self.id = cid

    def reload(self) -> None:
        pass


class _ContainerHandle:
    pid = -1  # as runner.runtime_docker.ContainerProcess: no host process group

    def __init__(self, container: _Container) -> None:
        self.container = container


def test_a_container_worker_is_measured_by_its_host_pid_only_when_its_cgroup_is_the_container() -> None:
    cgroup = Path("/proc/self/cgroup").read_text()
    name = next((part for part in reversed(re.split(r"[/:\n]", cgroup)) if len(part) >= 6), None)
    if name is None:
        pytest.skip("this process's cgroup path names nothing to stand for a container id")
    ours = _ContainerHandle(_Container(os.getpid(), name))
    assert execute._host_pid(ours) == os.getpid()  # type: ignore[arg-type]
    assert execute._tree_rss(os.getpid()) is not None
    # A pid from another namespace (Docker Desktop's VM, a remote engine) that happens to
    # exist here is some other process: its cgroup does not name the container.
    stranger = _ContainerHandle(_Container(os.getpid(), "f" * 64))
    assert execute._host_pid(stranger) is None  # type: ignore[arg-type]
    assert execute._host_pid(_ContainerHandle(_Container(0, name))) is None  # type: ignore[arg-type]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
