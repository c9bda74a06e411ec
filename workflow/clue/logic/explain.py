"""Why is a neuron a conflict neuron? Read the MaxSAT instance, solve it as ``clue solve`` does, and
for each asked neuron print, with variable names and their values in the optimum:

1. the forget clauses that need its forget copy at 0 and the retain clauses that need its retain
   copy at 1 (clauses whose every other literal is false in the optimum), and
2. the chains of gates: with every other input of the forget circuit as in the optimum, setting
   the neuron to 1 switches out@forget on (Eq. 4 wants it off); with every other input of the
   retain circuit as in the optimum, setting it to 0 switches out@retain off (Eq. 4 wants it on).
"""

import os

from clue.errors import ClueError
from clue.logic import dimacs
from clue.logic.cnf import parse_params
from clue.logic.gates import neuron_kind
from clue.logic.solve import DEFAULTS, solve_maxsat

WANTED_OUT = {"forget": False, "retain": True}


class _Instance:
    def __init__(self, split, model):
        self.split = split
        self.truth = {abs(x): x > 0 for x in model}
        self.side_of = {}  # hard clause index -> (side, note text)
        for first, count, side, text in split.notes:
            for i in range(first, first + count):
                self.side_of[i] = (side, text)

    def lit(self, x, values=None):
        values = self.truth if values is None else values
        v = values.get(abs(x))
        shown = "?" if v is None else int(v)
        return f"{self.split.name(x)}(={shown})"

    def clause(self, ci, values=None):
        return " | ".join(self.lit(x, values) for x in self.split.hard[ci])


def _defined(inst, side):
    """Variables computed by a gate of ``side`` (receivers and OR-group auxiliaries)."""
    out = set()
    for _, _, s, text in inst.split.notes:
        if s == side and "<->" in text:
            out.add(inst.split.ids[text.split()[1]])
            if " with " in text:
                out.add(inst.split.ids[text.split(" with ")[1].split()[0]])
    return out


def _receiver_is(text, name):
    """Whether a gate note ``<circuit>: <receiver> <-> ...`` computes ``name``."""
    parts = text.split()
    return len(parts) > 2 and parts[1] == name and parts[2] == "<->"


def _critical(inst, var, side, needed):
    """Clauses of ``side`` satisfied in the optimum only by ``var`` taking value ``needed``."""
    lit = var if needed else -var
    rows = []
    for ci, cl in enumerate(inst.split.hard):
        if lit in cl and inst.side_of.get(ci, ("",))[0] == side:
            others = [x for x in cl if x != lit]
            if not any(inst.truth[abs(x)] == (x > 0) for x in others):
                rows.append(f"    {inst.clause(ci)}    [{inst.side_of[ci][1]}]")
    return rows


def _propagate(clauses, values):
    """Unit propagation with reasons; the clauses are Tseitin gates with all inputs fixed."""
    reason, order = {}, []
    changed = True
    while changed:
        changed = False
        for ci, cl in clauses:
            free, sat = [], False
            for x in cl:
                v = values.get(abs(x))
                if v is None:
                    free.append(x)
                elif v == (x > 0):
                    sat = True
                    break
            if sat or len(free) != 1:
                continue
            x = free[0]
            values[abs(x)] = x > 0
            reason[abs(x)] = ci
            order.append(abs(x))
            changed = True
    return reason, order


def _chain(inst, var, side):
    """Lines showing how flipping ``var`` (a copy of the neuron in ``side``) flips an output of
    ``side``: out@forget, or out@retain (out@retain:<task> for each task of a retain set)."""
    split = inst.split
    outs = [v for name, v in split.ids.items() if name == f"out@{side}" or name.startswith(f"out@{side}:")]
    flipped = not inst.truth[var]
    name = split.names[var]
    # the gates that compute var itself are left out: it is set by hand here
    clauses = [(ci, cl) for ci, cl in enumerate(split.hard)
               if inst.side_of.get(ci, ("",))[0] == side and len(cl) > 1
               and not _receiver_is(inst.side_of[ci][1], name)]
    side_vars = {abs(x) for _, cl in clauses for x in cl} | {var}
    defined = _defined(inst, side) - {var}
    values = {v: inst.truth[v] for v in side_vars - defined}
    values[var] = flipped
    reason, order = _propagate(clauses, values)
    head = f"  if {name} were {int(flipped)} (every other input of the {side} circuit as in the optimum):"
    out_var = next((v for v in outs if values.get(v) is not None and values[v] != WANTED_OUT[side]), None)
    if out_var is None:
        shown = ", ".join(split.names[v] for v in outs) or f"out@{side}"
        return [head, f"    {shown} stays {int(WANTED_OUT[side])}: this copy alone does not decide "
                      f"the {side} circuit; it conflicts together with other neurons"]
    tainted = {var}
    for v in order:
        if any(abs(x) in tainted for x in split.hard[reason[v]] if abs(x) != v):
            tainted.add(v)
    need, stack = set(), [out_var]
    while stack:  # the derivations out@side depends on through the flipped neuron
        v = stack.pop()
        if v in need or v not in reason or v not in tainted:
            continue
        need.add(v)
        stack.extend(abs(x) for x in split.hard[reason[v]] if abs(x) != v)
    lines = [head]
    for v in order:
        if v in need:
            ci = reason[v]
            lines.append(f"    {split.names[v]} := {int(values[v])} by {inst.clause(ci, values)}"
                         f"    [{inst.side_of[ci][1]}]")
    out = split.names[out_var]
    lines.append(f"    so {out} = {int(values[out_var])}, but Eq. 4 needs {out} = {int(WANTED_OUT[side])}")
    return lines


