"""Fault injection for the reliability suite: a real SIGKILL (or SIGINT) of the runner
at a named point, chosen by ``$COMPAT_FAULT`` (unset in normal runs: one dict lookup).

    COMPAT_FAULT=kill:record-write:3     SIGKILL this process at the 3rd record-write point
    COMPAT_FAULT=int:load-result:1       SIGINT (Ctrl-C) at the first load result

Points: ``env-built`` (a stack's env is ready), ``save-result`` / ``load-result`` (a
result arrived, before its record is written), ``record-write`` (a record's temp file is
written and synced, not yet renamed), ``report-file`` (after each report file written
into the new folder), ``report-write`` (every report file written into the new folder,
nothing swapped), ``report-swap`` (the new folder swapped in, the old one not yet removed).
tests/test_faults.py and tests/test_report_integrity.py drive them.
"""

from __future__ import annotations

import os
import signal
import threading

__all__ = ["point"]

_COUNTS: dict[str, int] = {}
_LOCK = threading.Lock()
_SIGNALS = {"kill": signal.SIGKILL, "int": signal.SIGINT}


def point(name: str) -> None:
    spec = os.environ.get("COMPAT_FAULT")
    if not spec:
        return
    action, _, rest = spec.partition(":")
    where, _, nth = rest.partition(":")
    if where != name or action not in _SIGNALS:
        return
    with _LOCK:
        _COUNTS[name] = _COUNTS.get(name, 0) + 1
        hit = _COUNTS[name] == int(nth or 1)
    if hit:
        os.kill(os.getpid(), _SIGNALS[action])
