"""Stage `fig7`: what the localized weights are made of (the paper's appendix I, Figure 7,
"Distribution of Different Neurons"). For every forget x retain pair given (the paper: its forget
set with each retain set), for CLUE's forget mask, CLUE's conflict mask and each baseline
localizer's mask, the *composition* of the selection: the share of the selected weight elements
that lie in each matrix type q, k, v, o (attention) and gate, up, down (MLP). Read from the mask
files and the checkpoint's safetensors headers: no weights are loaded.

The CSV keeps raw counts, a row per pair, selection, category, layer and matrix type: ``selected``
(elements of that layer's matrix the mask selects) and ``total`` (the matrix's elements). The
composition of a selection is its rows' ``selected`` over their sum (the ``share`` column, empty
for an empty selection); its coverage of the model is that sum over the sum of ``total``."""

from clue import io
from clue.errors import ClueError

GROUPS = {"attention": ("q", "k", "v", "o"), "mlp": ("gate", "up", "down")}
MATRICES = tuple(m for projs in GROUPS.values() for m in projs)
GROUP_OF = {m: g for g, projs in GROUPS.items() for m in projs}
COLUMNS = ["pair", "forget", "retain", "selection", "category", "layer", "matrix", "group", "selected", "total", "share"]
# attention in blues, MLP in oranges/browns: the two groups read apart at a glance
COLORS = {"q": "#c6dbef", "k": "#6baed6", "v": "#2171b5", "o": "#08306b",
          "gate": "#fdd0a2", "up": "#f16913", "down": "#7f2704"}


def split_pair(pair):
    forget, sep, retain = pair.partition("__")
    if not sep or not forget or not retain:
        raise ClueError(f"pair {pair!r} is not forget__retain")
    return forget, retain


def _mask_localizer(path):
    """The ``localizer`` a mask file's metadata names (None when the header cannot be read: then
    reading the masks reports what is wrong with the file)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("localizer")
    except Exception:  # missing or corrupt file: clue.masks.read_masks says which
        return None


def sites(mask_paths, labels, pairs, model_dir):
    """Rows (COLUMNS but ``share``): element counts per layer and matrix type for every category
    of every mask file; ``mask_paths``, ``labels`` and ``pairs`` go together, one per file."""
    from clue.masks import checkpoint_geometry, iter_dense_masks, projection_params

    if not len(mask_paths) == len(labels) == len(pairs):
        raise ClueError(f"sites: {len(mask_paths)} masks, {len(labels)} labels, {len(pairs)} pairs")
    _, shapes = checkpoint_geometry(model_dir)
    where = {name: (layer, proj) for (layer, proj, kind), name in projection_params(list(shapes)).items()
             if kind == "weight"}
    if not where:
        raise ClueError(f"{model_dir}: no attention/MLP weight matrices found (not a Llama-family checkpoint?)")
    totals = {}
    for name, key in where.items():
        n = 1
        for d in shapes[name]:
            n *= d
        totals[key] = n
    order = sorted(totals, key=lambda k: (k[0], MATRICES.index(k[1])))
    rows = []
    for path, label, pair in zip(mask_paths, labels, pairs):
        forget, retain = split_pair(pair)
        localizer = _mask_localizer(path)
        if localizer is not None and localizer != label:
            raise ClueError(f"{path}: the mask was written by localizer {localizer!r}, but its label is {label!r} "
                            f"(are --masks in the order of --pairs x --labels?)")
        for category, params in iter_dense_masks(path, shapes):
            selected = dict.fromkeys(totals, 0)
            for name, dense in params:
                if name in where:  # biases and other parameters are not in the figure's matrices
                    selected[where[name]] += int(dense.sum())
            rows += [{"pair": pair, "forget": forget, "retain": retain, "selection": label, "category": category,
                      "layer": layer, "matrix": matrix, "group": GROUP_OF[matrix],
                      "selected": selected[(layer, matrix)], "total": totals[(layer, matrix)]}
                     for layer, matrix in order]
    return rows


def with_share(df):
    """Add ``share``: a row's ``selected`` over its selection's (pair, selection, category) sum;
    NaN for every row of an empty selection (its composition is undefined, not zero)."""
    sums = df.groupby(["pair", "selection", "category"], sort=False)["selected"].transform("sum")
    df = df.copy()
    df["share"] = df["selected"] / sums.where(sums > 0)
    return df


def composition(df):
    """``(pair, name) -> {matrix: share, ..., "selected": n, "coverage": fraction of all weights}``
    per selection (``name`` as shown in the figure), shares summing to 1; shares are NaN for an
    empty selection."""
    out = {}
    for (pair, name), g in df.groupby(["pair", "name"], sort=False):
        by = g.groupby("matrix")[["selected", "total"]].sum()
        n, total = int(by["selected"].sum()), int(by["total"].sum())
        rec = {m: (int(by["selected"].get(m, 0)) / n if n else float("nan")) for m in MATRICES}
        rec.update(selected=n, coverage=n / total if total else 0.0)
        out[(pair, name)] = rec
    return out


def _count(n):
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return str(n)


def figure(df, path, title=None):
    """A panel per pair, a stacked bar per selection: the share of its selected weight elements in
    each matrix type (q, k, v, o, gate, up, down). Above each bar, the number of elements it selects
    and their share of all attention and MLP weights; an empty selection is marked "empty"."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    comp = composition(df)
    pairs = list(dict.fromkeys(df["pair"]))
    names = list(dict.fromkeys(df["name"]))
    forgets = {split_pair(p)[0] for p in pairs}
    ncols = min(len(pairs), 4)
    nrows = -(-len(pairs) // ncols)
    width = max(2.6, 0.62 * len(names) + 1.0)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols + 1.4, 4.2 * nrows), sharey=True, squeeze=False)
    x = np.arange(len(names))
    for ax, pair in zip(axes.flat, pairs):
        bottom = np.zeros(len(names))
        recs = [comp.get((pair, n)) for n in names]
        for matrix in MATRICES:
            h = np.array([0.0 if r is None or not r["selected"] else r[matrix] for r in recs])
            ax.bar(x, h, 0.7, bottom=bottom, color=COLORS[matrix], edgecolor="white", linewidth=0.5,
                   label=f"{matrix} ({'attention' if GROUP_OF[matrix] == 'attention' else 'MLP'})")
            for xi, (b, hi) in enumerate(zip(bottom, h)):
                if hi >= 0.07:
                    dark = matrix in ("v", "o", "up", "down")
                    ax.text(xi, b + hi / 2, f"{100 * hi:.0f}%", ha="center", va="center", fontsize=6.5,
                            color="white" if dark else "black")
            bottom += h
        for xi, r in enumerate(recs):
            if r is None:
                ax.text(xi, 0.5, "no mask", ha="center", va="center", rotation=90, fontsize=7, color="0.4")
            elif not r["selected"]:
                ax.bar(xi, 1.0, 0.7, color="none", edgecolor="0.6", hatch="///", linewidth=0.6)
                ax.text(xi, 0.5, "empty", ha="center", va="center", rotation=90, fontsize=8, color="0.3",
                        bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
            else:
                ax.text(xi, 1.01, f"{_count(r['selected'])}\n{100 * r['coverage']:.2g}%", ha="center",
                        va="bottom", fontsize=6.5, color="0.25", linespacing=0.95)
        ax.set_xticks(x, names, rotation=35, ha="right", fontsize=8)
        ax.set_ylim(0, 1.13)
        ax.set_yticks(np.linspace(0, 1, 6), [f"{v:.0%}" for v in np.linspace(0, 1, 6)], fontsize=8)
        forget, retain = split_pair(pair)
        ax.set_title(f"retain: {retain}" if len(forgets) == 1 else f"{forget} x {retain}", fontsize=9)
        ax.spines[["top", "right"]].set_visible(False)
    for ax in axes.flat[len(pairs):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("share of the selected weights", fontsize=9)
    handles, legend_labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles[::-1], legend_labels[::-1], fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5),
               title="matrix", title_fontsize=8, frameon=False)
    if title is None:
        title = (f"Composition of the localized weights, forget {next(iter(forgets))}" if len(forgets) == 1
                 else "Composition of the localized weights")
    fig.suptitle(title + "\n(above each bar: weights selected, and their share of all attention + MLP weights)",
                 fontsize=9.5)
    fig.tight_layout()
    suffix = str(path).rsplit(".", 1)[-1].lower()
    io.save_figure(fig, path, fmt=suffix if suffix in ("png", "pdf") else "svg")
    plt.close(fig)


