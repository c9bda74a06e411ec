"""Forget circuit and retain circuit to CNF (paper section 3.2, Eq. 3-4, appendix B).

ADDER gate edges become OR edges in the forget circuit and AND edges in the retain circuit. A
receiver B with AND-parents P1 and OR-parents P2 is ``B <-> AND(P1) & OR(P2)`` (an empty group
left out), Tseitin-encoded n-ary; when both groups are present and P2 has two or more parents,
an auxiliary variable ``or:B@<circuit>`` stands for OR(P2). A node with no parents in a circuit
is a free leaf. Only nodes touching a kept edge get variables.

A retain set of several tasks (Figure 3) gives several retain circuits, one per task, each
Tseitin-encoded over the same neuron variables with its own output ``out@retain:<task>`` (and its
own auxiliaries ``or:B@retain:<task>``); every one of those outputs must be 1. Merging the tasks
into one graph would be weaker: OR edges of two tasks into one node would become one OR, true when
either task's input is, so a neuron that one task needs could be judged a forget neuron.

Two instances are written:

- ``.cnf``: Phi = Phi_f & Phi_r & -out_f & out_r (Eq. 4), one shared variable per neuron.
- ``.wcnf``: the exact conflict-localization instance. A neuron n in both circuits gets a forget
  copy ``n@forget``, a retain copy ``n@retain`` and an indicator ``eq:n`` with hard clauses
  ``eq:n -> (n@forget <-> n@retain)``. Soft clauses: ``eq:n`` with weight W larger than the sum of
  all keep weights, and "keep the neuron" with weight 1: the unit ``n`` for a neuron in one circuit,
  and ``n@retain | -eq:n`` for a neuron in both (it costs 1 exactly when n is a forget neuron; a
  conflict neuron is not penalised, so ties between equally small conflict sets are broken by the
  number of forget neurons only). The optimum has the fewest conflict neurons (eq:n false) and,
  among those, the fewest forget neurons.
"""

import json
import warnings

from clue.errors import ClueError
from clue.io import json_params, with_defaults
from clue.logic import dimacs
from clue.logic.gates import OUT, load_gates

DEFAULTS = {"adder_forget": "OR", "adder_retain": "AND"}
ROLES = ("forget", "retain")


def parse_params(text, defaults, what):
    """A stage's config section (a JSON object string) merged over its defaults; unknown keys fail."""
    return with_defaults(json_params(text, what), defaults, what, strict=True)


class Circuit:
    """One circuit with ADDER resolved: ``parents`` receiver -> (AND-parents, OR-parents),
    ``nodes`` (every node touching an edge), ``order`` (receivers in topological order).
    ``role`` (forget or retain) is the side of its clauses; ``label`` names its output
    ``out@<label>`` and auxiliaries: the role, or ``retain:<task>`` in a retain set of several."""

    def __init__(self, gg, role, adder_as, label=None):
        self.role, self.task = role, gg.task
        self.label = label or role
        self.parents = {}
        self.nodes = set()
        for src, dst, kind in gg.edges:
            kind = adder_as if kind == "ADDER" else kind
            ands, ors = self.parents.setdefault(dst, ([], []))
            (ands if kind == "AND" else ors).append(src)
            self.nodes.update((src, dst))
        self.order = [n for n in gg.topo if n in self.parents]
        self.neurons = self.nodes - {OUT}


