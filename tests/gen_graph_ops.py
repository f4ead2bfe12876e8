"""Regenerate ``runner/_worker/graph_ops.json``: the ops a SavedModel graph may hold without ``--unsafe``.

The allowlist is not typed by hand. Each TensorFlow given (a stack venv's interpreter)
lists its ops and the generated wrapper module each comes from (``tf.raw_ops.<Op>.__module__``,
e.g. ``gen_math_ops``); the rules below then decide, and the file records which releases
it was generated from. The decisions are made here, in reviewable form:

* ``GROUPS``: wrapper modules whose every op computes on tensors held in process memory;
  their ops are allowed, minus ``EXCLUDED`` (single ops of those modules that touch files,
  Python, other devices or the process) and minus any op whose name trips ``TRIPWIRE``
  (names that suggest I/O) unless ``TRIPWIRE_REVIEWED`` says why it is inert. A new
  release that adds an op to an allowed module gets it only through these filters, and
  the generator prints every such op for review.
* ``INDIVIDUAL``: single ops of otherwise refused modules, reviewed one by one.
* ``CONDITIONAL``: ops allowed only with a given attribute value (``PrintV2`` to a
  standard stream, never to a ``file://`` output stream).
* ``CHECKPOINT``: the checkpoint ops, allowed only in the variables' restore (resp. save)
  part of the graph and the functions only it calls (runner/_worker/graph_scan.py finds
  those from the ``saver_def``, structurally, not by name).
* everything else is refused; ``REFUSED_MODULES`` gives the reason shown to the user.

An op is allowed when any release places it in an allowed module (ops move between
modules: ``OptionalGetValue`` lived in ``gen_dataset_ops`` up to 2.4); ``EXCLUDED``,
``TRIPWIRE`` and the refusals of modules never allowed hold for every release.

Run (from the repository root)::

    python3 tests/gen_graph_ops.py            # every TF venv in .matrix/envs
    python3 tests/gen_graph_ops.py --python .matrix/envs/py3.8-*/bin/python ...
    python3 tests/gen_graph_ops.py --check    # exit 1 if the file would change
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "runner" / "_worker" / "graph_ops.json"

# Runs inside each TF venv (Python 3.7 and TF 1.15 included): the op -> wrapper module map.
DUMP = r"""
import json, os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf
from tensorflow.python.framework import op_def_registry
registered = getattr(op_def_registry, "get_registered_ops", None)  # TF 1.x; TF 2.x has get(name)
registered = registered() if registered else {}
ops, attrs = {}, {}
for name in dir(tf.raw_ops):
    if not name.startswith("_"):
        ops[name] = getattr(getattr(tf.raw_ops, name), "__module__", "?").split(".")[-1]
        op_def = registered.get(name) if registered else op_def_registry.get(name)
        attrs[name] = sorted(a.name for a in op_def.attr if "string" in a.type) if op_def is not None else []
