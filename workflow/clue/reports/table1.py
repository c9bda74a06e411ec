"""Stage `table1`: the eval JSONs of every forget x retain x method, as a tidy CSV
(``results/table1.csv``) and in the paper's layouts in Markdown (``results/table1.md``): Table 1
(FE / RU / GU), Table 6 (forget efficacy as 1-accuracy, MIA, 1-Rouge-L) and the utility as the
probability of the correct choice (RU_prob / GU_prob)."""

from clue import io
from clue.errors import ClueError

COLUMNS = ["forget", "retain", "method", "seed", "unlearned_param_pct", "FE", "RU", "GU", "MIA", "RougeL",
           "RU_prob", "GU_prob"]
METRICS = COLUMNS[4:]

# (title, note, [(column header, CSV column, shown as 1 - value)]) of each Markdown table; the
# cells of one retain set repeat per retain set, as in the paper.
TABLES = [
    ("Table 1: performance overview of LLM unlearning",
     "FE = 1 - accuracy on the forget set (higher is better); RU = accuracy on the retain set's test "
     "split; GU = mean accuracy over the general tasks.",
     [("FE", "FE", False), ("RU", "RU", False), ("GU", "GU", False)]),
    ("Table 6: forget efficacy with 1-accuracy, MIA, Rouge-L",
     "1-accuracy = FE; MIA = 1 - AUC of Min-20% Prob separating the forget set's training texts from "
     "held-out texts (0.5: indistinguishable; higher is better; '-' without held-out texts); "
     "1-Rouge-L = 1 - mean Rouge-L recall of the correct answer in greedy generations on the forget "
     "questions (higher is better; the CSV's RougeL is the recall itself).",
     [("1-accuracy", "FE", False), ("MIA", "MIA", False), ("1-Rouge-L", "RougeL", True)]),
    ("Utility as the probability of the correct choice",
     "RU_prob = mean probability (softmax over the choices' log-likelihoods) of the correct choice on "
     "the retain set's test split; GU_prob = its mean over the general tasks that have one. Unlike "
     "accuracy it does not saturate at 1.",
     [("RU_prob", "RU_prob", False), ("GU_prob", "GU_prob", False)]),
]


def method_labels():
    """Row names as in the paper's Table 1; forget losses and localizers name theirs when they
    register."""
    from clue.localizers import LOCALIZERS
    from clue.losses import FORGET_LOSSES

    return {"origin": "Origin", **{n: x.label for n, x in {**FORGET_LOSSES, **LOCALIZERS}.items()},
            "clue": "CLUE"}


def collect(eval_paths, first_seed=0, with_accuracy=False):
    """One row per eval JSON. ``seed`` is the checkpoint's unlearn.seed; the base model's rows
    (Origin, no seed) and eval JSONs from before repeats existed count as ``first_seed``."""
    import pandas as pd

    rows = []
    for path in eval_paths:
        rec = io.read_json(path)
        missing = [k for k in COLUMNS if k not in rec and k != "seed"]
        if missing:
            raise ClueError(f"{path}: eval JSON is missing {', '.join(missing)}")
        row = {k: rec.get(k) for k in COLUMNS}
        if row["seed"] is None:
            row["seed"] = first_seed
        if with_accuracy:
            row["accuracy"] = rec.get("accuracy", {})
            row["general"] = rec.get("general", [])
        rows.append(row)
    # float columns even where every value is null (MIA without held-out texts)
    return pd.DataFrame(rows, columns=COLUMNS + (["accuracy", "general"] if with_accuracy else [])).astype(
        {k: float for k in METRICS} | {"seed": int})


def over_seeds(df):
    """Mean and sample std (NaN for one seed) of every metric per forget x retain x method."""
    g = df.groupby(["forget", "retain", "method"], sort=False)[METRICS]
    return g.mean(), g.std(ddof=1)


