"""Logic stages: gate typing, Tseitin CNF (Eq. 3-4), exact conflict localization (MaxSAT).

Expected values come from the paper's appendices B and D and from a brute force over circuit
semantics written here independently of the encoder (it evaluates the gates, not the clauses).
"""

import itertools
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pysat.formula import CNF, WCNF
from pysat.solvers import Solver

from clue.cli import main as clue
from clue.errors import ClueError
from clue.logic import cnf, dimacs, explain, solve
from clue.logic.gates import build_gate_graph, validate_gates


# ---------------------------------------------------------------- helpers

def gates(edges, neurons, task="t"):
    return {"task": task, "neurons": list(neurons),
            "edges": [{"src": s, "dst": d, "type": k} for s, d, k in edges]}


def write(tmp, name, obj):
    p = Path(tmp) / name
    p.write_text(json.dumps(obj))
    return str(p)


def run_pipeline(tmp, fg, rg, params=None):
    """clue cnf + clue solve through the CLI; returns (parsed cnf, parsed wcnf, assign JSON)."""
    f, r = write(tmp, "f.json", fg), write(tmp, "r.json", rg)
    x_cnf, x_wcnf, out = (str(Path(tmp) / n) for n in ("x.cnf", "x.wcnf", "a.json"))
    assert clue(["cnf", "--forget-gates", f, "--retain-gates", r, "--out-cnf", x_cnf,
                 "--out-wcnf", x_wcnf] + (["--params", json.dumps(params)] if params else [])) == 0
    for path in (out, out + ".again"):
        assert clue(["solve", "--cnf", x_cnf, "--wcnf", x_wcnf, "--forget-gates", f,
                     "--retain-gates", r, "--out", path]) == 0
    # same instance, same bytes (timings go to the log, not the assignment)
    assert Path(out).read_bytes() == Path(out + ".again").read_bytes()
    return dimacs.read(x_cnf), dimacs.read(x_wcnf), json.loads(Path(out).read_text())


def named(parsed, clauses):
    """Clauses as a set of frozensets of signed names, e.g. {frozenset({'-A', 'out@forget'})}."""
    return {frozenset(parsed.name(x) for x in cl) for cl in clauses}


def all_models(clauses):
    with Solver(name="m22", bootstrap_with=clauses) as s:
        while s.solve():
            m = s.get_model()
            yield m
            s.add_clause([-x for x in m])


def satisfies(clauses, truth):
    return all(any(truth[abs(x)] == (x > 0) for x in cl) for cl in clauses)


# ---------------------------------------------------------------- appendix D

A, B, C = "a0.h0", "a0.h1", "m0"


def test_d1_satisfiable_exactly_two_solutions(tmp_path):
    # C_f: output_f = A AND B; C_r: output_r = A OR B (appendix D.1)
    fg = gates([(A, "out", "AND"), (B, "out", "AND")], [A, B, C], "f")
    rg = gates([(A, "out", "OR"), (B, "out", "OR")], [A, B, C], "r")
    phi, split, res = run_pipeline(tmp_path, fg, rg)
    of, orr = "out@forget", "out@retain"
    eq11 = {frozenset(c) for c in [
        ("-" + A, "-" + B, of), (A, "-" + of), (B, "-" + of),
        (A, B, "-" + orr), ("-" + A, orr), ("-" + B, orr), ("-" + of,), (orr,)]}
    assert named(phi, phi.hard) == eq11
    # every model of Phi, projected on [A, B, output_f, output_r]
    order = [phi.ids[n] for n in (A, B, of, orr)]
    sols = {tuple(int(m[v - 1] > 0) for v in order) for m in all_models(phi.hard)}
    assert sols == {(0, 1, 0, 1), (1, 0, 0, 1)}
    assert res["status"] == "SAT"
    assert res["counts"] == {"forget": 1, "conflict": 0, "retain": 1, "safe": 1}
    assert (res["neurons"][A]["value"], res["neurons"][B]["value"]) in {(0, 1), (1, 0)}
    assert res["neurons"][C] == {"value": None, "category": "safe"}