print("GRAPH_OPS_DUMP " + json.dumps({"version": tf.__version__, "ops": ops, "string_attrs": attrs}))
"""

GROUPS: list[tuple[str, list[str], str]] = [
    ("math", ["gen_math_ops", "gen_special_math_ops", "gen_bitwise_ops", "gen_linalg_ops", "gen_spectral_ops"],
     "element-wise, reduction, matrix, linear-algebra and FFT arithmetic on tensors in memory"),
    ("nn", ["gen_nn_ops", "gen_ctc_ops", "gen_cudnn_rnn_ops", "gen_rnn_ops", "gen_uniform_quant_ops"],
     "neural-network kernels (convolution, pooling, normalisation, activations, RNN cells, CTC, "
     "quantised variants) on tensors in memory"),
    ("array", ["gen_array_ops", "gen_manip_ops", "gen_set_ops", "gen_sparse_ops", "gen_sparse_csr_matrix_ops",
               "gen_ragged_array_ops", "gen_ragged_conversion_ops", "gen_ragged_math_ops", "gen_list_ops",
               "gen_map_ops", "gen_composite_tensor_ops", "gen_count_ops"],
     "constants, placeholders, identity, shapes, slicing, gather/scatter, padding, sparse, ragged, "
     "TensorList and TensorMap values: tensor bookkeeping in memory (ImmutableConst, which maps a file, excluded)"),
    ("variables", ["gen_resource_variable_ops", "gen_state_ops", "gen_training_ops"],
     "variables, their handles, reads and in-place updates (optimizer apply ops included): state held "
     "in the process's memory"),
    ("control_flow", ["gen_control_flow_ops", "gen_functional_ops"],
     "graph control flow (Switch/Merge/Enter/Exit, If/Case/While) and function calls; every function "
     "they call is scanned too (Abort, which ends the process, and RemoteCall excluded)"),
    ("random", ["gen_random_ops", "gen_stateful_random_ops", "gen_stateless_random_ops",
                "gen_stateless_random_ops_v2", "gen_random_index_shuffle_ops", "gen_candidate_sampling_ops"],
     "random number generation and candidate sampling in memory"),
    ("strings_parsing", ["gen_string_ops", "gen_parsing_ops"],
     "string formatting, regex, hashing, unicode and (de)serialisation of tensors and tf.Example "
     "protos held in memory"),
    ("media", ["gen_image_ops", "gen_audio_ops"],
     "image and audio ops: resize, colour, crop, non-max suppression, and codecs that decode or encode "
     "bytes already in memory (no file access)"),
    ("lookup", ["gen_lookup_ops"],
     "hash tables in memory: create, insert, find, import/export as tensors (the text-file and dataset "
     "initialisers excluded)"),
    ("data_flow", ["gen_data_flow_ops", "gen_optional_ops"],
     "TensorArray, stacks, dynamic partition/stitch, in-process queues, barriers, accumulators and "
     "staging areas (RecordInput, which reads files, and the session-handle ops excluded)"),
]

EXCLUDED: dict[str, str] = {
    "ImmutableConst": "maps a region of a file (memory_region_name) into a tensor",
    "Abort": "ends the process",
    "RemoteCall": "runs a function on another device or task (possibly another host)",
    "RecordInput": "reads the files matching its file_pattern",
    "InitializeTableFromTextFile": "reads a vocabulary file",
    "InitializeTableFromTextFileV2": "reads a vocabulary file",
    "InitializeTableFromDataset": "runs a tf.data pipeline, which can read files",
    "DebugGradientIdentity": "a debugger hook; no model needs it",
    "DebugGradientRefIdentity": "a debugger hook; no model needs it",
    "GetSessionHandle": "TF1 session-handle state shared across runs; no model needs it",
    "GetSessionHandleV2": "TF1 session-handle state shared across runs; no model needs it",
    "GetSessionTensor": "TF1 session-handle state shared across runs; no model needs it",
    "DeleteSessionTensor": "TF1 session-handle state shared across runs; no model needs it",
    "FixedUnigramCandidateSampler": "reads the counts in its vocab_file",
}

# Op names that suggest I/O, Python, devices or the network. In an allowed module such an op
# is refused unless reviewed below, so a new release's new op with such a name never slips in.
TRIPWIRE = re.compile(r"File|Reader|Read(?!Variable)|Write|Save|Restore|Checkpoint|Summary|Debug|Py[A-Z]|"
                      r"Dataset|Iterator|Rpc|Send|Recv|TPU|Tpu|Xla|Collective|Nccl|Remote|Print|Abort|"
                      r"Session|Host|Device|Dump|Load|Export|Import|Record|Sleep|Sql|Socket|Env|Path|Dir")

TRIPWIRE_REVIEWED: dict[str, str] = {
    **dict.fromkeys(("TensorArrayWrite", "TensorArrayWriteV2", "TensorArrayWriteV3"),
                    "writes into a TensorArray in memory"),
    **dict.fromkeys(("TensorArrayRead", "TensorArrayReadV2", "TensorArrayReadV3"),
                    "reads from a TensorArray in memory"),
    **dict.fromkeys(("LookupTableExport", "LookupTableExportV2"), "exports a hash table's contents as tensors"),
    **dict.fromkeys(("LookupTableImport", "LookupTableImportV2"), "fills a hash table from tensors"),
    "BarrierReadySize": "counts the complete elements of an in-process barrier",
    "DisableCopyOnRead": "switches a resource variable's copy-on-read mode (in the variables' save function)",
    "RngReadAndSkip": "reads and advances a random generator's counter held in a variable",
    "DeviceIndex": "returns the index of the device it runs on (a number)",
    "DataFormatDimMap": "maps dimension indices between data formats",
}

# String attributes whose names suggest a file, a path or a network address: an op of an
# allowed module with one is refused unless reviewed (FixedUnigramCandidateSampler's
# vocab_file is how this was found).
ATTR_TRIPWIRE = re.compile(r"(?:^|_)(?:file|files|filename|path|dir|directory|url|uri|stream|region|descriptor|"
                           r"host|address|target|server|socket|vocab)(?:_|s?$)")
ATTR_REVIEWED: dict[str, str] = {}


INDIVIDUAL: dict[str, str] = {
    "Assert": "raises an error in the graph when its condition is false; writes nothing",
    "Print": "TF1 tf.Print: logs tensors to stderr, never a file",
    "Timestamp": "returns the current time as a float",
    **dict.fromkeys(("IteratorGetNext", "IteratorGetNextSync", "IteratorGetNextAsOptional"),
                    "takes the next element of an iterator its caller passes in; every op that makes a dataset "
                    "or an iterator is refused, so a graph that passes the scan cannot make one (Keras 2 "
                    "saves it in a preprocessing layer's adapt_step function)"),
}

STREAMS = ["stderr", "stdout", "log(info)", "log(warning)", "log(error)"]
CONDITIONAL = [{
    "op": "PrintV2", "attr": "output_stream", "default": "stderr", "allowed": STREAMS,
    "why": "tf.print to a standard stream or the log; its output_stream attr can also name a "
           "file:// path, which is refused",
}]

CHECKPOINT = {
    "restore": ["Restore", "RestoreSlice", "RestoreV2", "ShardedFilename", "ShardedFilespec"],
    "save": ["MergeV2Checkpoints", "Save", "SaveSlices", "SaveV2", "ShardedFilename", "ShardedFilespec"],
    "why": "checkpoint ops and the file-name helpers they use. The restore ops are allowed only in what the "
           "saver_def's restore op needs and nothing else refers to (TF1-style loaders run it with the "
           "variables' path); the save ops only in what its save tensor needs (no loader runs it); top-graph "
           "nodes that nothing refers to (never run, like the saver tf.keras 1.x leaves in an export) may hold "
           "both. Anywhere else, and in every function something else can call, they are refused",
}

REFUSED_MODULES: dict[str, str] = {
    "gen_io_ops": "reads or writes files (readers, ReadFile, WriteFile, MatchingFiles, checkpoint ops)",
    "gen_script_ops": "runs Python (py_function, numpy_function)",
    "gen_summary_ops": "writes summaries to event files or databases",
    "gen_logging_ops": "summaries and printing (Assert, Print, Timestamp and PrintV2 to a standard stream "
                       "are reviewed one by one)",
    "gen_debug_ops": "tfdbg: writes tensors to debug URLs (file://, grpc://)",
    "gen_dataset_ops": "tf.data: file readers, Python generators, iterators and their state",
    "gen_experimental_dataset_ops": "tf.data: file readers (CSV, SQL, LMDB, snapshot, save/load), "
                                    "data service over the network",
    "gen_filesystem_ops": "configures file systems",
    "gen_checkpoint_ops": "reads vocabulary files and checkpoints",
    "gen_collective_ops": "communicates with other devices or hosts",
    "gen_nccl_ops": "communicates with other devices",
    "gen_sendrecv_ops": "sends or receives tensors between devices or hosts",
    "gen_tpu_ops": "TPU device ops",
    "gen_tpu_partition_ops": "TPU device ops",
    "gen_xla_ops": "TPU/XLA device ops",
    "gen_sync_ops": "synchronises a device",
    "gen_batch_ops": "cross-request batching with its own threads and shared resources",
    "gen_boosted_trees_ops": "estimator-era training ops, not produced by Keras or tf.function model code",
    "gen_clustering_ops": "estimator-era training ops, not produced by Keras or tf.function model code",
    "gen_sdca_ops": "estimator-era training ops, not produced by Keras or tf.function model code",
    "gen_decode_proto_ops": "its descriptor_source attr can name a file of proto descriptors",
    "gen_encode_proto_ops": "its descriptor_source attr can name a file of proto descriptors",
    "gen_user_ops": "a test op",
}
UNREVIEWED = "in a wrapper module nobody has reviewed"


def find_pythons() -> list[str]:
    """The interpreters of the stack venvs under $COMPAT_ENVS_DIR (default .matrix/envs) with TensorFlow."""
    envs = os.environ.get("COMPAT_ENVS_DIR") or str(REPO / ".matrix" / "envs")
    out = []
    for venv in sorted(glob.glob(os.path.join(envs, "py*"))):
        if glob.glob(os.path.join(venv, "lib", "python*", "site-packages", "tensorflow*-*.dist-info")) and \
                glob.glob(os.path.join(venv, "lib", "python*", "site-packages", "tensorflow", "__init__.py")):
            out.append(os.path.join(venv, "bin", "python"))
    return out


def dump(python: str) -> tuple[str, dict[str, str], dict[str, list[str]]]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([python, "-I", "-c", DUMP], capture_output=True, text=True, env=env, timeout=600,
                          check=False)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("GRAPH_OPS_DUMP ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"{python}: cannot list the ops ({proc.returncode}):\n{proc.stderr[-2000:]}")
    got = json.loads(line.split(" ", 1)[1])
    return got["version"], got["ops"], got["string_attrs"]


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


def classify(dumps: dict[str, dict[str, str]],
             string_attrs: dict[str, set[str]] | None = None) -> tuple[dict[str, object], list[str]]:
    """(the graph_ops.json document, notes for the reviewer) from {tf version: {op: module}} and
    {op: its string attributes in any release}."""
    string_attrs = string_attrs or {}
    group_of = {m: name for name, mods, _ in GROUPS for m in mods}
    allowed: dict[str, set[str]] = {name: set() for name, _, _ in GROUPS}
    refused: dict[str, str] = {}
    notes: list[str] = []
    all_ops = sorted({op for ops in dumps.values() for op in ops})
    special = {*INDIVIDUAL, *(c["op"] for c in CONDITIONAL), *CHECKPOINT["restore"], *CHECKPOINT["save"]}
    for op in all_ops:
        modules = sorted({ops[op] for ops in dumps.values() if op in ops})
        groups = [group_of[m] for m in modules if m in group_of]
        if op in special:
            continue
        if op in EXCLUDED:
            refused[op] = EXCLUDED[op]
        elif groups and TRIPWIRE.search(op) and op not in TRIPWIRE_REVIEWED:
            refused[op] = "its name suggests I/O, Python or devices and nobody has reviewed it"
            notes.append(f"tripwire: {op} ({', '.join(modules)}) refused; review it and add it to "
                         "TRIPWIRE_REVIEWED if it is inert")
        elif groups and any(ATTR_TRIPWIRE.search(a) and f"{op}.{a}" not in ATTR_REVIEWED
                            for a in string_attrs.get(op, ())):
            attrs = sorted(a for a in string_attrs[op] if ATTR_TRIPWIRE.search(a))
            refused[op] = "a string attribute's name suggests a file or an address and nobody has reviewed it"
            notes.append(f"attribute tripwire: {op} ({', '.join(modules)}) has {', '.join(attrs)}: refused; "
                         "review it and add Op.attr to ATTR_REVIEWED if it is inert")
        elif groups:
            allowed[groups[0]].add(op)
        else:
            unknown = [m for m in modules if m not in REFUSED_MODULES]
            if unknown:
                notes.append(f"unreviewed module {', '.join(unknown)}: {op} refused")
            refused[op] = REFUSED_MODULES.get(modules[0], UNREVIEWED)
    for op in sorted(set(TRIPWIRE_REVIEWED) - {o for ops in allowed.values() for o in ops}):
        notes.append(f"TRIPWIRE_REVIEWED names {op}, which no release places in an allowed module")
    for op in sorted(special - set(all_ops)):
        notes.append(f"{op} is reviewed here but no release given has it")
    by_reason: dict[str, list[str]] = {}
    for op, why in refused.items():
        by_reason.setdefault(why, []).append(op)
    doc: dict[str, object] = {
        "about": "Ops a SavedModel graph may hold without --unsafe (runner/_worker/graph_scan.py). "
                 "Generated by tests/gen_graph_ops.py from the TensorFlow releases listed; do not edit "
                 "by hand: change the rules there and regenerate.",
        "generated_by": "tests/gen_graph_ops.py",
        "tensorflow_versions": sorted(dumps, key=_version_key),
        "groups": [{"name": name, "modules": mods, "why": why, "ops": sorted(allowed[name])}
                   for name, mods, why in GROUPS]
        + [{"name": "individual", "modules": [], "why": f"reviewed one by one: {why}",
            "ops": sorted(op for op, w in INDIVIDUAL.items() if w == why)}
           for why in sorted(set(INDIVIDUAL.values()))],
        "conditional": CONDITIONAL,
        "checkpoint": CHECKPOINT,
        "refused": [{"why": why, "ops": sorted(ops)} for why, ops in sorted(by_reason.items())],
    }
    return doc, notes


def render(doc: dict[str, object]) -> str:
    """Indented JSON, one op per line, so a diff shows exactly the ops that changed."""
    return json.dumps(doc, indent=1, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--python", action="append", help="a TF venv's interpreter (repeatable); default: "
                    "every venv with TensorFlow under $COMPAT_ENVS_DIR or .matrix/envs")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--check", action="store_true", help="exit 1 if the file would change; write nothing")
    args = ap.parse_args(argv)
    pythons = args.python or find_pythons()
    if not pythons:
        raise SystemExit("no TensorFlow venv found: pass --python")
    dumps: dict[str, dict[str, str]] = {}
    string_attrs: dict[str, set[str]] = {}
    for py in pythons:
        version, ops, attrs = dump(py)
        for op, names in attrs.items():
            string_attrs.setdefault(op, set()).update(names)
        print(f"{py}: TensorFlow {version}, {len(ops)} ops", file=sys.stderr)
        if version in dumps and dumps[version] != ops:
            raise SystemExit(f"two venvs with TensorFlow {version} list different ops")
        dumps[version] = ops
    doc, notes = classify(dumps, string_attrs)
    for note in notes:
        print("note:", note, file=sys.stderr)
    text = render(doc)
    out = Path(args.out)
    n_allowed = sum(len(g["ops"]) for g in doc["groups"])  # type: ignore[attr-defined]
    if args.check:
        same = out.is_file() and out.read_text(encoding="utf-8") == text
        print(f"{out}: {'up to date' if same else 'WOULD CHANGE'} ({n_allowed} ops allowed)", file=sys.stderr)
        return 0 if same else 1
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}: {n_allowed} ops allowed from TensorFlow {', '.join(doc['tensorflow_versions'])}",  # type: ignore[arg-type]
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
