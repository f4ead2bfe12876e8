"""Longest first: a phase's queue of stacks is ordered by their wall times in the previous
run (``<store>/timings.json``), stacks never timed first; results never depend on it."""

from __future__ import annotations

import io
import json
from pathlib import Path

from runner import matrix
from runner.records import Store
from runner.stacks import Stack


def _stack(sid: str) -> Stack:
    return Stack(id=sid, python="3.11", requirements=(f"x=={sid}",))  # type: ignore[arg-type]


def _runner(store: Store, stacks: list[Stack]) -> matrix._Runner:
    return matrix._Runner(stacks, stacks, [], [], store, matrix.Options(jobs=1), io.StringIO(),
                          env_factory=lambda s, st: None)  # type: ignore[arg-type,return-value]


def _compute(runner: matrix._Runner, seen: list[str], stack: Stack) -> None:
    seen.append(stack.id)
    runner.count("load", "ok", cached=False)


def test_longest_first_unknown_first_and_times_saved(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    stacks = [_stack(s) for s in ("a", "b", "c", "d")]
    seen: list[str] = []
    r = _runner(store, stacks)
    r.each(lambda s: _compute(r, seen, s), stacks, "load")
    assert seen == ["a", "b", "c", "d"]  # nothing known: catalog order
    assert set(matrix.read_timings(store)["load"]) == {"a", "b", "c", "d"}
    matrix.save_timings(store, "load", {"a": 5.0, "b": 50.0, "c": 20.0})
    matrix.save_timings(store, "load", {})
    timings = json.loads((store.root / matrix.TIMINGS_FILE).read_text())
    del timings["load"]["d"]
    (store.root / matrix.TIMINGS_FILE).write_text(json.dumps(timings))
    seen.clear()
    _runner(store, stacks).each(lambda s: seen.append(s.id), stacks, "load")
    assert seen == ["d", "b", "c", "a"]  # never timed first, then the longest
    seen.clear()
    _runner(store, stacks).each(lambda s: seen.append(s.id), stacks, "save")
    assert seen == ["a", "b", "c", "d"]  # per phase


def test_unreadable_timings_only_lose_the_order(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    store.root.mkdir(parents=True)
    (store.root / matrix.TIMINGS_FILE).write_text("{not json")
    stacks = [_stack(s) for s in ("a", "b")]
    seen: list[str] = []
    r = _runner(store, stacks)
    r.each(lambda s: _compute(r, seen, s), stacks, "save")
    assert seen == ["a", "b"]
    assert set(matrix.read_timings(store)["save"]) == {"a", "b"}


def test_a_fully_cached_pass_keeps_the_previous_times(tmp_path: Path) -> None:
    """A stack whose cells all came from the store took ~0 s: saving that would put it last
    in the next cold run, where it is as long as ever."""
    store = Store(tmp_path / "store")
    stacks = [_stack(s) for s in ("a", "b")]
    matrix.save_timings(store, "load", {"a": 300.0, "b": 30.0})
    r = _runner(store, stacks)
    r.each(lambda s: r.count("load", "ok", cached=True), stacks, "load")
    assert matrix.read_timings(store)["load"] == {"a": 300.0, "b": 30.0}
    r.each(lambda s: r.count("load", "ok", cached=s.id == "a"), stacks, "load")
    timings = matrix.read_timings(store)["load"]
    assert timings["a"] == 300.0 and timings["b"] < 30.0  # only b computed


def test_every_stack_is_planned_before_any_runs_so_the_eta_covers_only_what_is_left(tmp_path: Path) -> None:
    """The progress line's ETA divides the cells left by the pace of computed ones: a cache
    hit counted only when its stack's turn came would be projected at that pace (a resumed
    full run showed 'ETA 11.1 h' with ~3 h of work left)."""
    store = Store(tmp_path / "store")
    stacks = [_stack(s) for s in ("a", "b", "c")]
    r = _runner(store, stacks)
    r.summary.envs = {s.id: s for s in stacks}  # type: ignore[misc]  # plan() only needs ids
    r.progress.phase("load", 3 * 10)
    done_at_first_run: list[int] = []

    def plan(env: Stack):  # 9 of each stack's 10 cells are cached; stack c is all cached
        for _ in range(9 if env.id != "c" else 10):
            r.count("load", "ok", cached=True)
        todo = [] if env.id == "c" else [{"cell_id": f"{env.id}-x"}]
        return todo, None

    def run(senv: Stack, phase: str, todo: list, to_record: object) -> None:
        done_at_first_run.append(r.progress._done)
        for _ in todo:
            r.count("load", "ok", cached=False)

    r._run = run  # type: ignore[method-assign]
    r.run_phase("load", stacks, plan)  # type: ignore[arg-type]
    assert done_at_first_run == [28, 29]  # all 28 hits counted before a cell ran; c never ran
    assert r.progress._done == 30
    assert set(matrix.read_timings(store)["load"]) == {"a", "b"}