def _tseitin(f, circ, name_of):
    """Eq. 3, n-ary, for every receiver of ``circ``; variables named by ``name_of(node)``."""
    role, label = circ.role, circ.label
    for node in circ.order:
        ands, ors = circ.parents[node]
        b = f.var(name_of(node))
        a_lits = [f.var(name_of(p)) for p in ands]
        o_lits = [f.var(name_of(p)) for p in ors]
        desc = " & ".join(
            [f"AND({', '.join(name_of(p) for p in ands)})"] * bool(ands)
            + [f"OR({', '.join(name_of(p) for p in ors)})"] * bool(ors))
        clauses = []
        if ands and len(ors) > 1:
            aux = f.var(f"or:{node}@{label}")
            clauses += _or_gate(aux, o_lits)
            a_lits = a_lits + [aux]
            desc += f" with {f.names[aux - 1]} <-> OR(...)"
        elif ands and ors:
            a_lits = a_lits + o_lits  # OR of one parent is the parent itself
        if ands:
            clauses += _and_gate(b, a_lits)
        else:
            clauses += _or_gate(b, o_lits)
        f.group(role, f"{label}: {name_of(node)} <-> {desc}", clauses)


def _and_gate(y, xs):
    return [[y] + [-x for x in xs]] + [[-y, x] for x in xs]


def _or_gate(y, xs):
    return [[-y] + xs] + [[y, -x] for x in xs]


def _outputs(f, cf, crs):
    f.group("forget", "forget: out@forget = 0 (Eq. 4)", [[-f.var("out@forget")]])
    for c in crs:
        f.group("retain", f"{c.label}: out@{c.label} = 1 (Eq. 4)", [[f.var(f"out@{c.label}")]])


def circuits(forget_gg, retain_ggs, params):
    """The forget circuit and the list of retain circuits (one per task of the retain set)."""
    for key in ("adder_forget", "adder_retain"):
        if params[key] not in ("AND", "OR"):
            raise ClueError(f"config key {key} must be AND or OR, not {params[key]!r}")
    cf = Circuit(forget_gg, "forget", params["adder_forget"])
    several = len(retain_ggs) > 1
    crs = [Circuit(gg, "retain", params["adder_retain"], f"retain:{gg.task}" if several else None)
           for gg in retain_ggs]
    for c in (cf, *crs):
        if not c.nodes:
            warnings.warn(f"the {c.role} circuit ({c.task}) has no edges: out@{c.label} is "
                          f"unconstrained and no neuron is in the {c.role} circuit", stacklevel=2)
        elif OUT not in c.nodes:
            warnings.warn(f"no edge of the {c.role} circuit ({c.task}) reaches out: "
                          f"out@{c.label} is unconstrained", stacklevel=2)
    return cf, crs


def _name_of(c, copies=()):
    """Variable names of circuit ``c``'s nodes: its output, a neuron's copy of c's side for the
    neurons in ``copies`` (the split instance), else the neuron itself."""
    return lambda n: f"out@{c.label}" if n == OUT else f"{n}@{c.role}" if n in copies else n


def encode_phi(neurons, cf, crs):
    """Phi (Eq. 4) over one shared variable per neuron."""
    f = dimacs.Formula()
    in_any = cf.nodes.union(*(c.nodes for c in crs))
    for n in neurons:  # neuron variables first, in model order, so ids are readable
        if n in in_any:
            f.var(n)
    for c in (cf, *crs):
        f.var(f"out@{c.label}")
    for c in (cf, *crs):
        _tseitin(f, c, _name_of(c))
    _outputs(f, cf, crs)
    return f


