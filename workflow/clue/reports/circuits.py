"""The circuits table: how faithful is every circuit CLUE's logic reads, what kind of circuit it
is, and what its two modes make of the gates.

One row per task and mode (noising, denoising): the kind of circuit chosen (Edge Pruning's
learned gates, EAP-IG's attribution cut, or the node-level fallback, which keeps every edge
between the candidate writers and so types an edge only by which writers each mode kept), its
target sparsity and edges, its faithfulness on the validation pairs (what chose it) and on the
held-out pairs (never used to choose), every candidate tried before it, and the task's gate
counts (AND: noising only, OR: denoising only, ADDER: both; writers kept by one mode only). A
circuit below ``min_faithfulness`` on either set of pairs is flagged where it is printed, and a
gates file is checked against the gates its two circuits give (clue.logic.gates)."""

import sys

from clue import io
from clue.errors import ClueError

KINDS = {"edge_pruning": "Edge Pruning", "attribution": "EAP-IG", "node_level": "node-level"}
GATE_COLUMNS = ["AND", "OR", "ADDER", "writers_noising_only", "writers_denoising_only", "writers_both"]
COLUMNS = ["task", "mode", "circuit", "target_sparsity", "edges_kept", "candidate_edges", "candidate_writers",
           "steps_run", "validation_faithfulness", "heldout_faithfulness", "min_faithfulness", "below_floor",
           "tried", *GATE_COLUMNS]


def kind(circuit):
    """The circuit's kind; circuits written before the ``circuit`` key say only ``node_level``."""
    return circuit.get("circuit") or ("node_level" if circuit.get("node_level") else "edge_pruning")


def tried(circuit):
    """Every candidate the selection tried, in order: 'Edge Pruning 0.9 (300 steps) 0.538; ...'."""
    out = []
    for t in (circuit.get("selection") or {}).get("tried", []):
        k = kind(t)
        label = KINDS.get(k, k) + ("" if k == "node_level" else f" {t.get('target_sparsity')}")
        if t.get("steps_run"):
            label += f" ({t['steps_run']} steps)"
        out.append(f"{label} {t['validation_faithfulness']:.3f}")
    return "; ".join(out)


def check_gates(gates, gates_path, noising, denoising, paths):
    """The gates file against the gates its two circuits give: ClueError naming the file."""
    from clue.logic.gates import build_gate_graph, validate_gates

    validate_gates(gates, gates_path)
    want = build_gate_graph(noising, denoising, noising.get("task"), paths=paths)
    got = {(e["src"], e["dst"]): e["type"] for e in gates["edges"]}
    wanted = {(e["src"], e["dst"]): e["type"] for e in want["edges"]}
    differ = sorted(e for e in set(got) | set(wanted) if got.get(e) != wanted.get(e))
    if differ:
        src, dst = differ[0]
        raise ClueError(f"{gates_path}: {len(differ)} edge(s) differ from the gates of {paths[0]} and {paths[1]} "
                        f"(first: {src} -> {dst}: {got.get((src, dst), 'absent')} in the file, "
                        f"{wanted.get((src, dst), 'absent')} from the circuits); rebuild it with clue gates")
    return want["counts"]