def test_d2_unsatisfiable_a_forget_b_conflict_c_retain(tmp_path):
    # C_f: output_f = A OR B; C_r: output_r = B AND C (appendix D.2)
    fg = gates([(A, "out", "OR"), (B, "out", "OR")], [A, B, C], "f")
    rg = gates([(B, "out", "AND"), (C, "out", "AND")], [A, B, C], "r")
    phi, split, res = run_pipeline(tmp_path, fg, rg)
    of, orr = "out@forget", "out@retain"
    eq12 = {frozenset(c) for c in [
        (A, B, "-" + of), ("-" + A, of), ("-" + B, of),
        ("-" + B, "-" + C, orr), (B, "-" + orr), (C, "-" + orr), ("-" + of,), (orr,)]}
    assert named(phi, phi.hard) == eq12
    with Solver(name="m22", bootstrap_with=phi.hard) as s:
        assert not s.solve()
    assert res["status"] == "UNSAT"
    assert res["neurons"][A] == {"value": 0, "category": "forget"}
    assert res["neurons"][B] == {"value": None, "category": "conflict"}
    assert res["neurons"][C] == {"value": 1, "category": "retain"}
    assert res["by_type"]["attention"]["counts"] == {"forget": 1, "conflict": 1, "retain": 0, "safe": 0}
    assert res["by_type"]["mlp"]["percentages"]["retain"] == 100.0

    # the pair's drawing: each neuron boxed in its category's colour (plus one legend swatch each)
    svg = tmp_path / "pair.svg"
    assert clue(["solve", "--cnf", str(tmp_path / "x.cnf"), "--wcnf", str(tmp_path / "x.wcnf"),
                 "--forget-gates", str(tmp_path / "f.json"), "--retain-gates", str(tmp_path / "r.json"),
                 "--out", str(tmp_path / "b.json"), "--drawing", str(svg)]) == 0
    text = svg.read_text()
    assert "f (forget) x r (retain), UNSAT: forget 1, conflict 1, retain 1 neurons" in text
    for color in solve.CATEGORY_COLORS.values():
        assert text.count(f"fill: {color}") == 2

    text = explain.explain(split, [B, A, C])
    assert f"{B}: conflict neuron" in text
    assert f"-{B}@forget(=0)" in text            # the forget OR gate needs B off
    assert f"{B}@retain(=1)" in text             # the retain AND gate needs B on
    assert "out@forget := 1" in text and "out@retain := 0" in text
    assert f"{A}: only in the forget circuit; forget neuron" in text


def test_explain_cli_follows_a_chain(tmp_path, capsys):
    # B feeds out through an intermediate neuron in both circuits: the chain must name it
    D = "m1"
    neurons = [A, B, C, "a1.h0", D]
    fg = gates([(A, D, "OR"), (B, D, "OR"), (D, "out", "AND")], neurons, "f")
    rg = gates([(B, "a1.h0", "AND"), (C, "a1.h0", "AND"), ("a1.h0", "out", "AND")], neurons, "r")
    run_pipeline(tmp_path, fg, rg)
    capsys.readouterr()
    assert clue(["explain", "--cnf", str(tmp_path / "x.cnf"), "--neuron", B]) == 0
    out = capsys.readouterr().out
    # only B is in both circuits; forget: out_f = D = A OR B; retain: out_r = a1.h0 = B AND C
    assert f"conflict neurons: {B}\n" in out
    chain_f = out[out.index(f"if {B}@forget were 1"):out.index(f"if {B}@retain were 0")]
    chain_r = out[out.index(f"if {B}@retain were 0"):]
    assert [l.split(" by ")[0].strip() for l in chain_f.splitlines()[1:3]] == ["m1 := 1", "out@forget := 1"]
    assert [l.split(" by ")[0].strip() for l in chain_r.splitlines()[1:3]] == ["a1.h0 := 0", "out@retain := 0"]
    assert "[forget: m1 <-> OR(a0.h0, a0.h1@forget)]" in chain_f
    # a name that is no neuron of this model (5 neurons, one layer of MLP m1 at most) is an error,
    # not a "safe" neuron
    assert clue(["explain", "--cnf", str(tmp_path / "x.cnf"), "--neuron", "m9"]) == 2
    assert "'m9' is not a neuron of this model (its neurons: a0.h0 .. m1, 5 in all)" in capsys.readouterr().err
    assert clue(["explain", "--cnf", str(tmp_path / "x.cnf"), "--neuron", C]) == 0
    assert f"{C}: only in the retain circuit; retain neuron" in capsys.readouterr().out


# ---------------------------------------------------------------- appendix B

# Figure 5, read from Eq. 7 / Eq. 8: B1 = A1 OR A2, B2 = A3 AND A4, B3 = A5 OR A6,
# C1 = B1 AND B2, C2 = B2 OR B3, output = C1 ADDER C2.
TOY = {f"A{i}": f"a0.h{i - 1}" for i in range(1, 7)}
TOY.update({"B1": "a1.h0", "B2": "a1.h1", "B3": "a1.h2", "C1": "a2.h0", "C2": "a2.h1"})
TOY_EDGES = [("A1", "B1", "OR"), ("A2", "B1", "OR"), ("A3", "B2", "AND"), ("A4", "B2", "AND"),
             ("A5", "B3", "OR"), ("A6", "B3", "OR"), ("B1", "C1", "AND"), ("B2", "C1", "AND"),
             ("B2", "C2", "OR"), ("B3", "C2", "OR"), ("C1", "out", "ADDER"), ("C2", "out", "ADDER")]


