"""Stage `table3`: the paper's Table 3, the share of forget and conflict neurons before unlearning
(the assignment of Table 1's CLUE row) and after it (circuits found again on that pair's CLUE
checkpoint with the same settings, and solved again), per forget x retain pair."""

from clue import io
from clue.errors import ClueError

CATEGORIES = ("forget", "conflict", "retain")


def rows(before, after):
    out = []
    for status, paths in (("before", before), ("after", after)):
        for path in paths:
            rec = io.read_json(path)
            missing = [k for k in ("forget", "retain", "percentages") if k not in rec]
            if missing:
                raise ClueError(f"{path}: not an assignment JSON of `clue solve` (no {', '.join(missing)})")
            out.append({"forget": rec["forget"], "retain": rec["retain"], "status": status,
                        **{f"{c}_neuron_pct": rec["percentages"][c] for c in CATEGORIES},
                        "neurons": sum(rec["counts"].values()), "solver_status": rec["status"]})
    return out


def markdown(df, forget, retain):
    lines = ["# Table 3: forget and conflict neurons before and after unlearning", "",
             "Percent of all neurons (attention heads and MLPs) that the solver makes forget or conflict "
             "neurons: before, from the base model's circuits; after, from circuits found again on the "
             "pair's CLUE checkpoint with the same settings.", "",
             "| Forget set | Status | " + " | ".join(f"{r} forget (%) | {r} conflict (%)" for r in retain) + " |",
             "|" + "---|" * (2 + 2 * len(retain))]
    for f in forget:
        for status in ("before", "after"):
            cells = []
            for r in retain:
                hit = df[(df.forget == f) & (df.retain == r) & (df.status == status)]
                cells += ["-", "-"] if hit.empty else [f"{hit.iloc[0][f'{c}_neuron_pct']:.2f}"
                                                       for c in ("forget", "conflict")]
            lines.append(f"| {f} | {status} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def add_arguments(p):
    p.add_argument("--before", nargs="+", required=True, help="assignment JSONs of Table 1's pairs")
    p.add_argument("--after", nargs="+", required=True, help="assignment JSONs from the CLUE checkpoints' circuits")
    p.add_argument("--forget", nargs="+", required=True)
    p.add_argument("--retain", nargs="+", required=True)
    p.add_argument("--csv", required=True)
    p.add_argument("--md", required=True)


def main(args):
    import pandas as pd

    df = pd.DataFrame(rows(args.before, args.after))
    with io.atomic_path(args.csv) as tmp:
        df.to_csv(tmp, index=False, float_format="%.4f")
    with io.atomic_path(args.md) as tmp:
        tmp.write_text(markdown(df, args.forget, args.retain))
    print(f"{len(df)} rows -> {args.csv}, {args.md}")
