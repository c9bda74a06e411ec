"""``results/audit.csv`` and the audit figures from the audit JSONs of clue.audit.

The CSV is tidy: one row per (forget, retain, method, analysis, kind, window or steps) with its
value. ``analysis`` is ``krs`` or ``krs_isolated`` (``kind`` m / W_V / A / m+A, ``layer`` the
window's centre, ``first_layer`` and ``last_layer`` its ends, ``value`` the KRS), ``relearn`` (``steps``, ``value`` the FE), or
``forget_bleu`` / ``unrelated_bleu`` (``steps``: the epoch snapshot, 0 before training; ``kind``
the stage; ``value`` the BLEU against the starting model's answers).

Figures, per forget x retain pair: ``krs_{forget}__{retain}.svg`` (KRS against the restored
window, one panel per method, a curve per restoration, the isolated variant dashed) and
``relearn_{forget}__{retain}.svg`` (FE against relearning steps, one line per method, the base
model's relearning as the reference) and ``global_{forget}__{retain}.svg`` (BLEU after every
epoch on forget and unrelated questions, one line per method).
"""

import csv
import sys
from collections import defaultdict
from pathlib import Path

from clue import io
from clue.errors import ClueError

COLUMNS = ["forget", "retain", "method", "analysis", "kind", "layer", "first_layer", "last_layer", "steps",
           "value"]
KIND_COLORS = {"m": "tab:red", "W_V": "tab:green", "A": "tab:blue", "m+A": "tab:purple", "layer": "0.4"}
KIND_LABELS = {"m": "m (MLP coefficients)", "W_V": "W_V (value vectors)", "A": "A (attention output)",
               "m+A": "m and A", "layer": "whole layers"}


def rows_of(record):
    """The CSV rows of one audit JSON; columns a row does not use stay empty (write_csv)."""
    base = {k: record[k] for k in ("forget", "retain", "method")}
    rows = []
    krs = record.get("krs")
    if krs:
        for win in krs["windows"]:
            for analysis in ("krs", "krs_isolated"):
                for kind, value in win[analysis].items():
                    rows.append({**base, "analysis": analysis, "kind": kind, "layer": win["layer"],
                                 "first_layer": win["layers"][0], "last_layer": win["layers"][1], "value": value})
    for point in record.get("relearn", []):
        rows.append({**base, "analysis": "relearn", "steps": point["steps"], "value": point["FE"]})
    for i, snap in enumerate(record.get("global_effect") or []):
        for key in ("forget_bleu", "unrelated_bleu"):
            rows.append({**base, "analysis": key, "kind": snap["stage"], "steps": i, "value": snap[key]})
    return rows


def write_csv(rows, path):
    with io.atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if r.get(k) is None else r[k] for k in COLUMNS})


def draw_krs(records, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    audited = [r for r in records if r.get("krs")]
    n = max(1, len(audited))
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows + 0.6), squeeze=False, sharey=True)
    for ax, rec in zip(axes.flat, audited):
        krs = rec["krs"]
        x = [w["layer"] for w in krs["windows"]]
        if krs["nothing_unlearned"]:
            ax.text(0.5, 0.5, "nothing unlearned\n(logits equal the base model's)", ha="center",
                    va="center", transform=ax.transAxes, fontsize=8)
        else:
            for kind in krs["kinds"]:
                ax.plot(x, [w["krs"][kind] for w in krs["windows"]], "o-", color=KIND_COLORS[kind],
                        label=KIND_LABELS[kind], ms=3)
                if kind in krs["windows"][0]["krs_isolated"]:
                    ax.plot(x, [w["krs_isolated"][kind] for w in krs["windows"]], "o--",
                            color=KIND_COLORS[kind], alpha=0.6, ms=2, label=f"{kind}, isolated")
        ax.axhline(0, color="0.7", lw=0.5)
        ax.set_title(rec["method"], fontsize=9)
        ax.set_xlabel("layer restored" if krs["window"] == 1 else
                      f"centre of the {krs['window']}-layer window restored", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("KRS", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(audited):]:
        ax.axis("off")
    handles, labels = next(((a.get_legend_handles_labels()) for a in axes.flat if a.get_lines()), ([], []))
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=7, frameon=False)
    first = records[0]
    fig.suptitle(f"Knowledge recovery (KRS) on {first['forget']} (retain {first['retain']}): restore "
                 f"from the base model, {first['questions']} questions x {first['tokens']} tokens", fontsize=9)
    fig.tight_layout(rect=(0, 0.1 if handles else 0, 1, 0.95))
    io.save_figure(fig, path, Path(path).suffix.lstrip(".") or "svg")
    plt.close(fig)


