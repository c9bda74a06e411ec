"""Typed gate graph of one task (paper section 3.1 and appendix C, DESIGN section 5).

The circuits are reader-level (a writer feeds a head's q, k or v input, an MLP, or ``out``); the
logic works on neurons, so reader-level edges are collapsed to node-level edges: w -> a{L}.h{H}
exists if w reaches that head's q reader, or the k/v reader of its key/value head. Edges from
``embed`` are dropped (the input is given). An edge kept by the noising circuit only is an AND
gate edge, by the denoising circuit only an OR gate edge, by both an ADDER gate edge. Node-level
edges into a neuron from which no edge path reaches ``out`` are dropped before typing (the circuit
stage already removed such reader-level edges; collapsing a shared k/v input can create new ones).
"""

import re
from collections import defaultdict

from clue.errors import ClueError
from clue.io import read_json, write_json

GATE_TYPES = ("AND", "OR", "ADDER")
OUT = "out"

_HEAD = re.compile(r"^a(\d+)\.h(\d+)$")
_MLP = re.compile(r"^m(\d+)$")
_HEAD_READER = re.compile(r"^a(\d+)\.h(\d+)\.([qkv])$")


def neuron_kind(name):
    """(component, layer, index) of a neuron name: ('attention', L, H) or ('mlp', L, 0); None if
    the name is not a neuron."""
    m = _HEAD.match(name)
    if m:
        return ("attention", int(m.group(1)), int(m.group(2)))
    m = _MLP.match(name)
    if m:
        return ("mlp", int(m.group(1)), 0)
    return None


def _check_circuit(circ, path):
    if not isinstance(circ, dict):
        raise ClueError(f"{path}: a circuit file must be a JSON object")
    for key in ("writers", "readers", "edges"):
        if not isinstance(circ.get(key), list):
            raise ClueError(f"{path}: missing or non-list field '{key}'")
    writers = set(circ["writers"])
    readers = set(circ["readers"])
    for w in writers:
        if w != "embed" and neuron_kind(w) is None:
            raise ClueError(f"{path}: unknown writer name '{w}'")
    for i, e in enumerate(circ["edges"]):
        if not isinstance(e, dict) or not {"writer", "reader", "kept"} <= set(e):
            raise ClueError(f"{path}: edge #{i} needs fields writer, reader, kept")
        if e["writer"] not in writers:
            raise ClueError(f"{path}: edge #{i} has writer '{e['writer']}' not in the writer list")
        if e["reader"] not in readers:
            raise ClueError(f"{path}: edge #{i} has reader '{e['reader']}' not in the reader list")


def _kv_groups(readers, path):
    """Per layer, the query heads that share each key/value head. The group size is
    n_heads // n_kv_heads (grouped-query attention), derived from the reader list, which names
    every q head and every kv head."""
    heads = {kind: defaultdict(set) for kind in "qkv"}
    for r in readers:
        m = _HEAD_READER.match(r)
        if not m:
            if r != OUT and not _MLP.match(r):
                raise ClueError(f"{path}: unknown reader name '{r}'")
            continue
        heads[m.group(3)][int(m.group(1))].add(int(m.group(2)))
    groups = {}
    for layer in sorted(set(heads["q"]) | set(heads["k"]) | set(heads["v"])):
        qs, ks, vs = (heads[kind].get(layer, set()) for kind in "qkv")
        n_q, n_kv = len(qs), len(ks)
        if ks != vs or n_kv == 0 or n_q % n_kv or qs != set(range(n_q)) or ks != set(range(n_kv)):
            raise ClueError(f"{path}: layer {layer} has q readers for heads {sorted(qs)}, k for "
                            f"{sorted(ks)}, v for {sorted(vs)}; expected heads 0..n-1, the same k "
                            f"and v heads, and n_heads divisible by n_kv_heads")
        size = n_q // n_kv
        for g in range(n_kv):
            groups[(layer, g)] = [f"a{layer}.h{h}" for h in range(g * size, (g + 1) * size)]
    return groups


def collapse(circ, path="circuit"):
    """Node-level edges (src, dst) of a circuit's kept edges; dst is a neuron or ``out``."""
    _check_circuit(circ, path)
    groups = _kv_groups(circ["readers"], path)
    edges = set()
    for e in circ["edges"]:
        if not e["kept"] or e["writer"] == "embed":
            continue
        w, r = e["writer"], e["reader"]
        m = _HEAD_READER.match(r)
        if m is None:
            dsts = [r]  # m{L} or out: the reader is the node itself
        elif m.group(3) == "q":
            dsts = [f"a{m.group(1)}.h{m.group(2)}"]
        else:
            # a k/v input is shared by every query head of its group
            dsts = groups[(int(m.group(1)), int(m.group(2)))]
        for d in dsts:
            edges.add((w, d))
    return edges