def toy_gates(task):
    n = lambda x: TOY.get(x, x)
    return gates([(n(s), n(d), k) for s, d, k in TOY_EDGES], list(TOY.values()), task)


def test_appendix_b_toy_circuit(tmp_path):
    phi, split, res = run_pipeline(tmp_path, toy_gates("f"), toy_gates("r"))
    side = lambda s: [phi.hard[i] for a, c, sd, _ in phi.notes if sd == s for i in range(a, a + c)]
    forget_cnf, retain_cnf = side("forget"), side("retain")  # each with its output unit
    assert len(forget_cnf) + len(retain_cnf) == len(phi.hard)
    ids = {k: phi.ids[v] for k, v in TOY.items()}

    def everything(value, clauses):
        truth = {v: value for v in range(1, phi.nvars + 1)}
        truth[phi.ids["out@forget"]], truth[phi.ids["out@retain"]] = False, True
        return satisfies(clauses, truth)

    assert everything(True, retain_cnf)    # retain CNF: all ones
    assert everything(False, forget_cnf)   # forget CNF: all zeros
    # projected on the leaves A1..A6, each CNF holds exactly when the paper's formula does
    eq7 = lambda a: a[3] and a[4] and (a[1] or a[2])
    eq8 = lambda a: (not a[5] and not a[6] and (not a[3] or not a[4])
                     and (not a[1] or not a[3] or not a[4]) and (not a[2] or not a[3] or not a[4]))
    for bits in itertools.product([0, 1], repeat=6):
        a = dict(zip(range(1, 7), bits))
        assume = [ids[f"A{i}"] if a[i] else -ids[f"A{i}"] for i in range(1, 7)]
        for clauses, formula in ((retain_cnf, eq7), (forget_cnf, eq8)):
            with Solver(name="m22", bootstrap_with=clauses) as s:
                assert s.solve(assumptions=assume) == bool(formula(a)), (bits, formula)
    # the same circuit as forget and retain circuit: C1 and C2 (0 to forget, 1 to retain), B2
    # (C2 = B2 OR B3 must be 0, C1 = B1 AND B2 must be 1) and one of A3, A4 (B2 = A3 AND A4)
    assert res["status"] == "UNSAT"
    assert res["counts"]["conflict"] == brute_force(toy_gates("f"), toy_gates("r"))[0] == 4
    conflict = {n for n, c in res["neurons"].items() if c["category"] == "conflict"}
    assert conflict in ({TOY[x] for x in ("C1", "C2", "B2", a)} for a in ("A3", "A4"))


# ---------------------------------------------------------------- brute force over semantics

def circuit_solutions(g, role):
    """Every assignment of a circuit's neurons (dict) whose output is what Eq. 4 wants, found by
    enumerating the free leaves and evaluating the gates (ADDER as OR when forgetting, AND when
    retaining)."""
    edges = [(e["src"], e["dst"], e["type"]) for e in g["edges"]]
    nodes = {s for s, _, _ in edges} | {d for _, d, _ in edges}
    parents = {}
    for s, d, k in edges:
        if k == "ADDER":
            k = "OR" if role == "forget" else "AND"
        parents.setdefault(d, []).append((s, k))
    leaves = sorted(n for n in nodes if n not in parents)
    wanted = role == "retain"
    sols = []
    for bits in itertools.product([False, True], repeat=len(leaves)):
        val = dict(zip(leaves, bits))
        pending = [n for n in nodes if n in parents]
        while pending:
            for n in pending:
                if all(p in val for p, _ in parents[n]):
                    ands = [val[p] for p, k in parents[n] if k == "AND"]
                    ors = [val[p] for p, k in parents[n] if k == "OR"]
                    val[n] = all(ands) and (any(ors) if ors else True)
            pending = [n for n in pending if n not in val]
        if val.get("out", wanted) == wanted:  # an out without parents is free
            val.pop("out", None)
            sols.append(val)
    return sols


def brute_force(fg, rg):
    """(minimum number of conflict neurons, fewest forget neurons among those, feasible pairs)."""
    best = None
    pairs = []
    for af in circuit_solutions(fg, "forget"):
        for ar in circuit_solutions(rg, "retain"):
            shared = af.keys() & ar.keys()
            conflicts = {n for n in shared if af[n] != ar[n]}
            merged = {**af, **ar}
            forget = sum(1 for n, v in merged.items() if n not in conflicts and not v)
            key = (len(conflicts), forget)
            pairs.append((key, af, ar, conflicts))
            best = key if best is None or key < best else best
    return best[0], best[1], pairs


