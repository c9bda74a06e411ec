"""Stages `fig3`, `fig4` and `fig6`: the paper's sweeps. Figure 3 (section 6.2): CLUE on one forget
set with retain sets of 1 .. N tasks (each task of a set keeps its own retain circuit), plotted
against a fixed yardstick: forget efficacy, utility on the general corpus (the paper's MMLU: the
same test questions for every point) and general utility on the other general tasks; dashed lines
are CLUE and WAGLE trained with the general corpus itself as the retain set.

Figure 4: the pair's circuits found again at several target sparsities, each circuit's KL
divergence from the model on its held-out pairs, and the change in forget efficacy (and retain
utility) of CLUE run from them. Figure 6: forget efficacy, retain and general utility against the
fraction of parameters modified, for every localizer at several forget ratios and for CLUE, whose
ratio is not set directly: its points are the runs of Figure 4 (and Table 1's), at the unlearned
fraction each reached."""

from clue import io
from clue.errors import ClueError


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(plt, fig, title, path):
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    io.save_figure(fig, path)
    plt.close(fig)


def sparsity_rows(sparsities, circuits, clue_evals, origin_eval):
    """``circuits``: per sparsity, the circuit JSONs of the pair's tasks; ``clue_evals``: per
    sparsity, CLUE's eval JSON."""
    origin = io.read_json(origin_eval)
    rows = []
    for s, paths, ev in zip(sparsities, circuits, clue_evals):
        for path in paths:
            rec = io.read_json(path)
            if abs(rec["target_sparsity"] - s) > 1e-9:
                raise ClueError(f"{path}: circuit of target sparsity {rec['target_sparsity']}, expected {s}")
            rows.append({"sparsity": s, "kind": "circuit", "task": rec["task"], "mode": rec["mode"],
                         "achieved_sparsity": rec["achieved_sparsity"], "kl": rec["faithfulness"]["kl_circuit"],
                         "faithfulness": rec["faithfulness"]["faithfulness"]})
        rec = io.read_json(ev)
        rows.append({"sparsity": s, "kind": "clue", "FE": rec["FE"], "dFE": rec["FE"] - origin["FE"],
                     "RU": rec["RU"], "dRU": rec["RU"] - origin["RU"], "GU": rec["GU"],
                     "unlearned_param_pct": rec["unlearned_param_pct"]})
    return rows


def fig4(df, title, path):
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    circ = df[df.kind == "circuit"]
    for (task, mode), g in circ.groupby(["task", "mode"], sort=False):
        g = g.sort_values("sparsity")
        ax1.plot(g.sparsity, g.kl, marker="o", label=f"{task} ({mode})")
    ax1.set_xlabel("circuit target sparsity (fraction of edges removed)")
    ax1.set_ylabel("KL(model || circuit), held-out pairs")
    ax1.set_title("faithfulness: lower KL is more faithful", fontsize=10)
    ax1.legend(fontsize=7)
    clue = df[df.kind == "clue"].sort_values("sparsity")
    ax2.plot(clue.sparsity, clue.dFE, marker="o", label="Δ forget efficacy")
    ax2.plot(clue.sparsity, clue.dRU, marker="s", linestyle="--", label="Δ retain utility")
    ax2.axhline(0, color="grey", linewidth=0.8)
    ax2.set_xlabel("circuit target sparsity (fraction of edges removed)")
    ax2.set_ylabel("CLUE minus the base model")
    ax2.set_title("CLUE run from these circuits", fontsize=10)
    ax2.legend(fontsize=7)
    _finish(plt, fig, title, path)


