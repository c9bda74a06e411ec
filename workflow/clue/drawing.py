"""Node-level drawings of circuits, gate graphs and one pair's neuron categories.

A node is a neuron (an attention head ``a{L}.h{H}`` or an MLP ``m{L}``), ``embed`` or ``out``;
only nodes on some drawn edge are drawn, so a 30-layer model with a small circuit gives a small
picture. Rows are laid out bottom-up: ``embed``, then for each layer that has drawn nodes a row
of its attention heads and a row for its MLP (the MLP reads the heads' output of its own layer,
so it sits above them), then ``out``. Empty layers get no row; the y axis names every row. Every
node is a labelled box, so the picture is readable without a legend of positions.
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


def layout(nodes):
    """{node: (x, y)} and the row labels [(y, label)]: one row per (layer, heads|MLP) that has a
    node, heads in index order, each row centred on x = 0."""
    rows = {}
    for n in nodes:
        rows.setdefault(row_of(n), []).append(n)
    pos, labels = {}, []
    for y, key in enumerate(sorted(rows)):
        members = sorted(rows[key], key=lambda n: int(_HEAD.match(n).group(2)) if _HEAD.match(n) else 0)
        for i, n in enumerate(members):
            pos[n] = (i - (len(members) - 1) / 2, float(y))
        layer, part = key
        labels.append((float(y), "embed" if layer == -1 else "out" if layer == float("inf")
                       else f"layer {layer} {'MLP' if part else 'heads'}"))
    return pos, labels


def draw_nodes(edges, path, title, edge_styles, node_colors=None, node_legend=None):
    """Draw node-level ``edges`` [(src, dst, style)] to ``path`` (.svg or .png).

    ``edge_styles``: style -> (color, legend label); ``node_colors``: node -> face color (default:
    by kind, heads blue, MLPs red); ``node_legend``: [(color, label)] for the node colours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    nodes = sorted({n for s, d, _ in edges for n in (s, d)}, key=lambda n: (row_of(n), n))
    pos, labels = layout(nodes)
    width = max((abs(x) for x, _ in pos.values()), default=0) * 2 + 1
    fig, ax = plt.subplots(figsize=(max(6.0, 0.95 * width + 2.5), max(3.0, 0.42 * len(labels) + 1.6)))
    handles = []
    for style, (color, label) in edge_styles.items():
        segs = [(pos[s], pos[d]) for s, d, st in edges if st == style]
        if not segs:
            continue
        ax.add_collection(LineCollection(segs, colors=color, linewidths=0.7,
                                         alpha=0.5 if len(segs) > 50 else 0.8, zorder=1))
        handles.append(Line2D([], [], color=color, lw=1.5, label=f"{label} ({len(segs)})"))
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
    ax.set_xlim(-width / 2 - 0.3, width / 2 + 0.3)
    ax.set_ylim(-0.7, len(labels) - 0.3)
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_title(title, fontsize=9)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    fig.tight_layout()
    save_figure(fig, path, Path(path).suffix.lstrip(".") or "svg")
    plt.close(fig)
