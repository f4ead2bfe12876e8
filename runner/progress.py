"""Where a long run is: one overall progress display, per-cell lines in a log file.

Stdlib only (``tqdm`` draws the bar when it is installed and the output is a terminal).
Each phase (save, load, remedy) announces how many cells it plans; every cell that ends
— run or taken from the cache — advances it. On a terminal that is one tqdm bar per
phase (cells done / planned, rate, ETA); elsewhere (CI logs) one plain line every
``interval`` seconds and one when the phase ends. The ETA comes from this run's own pace
over the cells it had to run (cached cells cost nothing and are excluded from the rate).
Per-cell lines always go to the run's log file, and to the console with ``verbose``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any, TextIO

__all__ = ["Progress"]


def _eta(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    def __init__(self, out: TextIO, log_path: Path | None = None, *, verbose: bool = False,
                 interval: float = 30.0, bar: bool | None = None) -> None:
        self.out = out
        self.verbose = verbose
        self.interval = interval
        self._lock = threading.Lock()
        self._log_path = log_path
        self._log: TextIO | None = None  # opened at the first cell line (a run with none writes none)
        isatty = getattr(out, "isatty", lambda: False)()
        self._tqdm: Any = None
        if bar if bar is not None else isatty:
            with contextlib.suppress(ImportError):
                import tqdm

                self._tqdm = tqdm.tqdm
        self._phase: str | None = None
        self._bar: Any = None
        self._planned = self._done = self._computed = 0
        self._t0 = self._t_last = 0.0

    # ------------------------------------------------------------------ phases
    def phase(self, name: str, planned: int) -> None:
        """Start ``name`` with ``planned`` cells (ends the previous phase)."""
        with self._lock:
            self._end_locked()
            self._phase, self._planned, self._done, self._computed = name, planned, 0, 0
            self._t0 = self._t_last = time.monotonic()
            if self._tqdm is not None and planned:
                self._bar = self._tqdm(total=planned, desc=name, unit="cell", file=self.out,
                                       dynamic_ncols=True, leave=True)

    def advance(self, *, computed: bool) -> None:
        with self._lock:
            self._done += 1
            self._computed += computed
            if self._bar is not None:
                self._bar.update(1)
            elif time.monotonic() - self._t_last >= self.interval:
                self._line_locked()

    def cell(self, text: str) -> None:
        """One cell's line: the log file always, the console with ``verbose``."""
        with self._lock:
            if self._log is None and self._log_path is not None:
                self._log_path.parent.mkdir(parents=True, exist_ok=True)
                self._log = self._log_path.open("w", encoding="utf-8")
            if self._log is not None:
                self._log.write(text + "\n")
                self._log.flush()
            if self.verbose:
                self._write_locked(text)

    def close(self) -> None:
        with self._lock:
            self._end_locked()
            if self._log is not None:
                self._log.close()
                self._log = None

    # ----------------------------------------------------------------- helpers
    def status(self) -> str:
        """The plain progress line of the current phase."""
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        pct = 100.0 * self._done / self._planned if self._planned else 100.0
        text = f"[progress] {self._phase}: {self._done}/{self._planned} cells ({pct:.0f} %)"
        if self._computed:
            rate = self._computed / elapsed
            text += f", {rate:.2f} cells/s"
            left = self._planned - self._done
            if left > 0:
                text += f", ETA {_eta(left / rate)}"
        cached = self._done - self._computed
        return text + (f", {cached} from the cache" if cached else "")

    def _line_locked(self) -> None:
        self._t_last = time.monotonic()
        self._write_locked(self.status())

    def _write_locked(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self.out)
        else:
            print(text, file=self.out, flush=True)

    def _end_locked(self) -> None:
        if self._phase is None:
            return
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._planned:
            self._line_locked()
        self._phase = None
