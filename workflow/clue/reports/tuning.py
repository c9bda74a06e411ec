"""Stage `tune-select`: apply the config's selection rule (``tune.rule``) to every method's grid
points of the tune stage, all scored on validation questions. The rule, the same for every
method: among the points whose RU and GU (``at_least``) reach the given fraction of Origin's
validation value, the one with the highest ``maximize`` metric (FE by default); ties go to the
smaller learning rate, then to fewer epochs. When no point meets the floors, the point that keeps
the most of Origin's utility (the highest of its smallest ratio to Origin) is taken, and the CSV
says so. Writes ``selected.json`` ({method: {lr, epochs}}, what Table 1's trainings read),
``tuning.csv`` (every point, its validation scores, whether it met the floors and was selected)
and the trade-off figure (validation FE against GU for every point of every method)."""

from clue import io
from clue.errors import ClueError

COLUMNS = ["method", "lr", "epochs", "FE", "RU", "GU", "meets_rule", "selected", "note"]


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


def tuning_rows(method_records, origin_record, rule):
    """Rows of COLUMNS for every point of every method, and {method: {lr, epochs}} selected."""
    origin = origin_record["points"][0]
    rows, selected = [], {}
    for rec in method_records:
        points = rec["points"]
        if not points:
            raise ClueError(f"method {rec['method']}: the tune stage scored no grid point")
        chosen, meets = select(points, origin, rule)
        note = "" if meets[chosen] else "no point met the floors: the one keeping most of Origin's utility"
        selected[rec["method"]] = {"lr": points[chosen]["lr"], "epochs": points[chosen]["epochs"],
                                   "met_rule": bool(meets[chosen])}
        for i, p in enumerate(points):
            rows.append({"method": rec["method"], "lr": p["lr"], "epochs": p["epochs"], "FE": p["FE"], "RU": p["RU"],
                         "GU": p["GU"], "meets_rule": meets[i], "selected": i == chosen,
                         "note": note if i == chosen else ""})
    rows.insert(0, {"method": "origin", "lr": None, "epochs": 0, "FE": origin["FE"], "RU": origin["RU"],
                    "GU": origin["GU"], "meets_rule": None, "selected": None, "note": "the base model"})
    return rows, selected


def frontier(df, rule, title, path):
    """Validation FE against GU for every grid point of every method (the trade-off frontier);
    the selected point of each method ringed; Origin and the rule's GU floor as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from clue.reports.table1 import method_labels

    labels = method_labels()
    origin = df[df.method == "origin"].iloc[0]
    fig, ax = plt.subplots(figsize=(6.8, 4.6))
    for k, (method, g) in enumerate(df[df.method != "origin"].groupby("method", sort=False)):
        color = f"C{k % 10}"
        ax.scatter(g.GU, g.FE, s=18, color=color, alpha=0.55, label=labels.get(method, method).split(" (")[0])
        chosen = g[g.selected == True]  # noqa: E712 (a pandas mask)
        ax.scatter(chosen.GU, chosen.FE, s=90, facecolors="none", edgecolors=color, linewidths=1.8)
    ax.axvline(origin.GU, color="grey", linewidth=0.8)
    ax.scatter([origin.GU], [origin.FE], marker="*", s=120, color="black", label="Origin", zorder=3)
    if "GU" in rule["at_least"]:
        ax.axvline(origin.GU * rule["at_least"]["GU"], color="grey", linestyle="--", linewidth=0.8,
                   label=f"GU floor ({rule['at_least']['GU']:g} x Origin)")
    ax.set_xlabel("general utility (validation)")
    ax.set_ylabel("forget efficacy (validation)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    io.save_figure(fig, path)
    plt.close(fig)


def add_arguments(p):
    p.add_argument("--origin", required=True, help="the base model's validation JSON (clue tune without --method)")
    p.add_argument("--runs", nargs="+", required=True, help="every method's grid JSON (clue tune)")
    p.add_argument("--tune-params", default="{}", help="the `tune` config section as JSON (its rule)")
    p.add_argument("--selected", required=True, help="JSON {method: {lr, epochs}} to write")
    p.add_argument("--csv", required=True, help="every grid point and its validation scores")
    p.add_argument("--figure", required=True, help="validation FE against GU for every grid point")


def main(args):
    import pandas as pd

    from clue.tune import DEFAULTS, check_rule

    tune = io.with_defaults(io.json_params(args.tune_params, "tune"), DEFAULTS, "tune", strict=True)
    rule = check_rule(tune["rule"])
    origin = io.read_json(args.origin)
    records = [io.read_json(p) for p in args.runs]
    rows, selected = tuning_rows(records, origin, rule)
    df = pd.DataFrame(rows, columns=COLUMNS)
    with io.atomic_path(args.csv) as tmp:
        df.to_csv(tmp, index=False, float_format="%.4g")
    io.write_json(args.selected, {"rule": rule, "pair": f"{origin['forget']}__{origin['retain']}",
                                  "methods": selected})
    frontier(df, rule, f"Tuning on validation questions: {origin['forget']} x {origin['retain']}", args.figure)
    for method, s in selected.items():
        print(f"{method}: lr {s['lr']:g}, {s['epochs']} epochs" + ("" if s["met_rule"] else " (no point met the floors)"))
    return 0
