"""Stage `tune-select`: apply the config's selection rule (``tune.rule``) to every method's grid
points of the tune stage, all scored on validation questions, for every tuning pair given. The
rule, the same for every method: among the points whose RU and GU (``at_least``) reach the given
fraction of Origin's validation value, the one with the highest ``maximize`` metric (FE by
default); ties go to the smaller learning rate, then to fewer epochs. When no point meets the
floors, the point that keeps the most of Origin's utility (the highest of its smallest ratio to
Origin) is taken, and the CSV says so.

Per pair directory (results/{model}/tune/{forget}__{retain}/) it writes ``selected.json``
({method: {lr, epochs, met_rule}}, what Table 1's trainings read) and a trade-off figure
(validation FE against GU for every point, each method's Pareto frontier, the budget floors).
Over all pairs: ``tuning.csv`` (every point, its validation scores and the 95% bootstrap interval
of its FE, whether it met the floors and was selected) and the budget table (CSV and Markdown):
for each budget b of ``tune.budgets``, each method's highest validation FE among the points whose
RU and GU are at least b x Origin's.

FE intervals: 2,000 resamples of the forget set's validation questions with Table 1's bootstrap
(clue.reports.table1): its facts, each with all of its questions, where the questions name the
fact they ask (a fact asked in several forms), else the questions. A tune record from before the
per-question results were kept has no interval (empty cells, and a note says so)."""

from pathlib import Path

from clue import io
from clue.errors import ClueError
from clue.reports.table1 import BOOTSTRAP

COLUMNS = ["forget", "retain", "method", "lr", "epochs", "FE", "FE_lo", "FE_hi", "n_validation", "RU", "GU",
           "meets_rule", "selected", "note"]
BUDGET_COLUMNS = ["forget", "retain", "budget", "method", "lr", "epochs", "FE", "FE_lo", "FE_hi", "RU", "GU", "note"]
NO_INTERVAL = "no per-question validation results in the tune record: no FE interval"
COMPARE_BUDGET = 0.95   # the budget at which the Markdown compares CLUE's FE interval with the others'
NAN = float("nan")


def select(points, origin, rule):
    """(index of the chosen point, whether it met the floors) for one method's points."""
    def ratio(p, m):
        return p[m] / origin[m] if origin[m] else float("inf")

    meets = [all(ratio(p, m) >= f for m, f in rule["at_least"].items()) for p in points]
    key = rule["maximize"]
    candidates = [i for i, ok in enumerate(meets) if ok]
    if candidates:
        # the highest metric; ties: the smaller learning rate, then fewer epochs
        return min(candidates, key=lambda i: (-points[i][key], points[i]["lr"], points[i]["epochs"])), meets
    fallback = max(range(len(points)), key=lambda i: (min((ratio(points[i], m) for m in rule["at_least"]),
                                                          default=0.0), -points[i]["lr"], -points[i]["epochs"]))
    return fallback, meets


def budget_choice(points, origin, budget):
    """Index of the point with the highest FE among those whose RU and GU are at least ``budget`` x
    Origin's (ties as select()), or None when no point is within the budget."""
    chosen, meets = select(points, origin, {"maximize": "FE", "at_least": {"RU": budget, "GU": budget}})
    return chosen if meets[chosen] else None


def pareto(points):
    """Indices of the points that no other point dominates in (GU higher, FE higher), i.e. none is
    at least as high in both and higher in one; sorted by GU, then FE. Points without GU or FE are
    left out."""
    valid = [i for i, p in enumerate(points) if p["GU"] is not None and p["FE"] is not None
             and p["GU"] == p["GU"] and p["FE"] == p["FE"]]   # x == x: not NaN
    keep, best = [], float("-inf")   # best: the highest FE at a strictly higher GU
    by_gu = sorted(valid, key=lambda i: -points[i]["GU"])
    k = 0
    while k < len(by_gu):
        gu = points[by_gu[k]]["GU"]
        same = [i for i in by_gu[k:] if points[i]["GU"] == gu]
        top = max(points[i]["FE"] for i in same)
        if top > best:
            keep += [i for i in same if points[i]["FE"] == top]
            best = top
        k += len(same)
    return sorted(keep, key=lambda i: (points[i]["GU"], points[i]["FE"]))


