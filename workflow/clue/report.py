"""Stage `table1`: the eval JSONs of every forget x retain x method, as a tidy CSV
(``results/table1.csv``) and in the paper's layouts in Markdown (``results/table1.md``): Table 1
(FE / RU / GU), Table 6 (forget efficacy as 1-accuracy, MIA, 1-Rouge-L) and the utility as the
probability of the correct choice (RU_prob / GU_prob)."""

from clue import io
from clue.errors import ClueError

COLUMNS = ["forget", "retain", "method", "unlearned_param_pct", "FE", "RU", "GU", "MIA", "RougeL",
           "RU_prob", "GU_prob"]

# (title, note, [(column header, cell value of an eval row)]) of each Markdown table; the cells of
# one retain set repeat per retain set, as in the paper.
TABLES = [
    ("Table 1: performance overview of LLM unlearning",
     "FE = 1 - accuracy on the forget set (higher is better); RU = accuracy on the retain set's test "
     "split; GU = mean accuracy over the general tasks.",
     [("FE", lambda r: r.FE), ("RU", lambda r: r.RU), ("GU", lambda r: r.GU)]),
    ("Table 6: forget efficacy with 1-accuracy, MIA, Rouge-L",
     "1-accuracy = FE; MIA = 1 - AUC of Min-20% Prob separating the forget set's training texts from "
     "held-out texts (0.5: indistinguishable; higher is better; '-' without held-out texts); "
     "1-Rouge-L = 1 - mean Rouge-L recall of the correct answer in greedy generations on the forget "
     "questions (higher is better; the CSV's RougeL is the recall itself).",
     [("1-accuracy", lambda r: r.FE), ("MIA", lambda r: r.MIA), ("1-Rouge-L", lambda r: 1 - r.RougeL)]),
    ("Utility as the probability of the correct choice",
     "RU_prob = mean probability (softmax over the choices' log-likelihoods) of the correct choice on "
     "the retain set's test split; GU_prob = its mean over the general tasks that have one. Unlike "
     "accuracy it does not saturate at 1.",
     [("RU_prob", lambda r: r.RU_prob), ("GU_prob", lambda r: r.GU_prob)]),
]


def method_labels():
    """Row names as in the paper's Table 1; forget losses and localizers name theirs when they
    register."""
    from clue.localizers import LOCALIZERS
    from clue.losses import FORGET_LOSSES

    return {"origin": "Origin", **{n: x.label for n, x in {**FORGET_LOSSES, **LOCALIZERS}.items()},
            "clue": "CLUE"}


def collect(eval_paths):
    import pandas as pd

    rows = []
    for path in eval_paths:
        rec = io.read_json(path)
        missing = [k for k in COLUMNS if k not in rec]
        if missing:
            raise ClueError(f"{path}: eval JSON is missing {', '.join(missing)}")
        rows.append({k: rec[k] for k in COLUMNS})
    # float columns even where every value is null (MIA without held-out texts)
    return pd.DataFrame(rows, columns=COLUMNS).astype({k: float for k in COLUMNS[3:]})


def markdown(df, forget, retain, methods):
    """Each table of TABLES: one block per forget set, one row per method, its cells per retain
    set, and the unlearned parameter % (mean over the block's retain sets) as in the paper."""
    labels = method_labels()
    fmt = lambda v: "-" if v is None or v != v else f"{v:.3f}"  # noqa: E731 (v != v: NaN)
    lines = []
    for title, note, cells in TABLES:
        lines += [f"# {title}", "", note, ""]
        header = "| Method | Unlearned parameter | " + " | ".join(f"{r} {h}" for r in retain for h, _ in cells) + " |"
        sep = "|" + "---|" * (2 + len(cells) * len(retain))
        for f in forget:
            lines += [f"## Forget set: {f}", "", header, sep]
            for m in methods:
                block = df[(df.forget == f) & (df.method == m)]
                pct = block.unlearned_param_pct.dropna()
                row = [labels.get(m, m), "-" if pct.empty else f"{pct.mean():.2f}%"]
                for r in retain:
                    found = block[block.retain == r]
                    row += ["-"] * len(cells) if found.empty else [fmt(v(found.iloc[0])) for _, v in cells]
                lines.append("| " + " | ".join(row) + " |")
            lines.append("")
    return "\n".join(lines)


def add_arguments(p):
    p.add_argument("--evals", nargs="+", required=True, help="eval JSONs (results/{model}/eval/...)")
    p.add_argument("--forget", nargs="+", required=True)
    p.add_argument("--retain", nargs="+", required=True)
    p.add_argument("--methods", nargs="+", required=True)
    p.add_argument("--csv", required=True)
    p.add_argument("--md", required=True)


def main(args):
    df = collect(args.evals)
    order = {m: i for i, m in enumerate(args.methods)}
    df = df.sort_values(["forget", "retain", "method"], key=lambda s: s.map(order) if s.name == "method" else s)
    with io.atomic_path(args.csv) as tmp:
        df.to_csv(tmp, index=False, float_format="%.4f")
    with io.atomic_path(args.md) as tmp:
        tmp.write_text(markdown(df, args.forget, args.retain, args.methods) + "\n")
    print(f"{len(df)} rows -> {args.csv}, {args.md}")
