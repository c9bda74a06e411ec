"""Node-level drawings (clue.reports.drawing): only circuit nodes, labelled, one row per layer part."""

import re
from types import SimpleNamespace

from clue.circuits.discover import draw as draw_circuit, node_edges
from clue.circuits.masked_forward import build_graph
from clue.reports.drawing import MLP_X, draw_nodes, layout
from clue.logic.gates import build_gate_graph, draw as draw_gates


def svg_labels(path):
    """The text of every <text> element of an SVG (labels are kept as text: svg.fonttype none)."""
    return [re.sub(r"\s+", " ", t).strip() for t in re.findall(r"<text[^>]*>(.*?)</text>", path.read_text(), re.S)]


def test_layout_gives_rows_only_to_layers_with_nodes():
    pos, labels = layout(["out", "a3.h2", "m0", "a0.h1", "embed", "a0.h0"])
    assert labels == [(0.0, "embed"), (1.0, "layer 0 heads"), (2.0, "layer 0 MLP"),
                      (3.0, "layer 3 heads"), (4.0, "out")]
    # heads in the column of their index (3 heads seen: embed and out at x = 1), MLPs left of head 0
    assert pos == {"embed": (1.0, 0.0), "a0.h0": (0.0, 1.0), "a0.h1": (1.0, 1.0), "m0": (MLP_X, 2.0),
                   "a3.h2": (2.0, 3.0), "out": (1.0, 4.0)}


def test_layout_orders_heads_by_number_not_by_text():
    pos, _ = layout(["a1.h10", "a1.h9", "a1.h2"])
    assert [n for n, _ in sorted(pos.items(), key=lambda kv: kv[1][0])] == ["a1.h2", "a1.h9", "a1.h10"]
    assert pos["a1.h10"] == (10.0, 0.0)


def grouped_graph():
    # 2 layers, 4 query heads sharing 2 key/value heads: a k reader feeds two heads
    return build_graph(SimpleNamespace(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2))


def record(graph, kept):
    return {"task": "t", "mode": "noising", "kl": 0.5, "faithfulness": {"faithfulness": 0.75},
            "edges": [{"writer": w, "reader": r, "kept": (w, r) in kept, "score": 1.0}
                      for w, r in graph.edge_names()]}


def test_circuit_node_edges_collapse_readers_to_the_neurons_they_feed():
    g = grouped_graph()
    kept = {("embed", "a0.h1.q"), ("a0.h1", "a1.h1.k"), ("a0.h1", "a1.h0.v"), ("a1.h3", "m1"),
            ("m1", "out"), ("a1.h2", "out")}
    assert node_edges(record(g, kept), g) == sorted([
        ("embed", "a0.h1"), ("a0.h1", "a1.h2"), ("a0.h1", "a1.h3"),   # k of kv head 1: heads 2, 3
        ("a0.h1", "a1.h0"), ("a0.h1", "a1.h1"),                       # v of kv head 0: heads 0, 1
        ("a1.h3", "m1"), ("m1", "out"), ("a1.h2", "out")])


def test_circuit_drawing_labels_only_circuit_nodes(tmp_path):
    g = grouped_graph()
    kept = {("embed", "a0.h1.q"), ("a0.h1", "a1.h1.q"), ("a1.h1", "out")}
    svg = tmp_path / "c.svg"
    draw_circuit(record(g, kept), g, svg)
    labels = svg_labels(svg)
    neurons = {t for t in labels if re.fullmatch(r"a\d+\.h\d+|m\d+|embed|out", t)}
    assert neurons == {"embed", "a0.h1", "a1.h1", "out"}
    assert {"layer 0 heads", "layer 1 heads"} <= set(labels) and "layer 0 MLP" not in labels
    assert any("3 of" in t and "faithfulness 0.750" in t for t in labels)


def test_gate_drawing_counts_gate_types_in_its_legend(tmp_path):
    def circ(kept):
        g = grouped_graph()
        return {"writers": g.writers, "readers": g.readers,
                "edges": [{"writer": w, "reader": r, "kept": (w, r) in kept} for w, r in g.edge_names()]}
    noising = circ({("a0.h0", "a1.h0.q"), ("a1.h0", "out"), ("a0.h2", "a1.h0.q")})
    denoising = circ({("a0.h0", "a1.h0.q"), ("a1.h0", "out"), ("a0.h3", "m0"), ("m0", "out")})
    graph = build_gate_graph(noising, denoising, "t")
    svg = tmp_path / "g.svg"
    draw_gates(graph, svg)
    labels = svg_labels(svg)
    # AND: a0.h2 -> a1.h0; OR: a0.h3 -> m0 -> out; ADDER: a0.h0 -> a1.h0 -> out
    assert {"AND (noising only) (1)", "OR (denoising only) (2)", "ADDER (both) (2)"} <= set(labels)
    neurons = {t for t in labels if re.fullmatch(r"a\d+\.h\d+|m\d+|out", t)}
    assert neurons == {"a0.h0", "a0.h2", "a1.h0", "m0", "a0.h3", "out"}


def test_draw_nodes_is_byte_identical_for_the_same_input(tmp_path):
    edges = [("a0.h0", "m0", "x"), ("m0", "out", "x")]
    for name in ("a.svg", "b.svg"):
        draw_nodes(edges, tmp_path / name, "t", {"x": ("black", "edge")})
    assert (tmp_path / "a.svg").read_bytes() == (tmp_path / "b.svg").read_bytes()