def ratio_rows(methods, ratios, evals, clue_evals, clue_sparsities):
    """One row per localizer x ratio and per CLUE run, at its measured unlearned fraction."""
    rows = []
    for method, ratio, path in zip(methods, ratios, evals):
        rec = io.read_json(path)
        rows.append({"method": method, "requested_ratio": ratio, "circuit_sparsity": None,
                     "unlearned_fraction": rec["unlearned_param_pct"] / 100, "FE": rec["FE"], "RU": rec["RU"],
                     "GU": rec["GU"]})
    for sparsity, path in zip(clue_sparsities, clue_evals):
        rec = io.read_json(path)
        rows.append({"method": "clue", "requested_ratio": None, "circuit_sparsity": sparsity,
                     "unlearned_fraction": rec["unlearned_param_pct"] / 100, "FE": rec["FE"], "RU": rec["RU"],
                     "GU": rec["GU"]})
    return rows


def fig6(df, title, path):
    from clue.reports.table1 import method_labels

    plt = _plt()
    labels = method_labels()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), sharex=True)
    for ax, metric, name in zip(axes, ("FE", "RU", "GU"), ("forget efficacy", "retain utility", "general utility")):
        for method, g in df.groupby("method", sort=False):
            g = g.sort_values("unlearned_fraction")
            ax.plot(g.unlearned_fraction, g[metric], marker="o" if method == "clue" else ".",
                    linewidth=2 if method == "clue" else 1, label=labels.get(method, method).split(" (")[0])
        ax.set_xlabel("fraction of parameters modified")
        ax.set_ylabel(name)
    axes[0].legend(fontsize=7)
    _finish(plt, fig, title, path)


def _mean(accuracy, tasks, path):
    missing = [t for t in tasks if t not in accuracy]
    if missing:
        raise ClueError(f"{path}: no accuracy for task(s) {', '.join(missing)}")
    return sum(accuracy[t] for t in tasks) / len(tasks) if tasks else None


def retain_set_rows(clue_evals, references, yardstick, general):
    """One row per retain set (CLUE's eval JSONs) and per reference run (a method trained with the
    general corpus as its retain set): FE, utility on the yardstick tasks (the general corpus),
    general utility on the ``general`` tasks outside the yardstick, and RU over the set's own tasks
    (kept in the CSV; not comparable across sets, which train on it)."""
    others = [t for t in general if t not in yardstick]
    rows = []
    for kind, paths in (("retain set", clue_evals), ("general corpus", references)):
        for path in paths:
            rec = io.read_json(path)
            if kind == "retain set" and rec.get("method") != "clue":
                raise ClueError(f"{path}: expected CLUE's eval JSON, found method {rec.get('method')!r}")
            rows.append({"kind": kind, "method": rec["method"], "retain_set": rec["retain"],
                         "n_tasks": len(rec["retain"].split("+")), "FE": rec["FE"],
                         "corpus_utility": _mean(rec["accuracy"], yardstick, path),
                         "GU_other": _mean(rec["accuracy"], others, path), "RU_own": rec["RU"],
                         "unlearned_param_pct": rec["unlearned_param_pct"]})
    return rows


def fig3(df, title, path):
    from clue.reports.table1 import method_labels

    plt = _plt()
    labels = method_labels()
    panels = [("FE", "forget efficacy")]
    if df["corpus_utility"].notna().any():
        panels.append(("corpus_utility", "utility on the general corpus"))
    panels.append(("GU_other", "general utility (other general tasks)"))
    sets = df[df.kind == "retain set"]
    refs = df[df.kind == "general corpus"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.8), sharex=True)
    means = sets.groupby("n_tasks")[[m for m, _ in panels]].mean()
    colors = {"clue": "tab:blue", "wagle": "tab:orange"}
    for ax, (metric, name) in zip(axes, panels):
        ax.plot(sets.n_tasks, sets[metric], "o", color="tab:blue", alpha=0.4, label="CLUE, one retain set")
        ax.plot(means.index, means[metric], "-", color="tab:blue", linewidth=2, label="CLUE, mean over the sets")
        for _, r in refs.iterrows():
            ax.axhline(r[metric], linestyle="--", color=colors.get(r["method"], "grey"),
                       label=f"{labels.get(r['method'], r['method']).split(' (')[0]}, general corpus as retain set")
        ax.set_xlabel("tasks in the retain set")
        ax.set_ylabel(name)
        ax.set_xticks(sorted(sets.n_tasks.unique()))
    axes[0].legend(fontsize=7)
    _finish(plt, fig, title, path)


