"""Stage `fig7`: where the localized neurons sit (the paper's appendix I, Figure 7): for CLUE's
forget and conflict masks and each baseline localizer's mask on one forget x retain pair, the
share of the attention weights (q, k, v, o) and of the MLP weights (gate, up, down) that the mask
selects, per layer and in all. Read from the mask files and the checkpoint's safetensors headers:
no weights are loaded."""

from clue import io
from clue.errors import ClueError

GROUPS = {"attention": ("q", "k", "v", "o"), "mlp": ("gate", "up", "down")}


def sites(mask_paths, labels, model_dir):
    """Rows {selection, category, layer, group, selected, total}: element counts per layer and
    group for every category of every mask file."""
    from clue.masks import checkpoint_geometry, iter_dense_masks, projection_params

    _, shapes = checkpoint_geometry(model_dir)
    where = {name: (layer, next(g for g, projs in GROUPS.items() if proj in projs))
             for (layer, proj, kind), name in projection_params(list(shapes)).items() if kind == "weight"}
    totals = {}
    for name, (layer, group) in where.items():
        n = 1
        for d in shapes[name]:
            n *= d
        totals[(layer, group)] = totals.get((layer, group), 0) + n
    rows = []
    for path, label in zip(mask_paths, labels):
        for category, params in iter_dense_masks(path, shapes):
            selected = dict.fromkeys(totals, 0)
            for name, dense in params:
                if name in where:
                    selected[where[name]] += int(dense.sum())
            rows += [{"selection": label, "category": category, "layer": layer, "group": group,
                      "selected": selected[(layer, group)], "total": total}
                     for (layer, group), total in sorted(totals.items())]
    return rows


def figure(df, title, path):
    """Two bars per selection: the share of all attention weights and of all MLP weights selected."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    agg = df.groupby(["name", "group"], sort=False)[["selected", "total"]].sum()
    names = list(dict.fromkeys(df["name"]))
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(names) + 2), 3.8))
    for i, (group, color) in enumerate((("attention", "tab:blue"), ("mlp", "tab:orange"))):
        pct = [100 * agg.loc[(n, group), "selected"] / agg.loc[(n, group), "total"] for n in names]
        bars = ax.bar(x + (i - 0.5) * 0.38, pct, 0.38, label={"attention": "attention (q, k, v, o)",
                                                              "mlp": "MLP (gate, up, down)"}[group], color=color)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
    ax.set_xticks(x, names, rotation=20, ha="right")
    ax.set_ylabel("weights selected (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    io.save_figure(fig, path)
    plt.close(fig)


def add_arguments(p):
    p.add_argument("--masks", nargs="+", required=True, help="mask .safetensors files (CLUE's, then localizers')")
    p.add_argument("--labels", nargs="+", required=True, help="a name per mask file (clue, memit, wagle, ...)")
    p.add_argument("--model-dir", required=True, help="the base checkpoint (its safetensors headers give the shapes)")
    p.add_argument("--pair", required=True, help="forget__retain, for the title")
    p.add_argument("--csv", required=True)
    p.add_argument("--figure", required=True)


def main(args):
    import pandas as pd

    from clue.report import method_labels

    if len(args.masks) != len(args.labels):
        raise ClueError(f"give as many --labels ({len(args.labels)}) as --masks ({len(args.masks)})")
    df = pd.DataFrame(sites(args.masks, args.labels, args.model_dir))
    if df.empty:
        raise ClueError(f"{args.model_dir}: no attention/MLP weight matrices found")
    shown = method_labels()
    df["name"] = [shown.get(s, s).split(" (")[0] if s != "clue" else f"CLUE {c}" for s, c in zip(df.selection, df.category)]
    with io.atomic_path(args.csv) as tmp:
        df.drop(columns="name").to_csv(tmp, index=False)
    forget, _, retain = args.pair.partition("__")
    figure(df, f"Where the localized weights sit: {forget} x {retain}", args.figure)
    print(f"{len(df)} rows -> {args.csv}, {args.figure}")