def explain(split, neurons, params=None):
    """The explanation text for ``neurons`` (names) given a parsed MaxSAT instance."""
    params = dict(DEFAULTS, **(params or {}))
    for n in neurons:
        if neuron_kind(n) is None:
            raise ClueError(f"'{n}' is not a neuron name (a{{L}}.h{{H}} or m{{L}})")
        if split.neurons is not None and n not in split.neurons:
            raise ClueError(f"'{n}' is not a neuron of this model (its neurons: {split.neurons[0]} .. "
                            f"{split.neurons[-1]}, {len(split.neurons)} in all)")
    model, cost = solve_maxsat(split, params)
    inst = _Instance(split, model)
    ids = split.ids
    lines = [f"MaxSAT optimum cost {cost} (conflict neurons cost {max((w for _, w in split.soft), default=1)} "
             f"each, forget neurons 1 each)"]
    conflicts = [n[3:] for n in ids if n.startswith("eq:") and not inst.truth[ids[n]]]
    lines.append(f"conflict neurons: {', '.join(conflicts) if conflicts else 'none'}")
    for n in neurons:
        lines.append("")
        if f"eq:{n}" in ids:
            nf, nr = ids[f"{n}@forget"], ids[f"{n}@retain"]
            if inst.truth[ids[f"eq:{n}"]]:
                v = int(inst.truth[nf])
                lines.append(f"{n}: in both circuits, not a conflict neuron: "
                             f"{'retain' if v else 'forget'} neuron with value {v} in both")
                continue
            lines.append(f"{n}: conflict neuron (eq:{n} = 0): {n}@forget = {int(inst.truth[nf])}, "
                         f"{n}@retain = {int(inst.truth[nr])}")
            lines.append(f"  forget clauses that need {n}@forget = 0:")
            lines += _critical(inst, nf, "forget", False) or ["    (none on their own)"]
            lines.append(f"  retain clauses that need {n}@retain = 1:")
            lines += _critical(inst, nr, "retain", True) or ["    (none on their own)"]
            lines += _chain(inst, nf, "forget")
            lines += _chain(inst, nr, "retain")
        elif n in ids:
            v = int(inst.truth[ids[n]])
            sides = {inst.side_of[ci][0] for ci, cl in enumerate(split.hard)
                     if ids[n] in cl or -ids[n] in cl}
            side = next(iter(sides - {"link"}), "?")
            lines.append(f"{n}: only in the {side} circuit; {'retain' if v else 'forget'} neuron "
                         f"with value {v}; never a conflict neuron")
            if not v:
                lines.append(f"  {side} clauses that need {n} = 0:")
                lines += _critical(inst, ids[n], side, False) or ["    (none on their own)"]
        else:
            lines.append(f"{n}: in neither circuit (safe)")
    return "\n".join(lines)


def add_arguments(parser):
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--wcnf", help="MaxSAT instance written by 'clue cnf'")
    src.add_argument("--cnf", help="Phi written by 'clue cnf'; the .wcnf beside it is read, since "
                     "conflict neurons are defined by the MaxSAT instance")
    parser.add_argument("--neuron", action="append", required=True,
                        help="neuron to explain, e.g. m2 or a1.h3 (repeatable)")
    parser.add_argument("--params", help="the 'solve' config section (JSON), to solve as 'clue solve' did")


def main(args):
    params = parse_params(args.params, DEFAULTS, "solve")
    path = args.wcnf
    if path is None:
        path = os.path.splitext(args.cnf)[0] + ".wcnf"
        if not os.path.exists(path):
            raise ClueError(f"{path}: not found; explain needs the MaxSAT instance written beside {args.cnf}")
    print(explain(dimacs.read(path, expect="wcnf"), args.neuron, params))