def reaching_out(edges):
    """The node-level edges whose destination reaches ``out``. A k/v input is shared by its whole
    key/value group, so collapsing can give a head of the group an input edge although nothing
    leaves it; such a neuron would be forced to 0 by Tseitin's equivalence and judged a forget
    neuron while it cannot change the output."""
    live, changed = {OUT}, True
    while changed:
        changed = False
        for src, dst in edges:
            if dst in live and src not in live:
                live.add(src)
                changed = True
    return {(src, dst) for src, dst in edges if dst in live}


def build_gate_graph(noising, denoising, task, paths=("noising", "denoising")):
    """The gates JSON object (docs/formats.md) from the two circuit objects of one task."""
    ns = reaching_out(collapse(noising, paths[0]))
    dn = reaching_out(collapse(denoising, paths[1]))
    if list(noising["writers"]) != list(denoising["writers"]):
        raise ClueError(f"{paths[0]} and {paths[1]} list different writers: not the same model")
    neurons = [w for w in noising["writers"] if w != "embed"]
    order = {n: i for i, n in enumerate(neurons)}
    order[OUT] = len(neurons)
    edges = []
    for src, dst in sorted(ns | dn, key=lambda e: (order[e[1]], order[e[0]])):
        kind = "ADDER" if (src, dst) in ns and (src, dst) in dn else "AND" if (src, dst) in ns else "OR"
        edges.append({"src": src, "dst": dst, "type": kind})
    graph = {"task": task, "neurons": neurons, "edges": edges, "counts": gate_counts(edges, ns, dn)}
    validate_gates(graph, f"gates of {task}")
    return graph


def gate_counts(edges, noising, denoising):
    """How many edges of each gate type, and how many writers each mode's circuit keeps (a source
    of a kept node-level edge) that the other's does not: in a node-level circuit, the only way an
    edge gets a type other than ADDER (docs/circuits.md)."""
    kept = [{src for src, _ in mode} for mode in (noising, denoising)]
    return {**{k: sum(e["type"] == k for e in edges) for k in GATE_TYPES},
            "writers_noising_only": len(kept[0] - kept[1]), "writers_denoising_only": len(kept[1] - kept[0]),
            "writers_both": len(kept[0] & kept[1])}


class GateGraph:
    """A checked gate graph: ``neurons`` (model order), ``edges`` [(src, dst, type)],
    ``topo`` (circuit nodes in a topological order, ``out`` last when present)."""

    def __init__(self, task, neurons, edges, topo):
        self.task, self.neurons, self.edges, self.topo = task, neurons, edges, topo


def validate_gates(graph, path):
    """Check a gates object; raise ClueError naming the offending node, edge or cycle."""
    if not isinstance(graph, dict) or not isinstance(graph.get("neurons"), list) \
            or not isinstance(graph.get("edges"), list):
        raise ClueError(f"{path}: a gates file needs list fields 'neurons' and 'edges'")
    neurons = list(graph["neurons"])
    known = set(neurons)
    if len(known) != len(neurons):
        raise ClueError(f"{path}: duplicate names in 'neurons'")
    for n in neurons:
        if neuron_kind(n) is None:
            raise ClueError(f"{path}: '{n}' in 'neurons' is not a neuron name (a{{L}}.h{{H}} or m{{L}})")
    seen = {}
    for i, e in enumerate(graph["edges"]):
        if not isinstance(e, dict) or not {"src", "dst", "type"} <= set(e):
            raise ClueError(f"{path}: edge #{i} needs fields src, dst, type")
        src, dst, kind = e["src"], e["dst"], e["type"]
        if kind not in GATE_TYPES:
            raise ClueError(f"{path}: edge #{i} {src} -> {dst} has unknown gate type '{kind}' "
                            f"(expected AND, OR or ADDER)")
        if src not in known:
            raise ClueError(f"{path}: edge #{i} {src} -> {dst}: dangling node '{src}' "
                            f"(a source must be one of the neurons)")
        if dst not in known and dst != OUT:
            raise ClueError(f"{path}: edge #{i} {src} -> {dst}: dangling node '{dst}' "
                            f"(not a neuron and not 'out')")
        if seen.setdefault((src, dst), kind) != kind:
            raise ClueError(f"{path}: edge {src} -> {dst} is typed both {seen[(src, dst)]} and {kind}")
    counts = graph.get("counts")
    if counts is not None:
        # the types as the circuits gave them (gate_counts); a file edited since no longer adds up
        typed = {k: sum(kind == k for kind in seen.values()) for k in GATE_TYPES}
        if {k: counts.get(k) for k in GATE_TYPES} != typed:
            raise ClueError(f"{path}: its edges are typed {', '.join(f'{k} {v}' for k, v in typed.items())}, but its "
                            f"circuits gave {', '.join(f'{k} {counts.get(k)}' for k in GATE_TYPES)}: the types do not "
                            "match its circuits; rebuild it with clue gates")
    edges = [(s, d, k) for (s, d), k in seen.items()]
    return GateGraph(graph.get("task"), neurons, edges, _topological(edges, neurons, path))