NEURONS = ["a0.h0", "a0.h1", "m0", "a1.h0", "m1"]
RANK = {"a0.h0": 0, "a0.h1": 0, "m0": 1, "a1.h0": 2, "m1": 3, "out": 4}
edge_st = st.tuples(st.sampled_from(NEURONS), st.sampled_from(NEURONS[2:] + ["out"]),
                    st.sampled_from(["AND", "OR", "ADDER"]))


def typed(raw, task):
    seen = {}
    for s, d, k in raw:
        if RANK[s] < RANK[d]:
            seen.setdefault((s, d), k)
    return gates([(s, d, k) for (s, d), k in seen.items()], NEURONS, task)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(edge_st, max_size=9), st.lists(edge_st, max_size=9))
def test_random_circuits_match_brute_force(raw_f, raw_r):
    fg, rg = typed(raw_f, "f"), typed(raw_r, "r")
    min_conflicts, min_forget, pairs = brute_force(fg, rg)
    import warnings
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # circuits without an edge to out warn by design
        phi_f, split_f = cnf.encode(validate_gates(fg, "f"), validate_gates(rg, "r"))
        dimacs.write(Path(tmp) / "x.cnf", phi_f, "cnf")
        dimacs.write(Path(tmp) / "x.wcnf", split_f, "wcnf")
        phi = dimacs.read(Path(tmp) / "x.cnf")
        split = dimacs.read(Path(tmp) / "x.wcnf")
        # round trip through pysat's DIMACS readers: same clauses, same variable names
        pc = CNF(from_file=str(Path(tmp) / "x.cnf"))
        pw = WCNF(from_file=str(Path(tmp) / "x.wcnf"))
    assert pc.clauses == phi.hard == phi_f.hard
    names = dict(line.split()[2:4] for line in pc.comments if line.startswith("c var "))
    assert {int(k): v for k, v in names.items()} == phi.names == dict(enumerate(phi_f.names, 1))
    circuit = {n for e in fg["edges"] + rg["edges"] for n in (e["src"], e["dst"])} - {"out"}
    assert set(phi.ids) == circuit | {"out@forget", "out@retain"} | {n for n in phi.ids if n.startswith("or:")}
    assert pw.hard == split.hard and list(zip(pw.soft, pw.wght)) == split.soft
    assert pw.topw == split.top > sum(pw.wght)

    model, cost = solve.solve_maxsat(split, solve.DEFAULTS)
    truth = {abs(x): x > 0 for x in model}
    assert satisfies(split.hard, truth)  # the reported assignment satisfies every hard clause
    res = solve.localize(phi, split, NEURONS)
    cats = res["neurons"]
    conflicts = {n for n, c in cats.items() if c["category"] == "conflict"}
    assert len(conflicts) == min_conflicts
    assert res["counts"]["forget"] == min_forget
    assert res["status"] == ("SAT" if min_conflicts == 0 else "UNSAT")
    assert {n for n, c in cats.items() if c["category"] == "safe"} == set(NEURONS) - circuit
    # the categories are realised by a feasible pair of circuit assignments
    assert any(key == (min_conflicts, min_forget) and conf == conflicts
               and all(cats[n]["value"] == int(v) for n, v in {**af, **ar}.items() if n not in conf)
               for key, af, ar, conf in pairs)
    if res["status"] == "SAT":
        ptruth = {phi.ids[n]: bool(cats[n]["value"]) for n in circuit}
        for name in phi.ids:
            if name not in circuit:
                ptruth[phi.ids[name]] = truth[split.ids[name]]
        assert satisfies(phi.hard, ptruth)


# ---------------------------------------------------------------- gates from circuits

def circuit_json(mode, kept):
    """A 2-layer GQA model: 4 query heads share 2 key/value heads (group size 2)."""
    writers = ["embed"] + [f"a0.h{h}" for h in range(4)] + ["m0"] + [f"a1.h{h}" for h in range(4)] + ["m1"]
    readers = []
    for layer in range(2):
        readers += [f"a{layer}.h{h}.q" for h in range(4)]
        readers += [f"a{layer}.h{g}.{kv}" for g in range(2) for kv in "kv"]
        readers.append(f"m{layer}")
    readers.append("out")
    edges = [{"writer": w, "reader": r, "score": 0.9 if k else 0.1, "kept": k} for w, r, k in kept]
    return {"model": "toy", "task": "t", "mode": mode, "writers": writers, "readers": readers,
            "edges": edges, "target_sparsity": 0.5, "achieved_sparsity": 0.5, "kl": 0.1}


