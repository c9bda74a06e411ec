"""Localization via the CNF solution (paper section 3.3, DESIGN section 5).

A CDCL solver decides Phi (Eq. 4); RC2 solves the split-variable MaxSAT instance, whose optimum
has the fewest conflict neurons and, among those, the fewest forget neurons. Categories:

- ``conflict``: a neuron in both circuits whose indicator eq:n is false (its forget and retain
  copies must differ); ``value`` is null.
- ``forget``: a neuron in Phi with value 0.
- ``retain``: a neuron in Phi with value 1 (the paper counts these as safe too; we list them
  separately so the masks stage can tell them apart).
- ``safe``: a neuron outside both circuits (no variable); ``value`` is null.

When Phi is satisfiable the conflict set is empty and the reported assignment is checked
against every clause of Phi.
"""

import json
import time

from clue.errors import ClueError
from clue.io import write_json
from clue.logic import dimacs
from clue.logic.cnf import parse_params, retain_set_name
from clue.logic.gates import load_gates, neuron_kind

DEFAULTS = {
    "solver": "g4",          # CDCL solver that decides Phi (any pysat solver name)
    "maxsat": "rc2",         # rc2 or rc2-stratified
    "maxsat_oracle": "g4",   # SAT oracle inside RC2
    "exhaust": False,        # RC2 core exhaustion
    "minz": True,            # RC2 heuristic core minimisation
}
CATEGORIES = ("forget", "conflict", "retain", "safe")


def decide_phi(phi, solver):
    """(satisfiable, model) of Phi with a CDCL solver."""
    from pysat.solvers import NoSuchSolverError, Solver

    try:
        with Solver(name=solver, bootstrap_with=phi.hard) as s:
            sat = s.solve()
            return sat, (s.get_model() if sat else None)
    except (NoSuchSolverError, NotImplementedError) as e:
        raise ClueError(f"SAT solver {solver!r} is not available in pysat ({e})") from None


def solve_maxsat(split, params):
    """(model, cost) of the optimum of the MaxSAT instance."""
    from pysat.examples.rc2 import RC2, RC2Stratified
    from pysat.formula import WCNF
    from pysat.solvers import NoSuchSolverError

    kinds = {"rc2": RC2, "rc2-stratified": RC2Stratified}
    if params["maxsat"] not in kinds:
        raise ClueError(f"solve config: maxsat must be one of {', '.join(kinds)}, not {params['maxsat']!r}")
    wcnf = WCNF()
    for cl in split.hard:
        wcnf.append(cl)
    for cl, w in split.soft:
        wcnf.append(cl, weight=w)
    wcnf.nv = max(wcnf.nv, split.nvars)
    try:
        with kinds[params["maxsat"]](wcnf, solver=params["maxsat_oracle"], exhaust=params["exhaust"],
                                     minz=params["minz"]) as rc2:
            model = rc2.compute()
            cost = rc2.cost
    except (NoSuchSolverError, NotImplementedError) as e:
        raise ClueError(f"RC2 oracle {params['maxsat_oracle']!r} is not available in pysat ({e})") from None
    if model is None:
        raise ClueError("the hard clauses of the MaxSAT instance are unsatisfiable: not a CLUE instance")
    return model, cost


def categorize(neurons, split, model):
    """neuron -> {"value", "category"} from an optimum of the split instance."""
    truth = {abs(x): x > 0 for x in model}
    ids = split.ids
    out = {}
    for n in neurons:
        if f"eq:{n}" in ids:
            if not truth[ids[f"eq:{n}"]]:
                out[n] = {"value": None, "category": "conflict"}
                continue
            v = int(truth[ids[f"{n}@forget"]])
        elif n in ids:
            v = int(truth[ids[n]])
        else:
            out[n] = {"value": None, "category": "safe"}
            continue
        out[n] = {"value": v, "category": "retain" if v else "forget"}
    return out


def _check_phi(phi, split, model, cats):
    """Map the MaxSAT optimum onto Phi's variables and check it satisfies every clause."""
    truth = {abs(x): x > 0 for x in model}
    value = {}
    for vid, name in phi.names.items():
        if name in cats:
            value[vid] = bool(cats[name]["value"])
        else:  # out@<circuit>, or:<n>@<circuit> carry the same names in both files
            value[vid] = truth.get(split.ids.get(name), False)
    for i, cl in enumerate(phi.hard):
        if not any(value.get(abs(x), False) == (x > 0) for x in cl):
            raise ClueError(f"the MaxSAT optimum violates clause {i + 1} of Phi "
                            f"({' '.join(phi.name(x) for x in cl)}): .cnf and .wcnf do not match")


def _counts(cats, names):
    c = {k: 0 for k in CATEGORIES}
    for n in names:
        c[cats[n]["category"]] += 1
    total = len(names)
    pct = {k: (round(100.0 * v / total, 4) if total else 0.0) for k, v in c.items()}
    return {"total": total, "counts": c, "percentages": pct}