def fe_interval(correct, forget, retain, facts=None):
    """(lo, hi): the 95% bootstrap interval of FE = 1 - accuracy over the forget set's validation
    questions (``correct``: 0/1 each), by Table 1's bootstrap (its facts resampled where ``facts``
    names one per question); (nan, nan) without per-question results."""
    from clue.reports.table1 import _interval, _task_replicates

    if not correct:
        return NAN, NAN
    return _interval(1.0 - _task_replicates(correct, forget, retain, forget, facts))


def interval_note(records):
    """What the FE intervals of one pair's tune records resample, in words."""
    for rec in records:
        correct = next((p["forget_correct"] for p in rec["points"] if p.get("forget_correct")), None)
        if correct:
            facts = rec.get("forget_facts")
            unit = (f", by fact ({len(set(facts))} facts, each with all of its questions)"
                    if facts is not None and len(facts) == len(correct) else "")
            return (f"FE intervals: {BOOTSTRAP:,} resamples of the {len(correct)} validation questions of "
                    f"{rec['forget']}{unit}.")
    return f"FE intervals: none ({NO_INTERVAL})."


def tuning_rows(method_records, origin_record, rule):
    """Rows of COLUMNS for every point of every method (Origin first), and {method: {lr, epochs,
    met_rule}} selected."""
    origin = origin_record["points"][0]
    forget, retain = origin_record.get("forget"), origin_record.get("retain")

    def row(rec, p, **extra):
        correct = p.get("forget_correct")
        lo, hi = fe_interval(correct, forget, retain, rec.get("forget_facts"))
        note = "; ".join(x for x in (extra.pop("note", ""), "" if correct else NO_INTERVAL) if x)
        return {"forget": forget, "retain": retain, "method": rec["method"], "lr": p["lr"], "epochs": p["epochs"],
                "FE": p["FE"], "FE_lo": lo, "FE_hi": hi, "n_validation": len(correct) if correct else None,
                "RU": p["RU"], "GU": p["GU"], **extra, "note": note}

    rows = [row({**origin_record, "method": "origin"}, {**origin, "lr": None, "epochs": 0}, meets_rule=None,
                selected=None, note="the base model")]
    selected = {}
    for rec in method_records:
        points = rec["points"]
        if not points:
            raise ClueError(f"method {rec['method']}: the tune stage scored no grid point")
        chosen, meets = select(points, origin, rule)
        note = "" if meets[chosen] else "no point met the floors: the one keeping most of Origin's utility"
        selected[rec["method"]] = {"lr": points[chosen]["lr"], "epochs": points[chosen]["epochs"],
                                   "met_rule": bool(meets[chosen])}
        rows += [row(rec, p, meets_rule=meets[i], selected=i == chosen, note=note if i == chosen else "")
                 for i, p in enumerate(points)]
    return rows, selected


def budget_rows(rows, budgets):
    """Rows of BUDGET_COLUMNS from one pair's tuning rows: for each budget and method, the point
    with the highest FE among those whose RU and GU are at least budget x Origin's."""
    origin = next(r for r in rows if r["method"] == "origin")
    methods = list(dict.fromkeys(r["method"] for r in rows if r["method"] != "origin"))
    out = []
    for b in budgets:
        for m in methods:
            points = [r for r in rows if r["method"] == m]
            i = budget_choice(points, origin, b)
            base = {"forget": origin["forget"], "retain": origin["retain"], "budget": b, "method": m}
            if i is None:
                out.append({**base, **dict.fromkeys(BUDGET_COLUMNS[4:-1]),
                            "note": f"none: no grid point keeps RU and GU at least {b:g} x Origin's"})
                continue
            p = points[i]
            out.append({**base, **{k: p[k] for k in BUDGET_COLUMNS[4:-1]},
                        "note": "" if p["n_validation"] else NO_INTERVAL})
    return out