def _topological(edges, neurons, path):
    children = defaultdict(list)
    indeg = defaultdict(int)
    nodes = set()
    for s, d, _ in edges:
        children[s].append(d)
        indeg[d] += 1
        nodes.update((s, d))
    rank = {n: i for i, n in enumerate(neurons)}
    rank[OUT] = len(neurons)
    ready = sorted((n for n in nodes if indeg[n] == 0), key=rank.get, reverse=True)
    topo = []
    while ready:
        n = ready.pop()
        topo.append(n)
        for c in children[n]:
            indeg[c] -= 1
            if indeg[c] == 0:
                ready.append(c)
        ready.sort(key=rank.get, reverse=True)
    if len(topo) < len(nodes):
        raise ClueError(f"{path}: the gate graph has a cycle: {' -> '.join(_find_cycle(edges, set(topo)))}")
    return topo


def _find_cycle(edges, ordered):
    """One cycle among the nodes Kahn's algorithm could not order. Every such node has a parent
    that is also unordered, so walking to parents must revisit a node."""
    parents = defaultdict(list)
    for s, d, _ in edges:
        if s not in ordered and d not in ordered:
            parents[d].append(s)
    node = min(parents)
    path, pos = [], {}
    while node not in pos:
        pos[node] = len(path)
        path.append(node)
        node = min(parents[node])
    cycle = path[pos[node]:] + [node]
    return cycle[::-1]  # parents were followed, so reverse to read along the edges


def load_gates(path):
    return validate_gates(read_json(path), path)


GATE_COLORS = {"AND": ("tab:blue", "AND (noising only)"), "OR": ("tab:orange", "OR (denoising only)"),
               "ADDER": ("tab:green", "ADDER (both)")}


def draw(graph, out_path):
    """Draw the typed gate graph at node level (clue.reports.drawing): only neurons in the circuit,
    labelled, by layer; edges coloured by gate type."""
    from clue.reports.drawing import draw_nodes

    edges = [(e["src"], e["dst"], e["type"]) for e in graph["edges"]]
    counts = ", ".join(f"{k} {sum(e[2] == k for e in edges)}" for k in GATE_TYPES)
    nodes = {n for s, d, _ in edges for n in (s, d)} - {OUT}
    draw_nodes(edges, out_path, f"gate graph of {graph.get('task')}: {len(nodes)} of "
               f"{len(graph['neurons'])} neurons, {len(edges)} edges ({counts})", GATE_COLORS)


def add_arguments(parser):
    parser.add_argument("--noising", required=True, help="circuit JSON found with noising")
    parser.add_argument("--denoising", required=True, help="circuit JSON found with denoising")
    parser.add_argument("--task", required=True, help="task name recorded in the output")
    parser.add_argument("--out", required=True, help="gates JSON to write")
    parser.add_argument("--drawing", help="optional SVG drawing of the gate graph")


def main(args):
    graph = build_gate_graph(read_json(args.noising), read_json(args.denoising), args.task,
                             paths=(args.noising, args.denoising))
    write_json(args.out, graph)
    if args.drawing:
        draw(graph, args.drawing)
    c = graph["counts"]
    print(f"{args.task}: {len(graph['edges'])} node-level edges " + ", ".join(f"{k} {c[k]}" for k in GATE_TYPES)
          + f"; writers kept by noising only {c['writers_noising_only']}, by denoising only "
          f"{c['writers_denoising_only']}, by both {c['writers_both']}")