def rows(circuit_paths, gates_paths):
    """Rows of COLUMNS: every circuit of ``circuit_paths`` (both modes of each task whose gates
    are in ``gates_paths``)."""
    circuits = {}
    for path in circuit_paths:
        c = io.read_json(path)
        for key in ("task", "mode", "validation", "faithfulness", "edges"):
            if key not in c:
                raise ClueError(f"{path}: not a circuit JSON (no {key!r}; clue circuit writes them)")
        if (c["task"], c["mode"]) in circuits:
            raise ClueError(f"{path}: a second {c['mode']} circuit of {c['task']} "
                            f"(the first: {circuits[(c['task'], c['mode'])][0]})")
        circuits[(c["task"], c["mode"])] = (path, c)
    counts = {}
    for path in gates_paths:
        g = io.read_json(path)
        task = g.get("task") if isinstance(g, dict) else None
        pair = [circuits.get((task, m)) for m in ("noising", "denoising")]
        if None in pair:
            raise ClueError(f"{path}: gates of task {task!r}, whose noising and denoising circuits are not both "
                            "given (--circuits)")
        counts[task] = check_gates(g, path, pair[0][1], pair[1][1], (pair[0][0], pair[1][0]))
    out = []
    for (task, mode), (path, c) in sorted(circuits.items(), key=lambda kv: (kv[0][0], kv[0][1] != "noising")):
        floor = (c.get("config") or {}).get("min_faithfulness")
        validation, heldout = c["validation"]["faithfulness"], c["faithfulness"]["faithfulness"]
        below = [name for name, v in (("validation", validation), ("held-out", heldout))
                 if floor is not None and v < floor]
        cand = c.get("candidates") or {}
        out.append({"task": task, "mode": mode, "circuit": kind(c), "target_sparsity": c.get("target_sparsity"),
                    "edges_kept": sum(bool(e.get("kept")) for e in c["edges"]),
                    "candidate_edges": cand.get("edges", len(c["edges"])), "candidate_writers": cand.get("writers"),
                    "steps_run": c.get("steps_run"), "validation_faithfulness": validation,
                    "heldout_faithfulness": heldout, "min_faithfulness": floor, "below_floor": " and ".join(below),
                    "tried": tried(c), **(counts.get(task) or dict.fromkeys(GATE_COLUMNS))})
    return out


def markdown(table):
    lines = ["# Circuits", "",
             "Each circuit CLUE's logic reads: its kind (Edge Pruning: learned gates; EAP-IG: the candidate edges "
             "of the largest attribution, no training; node-level: every edge between the candidate writers, so "
             "an edge gets a gate type only from which writers each mode kept), its faithfulness on the "
             "validation pairs that chose it and on held-out pairs never used to choose. "
             "**BELOW FLOOR**: under min_faithfulness; read what rests on it with care.", "",
             "| task | mode | circuit | target | edges kept / candidates | validation | held-out | candidates tried |",
             "|---|---|---|---|---|---|---|---|"]
    for r in table:
        flag = f" **BELOW FLOOR ({r['below_floor']})**" if r["below_floor"] else ""
        target = "" if r["circuit"] == "node_level" else f"{r['target_sparsity']}"
        lines.append(f"| {r['task']} | {r['mode']} | {KINDS.get(r['circuit'], r['circuit'])}{flag} | {target} | "
                     f"{r['edges_kept']:,} / {r['candidate_edges']:,} | {r['validation_faithfulness']:.3f} | "
                     f"{r['heldout_faithfulness']:.3f} | {r['tried'] or '-'} |")
    tasks = [r for r in table if r["mode"] == "noising" and r["AND"] is not None]
    if tasks:
        lines += ["", "Gate types of each task (AND: edge in the noising circuit only, OR: denoising only, ADDER: "
                  "both) and the writers each mode keeps:", "",
                  "| task | AND | OR | ADDER | writers noising only | denoising only | both |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['task']} | " + " | ".join(f"{r[k]:,}" for k in GATE_COLUMNS) + " |" for r in tasks]
    return "\n".join(lines) + "\n"


def add_arguments(p):
    p.add_argument("--circuits", nargs="+", required=True, help="circuit JSONs (clue circuit), both modes of each task")
    p.add_argument("--gates", nargs="*", default=[], help="gates JSONs (clue gates) of those tasks, checked against them")
    p.add_argument("--csv", required=True)
    p.add_argument("--md", required=True)


def main(args):
    import pandas as pd

    table = rows(args.circuits, args.gates)
    with io.atomic_path(args.csv) as tmp:
        pd.DataFrame(table, columns=COLUMNS).to_csv(tmp, index=False, float_format="%.4f")
    text = markdown(table)
    with io.atomic_path(args.md) as tmp:
        tmp.write_text(text)
    print(text, file=sys.stderr)
    return 0