def test_gates_typing_and_gqa_collapse(tmp_path):
    noising = circuit_json("noising", [
        ("embed", "a0.h0.q", True),     # from embed: dropped
        ("a0.h1", "a1.h2.q", True),     # q of head 2
        ("a0.h0", "a1.h1.k", True),     # k of kv head 1 = query heads 2 and 3
        ("a0.h2", "m0", True),
        ("m0", "out", True),
        ("a1.h2", "out", True),
        ("a1.h3", "out", True),
        ("a0.h3", "m1", False),         # not kept
    ])
    denoising = circuit_json("denoising", [
        ("a0.h0", "a1.h1.v", True),     # v of kv head 1: heads 2, 3 again -> ADDER
        ("a0.h1", "a1.h0.q", True),
        ("m0", "out", True),
        ("m1", "out", True),
        ("a1.h0", "out", True),
        ("a1.h2", "out", True),
        ("a1.h3", "out", True),
        ("embed", "m0", True),
        ("a0.h3", "m1", False),
    ])
    n, d = write(tmp_path, "n.json", noising), write(tmp_path, "d.json", denoising)
    out, svg = tmp_path / "g.json", tmp_path / "g.svg"
    assert clue(["gates", "--noising", n, "--denoising", d, "--task", "t", "--out", str(out),
                 "--drawing", str(svg)]) == 0
    g = json.loads(out.read_text())
    assert g["task"] == "t"
    assert g["neurons"] == noising["writers"][1:]
    got = {(e["src"], e["dst"]): e["type"] for e in g["edges"]}
    assert got == {("a0.h0", "a1.h2"): "ADDER", ("a0.h0", "a1.h3"): "ADDER",
                   ("a0.h1", "a1.h2"): "AND", ("a0.h2", "m0"): "AND", ("m0", "out"): "ADDER",
                   ("a1.h2", "out"): "ADDER", ("a1.h3", "out"): "ADDER",
                   ("a0.h1", "a1.h0"): "OR", ("m1", "out"): "OR", ("a1.h0", "out"): "OR"}
    assert "<svg" in svg.read_text()[:2000]
    svg2 = tmp_path / "g2.svg"  # same input, same bytes: no date, no random SVG ids
    assert clue(["gates", "--noising", n, "--denoising", d, "--task", "t", "--out", str(tmp_path / "g2.json"),
                 "--drawing", str(svg2)]) == 0
    assert svg2.read_bytes() == svg.read_bytes()


def test_gates_drop_neurons_that_reach_no_output(tmp_path):
    # the k input of kv head 1 feeds query heads 2 and 3; only head 3 reaches out, so head 2 (and
    # the chain m0 -> a1.h0 that ends there) must not enter the gate graph as a dead end
    kept = [("a0.h0", "a1.h1.k", True), ("a1.h3", "out", True), ("m0", "a1.h0.q", True),
            ("a0.h1", "m0", True)]
    g = build_gate_graph(circuit_json("noising", kept), circuit_json("denoising", kept), "t")
    assert {(e["src"], e["dst"]) for e in g["edges"]} == {("a0.h0", "a1.h3"), ("a1.h3", "out")}


def test_gates_bad_circuits():
    c = circuit_json("noising", [])
    c["readers"].remove("a1.h1.k")  # layer 1 keeps 4 q heads but only one k/v head
    with pytest.raises(ClueError, match="layer 1"):
        build_gate_graph(c, circuit_json("denoising", []), "t")
    c = circuit_json("noising", [("a0.h0", "a9.h0.q", True)])
    with pytest.raises(ClueError, match="a9.h0.q"):
        build_gate_graph(c, circuit_json("denoising", []), "t")


# ---------------------------------------------------------------- bad input

def test_cycle_fails_naming_it(tmp_path, capsys):
    g = gates([("a0.h0", "m0", "AND"), ("m0", "a1.h0", "OR"), ("a1.h0", "m0", "AND"), ("m0", "out", "OR")],
              ["a0.h0", "m0", "a1.h0"])
    with pytest.raises(ClueError, match=r"cycle: (m0 -> a1\.h0 -> m0|a1\.h0 -> m0 -> a1\.h0)"):
        validate_gates(g, "g.json")
    f = write(tmp_path, "f.json", g)
    assert clue(["cnf", "--forget-gates", f, "--retain-gates", f, "--out-cnf", str(tmp_path / "x.cnf"),
                 "--out-wcnf", str(tmp_path / "x.wcnf")]) == 2
    assert "cycle" in capsys.readouterr().err
    assert not (tmp_path / "x.cnf").exists()


@pytest.mark.parametrize("edge, match", [
    (("a0.h0", "out", "XOR"), "unknown gate type 'XOR'"),
    (("a0.h0", "a5.h1", "AND"), "dangling node 'a5.h1'"),
    (("zz", "out", "AND"), "dangling node 'zz'"),
    (("out", "m0", "AND"), "dangling node 'out'"),
])
def test_bad_gate_graph(edge, match):
    with pytest.raises(ClueError, match=match):
        validate_gates(gates([edge], ["a0.h0", "m0"]), "g.json")


