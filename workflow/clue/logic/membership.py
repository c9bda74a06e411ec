"""Table 2's "set membership" ablation: neuron categories without logic. A neuron in the forget
circuit only is a forget neuron, one in both circuits a conflict neuron, one in the retain
circuit only a retain neuron, every other one safe; "in a circuit" means what it means for the
CNF (clue.logic.cnf): the neuron touches an edge of that task's gate graph. The result has the
format of ``clue solve``'s assignment (docs/formats.md, "solve"), so ``clue masks`` makes its
masks and CLUE's two stages train them exactly as CLUE's own. It answers whether the CNF and the
solver add anything over the overlap of the two circuits."""

from clue.errors import ClueError
from clue.io import write_json
from clue.logic.cnf import retain_set_name
from clue.logic.gates import OUT, load_gates, neuron_kind
from clue.logic.solve import _counts

STATUS = "MEMBERSHIP"


def circuit_neurons(graph):
    """The neurons that touch an edge of a gate graph (``out`` left out)."""
    return {n for s, d, _ in graph.edges for n in (s, d)} - {OUT}


def categorize(forget_graph, retain_graphs):
    """neuron -> {"value": None, "category"} by set membership (module docstring)."""
    in_f = circuit_neurons(forget_graph)
    in_r = set().union(*(circuit_neurons(g) for g in retain_graphs))
    out = {}
    for n in forget_graph.neurons:
        category = ("conflict" if n in in_f and n in in_r else "forget" if n in in_f
                    else "retain" if n in in_r else "safe")
        out[n] = {"value": None, "category": category}
    return out


def assignment(forget_graph, retain_graphs):
    """The assignment JSON object of the set-membership ablation."""
    cats = categorize(forget_graph, retain_graphs)
    neurons = forget_graph.neurons
    overall = _counts(cats, neurons)
    return {"forget": forget_graph.task, "retain": retain_set_name(retain_graphs), "status": STATUS,
            "solver": "none: set membership of the two circuits' neurons (Table 2 ablation)",
            "neurons": cats, "counts": overall["counts"], "percentages": overall["percentages"],
            "by_type": {comp: _counts(cats, [n for n in neurons if neuron_kind(n)[0] == comp])
                        for comp in ("attention", "mlp")}}


def add_arguments(parser):
    parser.add_argument("--forget-gates", required=True, help="gates JSON of the forget task")
    parser.add_argument("--retain-gates", required=True, nargs="+", help="gates JSON of each retain task")
    parser.add_argument("--out", required=True, help="assignment JSON to write (clue solve's format)")


def main(args):
    fg = load_gates(args.forget_gates)
    rgs = [load_gates(p) for p in args.retain_gates]
    for path, rg in zip(args.retain_gates, rgs):
        if fg.neurons != rg.neurons:
            raise ClueError(f"{args.forget_gates} and {path} list different neurons")
    result = assignment(fg, rgs)
    write_json(args.out, result)
    c = result["counts"]
    print(f"set membership: forget {c['forget']}, conflict {c['conflict']}, retain {c['retain']}, safe {c['safe']}")
