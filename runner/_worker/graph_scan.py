"""Which ops of a SavedModel graph are not known to be inert: read before anything loads it.

A SavedModel's graph runs when it is loaded or called, and its ops can read and write
files (``ReadFile``, ``WriteFile``, ``MatchingFiles``, readers, summary writers,
``PrintV2`` to a ``file://`` stream, ``DebugIdentity``, text-file table initialisers,
checkpoint ops), run Python (``PyFunc``, ``EagerPyFunc``) or talk to other devices and
hosts. :func:`scan_savedmodel` parses ``saved_model.pb`` with the wire-format reader
``pbwire.py`` (no protobuf, no TensorFlow: the host calls it before any stack runs, and a
stack can load this file by path) and returns every op, in the top graph and in every
library function, that is not in the ALLOWLIST ``graph_ops.json`` (generated from real
TensorFlow releases by ``tests/gen_graph_ops.py``; each group says why it is inert).

Checkpoint ops are needed by the variables' own save/restore, and only there. That part
is found STRUCTURALLY, never by function name: the top-graph nodes the ``saver_def``
names (its restore op; its save tensor) and their ancestors, minus everything any other
reference needs (signatures, collections such as the init/main op, the object graph,
function aliases: every string of those sections counts as a reference). Top-graph roles:

* ``live``: an ancestor of a referenced node: allowlist only;
* ``restore``: needed by the restore op only (TF1-style loaders run it): allowlist plus
  the restore ops;
* ``save``: needed by the save tensor only (no loader runs it): allowlist plus the save ops;
* ``dead``: nothing refers to it, so nothing runs it (tf.keras 1.x leaves such a saver in
  its exports): allowlist plus both.

A library function gets the extra ops of the roles of ALL the nodes that call it
(transitively through function-valued attributes and direct calls), and none if anything
else can call it: a live node, another function that is not itself privileged, the
object graph or any other reference, a gradient registration. A function name used as a
call that is not in the library names an op (TensorFlow runs a registered op by name) and
is checked as one. Protobuf merge semantics are followed: repeated singular messages are
merged, every value of a field that occurs twice is checked.

Standard library only, Python 3.7 syntax. ``python graph_scan.py DIR...`` prints the
findings of each SavedModel directory.
"""

from __future__ import print_function

import importlib.util
import json
import os
import sys

SAVED_MODEL = "saved_model.pb"
MAX_BYTES = 1 << 30  # protobuf itself refuses messages of 2 GiB
OPS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "graph_ops.json")
_STRINGS_DEPTH = 12  # nesting followed when collecting the references of the metadata sections
_MAX_REFERENCE = 4096  # a longer string is no node or function name
_ROLES = ("live", "restore", "save", "dead")


class BadGraph(ValueError):
    """``saved_model.pb`` is missing, unreadable, malformed or truncated."""


_PB = []
_ALLOWLISTS = {}