def test_empty_circuits_warn_and_give_valid_result(tmp_path):
    neurons = [A, B, C]
    empty = gates([], neurons, "empty")
    rg = gates([(A, "out", "AND"), (B, "out", "OR")], neurons, "r")
    with pytest.warns(UserWarning, match="forget circuit"):
        phi, split, res = run_pipeline(tmp_path, empty, rg)
    assert res["status"] == "SAT"
    assert res["counts"]["forget"] == res["counts"]["conflict"] == 0
    assert res["neurons"][C]["category"] == "safe"
    with pytest.warns(UserWarning):
        phi, split, res = run_pipeline(tmp_path, empty, gates([], neurons, "r"))
    assert res["counts"] == {"forget": 0, "conflict": 0, "retain": 0, "safe": 3}


def test_unparsable_cnf_names_the_line(tmp_path, capsys):
    fg = gates([(A, "out", "OR"), (B, "out", "OR")], [A, B, C], "f")
    rg = gates([(B, "out", "AND"), (C, "out", "AND")], [A, B, C], "r")
    run_pipeline(tmp_path, fg, rg)
    x = tmp_path / "x.cnf"
    lines = x.read_text().splitlines()
    bad = next(i for i, l in enumerate(lines) if l.startswith("p ")) + 3
    lines[bad - 1] = "1 two 0"
    x.write_text("\n".join(lines) + "\n")
    with pytest.raises(ClueError, match=rf"x\.cnf:{bad}: a clause line must hold integers"):
        dimacs.read(x)
    args = ["solve", "--cnf", str(x), "--wcnf", str(tmp_path / "x.wcnf"), "--forget-gates",
            str(tmp_path / "f.json"), "--retain-gates", str(tmp_path / "r.json"), "--out", str(tmp_path / "b.json")]
    assert clue(args) == 2
    assert f"x.cnf:{bad}:" in capsys.readouterr().err
    for text, match in [("p cnf 2 1\n1 3 0\n", ":2: literal outside"), ("p cnf 2 2\n1 2 0\n", ":1: header declares 2"),
                        ("1 2 0\n", ":1: clause before"), ("p cnf 2 1\n1 2\n", ":2: a clause must end with 0"),
                        ("c var 1 a\nc var 2 a\np cnf 2 0\n", ":2: variable 2 or name a named twice")]:
        x.write_text(text)
        with pytest.raises(ClueError, match=match):
            dimacs.read(x)


def test_params_are_checked(tmp_path):
    fg = gates([(A, "out", "ADDER")], [A, B, C], "f")
    with pytest.raises(ClueError, match="unknown logic config key"):
        cnf.parse_params('{"adder": "OR"}', cnf.DEFAULTS, "logic")
    run_pipeline(tmp_path, fg, fg)
    with pytest.raises(ClueError, match="maxsat"):
        solve.localize(*[dimacs.read(tmp_path / n) for n in ("x.cnf", "x.wcnf")], [A, B, C], {"maxsat": "nope"})
    # ADDER mapping is configurable: as AND in the forget circuit, one ADDER edge A -> out
    # makes out_f = A, so with A also the retain circuit's output A must conflict either way
    phi, split, res = run_pipeline(tmp_path, fg, fg, {"adder_forget": "AND"})
    assert "forget: out@forget <-> AND(a0.h0)" in [t for _, _, _, t in phi.notes]
    assert res["neurons"][A]["category"] == "conflict"


def run_retain_set(tmp, fg, rgs):
    """clue cnf + clue solve with a retain set of several tasks (one --retain-gates per task)."""
    f = write(tmp, "f.json", fg)
    rs = [write(tmp, f"r{i}.json", g) for i, g in enumerate(rgs)]
    x_cnf, x_wcnf, out = (str(Path(tmp) / n) for n in ("x.cnf", "x.wcnf", "a.json"))
    assert clue(["cnf", "--forget-gates", f, "--retain-gates", *rs, "--out-cnf", x_cnf, "--out-wcnf", x_wcnf]) == 0
    assert clue(["solve", "--cnf", x_cnf, "--wcnf", x_wcnf, "--forget-gates", f, "--retain-gates", *rs,
                 "--out", out]) == 0
    return dimacs.read(x_cnf), dimacs.read(x_wcnf), json.loads(Path(out).read_text())