def display_names(df):
    """A name per (selection, category) as the figure shows it: "CLUE forget", "CLUE conflict",
    a localizer's Table 1 name (with its category when its file has more than one)."""
    from clue.reports.table1 import method_labels

    shown = method_labels()
    cats = df.groupby("selection")["category"].nunique()
    return [f"{shown.get(s, s)} {c}" if s == "clue" or cats[s] > 1 else shown.get(s, s).split(" (")[0]
            for s, c in zip(df["selection"], df["category"])]


def add_arguments(p):
    p.add_argument("--pairs", nargs="+", required=True,
                   help="forget__retain pairs, a figure panel each (the paper: its forget set with every retain set)")
    p.add_argument("--labels", nargs="+", required=True,
                   help="the selections shown on every pair: clue, then localizers (memit, wagle, ...); each must "
                        "be the localizer its mask file's metadata names")
    p.add_argument("--masks", nargs="+", required=True,
                   help="mask .safetensors files, len(pairs) x len(labels), pair by pair: for each pair, a file "
                        "per label in --labels order")
    p.add_argument("--model-dir", required=True, help="the base checkpoint (its safetensors headers give the shapes)")
    p.add_argument("--csv", required=True)
    p.add_argument("--figure", required=True, help="the figure (.svg; .png or .pdf by extension)")


def main(args):
    import pandas as pd

    for flag, values in (("--pairs", args.pairs), ("--labels", args.labels)):
        dup = sorted({v for v in values if values.count(v) > 1})
        if dup:
            raise ClueError(f"{flag} repeats {', '.join(dup)}")
    if len(args.masks) != len(args.pairs) * len(args.labels):
        raise ClueError(f"give a mask per pair and label: {len(args.pairs)} --pairs x {len(args.labels)} --labels "
                        f"= {len(args.pairs) * len(args.labels)} files, but {len(args.masks)} --masks")
    for pair in args.pairs:
        split_pair(pair)
    pairs = [p for p in args.pairs for _ in args.labels]
    labels = [s for _ in args.pairs for s in args.labels]
    df = pd.DataFrame(sites(args.masks, labels, pairs, args.model_dir), columns=COLUMNS[:-1])
    df = with_share(df)
    with io.atomic_path(args.csv) as tmp:
        df[COLUMNS].to_csv(tmp, index=False)
    df["name"] = display_names(df)
    figure(df, args.figure)
    empty = [f"{n} on {p}" for (p, n), r in composition(df).items() if not r["selected"]]
    print(f"{len(df)} rows -> {args.csv}, {args.figure}" + (f"; empty selections: {', '.join(empty)}" if empty else ""))
