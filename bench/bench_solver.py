"""Bench: encode and solve a synthetic 7B-sized instance (issue 4 target: <= 10 s in total).

32 layers x 32 heads + 32 MLPs (1056 neurons), about 10,000 typed edges per circuit, random but
deterministic from --seed and acyclic in layer order (a head of layer L feeds the MLP of layer L
and anything of a later layer; everything may feed out).

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_solver.py [--seed 0] [--edges 10000]
"""

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

from clue.logic import cnf, dimacs, solve
from clue.logic.gates import validate_gates


def synthetic_gates(task, seed, layers=32, heads=32, n_edges=10000, out_edges=64):
    rng = random.Random(seed)
    neurons, rank = [], {}
    for layer in range(layers):
        for h in range(heads):
            neurons.append(f"a{layer}.h{h}")
            rank[neurons[-1]] = 2 * layer
        neurons.append(f"m{layer}")
        rank[neurons[-1]] = 2 * layer + 1
    # upstream[r]: the nodes that may feed a node of rank r (heads of layer L have rank 2L, m{L} 2L+1)
    ordered = sorted(neurons, key=rank.get)
    upstream = {}
    for r in range(2 * layers):
        upstream[r] = [n for n in ordered if rank[n] < r]
    edges = set()
    receivers = [n for n in neurons if rank[n] > 0]
    while len(edges) < n_edges - out_edges:
        dst = rng.choice(receivers)
        edges.add((rng.choice(upstream[rank[dst]]), dst))
    while len(edges) < n_edges:
        edges.add((rng.choice(neurons), "out"))
    types = ("AND", "OR", "ADDER")
    return {"task": task, "neurons": neurons,
            "edges": [{"src": s, "dst": d, "type": rng.choice(types)} for s, d in sorted(edges)]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--edges", type=int, default=10000, help="typed edges per circuit")
    ap.add_argument("--maxsat", default=solve.DEFAULTS["maxsat"])
    args = ap.parse_args(argv)

    fg_raw = synthetic_gates("forget", args.seed, n_edges=args.edges)
    rg_raw = synthetic_gates("retain", args.seed + 1, n_edges=args.edges)
    t0 = time.perf_counter()
    fg, rg = validate_gates(fg_raw, "forget"), validate_gates(rg_raw, "retain")
    phi, split = cnf.encode(fg, rg)
    with tempfile.TemporaryDirectory() as d:
        dimacs.write(Path(d) / "x.cnf", phi, "cnf")
        dimacs.write(Path(d) / "x.wcnf", split, "wcnf")
        t1 = time.perf_counter()
        phi_p = dimacs.read(Path(d) / "x.cnf", expect="cnf")
        split_p = dimacs.read(Path(d) / "x.wcnf", expect="wcnf")
        t2 = time.perf_counter()
    result = solve.localize(phi_p, split_p, fg.neurons, {"maxsat": args.maxsat})
    t3 = time.perf_counter()
    c = result["counts"]
    print(f"instance: {len(fg.neurons)} neurons, {len(fg.edges)} + {len(rg.edges)} typed edges; "
          f"Phi {len(phi.names)} vars / {len(phi.hard)} clauses; "
          f"MaxSAT {len(split.names)} vars / {len(split.hard)} hard / {len(split.soft)} soft")
    print(f"{result['status']}: forget {c['forget']}, conflict {c['conflict']}, retain {c['retain']}, "
          f"safe {c['safe']}, cost {result['cost']}")
    print(f"encode (validate + Tseitin + write DIMACS): {t1 - t0:.2f} s")
    print(f"read DIMACS: {t2 - t1:.2f} s")
    print(f"solve (decide Phi {result['seconds_detail']['decide_phi']:.2f} s + MaxSAT "
          f"{result['seconds_detail']['maxsat']:.2f} s): {t3 - t2:.2f} s")
    print(f"total: {t3 - t0:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