def test_a_retain_set_keeps_every_tasks_output(tmp_path, capsys):
    """A retain set of two tasks (section 6.2), solved by hand. Forget: out_f = A1. Task r1:
    out_r1 = A1 (an OR edge); task r2: out_r2 = A2 (an OR edge). Both retain outputs must be 1, so
    A1's retain copy is 1 while the forget circuit needs A1 = 0: A1 is a conflict neuron, A2 a
    retain neuron, Phi UNSAT. Merged into one graph, out_r <- A1 OR A2 would hold with A1 = 0 and
    A1 would be a forget neuron that r1 needs. With r2 alone, A1 is rightly a forget neuron."""
    A1, A2 = A, B
    neurons = [A1, A2, C]
    forget = gates([(A1, "out", "AND")], neurons, task="f")
    r1 = gates([(A1, "out", "OR")], neurons, task="r1")
    r2 = gates([(A2, "out", "OR")], neurons, task="r2")
    phi, split, res = run_retain_set(tmp_path, forget, [r1, r2])
    assert res["retain"] == "r1+r2" and res["status"] == "UNSAT"
    assert {n: v["category"] for n, v in res["neurons"].items()} == {A1: "conflict", A2: "retain", C: "safe"}
    # every task keeps its own output, each required to be 1 (Eq. 4 per task)
    assert {frozenset(["out@retain:r1"]), frozenset(["out@retain:r2"])} <= named(phi, phi.hard)
    assert {frozenset(["out@retain:r1", f"-{A1}"]), frozenset(["-out@retain:r1", A1]),
            frozenset(["out@retain:r2", f"-{A2}"]), frozenset(["-out@retain:r2", A2])} <= named(phi, phi.hard)
    assert "out@retain" not in phi.ids
    # the explanation follows the chain to the output of the task that needs A1
    capsys.readouterr()
    assert clue(["explain", "--wcnf", str(tmp_path / "x.wcnf"), "--neuron", A1]) == 0
    out = capsys.readouterr().out
    assert f"so out@retain:r1 = 0, but Eq. 4 needs out@retain:r1 = 1" in out
    # r2 alone: nothing needs A1 on the retain side
    (tmp_path / "r2").mkdir()
    alone = run_retain_set(tmp_path / "r2", forget, [r2])[2]
    assert alone["status"] == "SAT" and alone["neurons"][A1]["category"] == "forget"


def retain_set_solutions(rgs):
    """Every assignment of a retain set's neurons under which each task's output is 1: the
    per-task solutions that agree on the neurons the tasks share."""
    merged = [{}]
    for g in rgs:
        merged = [{**m, **s} for m in merged for s in circuit_solutions(g, "retain")
                  if all(m[n] == s[n] for n in m.keys() & s.keys())]
    return merged


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(edge_st, max_size=7), st.lists(edge_st, max_size=6), st.lists(edge_st, max_size=6))
def test_random_retain_sets_match_brute_force(raw_f, raw_r1, raw_r2):
    """Two retain tasks against a brute force over circuit semantics, and a second task never
    lowers the minimum number of conflict neurons (it only adds constraints)."""
    import warnings

    fg, rgs = typed(raw_f, "f"), [typed(raw_r1, "r1"), typed(raw_r2, "r2")]
    best = None
    for af in circuit_solutions(fg, "forget"):
        for ar in retain_set_solutions(rgs):
            conflicts = {n for n in af.keys() & ar.keys() if af[n] != ar[n]}
            forget = sum(1 for n, v in {**af, **ar}.items() if n not in conflicts and not v)
            best = min(best or (len(conflicts), forget), (len(conflicts), forget))
    def localize(retain):
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # circuits without an edge to out warn by design
            phi, split = cnf.encode(validate_gates(fg, "f"), [validate_gates(g, g["task"]) for g in retain])
            dimacs.write(Path(tmp) / "x.cnf", phi, "cnf")
            dimacs.write(Path(tmp) / "x.wcnf", split, "wcnf")
            return solve.localize(dimacs.read(Path(tmp) / "x.cnf"), dimacs.read(Path(tmp) / "x.wcnf"), NEURONS)

    res, one = localize(rgs), localize(rgs[:1])
    assert (res["counts"]["conflict"], res["counts"]["forget"]) == best
    assert res["counts"]["conflict"] >= one["counts"]["conflict"]
    assert brute_force(fg, rgs[0])[0] == one["counts"]["conflict"]


def test_gates_cli_needs_both_circuits(tmp_path, capsys):
    with pytest.raises(SystemExit):
        clue(["gates", "--noising", "n.json", "--task", "t", "--out", str(tmp_path / "g.json")])
    assert "the following arguments are required: --denoising" in capsys.readouterr().err


# ------------------------------------------------ typed gates against set membership (Table 2)