def draw_relearn(records, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for rec in records:
        if not rec.get("relearn"):
            continue
        is_base = rec["method"] == "origin"
        ax.plot([p["steps"] for p in rec["relearn"]], [p["FE"] for p in rec["relearn"]],
                "k--" if is_base else "o-", ms=3, label="base model (reference)" if is_base else rec["method"])
    ax.set_xlabel("relearning steps on held-out forget-set text")
    ax.set_ylabel("FE (1 - forget accuracy)")
    ax.set_title(f"Relearning {records[0]['forget']} (retain {records[0]['retain']})", fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    io.save_figure(fig, path, Path(path).suffix.lstrip(".") or "svg")
    plt.close(fig)


def draw_global_effect(records, path):
    """BLEU against the starting model's answers after every epoch, forget questions and
    unrelated questions side by side (Hong et al., Figure 2)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for rec in records:
        snaps = rec.get("global_effect") or []
        if not snaps:
            continue
        for ax, key in zip(axes, ("forget_bleu", "unrelated_bleu")):
            ax.plot(range(len(snaps)), [s[key] for s in snaps], "o-", ms=3, label=rec["method"])
    for ax, title in zip(axes, ("forget-set questions", "unrelated questions (general tasks)")):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epochs of unlearning")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel("BLEU vs the starting model's answers")
    if any(rec.get("global_effect") for rec in records):
        axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    else:   # say why the panels are empty rather than draw bare axes
        for ax in axes:
            ax.text(0.5, 0.5, "no checkpoint recorded answers per epoch\n(unlearn.trajectory_* set to 0, or a "
                    "checkpoint\nmade before the global effect was recorded)", ha="center", va="center",
                    fontsize=8, transform=ax.transAxes)
    fig.suptitle(f"Global effect of unlearning {records[0]['forget']} (retain {records[0]['retain']})", fontsize=9)
    fig.tight_layout()
    io.save_figure(fig, path, Path(path).suffix.lstrip(".") or "svg")
    plt.close(fig)


def add_arguments(parser):
    parser.add_argument("--audits", nargs="+", required=True, help="audit JSONs (clue audit)")
    parser.add_argument("--csv", required=True, help="results/audit.csv")
    parser.add_argument("--figures", required=True, help="folder for krs_*.svg and relearn_*.svg")


def main(args):
    records = [io.read_json(p) for p in args.audits]
    for path, rec in zip(args.audits, records):
        missing = [k for k in ("forget", "retain", "method", "krs", "relearn") if k not in rec]
        if missing:
            raise ClueError(f"{path}: not an audit JSON (missing {', '.join(missing)})")
    write_csv([row for rec in records for row in rows_of(rec)], args.csv)
    by_pair = defaultdict(list)
    for rec in records:
        by_pair[(rec["forget"], rec["retain"])].append(rec)
    Path(args.figures).mkdir(parents=True, exist_ok=True)
    for (forget, retain), recs in sorted(by_pair.items()):
        draw_krs(recs, Path(args.figures) / f"krs_{forget}__{retain}.svg")
        draw_relearn(recs, Path(args.figures) / f"relearn_{forget}__{retain}.svg")
        draw_global_effect(recs, Path(args.figures) / f"global_{forget}__{retain}.svg")
    print(f"clue audit-table: {len(records)} audits -> {args.csv}, figures in {args.figures}", file=sys.stderr)
    return 0
