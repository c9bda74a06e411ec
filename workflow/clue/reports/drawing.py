"""Node-level drawings of circuits, gate graphs and one pair's neuron categories (matplotlib).

A node is a neuron (an attention head ``a{L}.h{H}`` or an MLP ``m{L}``), ``embed`` or ``out``;
only nodes on some drawn edge are drawn, so a 30-layer model with a small circuit gives a small
picture. Rows are laid out bottom-up: ``embed``, then for each layer that has drawn nodes a row
of its attention heads and a row for its MLP (the MLP reads the heads' output of its own layer,
so it sits above them), then ``out``. Empty layers get no row; the y axis names every row. Heads
keep their column in every row; every node is a labelled box. Edges are curves bowed in
proportion to the rows they skip, so edges along one column stay visible.
"""

import re
from pathlib import Path

from clue.io import save_figure

_HEAD = re.compile(r"^a(\d+)\.h(\d+)$")
_MLP = re.compile(r"^m(\d+)$")

KIND_COLORS = {"attention": "#cfe2f3", "mlp": "#f4cccc", "io": "#e0e0e0"}


def row_of(name):
    """Sort key of a node's row: (layer, 0 for heads / 1 for the MLP); embed first, out last."""
    if name == "embed":
        return (-1, 0)
    if name == "out":
        return (float("inf"), 0)
    m = _HEAD.match(name)
    if m:
        return (int(m.group(1)), 0)
    m = _MLP.match(name)
    if m:
        return (int(m.group(1)), 1)
    raise ValueError(f"not a node name: {name!r}")


def kind_of(name):
    if name in ("embed", "out"):
        return "io"
    return "attention" if _HEAD.match(name) else "mlp"


def _head(name):
    m = _HEAD.match(name)
    return int(m.group(2)) if m else None


def layout(nodes):
    """{node: (x, y)} and the row labels [(y, label)]: one row per (layer, heads|MLP) that has a
    node. A head sits in the column of its index in every row (x = head), so one head can be
    followed up the layers; MLPs sit in a column left of head 0, ``embed`` and ``out`` in the
    middle of the heads."""
    rows = sorted({row_of(n) for n in nodes})
    y_of = {key: float(y) for y, key in enumerate(rows)}
    n_heads = max((_head(n) + 1 for n in nodes if _head(n) is not None), default=1)
    pos = {}
    for n in nodes:
        if _head(n) is not None:
            x = float(_head(n))
        elif n in ("embed", "out"):
            x = (n_heads - 1) / 2
        else:
            x = MLP_X
        pos[n] = (x, y_of[row_of(n)])
    labels = []
    for key in rows:
        layer, part = key
        labels.append((y_of[key], "embed" if layer == -1 else "out" if layer == float("inf")
                       else f"layer {layer} {'MLP' if part else 'heads'}"))
    return pos, labels


MLP_X = -1.5


def _curve(p0, p1):
    """A quadratic Bezier from p0 to p1 bowed sideways in proportion to the rows it spans, so an
    edge that skips rows in one column does not hide behind the nodes between its ends (MLP
    edges bow left, away from the heads)."""
    from matplotlib.path import Path as MplPath

    (x0, y0), (x1, y1) = p0, p1
    bow = 0.18 * abs(y1 - y0) ** 0.8 * (-1 if x0 == x1 == MLP_X else 1)
    return MplPath([p0, ((x0 + x1) / 2 + bow, (y0 + y1) / 2), p1],
                   [MplPath.MOVETO, MplPath.CURVE3, MplPath.CURVE3])


def draw_nodes(edges, path, title, edge_styles, node_colors=None, node_legend=None):
    """Draw node-level ``edges`` [(src, dst, style)] to ``path`` (.svg or .png).

    ``edge_styles``: style -> (color, legend label); ``node_colors``: node -> face color (default:
    by kind, heads blue, MLPs red); ``node_legend``: [(color, label)] for the node colours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PathCollection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    nodes = sorted({n for s, d, _ in edges for n in (s, d)}, key=lambda n: (row_of(n), n))
    pos, labels = layout(nodes)
    left = min((x for x, _ in pos.values()), default=0.0) - 1.0
    right = max((x for x, _ in pos.values()), default=0.0) + 0.8
    fig, ax = plt.subplots(figsize=(max(6.0, 0.95 * (right - left) + 2.5), max(3.0, 0.42 * len(labels) + 1.6)))
    handles = []
    for style, (color, label) in edge_styles.items():
        paths = [_curve(pos[s], pos[d]) for s, d, st in edges if st == style]
        if not paths:
            continue
        ax.add_collection(PathCollection(paths, facecolors="none", edgecolors=color, linewidths=0.7,
                                         alpha=0.5 if len(paths) > 50 else 0.8, zorder=1))
        handles.append(Line2D([], [], color=color, lw=1.5, label=f"{label} ({len(paths)})"))
    colors = node_colors or {}
    for n in nodes:
        x, y = pos[n]
        face = colors.get(n, KIND_COLORS[kind_of(n)])
        ax.text(x, y, n, ha="center", va="center", fontsize=6.5, zorder=3,
                bbox=dict(boxstyle="round,pad=0.25", fc=face, ec="0.3", lw=0.5))
    for color, label in node_legend or [(KIND_COLORS["attention"], "attention head"),
                                         (KIND_COLORS["mlp"], "MLP")]:
        handles.append(Patch(fc=color, ec="0.3", label=label))
    ax.set_yticks([y for y, _ in labels], [label for _, label in labels], fontsize=7)
    ax.set_xticks([])
    ax.set_xlim(left, right)
    ax.set_ylim(-0.7, len(labels) - 0.3)
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_title(title, fontsize=9)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    fig.tight_layout()
    save_figure(fig, path, Path(path).suffix.lstrip(".") or "svg")
    plt.close(fig)