def localize(phi, split, neurons, params=None):
    """Solve both instances; the result dict of docs/formats.md (without task names)."""
    params = dict(DEFAULTS, **(params or {}))
    for key in ("exhaust", "minz"):
        if not isinstance(params[key], bool):
            raise ClueError(f"solve config: {key} must be true or false, not {params[key]!r}")
    t0 = time.perf_counter()
    sat, _ = decide_phi(phi, params["solver"])
    t1 = time.perf_counter()
    model, cost = solve_maxsat(split, params)
    t2 = time.perf_counter()
    known = set(neurons)
    strangers = [name for name in list(phi.ids) if "@" not in name and ":" not in name and name not in known]
    if strangers:
        raise ClueError(f"the CNF names neuron(s) {', '.join(strangers[:5])} missing from the gate files")
    cats = categorize(neurons, split, model)
    n_conflict = sum(v["category"] == "conflict" for v in cats.values())
    if sat != (n_conflict == 0):
        raise ClueError(f"Phi is {'SAT' if sat else 'UNSAT'} but the MaxSAT optimum has {n_conflict} "
                        f"conflict neuron(s): .cnf and .wcnf were not written together")
    if sat:
        _check_phi(phi, split, model, cats)
    by_type = {}
    for comp in ("attention", "mlp"):
        by_type[comp] = _counts(cats, [n for n in neurons if neuron_kind(n)[0] == comp])
    overall = _counts(cats, neurons)
    return {
        "status": "SAT" if sat else "UNSAT",
        "solver": f"{params['solver']} (decides Phi); {params['maxsat']} with {params['maxsat_oracle']} (MaxSAT)",
        "cost": cost,
        "conflict_weight": max((w for _, w in split.soft), default=1),
        "seconds": round(t2 - t0, 4),
        "seconds_detail": {"decide_phi": round(t1 - t0, 4), "maxsat": round(t2 - t1, 4)},
        "neurons": cats,
        "counts": overall["counts"],
        "percentages": overall["percentages"],
        "by_type": by_type,
        "instance": {"phi_variables": phi.nvars, "phi_clauses": len(phi.hard),
                     "maxsat_variables": split.nvars, "hard": len(split.hard), "soft": len(split.soft)},
        "params": params,
    }


CATEGORY_COLORS = {"forget": "#e06666", "conflict": "#b4a7d6", "retain": "#93c47d"}


def draw(result, forget_gates, retain_gates, path):
    """The pair at node level (clue.reports.drawing): every neuron of either circuit, coloured by its
    category, and the edges of the forget circuit, the retain circuits (one per retain task) or
    both."""
    from clue.reports.drawing import draw_nodes

    fe = {(s, d) for s, d, _ in forget_gates.edges}
    re_ = {(s, d) for g in retain_gates for s, d, _ in g.edges}
    edges = [(s, d, "both" if (s, d) in fe and (s, d) in re_ else "forget" if (s, d) in fe else "retain")
             for s, d in sorted(fe | re_)]
    colors = {n: CATEGORY_COLORS.get(v["category"], "white") for n, v in result["neurons"].items()}
    c = result["counts"]
    title = (f"{result['forget']} (forget) x {result['retain']} (retain), {result['status']}: "
             f"forget {c['forget']}, conflict {c['conflict']}, retain {c['retain']} neurons")
    legend = [(color, f"{cat} neuron") for cat, color in CATEGORY_COLORS.items()]
    draw_nodes(edges, path, title, {"forget": ("tab:red", "forget circuit edge"),
                                    "retain": ("tab:green", "retain circuit edge"),
                                    "both": ("tab:purple", "edge of both circuits")},
               node_colors=colors, node_legend=legend)


def add_arguments(parser):
    parser.add_argument("--cnf", required=True, help="DIMACS CNF of Phi written by 'clue cnf'")
    parser.add_argument("--wcnf", required=True, help="MaxSAT instance written by 'clue cnf'")
    parser.add_argument("--forget-gates", required=True, help="gates JSON of the forget task (neuron list)")
    parser.add_argument("--retain-gates", required=True, nargs="+",
                        help="gates JSON of the retain task (several: a retain set of several tasks)")
    parser.add_argument("--out", required=True, help="assignment JSON to write")
    parser.add_argument("--drawing", help="optional SVG of the pair's forget, conflict and retain neurons")
    parser.add_argument("--params", help="the 'solve' config section as a JSON object: "
                        + ", ".join(f"{k} (default {json.dumps(v)})" for k, v in DEFAULTS.items()))


def main(args):
    params = parse_params(args.params, DEFAULTS, "solve")
    t0 = time.perf_counter()
    fg = load_gates(args.forget_gates)
    rgs = [load_gates(p) for p in args.retain_gates]
    for path, rg in zip(args.retain_gates, rgs):
        if fg.neurons != rg.neurons:
            raise ClueError(f"{args.forget_gates} and {path} list different neurons")
    phi = dimacs.read(args.cnf, expect="cnf")
    split = dimacs.read(args.wcnf, expect="wcnf")
    result = localize(phi, split, fg.neurons, params)
    result = {"forget": fg.task, "retain": retain_set_name(rgs), **result}
    # timings go to the log, not the artifact: the same config gives the same bytes
    seconds, detail = result.pop("seconds"), result.pop("seconds_detail")
    detail["read"] = round(time.perf_counter() - t0 - seconds, 4)
    write_json(args.out, result)
    if args.drawing:
        draw(result, fg, rgs, args.drawing)
    c = result["counts"]
    print(f"{result['status']}: forget {c['forget']}, conflict {c['conflict']}, retain {c['retain']}, "
          f"safe {c['safe']} (cost {result['cost']}, {seconds} s: "
          + ", ".join(f"{k} {v} s" for k, v in detail.items()) + ")")