def _pbwire():
    if not _PB:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pbwire.py")
        spec = importlib.util.spec_from_file_location("compat_matrix_pbwire", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _PB.append(module)
    return _PB[0]


class Allowlist(object):
    """The decisions of ``graph_ops.json`` as sets of op names (bytes)."""

    def __init__(self, doc):
        self.versions = list(doc.get("tensorflow_versions") or [])
        self.allowed = frozenset(op.encode("utf-8") for g in doc["groups"] for op in g["ops"])
        self.conditional = {}
        for c in doc.get("conditional") or []:
            self.conditional[c["op"].encode("utf-8")] = (
                c["attr"].encode("utf-8"), c["default"].encode("utf-8"),
                frozenset(v.encode("utf-8") for v in c["allowed"]))
        self.restore = frozenset(op.encode("utf-8") for op in doc["checkpoint"]["restore"])
        self.save = frozenset(op.encode("utf-8") for op in doc["checkpoint"]["save"])
        self.refused = {}
        for group in doc.get("refused") or []:
            for op in group["ops"]:
                self.refused[op.encode("utf-8")] = group["why"]
        self.cond_attrs = frozenset(a for a, _, _ in self.conditional.values())
        self.extra = {"live": frozenset(), "restore": self.restore, "save": self.save,
                      "dead": self.restore | self.save}


def load_allowlist(path=None):
    """The :class:`Allowlist` of ``path`` (default ``graph_ops.json`` next to this file), cached."""
    path = path or OPS_FILE
    if path not in _ALLOWLISTS:
        with open(path, "rb") as fh:
            _ALLOWLISTS[path] = Allowlist(json.loads(fh.read().decode("utf-8")))
    return _ALLOWLISTS[path]


# ------------------------------------------------------------------ the wire format


def _fields(data, what):
    try:
        for item in _pbwire().fields(data):
            yield item
    except ValueError as exc:
        raise BadGraph("saved_model.pb is truncated or damaged: %s does not parse (%s)" % (what, exc)) from None


def _bytes_field(wire, value, what):
    if wire != 2:
        raise BadGraph("saved_model.pb is damaged: %s has wire type %d, not a string or message" % (what, wire))
    return bytes(value)


def _text(name):
    return name.decode("utf-8", "replace")


def _base_name(ref):
    """A node name from a tensor name or an input (``^n``, ``n:0``, ``n:out:0`` -> ``n``)."""
    if ref.startswith(b"^"):
        ref = ref[1:]
    return ref.split(b":", 1)[0]


class _Node(object):
    __slots__ = ("cond", "inputs", "name", "ops", "refs")

    def __init__(self):
        self.name = b""
        self.ops = []      # every value of NodeDef.op (TensorFlow keeps the last; all are checked)
        self.inputs = []   # node names
        self.refs = []     # function names of its function-valued attributes
        self.cond = {}     # attr name -> string values, for the conditional ops' attributes


class _Function(object):
    __slots__ = ("name", "nodes", "refs")

    def __init__(self, name, nodes, refs):
        self.name, self.nodes, self.refs = name, nodes, refs


class _MetaGraph(object):
    __slots__ = ("functions", "gradients", "nodes", "references", "saver")

    def __init__(self):
        self.nodes = []
        self.functions = []
        self.gradients = []   # (function name, gradient function name)
        self.saver = {}       # SaverDef field number -> tensor/op name
        self.references = set()


def _name_attr_list(data, refs, conds, depth):
    """NameAttrList: 1 name, 2 attr (map<string, AttrValue>)."""
    if depth > _pbwire().MAX_DEPTH:
        raise BadGraph("saved_model.pb is damaged: function attributes nested deeper than %d"
                       % _pbwire().MAX_DEPTH)
    for number, wire, value in _fields(data, "a function attribute"):
        if number == 1:
            refs.append(_bytes_field(wire, value, "NameAttrList.name"))
        elif number == 2:
            _attr_entry(_bytes_field(wire, value, "NameAttrList.attr"), refs, conds, None, depth + 1)


def _attr_value(data, refs, strings, depth):
    """AttrValue: 1 list (ListValue: 2 s, 9 func), 2 s, 10 func; the rest holds no name."""
    for number, wire, value in _fields(data, "an AttrValue"):
        if number == 10:
            _name_attr_list(_bytes_field(wire, value, "AttrValue.func"), refs, None, depth + 1)
        elif number == 2:
            strings.append(_bytes_field(wire, value, "AttrValue.s"))
        elif number == 1:
            strings.append(None)  # a list is no plain string: a conditional attribute must be one
            for n2, w2, v2 in _fields(_bytes_field(wire, value, "AttrValue.list"), "an AttrValue list"):
                if n2 == 9:
                    _name_attr_list(_bytes_field(w2, v2, "AttrValue.list.func"), refs, None, depth + 1)


def _attr_entry(data, refs, conds, cond_attrs, depth):
    """One map<string, AttrValue> entry: 1 key, 2 value (occurrences of a message merge)."""
    key, values = b"", []
    for number, wire, value in _fields(data, "an attribute"):
        if number == 1:
            key = _bytes_field(wire, value, "attr key")
        elif number == 2:
            values.append(_bytes_field(wire, value, "attr value"))
    strings = []
    _attr_value(b"".join(values), refs, strings, depth)
    if cond_attrs is not None and key in cond_attrs and conds is not None:
        conds.setdefault(key, []).extend(strings or [None])


def _node_def(data, cond_attrs):
    """NodeDef: 1 name, 2 op, 3 input, 5 attr."""
    node = _Node()
    for number, wire, value in _fields(data, "a NodeDef"):
        if number == 1:
            node.name = _bytes_field(wire, value, "NodeDef.name")
        elif number == 2:
            node.ops.append(_bytes_field(wire, value, "NodeDef.op"))
        elif number == 3:
            node.inputs.append(_base_name(_bytes_field(wire, value, "NodeDef.input")))
        elif number == 5:
            _attr_entry(_bytes_field(wire, value, "NodeDef.attr"), node.refs, node.cond, cond_attrs, 0)
    if not node.ops:
        raise BadGraph("saved_model.pb is damaged: node %r has no op" % _text(node.name))
    return node


def _function_def(data, cond_attrs):
    """FunctionDef: 1 signature (OpDef: 1 name), 3 node_def, 5 attr."""
    signature, nodes, refs = [], [], []
    for number, wire, value in _fields(data, "a FunctionDef"):
        if number == 1:
            signature.append(_bytes_field(wire, value, "FunctionDef.signature"))
        elif number == 3:
            nodes.append(_node_def(_bytes_field(wire, value, "FunctionDef.node_def"), cond_attrs))
        elif number == 5:
            _attr_entry(_bytes_field(wire, value, "FunctionDef.attr"), refs, None, None, 0)
    name = b""
    for number, wire, value in _fields(b"".join(signature), "a function signature"):
        if number == 1:
            name = _bytes_field(wire, value, "OpDef.name")
    return _Function(name, nodes, refs)


def _strings(data, out, depth):
    """Every length-delimited value of ``data`` and of the messages nested in it, as names.

    The metadata sections are read without their schema: a string that happens to parse as
    a message is also walked, which can only add references (fewer privileges), never remove one."""
    try:
        items = list(_pbwire().fields(data))
    except ValueError:
        return False
    for _number, wire, value in items:
        if wire != 2:
            continue
        value = bytes(value)
        if len(value) <= _MAX_REFERENCE:
            out.add(value)
            out.add(_base_name(value))
        if depth < _STRINGS_DEPTH and value:
            _strings(value, out, depth + 1)
    return True


def _meta_graph(data, cond_attrs):
    """MetaGraphDef: 1 meta_info_def, 2 graph_def, 3 saver_def, 4 collection_def, 5 signature_def,
    6 asset_file_def, 7 object_graph_def."""
    meta = _MetaGraph()
    graph, saver, referencing = [], [], []
    for number, wire, value in _fields(data, "a MetaGraphDef"):
        if number == 2:
            graph.append(_bytes_field(wire, value, "MetaGraphDef.graph_def"))
        elif number == 3:
            saver.append(_bytes_field(wire, value, "MetaGraphDef.saver_def"))
        elif number == 4:
            entry = _bytes_field(wire, value, "MetaGraphDef.collection_def")
            key = b""
            for n2, w2, v2 in _fields(entry, "a collection"):
                if n2 == 1:
                    key = _bytes_field(w2, v2, "collection name")
            if key != b"savers":  # TF1 keeps a copy of the SaverDef there: no reference of its own
                referencing.append(entry)
        elif number == 1:  # MetaInfoDef: 8 function_aliases names functions (2 stripped_op_list names op types)
            for n2, w2, v2 in _fields(_bytes_field(wire, value, "MetaGraphDef.meta_info_def"), "a MetaInfoDef"):
                if n2 == 8:
                    referencing.append(_bytes_field(w2, v2, "MetaInfoDef.function_aliases"))
        elif number in (5, 6, 7):
            referencing.append(_bytes_field(wire, value, "MetaGraphDef field %d" % number))
    for section in referencing:
        if not _strings(section, meta.references, 0):
            raise BadGraph("saved_model.pb is truncated or damaged: its metadata does not parse")
    for number, wire, value in _fields(b"".join(saver), "a SaverDef"):
        if number in (2, 3):  # 2 save_tensor_name, 3 restore_op_name
            meta.saver[number] = _base_name(_bytes_field(wire, value, "SaverDef field %d" % number))
    library = []
    for number, wire, value in _fields(b"".join(graph), "a GraphDef"):  # 1 node, 2 library
        if number == 1:
            meta.nodes.append(_node_def(_bytes_field(wire, value, "GraphDef.node"), cond_attrs))
        elif number == 2:
            library.append(_bytes_field(wire, value, "GraphDef.library"))
    for number, wire, value in _fields(b"".join(library), "a FunctionDefLibrary"):
        if number == 1:  # 1 function, 2 gradient (GradientDef), 3 registered_gradients
            meta.functions.append(_function_def(_bytes_field(wire, value, "FunctionDef"), cond_attrs))
        elif number in (2, 3):
            names = {}
            for n2, w2, v2 in _fields(_bytes_field(wire, value, "a gradient"), "a gradient"):
                names[n2] = _bytes_field(w2, v2, "gradient name")
            if number == 2:  # GradientDef: 1 function_name, 2 gradient_func
                meta.gradients.append((names.get(1, b""), names.get(2, b"")))
            else:  # RegisteredGradient: 1 gradient_func, 2 registered_op_type
                meta.gradients.append((b"", names.get(1, b"")))
    return meta


# ------------------------------------------------------------------ the analysis


def _ancestors(starts, nodes, by_name):
    seen = set()
    stack = list(starts)
    while stack:
        i = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        for name in nodes[i].inputs:
            stack.extend(j for j in by_name.get(name, ()) if j not in seen)
    return seen


def _closure(starts, callees):
    seen = set()
    stack = [s for s in starts if s in callees]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        stack.extend(c for c in callees[name] if c in callees and c not in seen)
    return seen


def _node_calls(node, callees):
    return list(node.refs) + [op for op in node.ops if op in callees]


def _roles(meta):
    """The role of every top-graph node (index -> one of _ROLES)."""
    nodes = meta.nodes
    by_name = {}
    for i, node in enumerate(nodes):
        by_name.setdefault(node.name, []).append(i)
    live = _ancestors([i for i, n in enumerate(nodes) if n.name in meta.references], nodes, by_name)
    restore = _ancestors(by_name.get(meta.saver.get(3), ()), nodes, by_name) - live
    save = _ancestors(by_name.get(meta.saver.get(2), ()), nodes, by_name) - live - restore
    return ["live" if i in live else "restore" if i in restore else "save" if i in save else "dead"
            for i in range(len(nodes))]


def _function_extras(meta, roles, allow):
    """{function name: the checkpoint ops it may hold} (empty for any function something else can call)."""
    callees = {}
    for f in meta.functions:
        out = callees.setdefault(f.name, [])
        out.extend(f.refs)
        for node in f.nodes:
            out.extend(node.refs)
            out.extend(node.ops)  # a node whose op is a library function calls it
    for fname, grad in meta.gradients:
        if fname in callees:
            callees[fname].append(grad)
    reached = {}
    for role in ("restore", "save", "dead"):
        starts = [c for i, n in enumerate(meta.nodes) if roles[i] == role for c in _node_calls(n, callees)]
        reached[role] = _closure(starts, callees)
    candidates = set().union(*reached.values())
    roots = [c for i, n in enumerate(meta.nodes) if roles[i] == "live" for c in _node_calls(n, callees)]
    roots += [name for name in callees if name in meta.references or name not in candidates]
    roots += [grad for _, grad in meta.gradients]
    anyone = _closure(roots, callees)
    extras = {}
    for name in callees:
        if name in anyone:
            extras[name] = frozenset()
        else:
            sets = [allow.extra[role] for role in ("restore", "save", "dead") if name in reached[role]]
            extras[name] = frozenset.intersection(*sets) if sets else frozenset()
    return extras


def _verdict(op, cond, extra, allow):
    """None if ``op`` may run here, else the reason it may not."""
    if op in allow.allowed or op in extra:
        return None
    if op in allow.conditional:
        attr, default, ok = allow.conditional[op]
        values = cond.get(attr) or [default]
        bad = [v for v in values if v not in ok]
        if not bad:
            return None
        shown = ", ".join("a non-string value" if v is None else repr(_text(v)) for v in bad)
        return "its %s is %s, not one of %s" % (_text(attr), shown, ", ".join(sorted(_text(v) for v in ok)))
    if op in allow.restore or op in allow.save:
        return "a checkpoint op outside the variables' save/restore"
    if op in allow.refused:
        return allow.refused[op]
    return "not in the allowlist of inert ops"


def _scan_meta(meta, allow, suffix, out):
    roles = _roles(meta)
    extras = _function_extras(meta, roles, allow)

    def check(where, node, extra):
        for op in node.ops:
            if op in extras:
                continue  # a call of a library function, which is scanned itself
            reason = _verdict(op, node.cond, extra, allow)
            if reason is not None:
                out.setdefault((where, _text(op)), reason)
        for ref in node.refs:
            if ref not in extras:
                reason = _verdict(ref, {}, extra, allow)
                if reason is not None:
                    out.setdefault((where, _text(ref)), "called as a function by %s: %s"
                                   % ("/".join(_text(o) for o in node.ops), reason))

    for i, node in enumerate(meta.nodes):
        check("graph" + suffix, node, allow.extra[roles[i]])
    for f in sorted(meta.functions, key=lambda f: f.name):
        where = "function %s%s" % (_text(f.name), suffix)
        for node in f.nodes:
            check(where, node, extras.get(f.name, frozenset()))
        for ref in f.refs:
            if ref not in extras:
                reason = _verdict(ref, {}, frozenset(), allow)
                if reason is not None:
                    out.setdefault((where, _text(ref)), "named by a function attribute: %s" % reason)


def scan_bytes(data, allowlist=None):
    """The findings of the bytes of a ``saved_model.pb`` (see :func:`scan_savedmodel`)."""
    allow = allowlist or load_allowlist()
    if not data:
        raise BadGraph("saved_model.pb is empty")
    metas = []
    for number, wire, value in _fields(data, "the SavedModel"):
        if number == 2:  # SavedModel: 1 saved_model_schema_version, 2 meta_graphs
            metas.append(_meta_graph(_bytes_field(wire, value, "SavedModel.meta_graphs"), allow.cond_attrs))
    if not metas:
        raise BadGraph("saved_model.pb holds no meta graph")
    out = {}
    for k, meta in enumerate(metas):
        _scan_meta(meta, allow, " of meta graph %d" % (k + 1) if len(metas) > 1 else "", out)
    return [(where, op, reason) for (where, op), reason in out.items()]


def scan_savedmodel(dirpath, max_bytes=MAX_BYTES, allowlist=None):
    """``[(where, op, reason)]``: the ops of ``dirpath/saved_model.pb`` not known to be inert.

    ``where`` is ``"graph"`` or ``"function <name>"`` (plus ``" of meta graph K"`` when the
    file holds several). Empty: every op is in the allowlist, or is a checkpoint op in the
    variables' own save/restore. Raises :class:`BadGraph` when the file is missing, a
    symlink or not a regular file, over ``max_bytes``, or does not parse."""
    path = os.path.join(dirpath, SAVED_MODEL)
    if not os.path.lexists(path) and os.path.lexists(os.path.join(dirpath, "saved_model.pbtxt")):
        raise BadGraph("%s holds a text-format saved_model.pbtxt, which is not scanned" % dirpath)
    try:
        data = _pbwire().read_capped(path, max_bytes)
    except OSError as exc:
        raise BadGraph("cannot read %s: %s" % (path, exc.strerror or exc)) from None
    except ValueError as exc:
        raise BadGraph("cannot read %s: %s" % (path, exc)) from None
    return scan_bytes(data, allowlist)


def describe(findings, limit=8):
    """One line for the user: how many, and which ops where."""
    if not findings:
        return "no op outside the allowlist of inert ops"
    shown = ["%s in %s" % (op, where) for where, op, _ in findings[:limit]]
    more = len(findings) - len(shown)
    return "%d op(s) that may read/write files, run Python or reach devices (not in the allowlist of inert " \
           "ops) outside the variables' save/restore: %s%s" % (
               len(findings), ", ".join(shown), ", and %d more" % more if more else "")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    status = 0
    for d in argv:
        try:
            findings = scan_savedmodel(d)
        except BadGraph as exc:
            print("%s: refused: %s" % (d, exc))
            status = 2
            continue
        print("%s: %s" % (d, describe(findings)))
        for where, op, reason in findings:
            print("  %s in %s: %s" % (op, where, reason))
        status = max(status, 1 if findings else 0)
    return status


if __name__ == "__main__":
    sys.exit(main())
