"""Forget circuit and retain circuit to CNF (paper section 3.2, Eq. 3-4, appendix B).

ADDER gate edges become OR edges in the forget circuit and AND edges in the retain circuit. A
receiver B with AND-parents P1 and OR-parents P2 is ``B <-> AND(P1) & OR(P2)`` (an empty group
left out), Tseitin-encoded n-ary; when both groups are present and P2 has two or more parents,
an auxiliary variable ``or:B@<circuit>`` stands for OR(P2). A node with no parents in a circuit
is a free leaf. Only nodes touching a kept edge get variables.

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
    ``nodes`` (every node touching an edge), ``order`` (receivers in topological order)."""

    def __init__(self, gg, role, adder_as):
        self.role = role
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
    role = circ.role
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
            aux = f.var(f"or:{node}@{role}")
            clauses += _or_gate(aux, o_lits)
            a_lits = a_lits + [aux]
            desc += f" with {f.names[aux - 1]} <-> OR(...)"
        elif ands and ors:
            a_lits = a_lits + o_lits  # OR of one parent is the parent itself
        if ands:
            clauses += _and_gate(b, a_lits)
        else:
            clauses += _or_gate(b, o_lits)
        f.group(role, f"{role}: {name_of(node)} <-> {desc}", clauses)


def _and_gate(y, xs):
    return [[y] + [-x for x in xs]] + [[-y, x] for x in xs]


def _or_gate(y, xs):
    return [[-y] + xs] + [[y, -x] for x in xs]


def _outputs(f):
    f.group("forget", "forget: out@forget = 0 (Eq. 4)", [[-f.var("out@forget")]])
    f.group("retain", "retain: out@retain = 1 (Eq. 4)", [[f.var("out@retain")]])


def circuits(forget_gg, retain_gg, params):
    for key in ("adder_forget", "adder_retain"):
        if params[key] not in ("AND", "OR"):
            raise ClueError(f"config key {key} must be AND or OR, not {params[key]!r}")
    cf = Circuit(forget_gg, "forget", params["adder_forget"])
    cr = Circuit(retain_gg, "retain", params["adder_retain"])
    for c, gg in ((cf, forget_gg), (cr, retain_gg)):
        if not c.nodes:
            warnings.warn(f"the {c.role} circuit ({gg.task}) has no edges: out@{c.role} is "
                          f"unconstrained and no neuron is in the {c.role} circuit", stacklevel=2)
        elif OUT not in c.nodes:
            warnings.warn(f"no edge of the {c.role} circuit ({gg.task}) reaches out: "
                          f"out@{c.role} is unconstrained", stacklevel=2)
    return cf, cr


def encode_phi(neurons, cf, cr):
    """Phi (Eq. 4) over one shared variable per neuron."""
    f = dimacs.Formula()
    for n in neurons:  # neuron variables first, in model order, so ids are readable
        if n in cf.nodes or n in cr.nodes:
            f.var(n)
    f.var("out@forget")
    f.var("out@retain")
    for c in (cf, cr):
        _tseitin(f, c, lambda n, r=c.role: f"out@{r}" if n == OUT else n)
    _outputs(f)
    return f


def encode_split(neurons, cf, cr):
    """The split-variable weighted MaxSAT instance (module docstring)."""
    f = dimacs.Formula()
    shared = cf.neurons & cr.neurons
    single = (cf.neurons | cr.neurons) - shared
    for n in neurons:
        if n in shared:
            f.var(f"{n}@forget"), f.var(f"{n}@retain"), f.var(f"eq:{n}")
        elif n in single:
            f.var(n)
    f.var("out@forget")
    f.var("out@retain")
    for c in (cf, cr):
        _tseitin(f, c, lambda n, r=c.role: f"out@{r}" if n == OUT else f"{n}@{r}" if n in shared else n)
    _outputs(f)
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


def encode(forget_gg, retain_gg, params=None):
    """(Phi formula, MaxSAT formula) for two checked gate graphs."""
    params = dict(DEFAULTS, **(params or {}))
    if set(forget_gg.neurons) != set(retain_gg.neurons):
        raise ClueError("the forget and retain gate files list different neurons: not the same model")
    cf, cr = circuits(forget_gg, retain_gg, params)
    return encode_phi(forget_gg.neurons, cf, cr), encode_split(forget_gg.neurons, cf, cr)


def add_arguments(parser):
    parser.add_argument("--forget-gates", required=True, help="gates JSON of the forget task")
    parser.add_argument("--retain-gates", required=True, help="gates JSON of the retain task")
    parser.add_argument("--out-cnf", required=True, help="DIMACS CNF of Phi (Eq. 4) to write")
    parser.add_argument("--out-wcnf", required=True, help="weighted MaxSAT instance (DIMACS wcnf) to write")
    parser.add_argument("--params", help="the 'logic' config section as a JSON object: "
                        + ", ".join(f"{k} (default {json.dumps(v)})" for k, v in DEFAULTS.items()))


def main(args):
    params = parse_params(args.params, DEFAULTS, "logic")
    fg, rg = load_gates(args.forget_gates), load_gates(args.retain_gates)
    phi, split = encode(fg, rg, params)
    header = [f"CLUE forget={fg.task} retain={rg.task}",
              f"ADDER as {params['adder_forget']} in the forget circuit, {params['adder_retain']} in the retain circuit"]
    dimacs.write(args.out_cnf, phi, "cnf", header + ["Phi = Phi_f & Phi_r & -out_f & out_r (Eq. 4)"])
    dimacs.write(args.out_wcnf, split, "wcnf", header + ["split-variable MaxSAT instance: conflict neurons have eq:n false"])
    print(f"Phi: {len(phi.names)} variables, {len(phi.hard)} clauses; MaxSAT: {len(split.names)} variables, "
          f"{len(split.hard)} hard and {len(split.soft)} soft clauses")
