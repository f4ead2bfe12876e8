"""One cell's full story (``explain``) and a standalone reproduction of it (``repro``).

Stdlib only. A CELL is a cell id as printed in the tables and ``results.csv``
(``scenario:format:saver->loader:variant`` for a load, ``scenario:format:saver`` for a
save), or any text contained in exactly one cell id.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shlex
import shutil
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from runner import components, diagnose, judge
from runner._worker import worker as _w
from runner.codehash import code_digest
from runner.keys import worker_digest
from runner.records import Record, Store, first_line, save_cell_id
from runner.scenario_catalog import DEFAULT_SCENARIOS, ScenarioError, read_scenario
from runner.stacks import Stack, find_python, natural_key

__all__ = ["CellError", "code_comparison", "explain_text", "find_cell", "write_repro"]


class CellError(ValueError):
    """The CELL argument names no cell, or more than one (one line, names candidates)."""


def find_cell(store: Store, text: str) -> Record:
    """The save or load record whose cell id is ``text``, or the only one containing it.
    Record files that cannot be used are passed over (a miss says how many there were)."""
    scan = store.scan()
    records = [r for r in scan.records if r.record_type in ("save", "load")]
    exact = [r for r in records if r.cell_id == text]
    if exact:
        return exact[0]
    hits = sorted((r for r in records if text in r.cell_id), key=lambda r: natural_key(r.cell_id))
    if not hits:
        unusable = (f"; {len(scan.skipped)} record file(s) could not be read, e.g. "
                    f"{scan.skipped[0][0]} ({scan.skipped[0][1]})" if scan.skipped else "")
        raise CellError(f"no cell id contains {text!r} in {store.root} (ids look like "
                        f"'dense:h5:tf2.15->tf2.18:default'; see results.csv.gz){unusable}")
    if len(hits) > 1:
        shown = ", ".join(r.cell_id for r in hits[:3])
        raise CellError(f"{len(hits)} cells match {text!r} (e.g. {shown}); give the full cell id")
    return hits[0]


def _env_line(env: dict[str, Any]) -> str:
    if not env:
        return "(versions not recorded)"
    extra = ", ".join(f"{k}={v}" for k, v in sorted((env.get("env_vars") or {}).items()))
    return (f"python {env.get('python')}, tensorflow {env.get('tensorflow') or '—'}, "
            f"keras {env.get('keras')} ({env.get('keras_api')}, backend {env.get('backend')})"
            + (f", {extra}" if extra else ""))


def _lookup(store: Store, rec: Record) -> Any:
    def find(loader: str, variant: str) -> Record | None:
        assert rec.saver and rec.scenario and rec.format
        return store.read(store.load_record_path(loader, rec.saver, rec.scenario, rec.format, variant))
    return find


def _has_custom_objects(scenario: str | None, scenario_dir: Path) -> bool:
    path = scenario_dir / f"{scenario}.py"
    return path.is_file() and read_scenario(path).has_custom_objects


# ----------------------------------------------------------------------- code identity
#
# A record carries the digests of the worker and the scenario that produced it
# (``worker_sha256``, ``scenario_sha256``): behaviour digests (runner/codehash.py) since
# cache protocol 3, a sha256 of the file's bytes before. Whether today's code is the
# recorded code is only ever said after comparing them.

_WORKER_FILE = Path(_w.__file__)
_JUDGE_FILE = Path(judge.__file__)
_COMPONENTS = ("worker", "scenario")


@dataclasses.dataclass(frozen=True)
class _Today:
    """One file as it is now: its behaviour digest and the byte hashes older records used."""

    digest: str  # "" when the file is missing or does not parse (then ``problem`` says why)
    raw: frozenset[str]
    problem: str = ""


def _today(path: Path, digest: Callable[[Path], str]) -> _Today:
    try:
        data = path.read_bytes()
    except OSError:
        return _Today("", frozenset(), f"{path.name} is not in {path.parent}")
    raw = {hashlib.sha256(data).hexdigest()}
    try:  # protocol 1 hashed a scenario's read_text(): universal newlines
        text = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
        raw.add(hashlib.sha256(text.encode("utf-8")).hexdigest())
    except UnicodeDecodeError:
        pass
    try:
        return _Today(digest(path), frozenset(raw))
    except (SyntaxError, ScenarioError, UnicodeDecodeError, ValueError) as exc:
        return _Today("", frozenset(raw), f"today's {path.name} cannot be digested "
                      f"({type(exc).__name__}: {first_line(str(exc))})")


def _today_code(scenario_path: Path, rec: Record) -> dict[str, _Today]:
    """Today's digests in the form ``rec`` holds them: since per-component keys (records with
    ``key_parts``), the worker digest covers only the components that cell runs."""
    def worker(path: Path) -> str:
        if not rec.key_parts:
            return code_digest(path)
        if rec.record_type not in ("save", "load"):
            return ""
        return worker_digest(components.cell_parts(rec.record_type, rec.format or "", rec.variant or "default"))

    return {"worker": _today(_WORKER_FILE, worker),
            "scenario": _today(scenario_path, lambda p: read_scenario(p).sha256)}


def _component_texts(recorded: dict[str, str], now: dict[str, _Today]) -> list[tuple[str, str]]:
    """(status, text) per component; status is ``same``, ``same_bytes``, ``different`` or
    ``unknown``. A record whose other digest matches today's bytes is from before
    behaviour digests: a mismatch there says the bytes changed, not that behaviour did."""
    behaviour_era = any(recorded[c] and recorded[c] == now[c].digest for c in _COMPONENTS)
    bytes_era = not behaviour_era and any(recorded[c] and recorded[c] in now[c].raw
                                          for c in _COMPONENTS)
    out = []
    for c in _COMPONENTS:
        was, cur = recorded[c], now[c]
        if not was:
            out.append(("unknown", f"cannot tell whether the {c} changed since the record: "
                                   f"the record holds no {c} digest — the outcome may differ"))
        elif cur.problem:
            out.append(("unknown", f"cannot tell whether the {c} changed since the record: "
                                   f"{cur.problem} — the outcome may differ"))
        elif was == cur.digest:
            out.append(("same", f"same {c} code as the recorded run (digest matches)"))
        elif was in cur.raw:
            out.append(("same_bytes", f"same {c} code as the recorded run (sha256 of its bytes "
                                      "matches: a record from before behaviour digests)"))
        elif bytes_era:
            out.append(("unknown", f"cannot tell whether the {c} changed since the record: the "
                                   f"record holds a sha256 of its bytes (from before behaviour "
                                   f"digests; recorded {was[:12]}) and today's bytes differ — "
                                   "the outcome may differ"))
        else:
            out.append(("different", f"DIFFERENT code: {c} changed since the record (recorded "
                                     f"{was[:12]}, now {cur.digest[:12]}) — the outcome may differ"))
    return out


def _statement(rec: Record, now: dict[str, _Today]) -> str:
    if not rec.worker_sha256 and not rec.scenario_sha256:
        return ("cannot tell whether the worker or the scenario changed since the record: the "
                "record holds no digests — the outcome may differ")
    parts = _component_texts({"worker": rec.worker_sha256, "scenario": rec.scenario_sha256}, now)
    statuses = {status for status, _ in parts}
    if statuses == {"same"}:
        return "same worker and scenario code as the recorded run (digests match)"
    if statuses <= {"same", "same_bytes"}:
        return ("same worker and scenario code as the recorded run (digests match; sha256 of "
                "the bytes for a record from before behaviour digests)")
    return "; ".join(text for _, text in parts)


def code_comparison(store: Store, rec: Record,
                    scenario_dir: Path = DEFAULT_SCENARIOS) -> list[tuple[str, str]]:
    """Whether today's worker and scenario are the code of ``rec``'s recorded run.

    One ``(side, statement)`` per side: a save record has the saving side only; a load
    record the saving side (compared with the save record in the store) and the loading
    side (compared with ``rec``). A statement says "same ... (digests match)", or per
    component "DIFFERENT code: ..." or "cannot tell ...".
    """
    now = _today_code(scenario_dir / f"{rec.scenario}.py", rec)
    if rec.record_type != "load":
        return [(f"save in {rec.saver or rec.stack}", _statement(rec, now))]
    assert rec.saver and rec.scenario and rec.format
    save = store.read(store.save_record_path(rec.saver, rec.scenario, rec.format))
    if save is None:
        saving = ("cannot tell whether the worker or scenario changed since the save: no save "
                  f"record for {save_cell_id(rec.scenario, rec.format, rec.saver)} in the store "
                  "— the outcome may differ")
    else:
        saving = _statement(save, _today_code(scenario_dir / f"{rec.scenario}.py", save))
        if rec.key_parts:  # the load was keyed by the bytes it read
            rerun = rec.key_parts.get("artifact") != save.details.get("artifact_sha256")
        else:
            rerun = bool(rec.worker_sha256 and rec.scenario_sha256 and (save.worker_sha256, save.scenario_sha256)
                         != (rec.worker_sha256, rec.scenario_sha256))
        if rerun:
            saving += (" (note: the save record's digests differ from the load record's: the save "
                       "was re-run after this load, so the file that load read may come from "
                       "other code)")
    return [(f"save in {rec.saver}", saving), (f"load in {rec.loader}", _statement(rec, now))]


def _code_line(sides: list[tuple[str, str]]) -> str:
    statements = {s for _, s in sides}
    if len(statements) == 1:
        return statements.pop()
    return "; ".join(f"{side}: {s}" for side, s in sides)


def explain_text(store: Store, rec: Record, catalog: Sequence[Stack],
                 scenario_dir: Path = DEFAULT_SCENARIOS, width: int = 100) -> str:
    """Versions, outcome, message, traceback tail, category, explanation, remedies."""
    wrap = textwrap.TextWrapper(width=width, initial_indent="", subsequent_indent=" " * 12)
    lines = [f"cell        {rec.cell_id}", f"scenario    {rec.scenario}   format {rec.format}"
             + (f"   load variant {rec.variant}" if rec.variant else "")]
    saver_env = rec.env if rec.record_type == "save" else rec.saver_env
    lines.append(f"saved by    {rec.saver}: {_env_line(saver_env)}")
    if rec.record_type == "load":
        lines.append(f"loaded by   {rec.loader}: {_env_line(rec.env)}")
    lines.append(f"code        {_code_line(code_comparison(store, rec, scenario_dir))}")
    out = f"outcome     {rec.outcome.value}" + (f" (phase {rec.phase})" if rec.phase else "")
    if rec.max_abs_diff is not None:
        out += f", max |diff| {rec.max_abs_diff:.3g}"
    lines.append(out)
    if rec.details.get("prediction"):  # the two facts of a load: its predictions, and resumed training
        lines.append(f"predictions {rec.details['prediction']}"
                     + (f" (max |diff| {rec.max_abs_diff:.3g})" if rec.max_abs_diff is not None else ""))
    if rec.details.get("training"):
        diff = rec.details.get("training_diff")
        lines.append(f"training    {rec.details['training']}"
                     + (f" (max |diff| {diff:.3g})" if diff is not None else "")
                     + (f": {rec.details['training_reason']}" if rec.details.get("training_reason") else ""))
    for key in ("written_as", "reason", "note", "loaded_class"):
        if rec.details.get(key):
            lines.append(f"{key:<11} {rec.details[key]}")
    if rec.error:
        lines.append(wrap.fill(f"error       {rec.error.type}: "
                               + " ".join(rec.error.message.split())[:1500]))
    diag = diagnose.diagnose(rec)
    if diag is None:
        lines.append("category    — (the cell did not fail)")
    else:
        lines.append(f"category    {diag.category}: {diag.title} (family: {diag.family})")
        lines.append(wrap.fill(f"why         {diag.explanation}"))
        results = diagnose.remedy_results(
            rec, diag, _lookup(store, rec),
            has_custom_objects=_has_custom_objects(rec.scenario, scenario_dir),
            siblings=diagnose.sibling_map(catalog))
        if results:
            for i, r in enumerate(results):
                head = "remedies   " if i == 0 else "           "
                lines.append(wrap.fill(f"{head} {r.text()}: {r.remedy.label} "
                                       f"[cell {rec.scenario}:{rec.format}:{rec.saver}->{r.loader}:{r.variant}]"))
        elif diag.remedies:
            lines.append("remedies    " + ", ".join(r.id for r in diag.remedies)
                         + " (not run for this cell yet: run `nox -s matrix` to verify them)")
        else:
            lines.append("remedies    none known for this category")
    lines.append(f"record      {store.record_path(rec)}")
    if rec.error and rec.error.traceback.strip():
        tail = rec.error.traceback.strip().splitlines()[-25:]
        lines += ["traceback   (tail)", *("  " + t for t in tail)]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- repro

_REPRO_PY = '''"""Standalone reproduction of one compatibility-matrix cell (generated; see README.md).

    python repro.py save   # in the saver's environment: builds, saves, writes reference
    python repro.py load   # in the loader's environment: loads, predicts, compares

