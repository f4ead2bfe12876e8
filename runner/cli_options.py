"""The command-line options several commands share, and their argparse types.

Both ``runner.cli`` (matrix, save, load, report, ...) and the commands that build their own
sub-parser (``check``) add them from here, so neither imports the other for them.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from runner.records import default_store_root
from runner.stacks import DEFAULT_CATALOG

__all__ = ["add_common", "add_stacks", "add_workers", "csv_list", "positive", "positive_int", "positive_seconds"]


def csv_list(text: str) -> list[str]:
    items = [p.strip() for p in text.split(",") if p.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"empty list {text!r}: name at least one (omit the option for all)")
    return items


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def positive(unit: str) -> Callable[[str], float]:
    """An argparse type: a finite number > 0 of ``unit`` (seconds, CPUs)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (value > 0 and value != float("inf")):
            raise argparse.ArgumentTypeError(f"must be a positive number of {unit}, not {text}")
        return value
    return parse


positive_seconds = positive("seconds")


def add_common(p: argparse.ArgumentParser, store: Path | None = None,
               store_help: str = "work directory for envs, artifacts and records (default .matrix, or $COMPAT_STORE)",
               ) -> None:
    """Every command's catalog and store (``check`` passes its own store)."""
    p.add_argument("--catalog", type=Path, default=DEFAULT_CATALOG, help="stack catalog TOML")
    p.add_argument("--store", type=Path, default=default_store_root() if store is None else store, help=store_help)


def add_stacks(p: argparse.ArgumentParser, stacks_help: str = "comma-separated stack ids",
               tags_help: str = "comma-separated catalog tags") -> None:
    p.add_argument("--stacks", type=csv_list, default=[], help=stacks_help)
    p.add_argument("--tags", "-t", type=csv_list, default=[], help=tags_help)


def add_workers(p: argparse.ArgumentParser, cell_timeout: float, cell_help: str) -> None:
    """The options of every command that runs cells (matrix, save, load, check)."""
    p.add_argument("--fresh", action="store_true", help="recompute cells even if recorded")
    p.add_argument("--cell-timeout", type=positive_seconds, default=cell_timeout, help=cell_help)
    p.add_argument("--import-timeout", type=positive_seconds, default=600.0,
                   help="seconds a worker may take to import its framework")
    p.add_argument("--jobs", "-j", type=positive_int, default=min(2, os.cpu_count() or 1),
                   help="stacks worked on at once (default: min(2, CPUs)); results do not depend on it")
