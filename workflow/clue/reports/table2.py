"""Stage `table2`: the paper's Table 2, CLUE's ablations on one forget x retain pair, each as the
change from CLUE's own row (the paper prints the drops with arrows). Rows: -M_f (no forget-mask
stage), -M_c (the conflict mask replaced by a full mask), M_c to M_f (the conflict stage first), set
membership (CLUE's training in masks from the circuits' overlap, no CNF or solver) and the
stage-loss combinations (GA+GA ... PO+NPO), each its own checkpoint clue-<ablation>."""

from clue import io
from clue.config import ABLATION_LABELS, method_variant
from clue.errors import ClueError

METRICS = ("FE", "RU", "GU")


def label(ablation):
    return ABLATION_LABELS.get(ablation) or ablation.upper()


def rows(clue_eval, ablation_evals, ablations):
    """[{ablation, row, FE, RU, GU, dFE, dRU, dGU}] with CLUE's own row first (d = 0)."""
    base = io.read_json(clue_eval)
    if base.get("method") != "clue":
        raise ClueError(f"{clue_eval}: expected CLUE's eval JSON, found method {base.get('method')!r}")
    out = [{"ablation": "none", "row": "CLUE",
            **{m: base[m] for m in METRICS}, **{f"d{m}": 0.0 for m in METRICS}}]
    for ablation, path in zip(ablations, ablation_evals):
        rec = io.read_json(path)
        if rec.get("method") != f"clue-{ablation}":
            raise ClueError(f"{path}: expected the eval of clue-{ablation}, found {rec.get('method')!r}")
        if (rec["forget"], rec["retain"]) != (base["forget"], base["retain"]):
            raise ClueError(f"{path}: pair {rec['forget']} x {rec['retain']} is not CLUE's "
                            f"{base['forget']} x {base['retain']}")
        out.append({"ablation": ablation, "row": label(ablation), **{m: rec[m] for m in METRICS},
                    **{f"d{m}": rec[m] - base[m] for m in METRICS}})
    return base, out


def markdown(base, table):
    arrow = lambda d: "0.000" if abs(d) < 5e-4 else (f"↓ {-d:.3f}" if d < 0 else f"↑ {d:.3f}")  # noqa: E731
    lines = [f"# Table 2: ablations with {base['forget']} as forget set and {base['retain']} as retain set", "",
             "CLUE's row, then each ablation's change from it (↓ a drop, ↑ a rise); FE = forget efficacy "
             "(1 - accuracy), RU = retain utility, GU = general utility.", "",
             "| Method | forget efficacy | retain utility | general utility |", "|---|---|---|---|"]
    first, *rest = table
    lines.append(f"| {first['row']} | " + " | ".join(f"{first[m]:.3f}" for m in METRICS) + " |")
    lines += [f"| {r['row']} | " + " | ".join(arrow(r[f'd{m}']) for m in METRICS) + " |" for r in rest]
    return "\n".join(lines) + "\n"


def add_arguments(p):
    p.add_argument("--clue", required=True, help="CLUE's eval JSON of the pair")
    p.add_argument("--ablation-evals", nargs="+", required=True, help="eval JSON of each clue-<ablation>")
    p.add_argument("--ablations", nargs="+", required=True, help="the ablation names, in the same order")
    p.add_argument("--csv", required=True)
    p.add_argument("--md", required=True)


def main(args):
    import pandas as pd

    if len(args.ablations) != len(args.ablation_evals):
        raise ClueError(f"give as many --ablations ({len(args.ablations)}) as --ablation-evals "
                        f"({len(args.ablation_evals)})")
    for name in args.ablations:
        method_variant(f"clue-{name}")   # an unknown ablation fails naming the known ones
    base, table = rows(args.clue, args.ablation_evals, args.ablations)
    df = pd.DataFrame(table)
    df.insert(0, "retain", base["retain"])
    df.insert(0, "forget", base["forget"])
    with io.atomic_path(args.csv) as tmp:
        df.to_csv(tmp, index=False, float_format="%.4f")
    with io.atomic_path(args.md) as tmp:
        tmp.write_text(markdown(base, table))
    print(f"{len(df)} rows -> {args.csv}, {args.md}")