def test_typed_gates_against_set_membership_worked_by_hand(tmp_path):
    """Writers A = a0.h0, B = a0.h1, C = m0, D = m1, each wired to out.

    Forget task: noising keeps A->out and B->out, denoising B->out and C->out, so A->out is AND
    (noising only), B->out ADDER (both), C->out OR (denoising only); in the forget circuit ADDER
    is OR: out_f = A & (B | C). Retain task: noising keeps B->out and C->out, denoising C->out and
    D->out: B AND, C ADDER (AND in the retain circuit), D OR: out_r = B & C & D.

    1. Phi (out_f = 0, out_r = 1) is satisfiable, with one model: B = C = D = 1 for the retain
       circuit, then out_f = A, so A = 0. Typed gates: A forget, B, C, D retain, no conflict.
       Set membership calls B and C (in both circuits) conflict neurons: the logic differs.
    2. The retain noising circuit also keeps A->out (AND): out_r = A & B & C & D needs all four,
       and then out_f = 1, so Phi is UNSAT. One conflict neuron suffices, A (A@forget = 0,
       A@retain = 1); B or C alone cannot (with A = 1, out_f = B | C = 1 as the retain circuit
       needs both on). So A is the only conflict neuron and B, C, D are retain neurons, none
       forget; set membership calls A, B and C conflict neurons."""
    from clue.logic.membership import assignment
    from clue.logic.gates import load_gates

    A, B, C, D = "a0.h0", "a0.h1", "m0", "m1"
    w = lambda *ws: [(x, "out", True) for x in ws]   # noqa: E731

    def gates_of(task, noising, denoising):
        n = write(tmp_path, f"{task}.n.json", circuit_json("noising", noising))
        d = write(tmp_path, f"{task}.d.json", circuit_json("denoising", denoising))
        out = str(tmp_path / f"{task}.gates.json")
        assert clue(["gates", "--noising", n, "--denoising", d, "--task", task, "--out", out]) == 0
        return json.loads(Path(out).read_text())

    forget = gates_of("f", w(A, B), w(B, C))
    assert {(e["src"], e["type"]) for e in forget["edges"]} == {(A, "AND"), (B, "ADDER"), (C, "OR")}
    assert forget["counts"] == {"AND": 1, "OR": 1, "ADDER": 1, "writers_noising_only": 1,
                                "writers_denoising_only": 1, "writers_both": 1}
    for case, retain_noising, typed, by_overlap in [
            ("sat", w(B, C), {A: "forget", B: "retain", C: "retain", D: "retain"},
             {A: "forget", B: "conflict", C: "conflict", D: "retain"}),
            ("unsat", w(A, B, C), {A: "conflict", B: "retain", C: "retain", D: "retain"},
             {A: "conflict", B: "conflict", C: "conflict", D: "retain"})]:
        retain = gates_of(f"r_{case}", retain_noising, w(C, D))
        (tmp_path / case).mkdir()
        _, _, res = run_pipeline(tmp_path / case, forget, retain)
        assert res["status"] == case.upper()
        assert {n: res["neurons"][n]["category"] for n in (A, B, C, D)} == typed
        got = assignment(load_gates(tmp_path / "f.gates.json"), [load_gates(tmp_path / f"r_{case}.gates.json")])
        assert {n: got["neurons"][n]["category"] for n in (A, B, C, D)} == by_overlap
        assert got["status"] == "MEMBERSHIP" and got["counts"]["safe"] == len(forget["neurons"]) - 4


def test_membership_cli_writes_an_assignment_the_masks_stage_reads(tmp_path, capsys):
    A, B = "a0.h0", "m0"
    f = write(tmp_path, "f.json", gates([(A, "out", "AND"), (B, "out", "OR")], [A, "a0.h1", B], "f"))
    r = write(tmp_path, "r.json", gates([(B, "out", "ADDER")], [A, "a0.h1", B], "r"))
    out = tmp_path / "m.json"
    assert clue(["membership", "--forget-gates", f, "--retain-gates", r, "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["forget"] == "f" and res["retain"] == "r"
    assert res["counts"] == {"forget": 1, "conflict": 1, "retain": 0, "safe": 1}
    assert "set membership: forget 1, conflict 1, retain 0, safe 1" in capsys.readouterr().out


def test_a_gates_file_whose_types_do_not_match_its_circuits_fails_naming_it(tmp_path, capsys):
    n = write(tmp_path, "n.json", circuit_json("noising", [("a0.h0", "out", True), ("m0", "out", True)]))
    d = write(tmp_path, "d.json", circuit_json("denoising", [("m0", "out", True)]))
    g = tmp_path / "g.json"
    assert clue(["gates", "--noising", n, "--denoising", d, "--task", "t", "--out", str(g)]) == 0
    graph = json.loads(g.read_text())
    graph["edges"][0]["type"] = "OR" if graph["edges"][0]["type"] != "OR" else "AND"   # edited by hand
    g.write_text(json.dumps(graph))
    assert clue(["cnf", "--forget-gates", str(g), "--retain-gates", str(g), "--out-cnf", str(tmp_path / "x.cnf"),
                 "--out-wcnf", str(tmp_path / "x.wcnf")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"clue cnf: error: {g}: its edges are typed ")
    assert "the types do not match its circuits; rebuild it with clue gates" in err[0]
    assert not (tmp_path / "x.cnf").exists()
