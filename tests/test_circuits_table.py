"""The circuits table (clue circuits-table, rule circuits_table): every circuit's kind and
faithfulness, flagged below the floor, and its task's gate types checked against the circuits.
Expected gate counts are worked out by hand from the hand-made circuits below."""

import json

import pandas as pd

from clue.cli import main as clue


def circuit(task, mode, kept, kind, validation, heldout, tried=(), floor=0.85, target=0.5):
    """A circuit JSON of a 1-layer model (4 heads, one MLP); ``kept``: (writer, reader) edges kept."""
    writers = ["embed", "a0.h0", "a0.h1", "a0.h2", "a0.h3", "m0"]
    readers = [f"a0.h{h}.q" for h in range(4)] + ["a0.h0.k", "a0.h0.v", "m0", "out"]
    candidates = [("a0.h0", "m0"), ("a0.h1", "m0"), ("a0.h0", "out"), ("a0.h1", "out"), ("m0", "out")]
    edges = [{"writer": w, "reader": r, "score": 0.5, "kept": (w, r) in kept} for w, r in candidates]
    return {"model": "toy", "task": task, "mode": mode, "writers": writers, "readers": readers, "edges": edges,
            "target_sparsity": target, "circuit": kind, "node_level": kind == "node_level", "steps_run": 0,
            "validation": {"pairs": 4, "faithfulness": validation}, "faithfulness": {"pairs": 4, "faithfulness": heldout},
            "candidates": {"writers": 3, "edges": len(candidates)},
            "selection": {"tried": [{"target_sparsity": t, "circuit": k, "node_level": k == "node_level",
                                     "steps_run": s, "validation_faithfulness": v} for t, k, s, v in tried]},
            "config": {"min_faithfulness": floor}}


def write(path, obj):
    path.write_text(json.dumps(obj))
    return str(path)


def two_tasks(tmp_path):
    """Task f: noising keeps a0.h0->out and m0->out, denoising keeps m0->out and a0.h1->m0, so by
    hand: a0.h0->out AND (noising only), m0->out ADDER (both), a0.h1->m0 OR (denoising only);
    writers kept: a0.h0 by noising only, a0.h1 by denoising only, m0 by both. Task r: both modes
    keep the same two edges, node-level: ADDER 2, no writer kept by one mode only."""
    paths = {
        ("f", "noising"): circuit("f", "noising", {("a0.h0", "out"), ("m0", "out")}, "attribution", 0.90, 0.80,
                                  tried=[(0.5, "edge_pruning", 300, 0.61), (0.5, "attribution", 0, 0.90)]),
        ("f", "denoising"): circuit("f", "denoising", {("m0", "out"), ("a0.h1", "m0")}, "edge_pruning", 0.95, 0.93,
                                    tried=[(0.5, "edge_pruning", 150, 0.95)]),
        ("r", "noising"): circuit("r", "noising", {("m0", "out"), ("a0.h0", "m0")}, "node_level", 0.70, 0.90,
                                  tried=[(0.5, "edge_pruning", 300, 0.40), (None, "node_level", 0, 0.70)]),
        ("r", "denoising"): circuit("r", "denoising", {("m0", "out"), ("a0.h0", "m0")}, "node_level", 0.88, 0.87),
    }
    circuits = [write(tmp_path / f"{t}-{m}.json", c) for (t, m), c in paths.items()]
    gates = []
    for t in ("f", "r"):
        g = tmp_path / f"gates-{t}.json"
        assert clue(["gates", "--noising", circuits[0 if t == "f" else 2], "--denoising", circuits[1 if t == "f" else 3],
                     "--task", t, "--out", str(g)]) == 0
        gates.append(str(g))
    return circuits, gates


def test_every_circuit_with_its_kind_faithfulness_flags_and_gate_counts(tmp_path, capsys):
    circuits, gates = two_tasks(tmp_path)
    csv, md = tmp_path / "c.csv", tmp_path / "c.md"
    assert clue(["circuits-table", "--circuits", *circuits, "--gates", *gates, "--csv", str(csv), "--md", str(md)]) == 0
    t = pd.read_csv(csv, keep_default_na=False).set_index(["task", "mode"])
    assert list(t.index) == [("f", "noising"), ("f", "denoising"), ("r", "noising"), ("r", "denoising")]
    assert list(t["circuit"]) == ["attribution", "edge_pruning", "node_level", "node_level"]
    assert list(t["edges_kept"]) == [2, 2, 2, 2] and set(t["candidate_edges"]) == {5}
    # the floor (0.85) on validation and held-out pairs, each named
    assert list(t["below_floor"]) == ["held-out", "", "validation", ""]
    f = t.loc[("f", "noising")]
    assert (f["AND"], f["OR"], f["ADDER"]) == (1, 1, 1)
    assert (f["writers_noising_only"], f["writers_denoising_only"], f["writers_both"]) == (1, 1, 1)
    r = t.loc[("r", "denoising")]
    assert (r["AND"], r["OR"], r["ADDER"], r["writers_noising_only"], r["writers_both"]) == (0, 0, 2, 0, 2)
    assert f["tried"] == "Edge Pruning 0.5 (300 steps) 0.610; EAP-IG 0.5 0.900"
    assert t.loc[("r", "noising")]["tried"] == "Edge Pruning 0.5 (300 steps) 0.400; node-level 0.700"
    text = md.read_text()
    assert "| f | noising | EAP-IG **BELOW FLOOR (held-out)** | 0.5 | 2 / 5 | 0.900 | 0.800 |" in text
    assert "| f | denoising | Edge Pruning | 0.5 | 2 / 5 | 0.950 | 0.930 |" in text
    assert "| r | noising | node-level **BELOW FLOOR (validation)** |  | 2 / 5 |" in text
    assert "| f | 1 | 1 | 1 | 1 | 1 | 1 |" in text and "| r | 0 | 0 | 2 | 0 | 0 | 2 |" in text


def test_a_gates_file_that_does_not_match_its_circuits_fails_naming_it(tmp_path, capsys):
    circuits, gates = two_tasks(tmp_path)
    graph = json.loads(open(gates[0]).read())
    # retyped by hand, counts edited to match, so the file is self-consistent but not its circuits'
    edge = next(e for e in graph["edges"] if e["type"] == "AND")
    edge["type"] = "ADDER"
    graph["counts"]["AND"] -= 1
    graph["counts"]["ADDER"] += 1
    open(gates[0], "w").write(json.dumps(graph))
    csv = tmp_path / "c.csv"
    assert clue(["circuits-table", "--circuits", *circuits, "--gates", *gates, "--csv", str(csv),
                 "--md", str(tmp_path / "c.md")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"clue circuits-table: error: {gates[0]}: 1 edge(s) differ from the "
                                               f"gates of {circuits[0]} and {circuits[1]}")
    assert f"(first: {edge['src']} -> {edge['dst']}: ADDER in the file, AND from the circuits)" in err[0]
    assert not csv.exists()


def test_gates_whose_circuits_are_not_given_fail_naming_them(tmp_path, capsys):
    circuits, gates = two_tasks(tmp_path)
    assert clue(["circuits-table", "--circuits", *circuits[:3], "--gates", *gates, "--csv", str(tmp_path / "c.csv"),
                 "--md", str(tmp_path / "c.md")]) == 2
    err = capsys.readouterr().err
    assert f"{gates[1]}: gates of task 'r', whose noising and denoising circuits are not both given" in err