def _has_interval(r):
    return r["FE_lo"] is not None and r["FE_lo"] == r["FE_lo"]


def budgets_markdown(pairs, budgets, methods):
    """The budget table in Markdown, one table per pair (``pairs``: [(tuning rows, budget rows,
    interval_note)]): rows methods, columns budgets, cells "FE [lo, hi] (lr, epochs)"; under each,
    which methods' FE intervals at the 0.95 budget do not overlap CLUE's."""
    from clue.reports.table1 import method_labels

    labels = method_labels()
    compare = COMPARE_BUDGET if COMPARE_BUDGET in budgets else max(budgets)
    lines = ["# Tuning: the best validation FE within a utility budget", "",
             "Each cell: among a method's grid points whose validation RU and GU are at least the budget times "
             "Origin's, the one with the highest validation FE (ties: the smaller learning rate, then fewer "
             "epochs), as FE [95% bootstrap interval] (lr, epochs); none: no grid point is within the budget.", ""]
    for rows, brows, note in pairs:
        origin = rows[0]
        lines += [f"## {origin['forget']} x {origin['retain']}", "",
                  f"Origin (validation): FE {_num(origin['FE'])}, RU {_num(origin['RU'])}, GU {_num(origin['GU'])}. "
                  + note, "",
                  "| Method | " + " | ".join(f"RU, GU ≥ {b:g} x Origin" for b in budgets) + " |",
                  "|" + "---|" * (1 + len(budgets))]
        shown = [m for m in methods if any(r["method"] == m for r in brows)]
        cell = {(r["method"], r["budget"]): r for r in brows}
        for m in shown:
            cells = []
            for b in budgets:
                r = cell[(m, b)]
                if r["FE"] is None:
                    cells.append("none")
                    continue
                ci = f" [{r['FE_lo']:.2f}, {r['FE_hi']:.2f}]" if _has_interval(r) else " [no interval]"
                cells.append(f"{r['FE']:.3f}{ci} ({r['lr']:g}, {r['epochs']})")
            lines.append(f"| {labels.get(m, m)} | " + " | ".join(cells) + " |")
        lines += ["", overlap_line(cell, shown, compare, labels), ""] if "clue" in shown else [""]
    return "\n".join(lines)


def _num(v):
    return "-" if v is None or v != v else f"{v:.3f}"


def overlap_line(cell, methods, budget, labels):
    """Which methods' FE intervals at ``budget`` do not overlap CLUE's, in words."""
    head = f"At the {budget:g} budget"
    clue = cell[("clue", budget)]
    if clue["FE"] is None:
        return f"{head}, CLUE has no grid point within the budget: no FE intervals to compare."
    if not _has_interval(clue):
        return f"{head}, CLUE's point has no FE interval: none to compare."
    lo, hi = clue["FE_lo"], clue["FE_hi"]
    apart, overlapping, without = [], [], []
    for m in methods:
        if m == "clue":
            continue
        r = cell[(m, budget)]
        if r["FE"] is None or not _has_interval(r):
            without.append(labels.get(m, m))
        elif r["FE_hi"] < lo or r["FE_lo"] > hi:
            apart.append(labels.get(m, m))
        else:
            overlapping.append(labels.get(m, m))
    parts = [f"{head}, CLUE's 95% FE interval is [{lo:.2f}, {hi:.2f}].",
             f"Intervals that do not overlap it: {', '.join(apart) if apart else 'none'}."]
    if overlapping:
        parts.append(f"Intervals that overlap it: {', '.join(overlapping)}.")
    if without:
        parts.append(f"No point or no interval at this budget: {', '.join(without)}.")
    return " ".join(parts)


