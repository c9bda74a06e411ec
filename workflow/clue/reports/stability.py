"""Stage `stability`: are CLUE's neuron categories a property of the model, or of one circuit
search? For each forget x retain pair, the assignments (clue solve) from circuits found with
several circuit seeds (`stability.seeds`: the gates' noise and initialisation and the order of
the discovery pairs; everything else as Table 1's) are compared category by category with the
Jaccard overlap |A & B| / |A | B| of every two seeds' sets (1.0 when both are empty, which the
table says). The goal set in the project's issue: forget and conflict sets with Jaccard at least
0.8 between seeds on every pair."""

import itertools

from clue import io
from clue.errors import ClueError

CATEGORIES = ("forget", "conflict", "retain")
COLUMNS = ["forget", "retain", "category", "seed_a", "seed_b", "n_a", "n_b", "jaccard", "note"]
GOAL = 0.8


def jaccard(a, b):
    """(overlap, note): |a & b| / |a | b|, and 1.0 with a note when both are empty."""
    if not a and not b:
        return 1.0, "both empty"
    return len(a & b) / len(a | b), ""


def categories(assign, path):
    from clue.masks import neurons_by_category

    return {c: set(names) for c, names in neurons_by_category(assign, CATEGORIES, path).items()}


def rows(pair, seeds, assignments):
    """Rows of COLUMNS for one pair: every category, every two seeds."""
    forget, _, retain = pair.partition("__")
    sets = {}
    for seed, path in zip(seeds, assignments):
        assign = io.read_json(path)
        if (assign.get("forget"), assign.get("retain")) != (forget, retain):
            raise ClueError(f"{path}: an assignment of {assign.get('forget')} x {assign.get('retain')}, not {pair}")
        sets[seed] = categories(assign, path)
    out = []
    for c in CATEGORIES:
        for a, b in itertools.combinations(seeds, 2):
            value, note = jaccard(sets[a][c], sets[b][c])
            out.append({"forget": forget, "retain": retain, "category": c, "seed_a": a, "seed_b": b,
                        "n_a": len(sets[a][c]), "n_b": len(sets[b][c]), "jaccard": value, "note": note})
    return out


def markdown(table, seeds):
    lines = ["# Stability of CLUE's neuron categories across circuit seeds", "",
             f"Circuit seeds {', '.join(map(str, seeds))}; each cell: the smallest and the mean Jaccard overlap of the "
             "category's neurons over every two seeds, then the set sizes by seed. Goal: forget and conflict at "
             f"least {GOAL} on every pair (* below it).", "",
             "| pair | " + " | ".join(CATEGORIES) + " |", "|---|" + "---|" * len(CATEGORIES)]
    pairs = list(dict.fromkeys((r["forget"], r["retain"]) for r in table))
    for forget, retain in pairs:
        cells = []
        for c in CATEGORIES:
            rs = [r for r in table if (r["forget"], r["retain"], r["category"]) == (forget, retain, c)]
            values = [r["jaccard"] for r in rs]
            sizes = {r["seed_a"]: r["n_a"] for r in rs} | {r["seed_b"]: r["n_b"] for r in rs}
            flag = "*" if c != "retain" and min(values) < GOAL else ""
            empty = " (all empty)" if all(r["note"] == "both empty" for r in rs) else ""
            cells.append(f"{min(values):.2f}{flag} / {sum(values) / len(values):.2f}{empty} "
                         f"(n {', '.join(str(sizes[s]) for s in seeds)})")
        lines.append(f"| {forget} x {retain} | " + " | ".join(cells) + " |")
    below = sorted({f"{r['forget']} x {r['retain']} ({r['category']})" for r in table
                    if r["category"] != "retain" and r["jaccard"] < GOAL})
    lines += ["", "Below the goal: " + (", ".join(below) if below else "none") + "."]
    return "\n".join(lines) + "\n"


def add_arguments(p):
    p.add_argument("--pairs", nargs="+", required=True, help="forget__retain of each pair")
    p.add_argument("--seeds", nargs="+", type=int, required=True, help="the circuit seeds compared")
    p.add_argument("--assignments", nargs="+", required=True,
                   help="clue solve's assignment of every pair under every seed, pair by pair, seeds in order")
    p.add_argument("--csv", required=True, help="every pair, category and two seeds: their Jaccard overlap")
    p.add_argument("--md", required=True, help="the summary table in Markdown")


def main(args):
    import pandas as pd

    from clue.config import check_stability_seeds

    seeds = check_stability_seeds(args.seeds, "--seeds")
    if len(args.assignments) != len(args.pairs) * len(seeds):
        raise ClueError(f"give one assignment per pair and seed: {len(args.pairs)} pair(s) x {len(seeds)} seeds = "
                        f"{len(args.pairs) * len(seeds)}, not {len(args.assignments)}")
    table = []
    for i, pair in enumerate(args.pairs):
        table += rows(pair, seeds, args.assignments[i * len(seeds):(i + 1) * len(seeds)])
    with io.atomic_path(args.csv) as tmp:
        pd.DataFrame(table, columns=COLUMNS).to_csv(tmp, index=False, float_format="%.4f")
    text = markdown(table, seeds)
    with io.atomic_path(args.md) as tmp:
        tmp.write_text(text)
    print(text)
    return 0
