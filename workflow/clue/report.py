"""Stage `table1`: the eval JSONs of every forget x retain x method, as a tidy CSV
(``results/table1.csv``) and as the paper's Table 1 layout in Markdown (``results/table1.md``)."""

from clue import io
from clue.errors import ClueError

COLUMNS = ["forget", "retain", "method", "unlearned_param_pct", "FE", "RU", "GU"]


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
    return pd.DataFrame(rows, columns=COLUMNS)


def markdown(df, forget, retain, methods):
    """One block per forget set, one row per method, FE / RU / GU per retain set, and the
    unlearned parameter % (mean over the block's retain sets) as in the paper."""
    header = "| Method | Unlearned parameter | " + " | ".join(f"{r} FE | {r} RU | {r} GU" for r in retain) + " |"
    sep = "|" + "---|" * (2 + 3 * len(retain))
    labels = method_labels()
    lines = ["# Table 1: performance overview of LLM unlearning", "",
             "FE = 1 - accuracy on the forget set (higher is better); RU = accuracy on the retain "
             "set's test split; GU = mean accuracy over the general tasks.", ""]
    fmt = lambda v: "-" if v is None or v != v else f"{v:.3f}"  # noqa: E731 (v != v: NaN)
    for f in forget:
        lines += [f"## Forget set: {f}", "", header, sep]
        for m in methods:
            block = df[(df.forget == f) & (df.method == m)]
            pct = block.unlearned_param_pct.dropna()
            cells = [labels.get(m, m), "-" if pct.empty else f"{pct.mean():.2f}%"]
            for r in retain:
                row = block[block.retain == r]
                cells += ["-"] * 3 if row.empty else [fmt(row.iloc[0][k]) for k in ("FE", "RU", "GU")]
            lines.append("| " + " | ".join(cells) + " |")
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