def frontier(df, rule, budgets, title, path):
    """Validation FE against GU for every grid point of every method (a thin vertical bar: its FE
    interval), each method's Pareto frontier as a line, its selected point ringed; Origin, and the
    budget floors (b x Origin's GU) as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from clue.reports.table1 import method_labels

    labels = method_labels()
    df = df.astype({k: float for k in ("FE", "FE_lo", "FE_hi", "RU", "GU")})   # None (no general task): NaN
    origin = df[df.method == "origin"].iloc[0]
    fig, ax = plt.subplots(figsize=(6.8, 4.6))
    for k, (method, g) in enumerate(df[df.method != "origin"].groupby("method", sort=False)):
        color = f"C{k % 10}"
        ci = g.dropna(subset=["FE_lo", "FE_hi"])
        if len(ci):
            ax.errorbar(ci.GU, ci.FE, yerr=[(ci.FE - ci.FE_lo).clip(lower=0), (ci.FE_hi - ci.FE).clip(lower=0)],
                        fmt="none", ecolor=color, elinewidth=0.6, alpha=0.5)
        ax.scatter(g.GU, g.FE, s=18, color=color, alpha=0.55, label=labels.get(method, method).split(" (")[0])
        front = g.iloc[pareto(g[["GU", "FE"]].to_dict("records"))]
        ax.plot(front.GU, front.FE, color=color, linewidth=1.2)
        chosen = g[g.selected == True]  # noqa: E712 (a pandas mask)
        ax.scatter(chosen.GU, chosen.FE, s=90, facecolors="none", edgecolors=color, linewidths=1.8)
    ax.scatter([origin.GU], [origin.FE], marker="*", s=120, color="black", label="Origin", zorder=3)
    if origin.GU == origin.GU:   # not NaN: the pair has general tasks
        ax.axvline(origin.GU, color="grey", linewidth=0.8)
        for b in budgets:
            ax.axvline(origin.GU * b, color="grey", linestyle="--", linewidth=0.8)
            ax.annotate(f"{b:g}", (origin.GU * b, 1.0), xycoords=("data", "axes fraction"), fontsize=6.5,
                        ha="center", va="bottom", color="0.35")
        ax.plot([], [], color="grey", linestyle="--", linewidth=0.8, label="budget floors (b x Origin's GU)")
        if "GU" in rule["at_least"] and rule["at_least"]["GU"] not in budgets:
            ax.axvline(origin.GU * rule["at_least"]["GU"], color="grey", linestyle=":", linewidth=0.8,
                       label=f"rule's GU floor ({rule['at_least']['GU']:g} x Origin)")
    ax.plot([], [], color="grey", linewidth=1.2, label="Pareto frontier (GU, FE)")
    ax.set_xlabel("general utility (validation)")
    ax.set_ylabel("forget efficacy (validation)")
    ax.set_title(title, fontsize=10, pad=14)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    io.save_figure(fig, path)
    plt.close(fig)


def read_pair(pair_dir, methods):
    """(origin record, [method records]) of one tuning pair directory; ClueError when a record
    names another method or pair."""
    origin = io.read_json(pair_dir / "origin.json")
    records = []
    for m in methods:
        path = pair_dir / f"{m}.json"
        rec = io.read_json(path)
        if rec.get("method") != m:
            raise ClueError(f"{path}: a tune record of method {rec.get('method')!r}, not {m!r}")
        if (rec.get("forget"), rec.get("retain")) != (origin.get("forget"), origin.get("retain")):
            raise ClueError(f"{path}: tuned on {rec.get('forget')} x {rec.get('retain')}, but "
                            f"{pair_dir / 'origin.json'} on {origin.get('forget')} x {origin.get('retain')}")
        records.append(rec)
    return origin, records


def add_arguments(p):
    p.add_argument("--pair-dirs", nargs="+", required=True,
                   help="tuning pair directories results/{model}/tune/{forget}__{retain}/ (origin.json and "
                   "{method}.json from clue tune)")
    p.add_argument("--methods", nargs="+", required=True, help="the tuned methods: {method}.json of every pair")
    p.add_argument("--tune-params", default="{}", help="the `tune` config section as JSON (its rule and budgets)")
    p.add_argument("--selected", nargs="+",
                   help="write the rule's choice of each method into these files, one per method (in the order "
                   "of --methods) of the one --pair-dirs: {rule, pair, methods: {method: {lr, epochs, ...}}}; "
                   "without --csv nothing else is written")
    p.add_argument("--csv", help="every grid point of every pair, its validation scores and FE interval")
    p.add_argument("--budgets-csv", help="the best FE of each method within each utility budget (tidy)")
    p.add_argument("--budgets-md", help="the budget table in Markdown, one table per pair")
    p.add_argument("--figures", nargs="+", help="validation FE against GU, one figure per pair, in the order of --pair-dirs")


def main(args):
    import pandas as pd

    from clue.tune import DEFAULTS, check_budgets, check_rule

    tune = io.with_defaults(io.json_params(args.tune_params, "tune"), DEFAULTS, "tune", strict=True)
    rule = check_rule(tune["rule"])
    budgets = check_budgets(tune["budgets"])
    report = (args.csv, args.budgets_csv, args.budgets_md, args.figures)
    if any(report) and not all(report):
        raise ClueError("give --csv, --budgets-csv, --budgets-md and --figures together (the tuning report)")
    if not args.selected and not all(report):
        raise ClueError("give --selected (the choice of each method), the tuning report (--csv, --budgets-csv, "
                        "--budgets-md, --figures), or both")
    if args.selected and (len(args.pair_dirs) != 1 or len(args.selected) != len(args.methods)):
        raise ClueError(f"--selected takes one file per method ({len(args.methods)}) of one --pair-dirs "
                        f"({len(args.pair_dirs)} given, {len(args.selected)} files)")
    if args.figures and len(args.figures) != len(args.pair_dirs):
        raise ClueError(f"give as many --figures ({len(args.figures)}) as --pair-dirs ({len(args.pair_dirs)}): "
                        "one figure per tuning pair, in the same order")
    pairs = []
    for pair_dir in map(Path, args.pair_dirs):
        origin, records = read_pair(pair_dir, args.methods)
        rows, selected = tuning_rows(records, origin, rule)
        pairs.append((pair_dir, origin, rows, selected, budget_rows(rows, budgets), interval_note([origin, *records])))
    for pair_dir, origin, rows, selected, _, _ in pairs:
        name = f"{origin['forget']}__{origin['retain']}"
        for method, out in zip(args.methods, args.selected or []):
            # one file a method: a method's trainings read its own choice, so a method tuned again
            # retrains nothing else
            io.write_json(out, {"rule": rule, "pair": name, "methods": {method: selected[method]}})
        for method, s in selected.items():
            print(f"{name} {method}: lr {s['lr']:g}, {s['epochs']} epochs"
                  + ("" if s["met_rule"] else " (no point met the floors)"))
    if not all(report):
        return 0
    for (pair_dir, origin, rows, selected, _, _), figure in zip(pairs, args.figures):
        frontier(pd.DataFrame(rows, columns=COLUMNS), rule, budgets,
                 f"Tuning on validation questions: {origin['forget']} x {origin['retain']}", figure)
    points = pd.DataFrame([r for p in pairs for r in p[2]], columns=COLUMNS)
    chosen = pd.DataFrame([r for p in pairs for r in p[4]], columns=BUDGET_COLUMNS)
    with io.atomic_path(args.csv) as tmp:
        points.to_csv(tmp, index=False, float_format="%.4g")
    with io.atomic_path(args.budgets_csv) as tmp:
        chosen.to_csv(tmp, index=False, float_format="%.4g")
    with io.atomic_path(args.budgets_md) as tmp:
        tmp.write_text(budgets_markdown([(rows, brows, note) for _, _, rows, _, brows, note in pairs], budgets,
                                        args.methods) + "\n")
    return 0