def markdown(df, forget, retain, methods):
    """Each table of TABLES: one block per forget set, one row per method, its cells per retain
    set (mean +- std over the seeds when there are several), and the unlearned parameter % (mean
    over the block's retain sets) as in the paper."""
    labels = method_labels()
    mean, std = over_seeds(df)
    n_seeds = df.groupby(["forget", "retain", "method"], sort=False).size()

    def fmt(v, sd=None):
        if v is None or v != v:   # v != v: NaN
            return "-"
        return f"{v:.3f}" if sd is None or sd != sd else f"{v:.3f} ± {sd:.3f}"

    df = mean.reset_index()
    lines = []
    seeds_note = (f" Mean ± sample std over {n_seeds.max()} seeds (Origin, the base model, is evaluated once)."
                  if n_seeds.max() > 1 else "")
    for title, note, cells in TABLES:
        lines += [f"# {title}", "", note + seeds_note, ""]
        header = "| Method | Unlearned parameter | " + " | ".join(f"{r} {h}" for r in retain for h, _, _ in cells) + " |"
        sep = "|" + "---|" * (2 + len(cells) * len(retain))
        for f in forget:
            lines += [f"## Forget set: {f}", "", header, sep]
            for m in methods:
                block = df[(df.forget == f) & (df.method == m)]
                pct = block.unlearned_param_pct.dropna()
                row = [labels.get(m, m), "-" if pct.empty else f"{pct.mean():.2f}%"]
                for r in retain:
                    found = block[block.retain == r]
                    if found.empty:
                        row += ["-"] * len(cells)
                        continue
                    sd = std.loc[(f, r, m)]
                    row += [fmt(1 - found.iloc[0][c] if flip else found.iloc[0][c], sd[c]) for _, c, flip in cells]
                lines.append("| " + " | ".join(row) + " |")
            lines.append("")
    return "\n".join(lines)


def table5(df):
    """Appendix F: every general task's accuracy, one row per checkpoint and task."""
    import pandas as pd

    rows = [{"forget": r.forget, "retain": r.retain, "method": r.method, "seed": r.seed, "task": t,
             "accuracy": r.accuracy[t]} for r in df.itertuples() for t in r.general]
    return pd.DataFrame(rows, columns=["forget", "retain", "method", "seed", "task", "accuracy"])


def table6(df):
    """Appendix G: forget efficacy as 1-accuracy, MIA and Rouge-L (and 1-Rouge-L, higher is better)."""
    out = df[["forget", "retain", "method", "seed"]].copy()
    out["1-accuracy"], out["MIA"], out["Rouge-L"], out["1-Rouge-L"] = df.FE, df.MIA, df.RougeL, 1 - df.RougeL
    return out


def add_arguments(p):
    p.add_argument("--evals", nargs="+", required=True, help="eval JSONs (results/{model}/eval/...)")
    p.add_argument("--forget", nargs="+", required=True)
    p.add_argument("--retain", nargs="+", required=True)
    p.add_argument("--methods", nargs="+", required=True)
    p.add_argument("--first-seed", type=int, default=0, help="the seed of the base model's (Origin) rows")
    p.add_argument("--csv", help="Table 1, tidy: a row per forget x retain x method x seed")
    p.add_argument("--md", help="Table 1 (and Table 6, probabilities) in the paper's layout, mean +- std over seeds")
    p.add_argument("--table5", help="CSV of every general task's accuracy per checkpoint (appendix F)")
    p.add_argument("--table6", help="CSV of 1-accuracy, MIA, Rouge-L per checkpoint (appendix G)")


def main(args):
    if not (args.csv or args.md or args.table5 or args.table6):
        raise ClueError("give at least one output: --csv, --md, --table5 or --table6")
    df = collect(args.evals, args.first_seed, with_accuracy=True)
    order = {m: i for i, m in enumerate(args.methods)}
    df = df.sort_values(["forget", "retain", "method", "seed"],
                        key=lambda s: s.map(order) if s.name == "method" else s).reset_index(drop=True)
    outputs = [(args.csv, lambda tmp: df[COLUMNS].to_csv(tmp, index=False, float_format="%.4f")),
               (args.md, lambda tmp: tmp.write_text(markdown(df[COLUMNS], args.forget, args.retain, args.methods) + "\n")),
               (args.table5, lambda tmp: table5(df).to_csv(tmp, index=False, float_format="%.4f")),
               (args.table6, lambda tmp: table6(df).to_csv(tmp, index=False, float_format="%.4f"))]
    for path, write in outputs:
        if path:
            with io.atomic_path(path) as tmp:
                write(tmp)
    print(f"{len(df)} rows -> {', '.join(p for p, _ in outputs if p)}")
