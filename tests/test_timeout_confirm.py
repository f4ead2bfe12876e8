"""Fault tier: a timeout is a result only when it held at the full load limit.

Loads run at an adaptive limit (10 x the save's time, floor 10 s, here under a full
``--load-timeout 20``). A slow-but-working load (13 s) times out at 10 s, is re-run at
20 s and ends ``ok`` with its time; two loads that hang in the same place form one group
whose representative times out at 20 s and confirms the other (``confirmed_by``).
"""

from __future__ import annotations

from pathlib import Path

import e2e
import pytest

pytestmark = pytest.mark.faults


def test_timeouts_below_the_full_limit_are_confirmed_or_become_results(tmp_path: Path, envs_dir: Path) -> None:
    catalog = e2e.write_catalog(tmp_path / "catalog.toml", {
        "fk3.9": {"load": {"action": "swallow", "arg": 13, "match": "fk2.15/mlp/h5"}},
        "fk3.5": {"load": [{"action": "hang", "match": "fk2.15/mlp/keras"},
                           {"action": "hang", "match": "fk3.9/mlp/keras"}]}})
    proc = e2e.run_matrix(catalog, tmp_path / "store", tmp_path / "out", envs_dir,
                          "--jobs", "2", timeout=600)
    assert proc.returncode == 0, e2e.describe(proc)
    log = proc.stdout + proc.stderr
    assert "[confirm] 3 timeouts below the full 20 s limit, 2 groups" in log, e2e.describe(proc)
    recs = e2e.records_by_id(tmp_path / "store")

    slow = recs["mlp:h5:fk2.15->fk3.9:default"]
    assert slow["outcome"] == "ok", slow  # a user who waits gets a working model
    assert slow["details"]["limit_s"] == 20 and slow["duration_s"] >= 13, slow["details"]
    assert "confirming a timeout at 10 s" in slow["details"]["limit_rule"]

    hangs = [recs[f"mlp:keras:{saver}->fk3.5:default"] for saver in ("fk2.15", "fk3.9")]
    assert all(r["outcome"] == "timeout" for r in hangs), hangs
    rep, member = sorted(hangs, key=lambda r: r["details"]["limit_s"], reverse=True)
    assert rep["details"]["limit_s"] == 20, rep["details"]  # the representative held at the full limit
    assert member["details"]["limit_s"] == 10 and member["details"]["confirmed_by"] == rep["cell_id"]
    # Nothing else timed out, and no cell was left below the full limit unconfirmed.
    assert {cid for cid, r in recs.items() if r.get("outcome") == "timeout"} == {r["cell_id"] for r in hangs}
