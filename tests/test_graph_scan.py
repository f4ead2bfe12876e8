"""``runner/_worker/graph_scan.py`` on hand-encoded SavedModels (fast tier, no TensorFlow).

A tiny protobuf encoder below writes ``saved_model.pb`` files shaped like the ones TF 2.x
(functions, ``__inference__traced_save/restore`` called from ``StatefulPartitionedCall_1/_2``)
and TF 1.x (``save/...`` nodes, a leftover tf.keras saver) write, with the field numbers of
TensorFlow's own protos (checked against TF 2.15's ``*_pb2`` modules when this was written).
The real tier (tests/test_real_graph_scan.py) scans files saved by real TensorFlow.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner._worker import graph_scan
from runner._worker.graph_scan import BadGraph, describe, scan_bytes, scan_savedmodel

REPO = Path(__file__).resolve().parent.parent
MODULE = REPO / "runner" / "_worker" / "graph_scan.py"
OPS_JSON = REPO / "runner" / "_worker" / "graph_ops.json"

# ------------------------------------------------------------------ a tiny encoder


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, value: int | bytes | str) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def msg(*pairs: tuple[int, int | bytes | str]) -> bytes:
    return b"".join(_field(n, v) for n, v in pairs)


def entry(key: str, value: bytes) -> bytes:
    """A map<string, message> entry."""
    return msg((1, key), (2, value))


def func_attr(name: str, **attrs: bytes) -> bytes:
    """AttrValue{func: NameAttrList{name, attr}}."""
    return msg((10, msg((1, name), *[(2, entry(k, v)) for k, v in attrs.items()])))


def s_attr(value: str) -> bytes:
    return msg((2, value))


def node(name: str, op: str, *inputs: str, **attrs: bytes) -> bytes:
    """NodeDef: 1 name, 2 op, 3 input, 5 attr."""
    return msg((1, name), (2, op), *[(3, i) for i in inputs], *[(5, entry(k, v)) for k, v in attrs.items()])


def function(name: str, *nodes: bytes) -> bytes:
    """FunctionDef: 1 signature (OpDef: 1 name), 3 node_def."""
    return msg((1, msg((1, name))), *[(3, n) for n in nodes])


def graph(nodes: list[bytes], functions: list[bytes] = (), gradients: list[tuple[str, str]] = ()) -> bytes:
    """GraphDef: 1 node, 2 library (FunctionDefLibrary: 1 function, 2 gradient)."""
    library = msg(*[(1, f) for f in functions], *[(2, msg((1, a), (2, b))) for a, b in gradients])
    return msg(*[(1, n) for n in nodes], (2, library))


def signature(**outputs: str) -> bytes:
    """signature_def entry 'serving_default': SignatureDef{2 outputs: {key: TensorInfo{1 name}}}."""
    return entry("serving_default", msg(*[(2, entry(k, msg((1, v)))) for k, v in outputs.items()]))


def object_graph(*function_names: str) -> bytes:
    """SavedObjectGraph{2 concrete_functions: {name: SavedConcreteFunction}}."""
    return msg(*[(2, entry(n, msg((2, 0)))) for n in function_names])


def meta_graph(graph_def: bytes, *, saver: bytes | None = None, signatures: list[bytes] = (),
               objects: bytes | None = None, collections: list[bytes] = (), version: str = "2.15.1") -> bytes:
    """MetaGraphDef: 1 meta_info_def (5 tensorflow_version), 2 graph_def, 3 saver_def, 4 collection_def,
    5 signature_def, 7 object_graph_def."""
    pairs: list[tuple[int, bytes]] = [(1, msg((5, version))), (2, graph_def)]
    if saver is not None:
        pairs.append((3, saver))
    pairs += [(4, c) for c in collections] + [(5, s) for s in signatures]
    if objects is not None:
        pairs.append((7, objects))
    return msg(*pairs)


def saved_model(*metas: bytes) -> bytes:
    return msg((1, 1), *[(2, m) for m in metas])


TF2_SAVER = msg((1, "saver_filename:0"), (2, "StatefulPartitionedCall_1:0"), (3, "StatefulPartitionedCall_2"))

# ------------------------------------------------------------------ TF 2.x shapes

SAVE_FN = function(
    "__inference__traced_save_99",
    node("StaticRegexFullMatch", "StaticRegexFullMatch", "file_prefix"),
    node("Const", "Const"), node("Select", "Select", "StaticRegexFullMatch", "Const"),
    node("StringJoin", "StringJoin", "file_prefix", "Select"),
    node("ShardedFilename", "ShardedFilename", "StringJoin"),
    node("DisableCopyOnRead", "DisableCopyOnRead", "v"), node("ReadVariableOp", "ReadVariableOp", "v"),
    node("SaveV2", "SaveV2", "ShardedFilename", "ReadVariableOp"),
    node("Pack", "Pack", "ShardedFilename", "^SaveV2"),
    node("MergeV2Checkpoints", "MergeV2Checkpoints", "Pack", "file_prefix"),
    node("Identity", "Identity", "file_prefix", "^MergeV2Checkpoints"),
)
RESTORE_FN = function(
    "__inference__traced_restore_100",
    node("RestoreV2", "RestoreV2", "file_prefix"), node("Identity", "Identity", "RestoreV2"),
    node("AssignVariableOp", "AssignVariableOp", "v", "Identity"), node("NoOp", "NoOp", "^AssignVariableOp"),
)


def call_fn(*extra: bytes, name: str = "__inference_call_7") -> bytes:
    return function(name, node("ReadVariableOp", "ReadVariableOp", "w"),
                    node("MatMul", "MatMul", "x", "ReadVariableOp"), node("Relu", "Relu", "MatMul:product:0"), *extra)


def tf2_model(*, call: bytes | None = None, extra_functions: list[bytes] = (), extra_nodes: list[bytes] = (),
              save_fn: bytes = SAVE_FN, restore_fn: bytes = RESTORE_FN, serving_calls: str = "__inference_call_7",
              objects: tuple[str, ...] = ("__inference_call_7",), gradients: list[tuple[str, str]] = (),
              outputs: dict[str, str] | None = None) -> bytes:
    nodes = [
        node("x", "Placeholder"), node("w", "VarHandleOp"), node("saver_filename", "Placeholder"),
        node("StatefulPartitionedCall", "StatefulPartitionedCall", "x", "w", f=func_attr(serving_calls)),
        node("StatefulPartitionedCall_1", "StatefulPartitionedCall", "saver_filename", "w",
             f=func_attr("__inference__traced_save_99")),
        node("StatefulPartitionedCall_2", "StatefulPartitionedCall", "saver_filename", "w",
             f=func_attr("__inference__traced_restore_100")),
        node("NoOp", "NoOp"), *extra_nodes,
    ]
    functions = [call if call is not None else call_fn(), save_fn, restore_fn, *extra_functions]
    return saved_model(meta_graph(
        graph(nodes, functions, gradients), saver=TF2_SAVER,
        signatures=[signature(**(outputs or {"y": "StatefulPartitionedCall:0"})),
                    entry("__saved_model_init_op", msg((2, entry("init", msg((1, "NoOp"))))))],
        objects=object_graph(*objects)))


def ops_of(findings: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
    return [(where, op) for where, op, _ in findings]


def test_tf2_model_with_its_save_and_restore_functions_is_clean() -> None:
    assert scan_bytes(tf2_model()) == []


@pytest.mark.parametrize(("op", "words"), [
    ("ReadFile", "files"), ("WriteFile", "files"), ("MatchingFiles", "files"), ("PyFunc", "Python"),
    ("EagerPyFunc", "Python"), ("DebugIdentityV2", "debug"), ("InitializeTableFromTextFileV2", "vocabulary file"),
    ("WriteScalarSummary", "summaries"), ("TFRecordDatasetV2", "tf.data"), ("ImmutableConst", "file"),
    ("SomeOpFromTheFuture", "allowlist"),
])
def test_a_refused_op_in_the_call_function_is_named_with_where_and_why(op: str, words: str) -> None:
    findings = scan_bytes(tf2_model(call=call_fn(node("evil", op, "x"))))
    assert ops_of(findings) == [("function __inference_call_7", op)]
    assert words in findings[0][2]


def test_a_refused_op_in_the_top_graph() -> None:
    findings = scan_bytes(tf2_model(extra_nodes=[node("r", "ReadFile", "saver_filename")]))
    assert ops_of(findings) == [("graph", "ReadFile")]


def test_checkpoint_ops_outside_the_save_restore_functions_are_findings() -> None:
    findings = scan_bytes(tf2_model(call=call_fn(node("s", "SaveV2", "x"), node("m", "MergeV2Checkpoints", "x"))))
    assert ops_of(findings) == [("function __inference_call_7", "SaveV2"),
                                ("function __inference_call_7", "MergeV2Checkpoints")]
    assert "outside the variables' save/restore" in findings[0][2]


def test_a_save_function_reachable_from_the_serving_call_loses_its_privilege() -> None:
    # Names are not trusted: the serving function calls the "save" function too.
    call = call_fn(node("c", "PartitionedCall", "x", f=func_attr("__inference__traced_save_99")))
    findings = scan_bytes(tf2_model(call=call))
    assert ("function __inference__traced_save_99", "SaveV2") in ops_of(findings)
    assert ("function __inference__traced_save_99", "MergeV2Checkpoints") in ops_of(findings)


def test_a_save_function_named_by_the_object_graph_loses_its_privilege() -> None:
    findings = scan_bytes(tf2_model(objects=("__inference_call_7", "__inference__traced_save_99")))
    assert ("function __inference__traced_save_99", "SaveV2") in ops_of(findings)


def test_a_function_merely_named_like_the_save_function_has_no_privilege() -> None:
    fake = function("__inference__traced_save_5", node("w", "SaveV2", "p"))
    findings = scan_bytes(tf2_model(extra_functions=[fake]))
    assert ops_of(findings) == [("function __inference__traced_save_5", "SaveV2")]


def test_the_restore_side_may_not_save_and_the_save_side_may_not_restore() -> None:
    restore = function("__inference__traced_restore_100", node("RestoreV2", "RestoreV2", "p"),
                       node("SaveV2", "SaveV2", "p"))
    save = function("__inference__traced_save_99", node("SaveV2", "SaveV2", "p"), node("r", "RestoreV2", "p"))
    findings = scan_bytes(tf2_model(save_fn=save, restore_fn=restore))
    assert sorted(ops_of(findings)) == [("function __inference__traced_restore_100", "SaveV2"),
                                        ("function __inference__traced_save_99", "RestoreV2")]


def test_a_saver_node_that_a_signature_also_fetches_is_live() -> None:
    findings = scan_bytes(tf2_model(outputs={"y": "StatefulPartitionedCall:0", "z": "StatefulPartitionedCall_1:0"}))
    assert ("function __inference__traced_save_99", "SaveV2") in ops_of(findings)


def test_a_gradient_function_is_callable_by_anyone() -> None:
    grad = function("grad_fn", node("s", "SaveV2", "p"))
    helper = function("helper", node("i", "Identity", "p"))
    save = function("__inference__traced_save_99", node("s", "SaveV2", "p"),
                    node("c", "PartitionedCall", f=func_attr("helper")), node("g", "PartitionedCall",
                                                                                f=func_attr("grad_fn")))
    findings = scan_bytes(tf2_model(save_fn=save, extra_functions=[grad, helper], gradients=[("helper", "grad_fn")]))
    assert ops_of(findings) == [("function grad_fn", "SaveV2")]


def test_nested_calls_and_cycles_are_followed_with_bounded_work() -> None:
    a = function("a", node("c", "While", "x", cond=func_attr("b"), body=func_attr("b")))
    b = function("b", node("c", "If", "x", then_branch=func_attr("a"),
                            else_branch=func_attr("c", inner=func_attr("d"))))
    c = function("c", node("i", "Identity", "x"))
    d = function("d", node("p", "EagerPyFunc", "x"))
    call = call_fn(node("w", "StatelessWhile", "x", body=func_attr("a"), cond=func_attr("a")))
    findings = scan_bytes(tf2_model(call=call, extra_functions=[a, b, c, d]))
    assert ops_of(findings) == [("function d", "EagerPyFunc")]


def test_a_node_whose_op_is_a_library_function_calls_it() -> None:
    helper = function("helper_fn", node("r", "ReadFile", "x"))
    findings = scan_bytes(tf2_model(call=call_fn(node("h", "helper_fn", "x")), extra_functions=[helper]))
    assert ops_of(findings) == [("function helper_fn", "ReadFile")]


def test_a_function_attribute_naming_an_op_runs_that_op() -> None:
    call = call_fn(node("c", "StatefulPartitionedCall", "x", f=func_attr("WriteFile")))
    findings = scan_bytes(tf2_model(call=call))
    assert ops_of(findings) == [("function __inference_call_7", "WriteFile")]
    assert "called as a function by StatefulPartitionedCall" in findings[0][2]


def test_a_list_of_function_attributes_is_followed() -> None:
    branch = function("branch_1", node("m", "MatchingFiles", "x"))
    case = node("c", "Case", "x", branches=msg((1, msg((9, msg((1, "c"))), (9, msg((1, "branch_1")))))))
    findings = scan_bytes(tf2_model(call=call_fn(case), extra_functions=[branch, function("c")]))
    assert ops_of(findings) == [("function branch_1", "MatchingFiles")]


@pytest.mark.parametrize(("attrs", "bad"), [
    ({}, False),
    ({"output_stream": s_attr("stderr")}, False),
    ({"output_stream": s_attr("log(warning)")}, False),
    ({"output_stream": s_attr("file://printed.txt")}, True),
    ({"output_stream": msg((1, msg((2, "stderr"))))}, True),  # a list, not a string
])
def test_print_v2_only_to_a_standard_stream(attrs: dict[str, bytes], bad: bool) -> None:
    findings = scan_bytes(tf2_model(call=call_fn(node("p", "PrintV2", "x", **attrs))))
    assert ops_of(findings) == ([("function __inference_call_7", "PrintV2")] if bad else [])


def test_every_value_of_a_repeated_field_is_checked() -> None:
    # Protobuf keeps the last op and merges two values of one attr; both are checked.
    two_ops = msg((1, "n"), (2, "Identity"), (2, "ReadFile"))
    assert ops_of(scan_bytes(tf2_model(call=call_fn(two_ops)))) == [("function __inference_call_7", "ReadFile")]
    two_streams = msg((1, "p"), (2, "PrintV2"), (5, entry("output_stream", s_attr("stderr"))),
                      (5, entry("output_stream", s_attr("file://printed.txt"))))
    findings = scan_bytes(tf2_model(call=call_fn(two_streams)))
    assert ops_of(findings) == [("function __inference_call_7", "PrintV2")] and "file://printed.txt" in findings[0][2]


def test_a_graph_def_split_in_two_fields_is_merged() -> None:
    first = graph([node("x", "Placeholder")])
    second = graph([node("r", "ReadFile", "x")])
    data = saved_model(msg((2, first), (2, second)))
    assert ops_of(scan_bytes(data)) == [("graph", "ReadFile")]


def test_several_meta_graphs_say_which() -> None:
    clean = meta_graph(graph([node("x", "Placeholder")]))
    bad = meta_graph(graph([node("r", "WriteFile")]))
    assert ops_of(scan_bytes(saved_model(clean, bad))) == [("graph of meta graph 2", "WriteFile")]


# ------------------------------------------------------------------ TF 1.x shapes

def tf1_graph(*extra: bytes, leftover_saver: bool = True) -> bytes:
    nodes = [
        node("input_1", "Placeholder"), node("k", "VarHandleOp"), node("k/Read", "ReadVariableOp", "k"),
        node("k/Assign", "AssignVariableOp", "k", "k/init"), node("k/init", "Const"),
        node("dense/MatMul", "MatMul", "input_1", "k/Read"), node("init_1", "NoOp"),
        node("save/filename/input", "Const"), node("save/filename", "PlaceholderWithDefault", "save/filename/input"),
        node("save/Const", "PlaceholderWithDefault", "save/filename"),
        node("save/SaveV2", "SaveV2", "save/Const", "k/Read"),
        node("save/control_dependency", "Identity", "save/Const", "^save/SaveV2"),
        node("save/RestoreV2", "RestoreV2", "save/Const"), node("save/Identity", "Identity", "save/RestoreV2"),
        node("save/AssignVariableOp", "AssignVariableOp", "k", "save/Identity"),
        node("save/restore_all", "NoOp", "^save/AssignVariableOp"),
        *extra,
    ]
    if leftover_saver:  # what tf.keras 1.15's export leaves behind: referenced by nothing
        nodes += [node("Const", "Const"), node("RestoreV2", "RestoreV2", "Const"),
                  node("ShardedFilename", "ShardedFilename", "Const"), node("SaveV2", "SaveV2", "ShardedFilename"),
                  node("MergeV2Checkpoints", "MergeV2Checkpoints", "ShardedFilename", "^SaveV2")]
    return graph(nodes)


TF1_SAVER = msg((1, "save/Const:0"), (2, "save/control_dependency:0"), (3, "save/restore_all"))
VARIABLES = entry("variables", msg((2, msg((1, msg((1, "k:0"), (2, "k/Assign"), (4, "k/Read:0")))))))


def tf1_model(*extra: bytes, collections: list[bytes] = (), outputs: dict[str, str] | None = None) -> bytes:
    return saved_model(meta_graph(
        tf1_graph(*extra), saver=TF1_SAVER, collections=[VARIABLES, *collections], version="1.15.5",
        signatures=[signature(**(outputs or {"y": "dense/MatMul:0"})),
                    entry("__saved_model_init_op", msg((2, entry("init", msg((1, "init_1"))))))]))


def test_tf1_graph_with_its_saver_and_a_dead_leftover_saver_is_clean() -> None:
    assert scan_bytes(tf1_model()) == []
    # The TF1 "savers" collection repeats the SaverDef: no reference of its own.
    assert scan_bytes(tf1_model(collections=[entry("savers", msg((2, msg((1, TF1_SAVER)))))])) == []


def test_tf1_saver_nodes_that_a_main_op_or_signature_reaches_are_live() -> None:
    main_op = entry("saved_model_main_op", msg((1, msg((1, "save/control_dependency")))))
    findings = scan_bytes(tf1_model(collections=[main_op]))
    assert ops_of(findings) == [("graph", "SaveV2")]
    findings = scan_bytes(tf1_model(node("sneak", "Identity", "dense/MatMul", "^SaveV2"),
                                    outputs={"y": "sneak:0"}))
    assert sorted(ops_of(findings)) == [("graph", "SaveV2"), ("graph", "ShardedFilename")]


def test_tf1_restore_op_may_not_write() -> None:
    sneaky = node("save/SaveV2_1", "SaveV2", "save/Const", "k/Read")
    evil_restore = node("save/restore_all", "NoOp", "^save/AssignVariableOp", "^save/SaveV2_1")
    nodes = [n for n in msg_nodes(tf1_graph(leftover_saver=False)) if b"save/restore_all" not in n]
    data = saved_model(meta_graph(graph([*nodes, sneaky, evil_restore]), saver=TF1_SAVER,
                                  signatures=[signature(y="dense/MatMul:0")]))
    assert ops_of(scan_bytes(data)) == [("graph", "SaveV2")]


def msg_nodes(graph_def: bytes) -> list[bytes]:
    from runner._worker import pbwire

    return [bytes(v) for n, _, v in pbwire.fields(graph_def) if n == 1]


# ------------------------------------------------------------------ bad input

@pytest.mark.parametrize(("data", "words"), [
    (b"", "empty"),
    (msg((1, 1)), "no meta graph"),
    (tf2_model()[:-7], "truncated"),
    (saved_model(meta_graph(graph([msg((1, "n"), (2, 7))]))), "wire type"),
    (saved_model(meta_graph(graph([msg((1, "n"))]))), "has no op"),
    (b"\x12\x05\x0a\x03\xff\xff\xff", "truncated"),
])
def test_malformed_protobuf_is_a_bad_graph(data: bytes, words: str) -> None:
    with pytest.raises(BadGraph, match=words):
        scan_bytes(data)


def test_deeply_nested_function_attributes_are_bounded() -> None:
    inner = func_attr("leaf")
    for _ in range(200):
        inner = func_attr("f", a=inner)
    with pytest.raises(BadGraph, match="nested deeper"):
        scan_bytes(saved_model(meta_graph(graph([node("c", "PartitionedCall", f=inner)]))))


def test_bad_graph_is_a_value_error() -> None:
    assert issubclass(BadGraph, ValueError)


def _write(d: Path, data: bytes) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "saved_model.pb").write_bytes(data)
    return d


def test_scan_savedmodel_reads_the_directory(tmp_path: Path) -> None:
    assert scan_savedmodel(_write(tmp_path / "ok", tf2_model())) == []
    bad = _write(tmp_path / "bad", tf2_model(call=call_fn(node("r", "ReadFile", "x"))))
    assert ops_of(scan_savedmodel(bad)) == [("function __inference_call_7", "ReadFile")]


def test_scan_savedmodel_refuses_what_it_cannot_read_safely(tmp_path: Path) -> None:
    real = _write(tmp_path / "real", tf2_model())
    link = tmp_path / "link"
    link.mkdir()
    (link / "saved_model.pb").symlink_to(real / "saved_model.pb")
    with pytest.raises(BadGraph, match="cannot read"):
        scan_savedmodel(link)
    with pytest.raises(BadGraph, match="over the limit"):
        scan_savedmodel(real, max_bytes=10)
    (tmp_path / "dir" / "saved_model.pb").mkdir(parents=True)
    with pytest.raises(BadGraph, match="not a regular file"):
        scan_savedmodel(tmp_path / "dir")
    fifo = tmp_path / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / "saved_model.pb")
    with pytest.raises(BadGraph, match="not a regular file"):
        scan_savedmodel(fifo)
    with pytest.raises(BadGraph, match="cannot read"):
        scan_savedmodel(tmp_path / "missing")
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "saved_model.pbtxt").write_text("meta_graphs {}")
    with pytest.raises(BadGraph, match="text-format"):
        scan_savedmodel(tmp_path / "text")


def test_describe_is_one_line() -> None:
    findings = [("function __inference_call_123", "ReadFile", "r"), ("graph", "PyFunc", "p")]
    line = describe(findings)
    assert line.startswith("2 op(s) ")
    assert "outside the variables' save/restore: ReadFile in function __inference_call_123, PyFunc in graph" in line
    many = [(f"function f{i}", "WriteFile", "w") for i in range(12)]
    assert describe(many).endswith("WriteFile in function f7, and 4 more")
    assert "\n" not in describe(many) and describe([]) == "no op outside the allowlist of inert ops"


# ------------------------------------------------------------------ the allowlist file and the module

def test_the_allowlist_file_is_consistent_and_reviewed() -> None:
    doc = json.loads(OPS_JSON.read_text())
    assert doc["generated_by"] == "tests/gen_graph_ops.py"
    assert any(v.startswith("2.15.") for v in doc["tensorflow_versions"])
    allowed = [op for g in doc["groups"] for op in g["ops"]]
    assert all(g["why"] for g in doc["groups"]) and len(allowed) == len(set(allowed))
    refused = {op for g in doc["refused"] for op in g["ops"]}
    checkpoint = set(doc["checkpoint"]["restore"]) | set(doc["checkpoint"]["save"])
    conditional = {c["op"] for c in doc["conditional"]}
    assert not set(allowed) & refused and not set(allowed) & checkpoint and not set(allowed) & conditional
    for op in ("MatMul", "Const", "Identity", "NoOp", "Placeholder", "VarHandleOp", "ReadVariableOp",
               "AssignVariableOp", "StatefulPartitionedCall", "While", "If", "Assert", "StringJoin",
               "StaticRegexFullMatch", "DisableCopyOnRead", "TensorListReserve", "LookupTableFindV2"):
        assert op in allowed, op
    for op in ("ReadFile", "WriteFile", "MatchingFiles", "PyFunc", "EagerPyFunc", "PyFuncStateless", "DebugIdentity",
               "DebugIdentityV2", "InitializeTableFromTextFile", "InitializeTableFromTextFileV2", "ImmutableConst",
               "FixedUnigramCandidateSampler", "CreateSummaryFileWriter", "WriteSummary", "TFRecordDataset",
               "GeneratorDataset", "RecordInput", "RemoteCall", "Abort", "FileSystemSetConfiguration",
               "WholeFileReaderV2", "DecodeProtoV2", "Send", "Recv", "CollectiveReduceV2"):
        assert op in refused, op
    assert {"SaveV2", "RestoreV2", "MergeV2Checkpoints"} <= checkpoint
    assert "SaveV2" not in doc["checkpoint"]["restore"] and "RestoreV2" not in doc["checkpoint"]["save"]


def test_the_generator_refuses_what_its_tripwires_catch() -> None:
    sys.path.insert(0, str(REPO / "tests"))
    try:
        import gen_graph_ops as gen
    finally:
        sys.path.remove(str(REPO / "tests"))
    dumps = {"9.9.0": {"NewMath": "gen_math_ops", "LoadTheThing": "gen_array_ops", "Vocabby": "gen_math_ops",
                       "Odd": "gen_brand_new_ops", "Const": "gen_array_ops", "ReadFile": "gen_io_ops",
                       "InitializeTableFromTextFileV2": "gen_lookup_ops", "SaveV2": "gen_io_ops"}}
    doc, notes = gen.classify(dumps, {"Vocabby": {"vocab_file"}, "NewMath": {"direction"}})
    allowed = {op for g in doc["groups"] for op in g["ops"]}
    refused = {op: g["why"] for g in doc["refused"] for op in g["ops"]}
    assert {"NewMath", "Const"} <= allowed
    assert {"LoadTheThing", "Vocabby", "Odd", "ReadFile", "InitializeTableFromTextFileV2"} <= set(refused)
    assert "SaveV2" not in allowed and "SaveV2" not in refused  # a checkpoint op: its own section
    assert any("tripwire: LoadTheThing" in n for n in notes) and any("vocab_file" in n for n in notes)
    assert any("unreviewed module gen_brand_new_ops" in n for n in notes)
    assert json.loads(gen.render(doc)) == doc


def test_module_is_python_37_and_loads_by_path_without_the_runner_package(tmp_path: Path) -> None:
    ast.parse(MODULE.read_text(), feature_version=(3, 7))
    bad = _write(tmp_path / "m", tf2_model(call=call_fn(node("r", "ReadFile", "x"))))
    code = ("import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('gs', {str(MODULE)!r})\n"
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
            "assert 'runner' not in sys.modules\n"
            f"print(m.describe(m.scan_savedmodel({str(bad)!r})))\n")
    proc = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True,
                          cwd=tmp_path)
    assert "ReadFile in function __inference_call_7" in proc.stdout
    spec = importlib.util.spec_from_file_location("gs_again", MODULE)
    assert spec is not None and spec.loader is not None


def test_command_line(tmp_path: Path) -> None:
    ok = _write(tmp_path / "ok", tf2_model())
    bad = _write(tmp_path / "bad", tf2_model(call=call_fn(node("r", "ReadFile", "x"))))
    assert graph_scan.main([str(ok)]) == 0
    assert graph_scan.main([str(ok), str(bad)]) == 1
    assert graph_scan.main([str(tmp_path / "nothing")]) == 2