compat_worker.py (the matrix runner's worker) and scenario.py are copied verbatim as
they were when this reproduction was written. Compared with the recorded run's digests:

{code}

In plain Keras the cell is:

{plain}
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compat_worker as w  # noqa: E402

CELL = {cell}
KERAS_MODULE = {keras_modules!r}  # per phase: which Keras API each stack's users call
SEED = {seed}


def main(phase):
    fw = w.import_framework(KERAS_MODULE[phase])
    cell = dict(CELL, scenario_path=os.path.join(HERE, "scenario.py"),
                artifact_dir=os.path.join(HERE, "artifact"))
    result = w.run_cell(fw, phase, cell, SEED)
    if phase == "load":  # the worker observes; the matrix judges on its host, as here
        import compat_judge
        result = compat_judge.judge_load(result, compat_judge.reference_of(cell["artifact_dir"]), cell["format"],
                                         cell["variant"], cell["atol"], cell["rtol"])
    error = result.get("error") or {{}}
    print(json.dumps({{k: result.get(k) for k in ("outcome", "phase", "max_abs_diff", "details")}},
                     sort_keys=True))
    if error:
        print("%s: %s" % (error.get("type"), error.get("message")))
        print(error.get("traceback", ""))
    print("OUTCOME: %s" % result["outcome"])
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in ("save", "load"):
        sys.exit("usage: python repro.py save|load")
    sys.exit(main(sys.argv[1]))
'''

_SETUP_SH = '''#!/usr/bin/env bash
# Reproduce {cell_id}
# recorded outcome: {outcome}
#
# Creates two virtual environments with the exact versions the matrix used, saves the
# model in the first and loads it in the second. Interpreters: $PY_SAVER / $PY_LOADER, by
# default the ones the matrix runner found when it wrote this, else pythonX.Y on PATH:
#   saver: {saver_found} (else python{saver_py})
#   loader: {loader_found} (else python{loader_py})
# Uses uv when it is on PATH, else venv+pip.
# A side the matrix ran in the docker runtime runs in a container of the same base image
# ($SAVER_IMAGE / $LOADER_IMAGE, default the recorded base; set one empty for a host venv):
# its venv is built with network, the save/load itself runs with --network none.
{image_comments}#
# Code (compat_worker.py and scenario.py, compared with the recorded run's digests):
{code_comments}
set -euo pipefail
cd "$(dirname "$0")"
code_note() {{
{code_echo}
}}
code_note
pick_python() {{  # pick_python FOUND VERSION: FOUND if it still runs here, else pythonVERSION
  if [ -n "$1" ] && [ -x "$1" ]; then echo "$1"; else echo "python$2"; fi
}}
PY_SAVER="${{PY_SAVER:-$(pick_python {saver_found_q} {saver_py})}}"
PY_LOADER="${{PY_LOADER:-$(pick_python {loader_found_q} {loader_py})}}"
SAVER_IMAGE="${{SAVER_IMAGE-{saver_image}}}"
LOADER_IMAGE="${{LOADER_IMAGE-{loader_image}}}"

in_image() {{  # in_image IMAGE NETWORK COMMAND...: run in a throwaway container, this directory at /repro
  local image=$1 network=$2; shift 2
  docker run --rm --network "$network" --user "$(id -u):$(id -g)" -e HOME=/tmp \
    -v "$PWD:/repro" -w /repro "$image" "$@"
}}

make_env() {{  # make_env DIR PYTHON IMAGE REQUIREMENT...
  local dir=$1 py=$2 image=$3; shift 3
  if [ -x "$dir/bin/python" ]; then return; fi
  if [ -n "$image" ]; then
    in_image "$image" bridge sh -c 'd=$1; shift; python -m venv "$d" && "$d/bin/python" -m pip install -q "$@"' \
      sh "$dir" "$@"
  elif command -v uv >/dev/null 2>&1; then
    # uv ignores pip's settings: carry over the pip index / find-links variables (a mirror,
    # a local folder of CPU-only torch wheels), as the matrix runner does.
    local extra=()
    if [ -n "${{PIP_INDEX_URL:-}}" ] && [ -z "${{UV_INDEX_URL:-}}" ]; then
      extra+=(--index-url "$PIP_INDEX_URL")
    fi
    if [ -z "${{UV_FIND_LINKS:-}}" ]; then
      for loc in ${{PIP_FIND_LINKS:-}}; do extra+=(--find-links "$loc"); done
    fi
    uv venv -q -p "$py" "$dir"
    uv pip install -q --python "$dir/bin/python" ${{extra[@]+"${{extra[@]}}"}} "$@"   # explicit: never a caller's venv
  else
    "$py" -m venv "$dir"
    "$dir/bin/python" -m pip install -q "$@"
  fi
}}

run_side() {{  # run_side IMAGE DIR PHASE VAR=VALUE...
  local image=$1 dir=$2 phase=$3; shift 3
  if [ -n "$image" ]; then
    in_image "$image" none env "$@" "$dir/bin/python" -I repro.py "$phase"
  else
    env "$@" "$dir/bin/python" -I repro.py "$phase"
  fi
}}

make_env env-saver "$PY_SAVER" "$SAVER_IMAGE" {saver_reqs}
make_env env-loader "$PY_LOADER" "$LOADER_IMAGE" {loader_reqs}

rm -rf artifact
echo "== save in {saver} =="
run_side "$SAVER_IMAGE" env-saver save {saver_vars}
echo "== load in {loader} =="
run_side "$LOADER_IMAGE" env-loader load {loader_vars}
echo "== recorded outcome: {outcome} =="
code_note
'''


def _requirements(store: Store, stack: str, env: dict[str, Any]) -> list[str]:
    """The stack's requirements plus an exact pin of every version the record saw."""
    env_rec = store.read(store.env_record_path(stack))
    reqs = list((env_rec.details.get("requirements") if env_rec else None) or [])
    names = {_base_name(r) for r in reqs}
    for dist, version in sorted((env.get("dists") or {}).items()):
        pin = f"{dist}=={version}"
        if dist not in names:
            reqs.append(pin)
        else:  # an exact pin replaces the range the catalog asked for (extras kept)
            reqs = [_extras(r, dist) + f"=={version}" if _base_name(r) == dist else r for r in reqs]
    return reqs


def _base_name(req: str) -> str:
    return re.split(r"[\s\[<>=!~;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _extras(req: str, dist: str) -> str:
    m = re.match(r"\s*[\w.-]+(\[[\w,\s-]+\])", req)
    return dist + (m.group(1) if m else "")


def _keras_module(store: Store, stack: str) -> str:
    env_rec = store.read(store.env_record_path(stack))
    return str((env_rec.details.get("keras_module") if env_rec else None) or "auto")


def _image(env: dict[str, Any]) -> str:
    """The base image a docker-runtime side ran on ('' for a host venv); only an image
    reference's characters, as it goes inside a double-quoted shell default."""
    image = str(env.get("docker_base") or "") if env.get("runtime") == "docker" else ""
    return image if re.fullmatch(r"[\w./:@-]*", image) else ""


def _image_line(env: dict[str, Any]) -> str:
    if not _image(env):
        return "a host venv in the recorded run"
    return (f"docker base {env.get('docker_base')} (id {env.get('docker_base_id') or '?'}) in the "
            f"recorded run; its stack image was {env.get('docker_image') or '?'}")


def _vars(env: dict[str, Any]) -> str:
    pairs = sorted((env.get("env_vars") or {}).items())
    return "".join(f"{k}={shlex.quote(str(v))} " for k, v in pairs)


def _py(env: dict[str, Any]) -> str:
    return ".".join(str(env.get("python") or "3").split(".")[:2])


_PLAIN_SAVE = {
    "h5": "model.save('model.h5')",
    "savedmodel": "model.save('savedmodel')  # Keras 2: a TF SavedModel directory",
    "keras": "model.save('model.keras')",
    "json+weights": "open('model.json', 'w').write(model.to_json()); model.save_weights(...)",
    "export": "model.export('export')  # Keras 3; TF 2: tf.saved_model.save(model, 'export')",
}
_PLAIN_LOAD = {
    "h5": "keras.models.load_model('model.h5'{kw})",
    "savedmodel": "keras.models.load_model('savedmodel'{kw})",
    "keras": "keras.models.load_model('model.keras'{kw})",
    "json+weights": "keras.models.model_from_json(open('model.json').read()); model.load_weights(...)",
    "export": "keras.layers.TFSMLayer('export') / tf.saved_model.load('export')",
}


def write_repro(store: Store, rec: Record, out: Path, scenario_dir: Path = DEFAULT_SCENARIOS,
                seed: int = _w.DEFAULT_SEED, echo: TextIO | None = None) -> list[Path]:
    """Write README.md, setup.sh, repro.py, scenario.py and compat_worker.py into ``out``.

    Prints to ``echo`` (default stdout) whether the copied worker and scenario are the
    recorded run's code (:func:`code_comparison`); setup.sh, repro.py and README.md say it too.

    Raises:
        CellError: the cell is not a load, or ``out`` exists and is not empty.
    """
    if rec.record_type != "load" or not (rec.loader and rec.saver and rec.scenario and rec.format):
        raise CellError(f"{rec.cell_id} is not a load cell; repro needs saver->loader")
    if out.exists() and any(out.iterdir()):
        raise CellError(f"{out} exists and is not empty; choose a new directory")
    scenario_path = scenario_dir / f"{rec.scenario}.py"
    if not scenario_path.is_file():
        raise CellError(f"scenario file {scenario_path} not found")
    atol, rtol = _tolerances(scenario_path)
    saver_env = rec.saver_env
    kw = {"custom_objects": ", custom_objects={...}", "compile_false": ", compile=False",
          "unsafe": ", safe_mode=False"}
    flags = set((rec.variant or "default").split("+")) - {"default"}
    plain = "\n".join([
        f"    # {rec.saver}: {_env_line(saver_env)}",
        "    model = scenario.build(keras)   # scenario.py",
        f"    {_PLAIN_SAVE[rec.format]}",
        f"    # {rec.loader}: {_env_line(rec.env)}",
        "    " + ("tf.saved_model.load('savedmodel').signatures['serving_default'](**inputs)" if "signature" in flags
                  else "tf.saved_model.load / TFSMLayer('savedmodel')" if "tfsm" in flags else
                  _PLAIN_LOAD[rec.format].format(kw="".join(kw[f] for f in sorted(flags) if f in kw))),
    ])
    cell = {"cell_id": rec.cell_id, "scenario": rec.scenario, "format": rec.format,
            "variant": rec.variant or "default", "atol": atol, "rtol": rtol}
    code = [f"{side}: {statement}" for side, statement in code_comparison(store, rec, scenario_dir)]
    # The interpreters the runner itself would use (a pyenv shim that does not resolve is
    # skipped there; uv given a bare "pythonX.Y" would try to download one instead).
    found = (find_python(_py(saver_env)), find_python(_py(rec.env)))
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "repro.py": _REPRO_PY.format(plain=plain, cell=json.dumps(cell, sort_keys=True), seed=seed,
                                     code="\n".join("    " + line for line in code),
                                     keras_modules={"save": _keras_module(store, rec.saver),
                                                    "load": _keras_module(store, rec.loader)}),
        "setup.sh": _SETUP_SH.format(
            cell_id=rec.cell_id, outcome=rec.outcome.value, saver=rec.saver, loader=rec.loader,
            saver_py=_py(saver_env), loader_py=_py(rec.env),
            saver_found=found[0] or "not found", loader_found=found[1] or "not found",
            saver_found_q=shlex.quote(found[0] or ""), loader_found_q=shlex.quote(found[1] or ""),
            saver_reqs=" ".join(shlex.quote(r) for r in _requirements(store, rec.saver, saver_env)),
            loader_reqs=" ".join(shlex.quote(r) for r in _requirements(store, rec.loader, rec.env)),
            saver_vars=_vars(saver_env), loader_vars=_vars(rec.env),
            saver_image=_image(saver_env), loader_image=_image(rec.env),
            image_comments="".join(f"#   {side}: {_image_line(env)}\n" for side, env in
                                   (("saver", saver_env), ("loader", rec.env))),
            code_comments="\n".join("#   " + line for line in code),
            code_echo="\n".join("  echo " + shlex.quote("code: " + line) for line in code)),
        "README.md": _readme(rec, code),
    }
    written = []
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
        written.append(out / name)
    (out / "setup.sh").chmod(0o755)
    shutil.copyfile(scenario_path, out / "scenario.py")
    shutil.copyfile(_WORKER_FILE, out / "compat_worker.py")
    shutil.copyfile(_JUDGE_FILE, out / "compat_judge.py")
    for line in code:
        print(f"repro: code: {line}", file=echo or sys.stdout)
    return [*written, out / "scenario.py", out / "compat_worker.py", out / "compat_judge.py"]


def _tolerances(scenario_path: Path) -> tuple[float, float]:
    """The scenario's ATOL/RTOL, read statically as the matrix reads them."""
    sc = read_scenario(scenario_path)
    return sc.atol, sc.rtol


def _readme(rec: Record, code: list[str]) -> str:
    msg = (f"{rec.error.type}: {' '.join(rec.error.message.split())[:600]}" if rec.error
           else str(rec.details.get("reason") or ""))
    diag = diagnose.diagnose(rec)
    return "\n".join([
        f"# Reproduction: `{rec.cell_id}`", "",
        f"- saved by **{rec.saver}**: {_env_line(rec.saver_env)}",
        f"- loaded by **{rec.loader}**: {_env_line(rec.env)}",
        f"- recorded outcome: **{rec.outcome.value}**" + (f" — `{msg}`" if msg else ""),
        f"- category: `{diag.category}` ({diag.title})" if diag else "- category: —",
        *(f"- code, {line}" for line in code), "",
        "Run `./setup.sh`: it creates `env-saver/` and `env-loader/` with the exact versions "
        "above, saves the model in the first and loads it in the second, then prints "
        "`OUTCOME: ...` and the code comparison above again. Nothing else from the matrix runner "
        "is needed: `compat_worker.py` is its worker and `scenario.py` defines the model, both "
        "copied verbatim as they were when this reproduction was written (the code lines say "
        "whether that is the recorded run's code).", ""])


# ------------------------------------------------------------------- upgrade verdict

# How a user spells each remedy the table verifies (a sibling stack's remedy is named by
# its id in the table: "tf_keras in tf2.21-tfkeras").
_REMEDY_WORDS = {"compile_false": "compile=False", "custom_objects": "custom_objects", "unsafe": "safe_mode=False",
                 "tfsm": "TFSMLayer / tf.saved_model.load", "signature": "the signature called by name",
                 "tf_keras": "tf_keras (TF_USE_LEGACY_KERAS=1)", "pin_jax": "jax pinned to its era",
                 "pin_h5py2": "h5py<3"}
_FIXED = re.compile(r"fixed by (\S+)(?: in \S+)? \(verified\)")


def upgrade_verdict(rows: Sequence[Mapping[str, Any]], saver: str, fmt: str, loader: str) -> list[str]:
    """"I saved with ``saver`` as ``fmt``; will it load in ``loader``?" in one line, then
    the scenarios behind each count. ``rows``: a results table's cells
    (:func:`runner.gate.results_rows`). Each scenario counts once, loaded the documented
    way: with its custom objects where it has them (a load without them is shown beside,
    never mixed in).

    Raises:
        CellError: the table has no cell of that saver, format and loader.
    """
    mine = [r for r in rows if r["saver"] == saver and r["format"] == fmt and r["loader"] == loader
            and r["source"] in ("load", "save", "env", "none")]
    if not mine:
        known = sorted({r["saver"] for r in rows}) if not any(r["saver"] == saver for r in rows) else []
        raise CellError(f"the table has no cell saved by {saver} as {fmt} and loaded in {loader}"
                        + (f" (savers: {', '.join(known[:8])}{' ...' if len(known) > 8 else ''})" if known else ""))
    by_scenario: dict[str, dict[str, Mapping[str, Any]]] = {}
    for r in mine:
        by_scenario.setdefault(r["scenario"], {})[r["variant"]] = r
    ok: list[str] = []
    fixed: dict[str, list[str]] = {}
    failed: list[str] = []
    cannot: list[str] = []
    without: list[str] = []
    for scenario in sorted(by_scenario, key=natural_key):
        variants = by_scenario[scenario]
        documented = "custom_objects" if "custom_objects" in variants else "default"
        r = variants.get(documented) or next(iter(variants.values()))
        if documented == "custom_objects" and "default" in variants:
            without.append(f"{scenario} {variants['default']['outcome']}")
        m = _FIXED.match(r.get("remedy") or "")
        if r["outcome"] == "ok":
            ok.append(scenario)
        elif r["outcome"] == "not_applicable":
            cannot.append(f"{scenario} (cannot exist as {fmt})")
        elif m:
            fixed.setdefault(_REMEDY_WORDS.get(m.group(1), m.group(1)), []).append(scenario)
        else:
            why = (r.get("category") or r["outcome"]) if r["source"] == "load" else \
                f"its {fmt} save fails in {saver}" if r["source"] == "save" else r["outcome"]
            failed.append(f"{scenario} ({why})")
    n = len(by_scenario) - len(cannot)
    fixes = ", ".join(f"{name} ×{len(v)}" for name, v in sorted(fixed.items(), key=lambda kv: (-len(kv[1]), kv[0])))
    line = (f"{saver} {fmt} → {loader}: {len(ok)} of {n} scenarios load and match"
            + (f"; +{sum(len(v) for v in fixed.values())} with a verified fix ({fixes})" if fixed else "")
            + f"; {len(failed)} fail")
    out = [line]
    if ok:
        out.append(f"  load and match: {', '.join(ok)}")
    for name, v in sorted(fixed.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        out.append(f"  with {name}: {', '.join(v)}")
    if failed:
        out.append(f"  fail: {', '.join(failed)}")
    if cannot:
        out.append(f"  not counted: {', '.join(cannot)}")
    if without:
        out.append("  beside (loaded without the custom objects the scenario defines, as a user who forgot them): "
                   + ", ".join(without))
    return out