def add_arguments(p):
    p.add_argument("--figure", required=True, choices=["fig3", "fig4", "fig6"])
    p.add_argument("--pair", required=True, help="forget__retain")
    p.add_argument("--sparsities", nargs="+", type=float, default=[],
                   help="fig4: the target sparsities; fig6: the sparsity of each --clue-evals run (0: Table 1's)")
    p.add_argument("--circuits", nargs="*", default=[], help="fig4: circuit JSONs, the same number per sparsity")
    p.add_argument("--clue-evals", nargs="+", required=True,
                   help="CLUE's eval JSON of each sparsity run (fig4, fig6) or retain set (fig3)")
    p.add_argument("--references", nargs="*", default=[],
                   help="fig3: eval JSONs of methods trained with the general corpus as the retain set")
    p.add_argument("--yardstick", nargs="*", default=[], help="fig3: the general corpus's tasks (its utility)")
    p.add_argument("--general", nargs="*", default=[], help="fig3: the general tasks (GU averages those "
                   "outside --yardstick)")
    p.add_argument("--origin", help="fig4: the pair's Origin eval JSON")
    p.add_argument("--evals", nargs="*", default=[], help="fig6: eval JSON of each <localizer>-r<ratio>")
    p.add_argument("--methods", nargs="*", default=[], help="fig6: the localizer of each --evals")
    p.add_argument("--ratios", nargs="*", type=float, default=[], help="fig6: the ratio of each --evals")
    p.add_argument("--csv", required=True)
    p.add_argument("--out", required=True, help="the figure (.svg)")


def main(args):
    import pandas as pd

    forget, _, retain = args.pair.partition("__")
    if args.figure == "fig3":
        if args.references and not args.yardstick:
            raise ClueError("fig3: --references need --yardstick (the general corpus they were trained with)")
        if not [t for t in args.general if t not in args.yardstick]:
            raise ClueError("fig3: every --general task is in --yardstick; leave one for general utility")
        df = pd.DataFrame(retain_set_rows(args.clue_evals, args.references, args.yardstick, args.general))
        fig3(df, f"CLUE with retain sets of several tasks: forget {forget}", args.out)
        with io.atomic_path(args.csv) as tmp:
            df.to_csv(tmp, index=False, float_format="%.4f")
        print(f"{len(df)} rows -> {args.csv}, {args.out}")
        return
    if len(args.clue_evals) != len(args.sparsities):
        raise ClueError(f"give one --clue-evals per --sparsities ({len(args.clue_evals)} vs {len(args.sparsities)})")
    if args.figure == "fig4":
        if not args.origin or not args.circuits or len(args.circuits) % len(args.sparsities):
            raise ClueError("fig4 needs --origin and the same number of --circuits per sparsity")
        k = len(args.circuits) // len(args.sparsities)
        groups = [args.circuits[i * k:(i + 1) * k] for i in range(len(args.sparsities))]
        df = pd.DataFrame(sparsity_rows(args.sparsities, groups, args.clue_evals, args.origin))
        fig4(df, f"Circuit sparsity vs faithfulness and forget efficacy: {forget} x {retain}", args.out)
    else:
        if not len(args.evals) == len(args.methods) == len(args.ratios):
            raise ClueError("give as many --methods and --ratios as --evals")
        df = pd.DataFrame(ratio_rows(args.methods, args.ratios, args.evals, args.clue_evals, args.sparsities))
        fig6(df, f"Unlearning at various forget ratios: {forget} x {retain}", args.out)
    with io.atomic_path(args.csv) as tmp:
        df.to_csv(tmp, index=False, float_format="%.4f")
    print(f"{len(df)} rows -> {args.csv}, {args.out}")