def encode_split(neurons, cf, crs):
    """The split-variable weighted MaxSAT instance (module docstring). The retain circuits of a
    retain set share one retain copy per neuron: all of them hold with every retain copy at 1, so
    they never conflict among themselves."""
    f = dimacs.Formula()
    retain_neurons = set().union(*(c.neurons for c in crs))
    shared = cf.neurons & retain_neurons
    single = (cf.neurons | retain_neurons) - shared
    for n in neurons:
        if n in shared:
            f.var(f"{n}@forget"), f.var(f"{n}@retain"), f.var(f"eq:{n}")
        elif n in single:
            f.var(n)
    for c in (cf, *crs):
        f.var(f"out@{c.label}")
    for c in (cf, *crs):
        _tseitin(f, c, _name_of(c, shared))
    _outputs(f, cf, crs)
    order = [n for n in neurons if n in shared]
    for n in order:
        e, nf, nr = f.var(f"eq:{n}"), f.var(f"{n}@forget"), f.var(f"{n}@retain")
        f.group("link", f"link: eq:{n} -> ({n}@forget <-> {n}@retain)", [[-e, -nf, nr], [-e, nf, -nr]])
    keep = [[f.var(n)] for n in neurons if n in single]
    keep += [[f.var(f"{n}@retain"), -f.var(f"eq:{n}")] for n in order]
    w_conflict = len(keep) + 1
    first = len(f.hard)
    f.soft = [([f.var(f"eq:{n}")], w_conflict) for n in order] + [(cl, 1) for cl in keep]
    f.notes.append((first, len(order), "soft", f"soft: eq:n (not a conflict neuron), weight {w_conflict} each"))
    f.notes.append((first + len(order), len(keep), "soft",
                    "soft: keep n (n, or n@retain | -eq:n for a neuron in both circuits), weight 1 each"))
    f.top = w_conflict * len(order) + len(keep) + 1
    return f


def encode(forget_gg, retain_ggs, params=None):
    """(Phi formula, MaxSAT formula) for checked gate graphs: the forget task's, and the retain
    task's or a list of them (a retain set of several tasks)."""
    params = dict(DEFAULTS, **(params or {}))
    retain_ggs = list(retain_ggs) if isinstance(retain_ggs, (list, tuple)) else [retain_ggs]
    for rg in retain_ggs:
        if set(forget_gg.neurons) != set(rg.neurons):
            raise ClueError(f"the forget ({forget_gg.task}) and retain ({rg.task}) gate files list different "
                            "neurons: not the same model")
    cf, crs = circuits(forget_gg, retain_ggs, params)
    phi, split = encode_phi(forget_gg.neurons, cf, crs), encode_split(forget_gg.neurons, cf, crs)
    phi.neurons = split.neurons = list(forget_gg.neurons)
    return phi, split


def retain_set_name(retain_ggs):
    """The name of a retain set: its tasks joined by + (the workflow's {retain} wildcard)."""
    return "+".join(str(g.task) for g in retain_ggs)


def add_arguments(parser):
    parser.add_argument("--forget-gates", required=True, help="gates JSON of the forget task")
    parser.add_argument("--retain-gates", required=True, nargs="+",
                        help="gates JSON of the retain task; several for a retain set of several tasks "
                        "(each keeps its own circuit and output, all required)")
    parser.add_argument("--out-cnf", required=True, help="DIMACS CNF of Phi (Eq. 4) to write")
    parser.add_argument("--out-wcnf", required=True, help="weighted MaxSAT instance (DIMACS wcnf) to write")
    parser.add_argument("--params", help="the 'logic' config section as a JSON object: "
                        + ", ".join(f"{k} (default {json.dumps(v)})" for k, v in DEFAULTS.items()))


def main(args):
    params = parse_params(args.params, DEFAULTS, "logic")
    fg = load_gates(args.forget_gates)
    rgs = [load_gates(p) for p in args.retain_gates]
    phi, split = encode(fg, rgs, params)
    header = [f"CLUE forget={fg.task} retain={retain_set_name(rgs)}",
              f"ADDER as {params['adder_forget']} in the forget circuit, {params['adder_retain']} in the retain circuit"]
    if len(rgs) > 1:
        header.append(f"a retain set of {len(rgs)} tasks: one retain circuit each, every out@retain:<task> = 1")
    dimacs.write(args.out_cnf, phi, "cnf", header + ["Phi = Phi_f & Phi_r & -out_f & out_r (Eq. 4)"])
    dimacs.write(args.out_wcnf, split, "wcnf", header + ["split-variable MaxSAT instance: conflict neurons have eq:n false"])
    print(f"Phi: {len(phi.names)} variables, {len(phi.hard)} clauses; MaxSAT: {len(split.names)} variables, "
          f"{len(split.hard)} hard and {len(split.soft)} soft clauses")
