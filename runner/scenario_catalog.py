"""The scenario catalogue: what the host knows of each ``scenarios/<name>.py``, read
statically (the host never imports a scenario), and the selection a run or report covers.

Stdlib only, and nothing of the matrix's planning or execution: ``report``, ``explain``,
``cli`` and the matrix read scenarios through this module.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runner._worker import worker as _w
from runner.keys import scenario_digest

__all__ = [
    "DEFAULT_ATOL",
    "DEFAULT_FORMATS",
    "DEFAULT_RTOL",
    "DEFAULT_SCENARIOS",
    "FORMATS",
    "OPT_IN_FORMATS",
    "Scenario",
    "ScenarioError",
    "Selection",
    "discover_scenarios",
    "read_scenario",
    "select_scenarios",
]

# The checkout's scenarios/, or the copy an installed wheel carries as runner/scenarios/.
DEFAULT_SCENARIOS = next((d for d in (Path(__file__).resolve().parent.parent / "scenarios",
                                      Path(__file__).resolve().parent / "scenarios") if d.is_dir()),
                         Path(__file__).resolve().parent.parent / "scenarios")
# Every scenario is saved in the default formats; an opt-in format (a finding of its own:
# a TF checkpoint, a .keras file with its weights beside it) only by the scenarios that
# name it in their FORMATS.
DEFAULT_FORMATS: tuple[str, ...] = _w.FORMATS
OPT_IN_FORMATS: tuple[str, ...] = _w.OPT_IN_FORMATS
FORMATS: tuple[str, ...] = DEFAULT_FORMATS + OPT_IN_FORMATS
DEFAULT_ATOL = 1e-6
DEFAULT_RTOL = 1e-6


class ScenarioError(ValueError):
    """A scenario module does not follow the contract (named in the message)."""


@dataclasses.dataclass(frozen=True)
class Scenario:
    """What the host knows of a scenario, read statically (the host never imports it)."""

    name: str
    path: Path
    sha256: str
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    formats: tuple[str, ...] | None = None
    variants: tuple[str, ...] = ("default",)
    doc: str = ""
    has_custom_objects: bool = False  # defines custom_objects(keras): the remedy can be tried

    def uses(self, fmt: str) -> bool:
        """Whether the grid has this scenario's cells of ``fmt``: every default format (a
        scenario whose FORMATS leaves one out records it as not applicable), and the
        opt-in formats it names."""
        return fmt not in OPT_IN_FORMATS or fmt in (self.formats or ())


def read_scenario(path: Path) -> Scenario:
    source = path.read_text(encoding="utf-8")
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        raise ScenarioError(f"{path}: does not parse: {exc.msg} (line {exc.lineno})") from None
    consts: dict[str, Any] = {}
    funcs = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            funcs.add(node.name)
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in ("ATOL", "RTOL", "FORMATS", "LOAD_VARIANTS"):
                try:
                    consts[name] = ast.literal_eval(node.value)
                except ValueError:
                    raise ScenarioError(f"{path}: {name} must be a literal") from None
    missing = [f for f in ("build", "inputs") if f not in funcs]
    if missing:
        raise ScenarioError(f"{path}: a scenario must define {' and '.join(missing)}()")
    formats = consts.get("FORMATS")
    if formats is not None:
        formats = tuple(formats)
        bad = [f for f in formats if f not in FORMATS]
        if bad:
            raise ScenarioError(f"{path}: unknown format {bad[0]!r} in FORMATS")
    variants = tuple(consts.get("LOAD_VARIANTS", ("default",)))
    bad = [v for v in variants if v not in _w.VARIANTS]
    if bad:
        raise ScenarioError(f"{path}: unknown load variant {bad[0]!r} (known: {', '.join(_w.VARIANTS)})")
    if "custom_objects" in variants and "custom_objects" not in funcs:
        raise ScenarioError(f"{path}: LOAD_VARIANTS has custom_objects but no custom_objects()")
    return Scenario(
        name=path.stem, path=path.resolve(), sha256=scenario_digest(path),
        atol=float(consts.get("ATOL", DEFAULT_ATOL)), rtol=float(consts.get("RTOL", DEFAULT_RTOL)),
        formats=formats, variants=variants, doc=(ast.get_docstring(tree) or "").split("\n")[0],
        has_custom_objects="custom_objects" in funcs,
    )


def discover_scenarios(directory: Path = DEFAULT_SCENARIOS) -> list[Scenario]:
    """Every ``<name>.py`` in ``directory`` (``_``-prefixed files are helpers), by name."""
    if not directory.is_dir():
        raise ScenarioError(f"{directory}: scenario directory not found")
    return [read_scenario(p) for p in sorted(directory.glob("*.py")) if not p.name.startswith("_")]


def select_scenarios(scenarios: Sequence[Scenario], names: Sequence[str]) -> list[Scenario]:
    known = {s.name for s in scenarios}
    for name in names:
        if name not in known:
            raise ScenarioError(f"unknown scenario {name!r} (known: {', '.join(sorted(known))})")
    return [s for s in scenarios if not names or s.name in names]


@dataclasses.dataclass(frozen=True)
class Selection:
    """What a run or a report covers. Only ``whole`` (the default catalog, every default
    scenario, every format) is the published table; every report file states this."""

    stacks: tuple[str, ...]
    scenarios: tuple[str, ...]
    formats: tuple[str, ...]
    whole: bool = False

    def describe(self) -> str:
        default = [f for f in self.formats if f not in OPT_IN_FORMATS]
        opt_in = [f for f in self.formats if f in OPT_IN_FORMATS]
        size = f"{len(self.stacks)} stacks × {len(self.scenarios)} scenarios × {len(default)} formats"
        if opt_in:  # only the scenarios naming them have these cells
            size += f" (and {', '.join(opt_in)} for the scenarios that name {'it' if len(opt_in) == 1 else 'them'})"
        variants = "each scenario's declared load variants, plus the remedy re-runs"
        if self.whole:
            return f"the whole default catalog: {size}; load variants: {variants}."
        return (f"a subset, NOT the published table: {size}: stacks {', '.join(self.stacks)}; "
                f"scenarios {', '.join(self.scenarios)}; formats {', '.join(self.formats)}; "
                f"load variants: {variants}.")
