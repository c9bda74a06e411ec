"""Stage `robust`: the robust-FE table and figure from the attack records (clue.attack) of every
method on each pair. For each method: FE on the asked half of the forget set's test facts as
trained, after the relearning attack and after quantization, each with a 95% bootstrap interval
(Table 1's bootstrap over facts: clue.reports.table1), and the share of the knowledge unlearning
removed that each attack brings back, (FE as trained - FE attacked) / (FE as trained - Origin's
FE). CLUE minus every other method, paired on the same resampled facts, says which differences
are outside their intervals."""

import sys

from clue import io
from clue.errors import ClueError

KINDS = ("trained", "relearned", "quantized")
COLUMNS = ["forget", "retain", "method", "questions",
           *[f"{x}{s}" for k in KINDS for x in (f"FE_{k}",) for s in ("", "_lo", "_hi")],
           "recovered_relearned", "recovered_quantized", "KRS_max", "note"]


def krs_max(audit):
    """The audit's largest knowledge recovery score over its layer windows and the kinds of
    parameters it restores from the original model (Hong et al.; clue.audit): how much of the
    forgotten knowledge the best single restoration brings back. None without KRS curves."""
    krs = (audit or {}).get("krs")
    values = [v for w in (krs or {}).get("windows", []) for v in w["krs"].values() if v is not None]
    return max(values) if values else None


def _replicates(rec, kind):
    import numpy as np

    from clue.reports.table1 import _task_replicates

    correct = rec["correct"].get(kind)
    if not correct:
        return None
    return 1.0 - np.asarray(_task_replicates(correct, rec["forget"], rec["retain"], rec["forget"], rec.get("facts")))


def recovered(rec, origin, kind):
    """The share of what unlearning removed that ``kind`` brings back; None where unlearning
    removed nothing (FE as trained at or below Origin's)."""
    removed = rec["FE"]["trained"] - origin["FE"]["trained"]
    return None if removed <= 0 else (rec["FE"]["trained"] - rec["FE"][kind]) / removed


def rows(records, audits=None):
    """Rows of COLUMNS and the paired differences (CLUE minus each other method) of one pair;
    ``audits``: {method: audit record} of the same checkpoints (their KRS)."""
    from clue.reports.table1 import _interval

    origin = next((r for r in records if r["method"] == "origin"), None)
    if origin is None:
        raise ClueError(f"pair {records[0]['forget']} x {records[0]['retain']}: no attack record of Origin, whose FE "
                        "says how much knowledge there is to recover")
    out, reps = [], {}
    origin_trained = _replicates(origin, "trained")
    for rec in records:
        row = {"forget": rec["forget"], "retain": rec["retain"], "method": rec["method"], "questions": rec["questions"]}
        for k in KINDS:
            reps[(rec["method"], k)] = _replicates(rec, k)
            lo, hi = _interval(reps[(rec["method"], k)])
            row.update({f"FE_{k}": rec["FE"][k], f"FE_{k}_lo": lo, f"FE_{k}_hi": hi})
        notes = []
        for k in ("relearned", "quantized"):
            row[f"recovered_{k}"] = None if rec["method"] == "origin" else recovered(rec, origin, k)
        if rec["method"] != "origin" and row["recovered_relearned"] is None:
            notes.append("FE as trained is at or below Origin's: nothing was removed to recover")
        elif rec["method"] != "origin":
            # a share of a removal inside its own noise means nothing (a removal of 0.03 recovered
            # by 0.06 is "-2"): only a removal outside its paired interval gets one
            a = reps[(rec["method"], "trained")]
            lo, hi = _interval(a - origin_trained) if a is not None and origin_trained is not None else (None, None)
            if lo is not None and lo <= 0:
                row["recovered_relearned"] = row["recovered_quantized"] = None
                notes.append(f"FE as trained is Origin's {rec['FE']['trained'] - origin['FE']['trained']:+.3f} "
                             f"[{lo:+.2f}, {hi:+.2f}], inside the interval: no measurable removal, so no share recovered")
        row["KRS_max"] = krs_max((audits or {}).get(rec["method"]))
        row["note"] = "; ".join(notes)
        out.append(row)
    diffs = []
    if any(r["method"] == "clue" for r in records):
        for rec in records:
            if rec["method"] in ("clue", "origin"):
                continue
            for k in KINDS:
                a, b = reps[("clue", k)], reps[(rec["method"], k)]
                lo, hi = _interval(a - b) if a is not None and b is not None else (None, None)
                d = next(r for r in records if r["method"] == "clue")["FE"][k] - rec["FE"][k]
                diffs.append({"forget": rec["forget"], "retain": rec["retain"], "method": rec["method"], "FE": k,
                              "clue_minus_method": d, "lo": lo, "hi": hi,
                              "outside": lo is not None and (lo > 0 or hi < 0)})
    return out, diffs


def markdown(table, diffs, labels):
    cell = lambda r, k: (f"{r[f'FE_{k}']:.3f} [{r[f'FE_{k}_lo']:.2f}, {r[f'FE_{k}_hi']:.2f}]"  # noqa: E731
                         if r[f"FE_{k}_lo"] is not None else f"{r[f'FE_{k}']:.3f}")
    share = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    lines = ["# Robust forgetting: FE as trained, after relearning and after quantization", "",
             "FE = 1 - accuracy on the test questions of the half of the forget set's test facts that relearning "
             "does not see; [a, b]: 95% bootstrap interval over those facts. Recovered: the share of what unlearning "
             "removed (FE as trained - Origin's) that the attack brings back. KRS (max): the audit's largest "
             "knowledge recovery score over its layer windows and restored kinds (docs/audit.md; - without an "
             "audit of the checkpoint).", ""]
    for pair in dict.fromkeys((r["forget"], r["retain"]) for r in table):
        rs = [r for r in table if (r["forget"], r["retain"]) == pair]
        lines += [f"## {pair[0]} x {pair[1]} ({rs[0]['questions']} questions)", "",
                  "| Method | FE as trained | after relearning | recovered | after quantization | recovered | KRS (max) |",
                  "|---|---|---|---|---|---|---|"]
        for r in rs:
            lines.append(f"| {labels.get(r['method'], r['method'])} | {cell(r, 'trained')} | {cell(r, 'relearned')} | "
                         f"{share(r['recovered_relearned'])} | {cell(r, 'quantized')} | "
                         f"{share(r['recovered_quantized'])} | {share(r['KRS_max'])} |")
        noted = [f"{labels.get(r['method'], r['method'])}: {r['note']}" for r in rs if r["note"]]
        if noted:
            lines += ["", "Recovered '-': " + "; ".join(noted) + "."]
        ds = [d for d in diffs if (d["forget"], d["retain"]) == pair]
        if ds:
            outside = [f"{labels.get(d['method'], d['method'])} ({d['FE']}: {d['clue_minus_method']:+.3f} "
                       f"[{d['lo']:+.2f}, {d['hi']:+.2f}])" for d in ds if d["outside"]]
            lines += ["", "CLUE minus each method, paired on the same resampled facts; outside the 95% interval: "
                      + ("; ".join(outside) if outside else "none") + "."]
        lines.append("")
    return "\n".join(lines)


def figure(table, labels, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    pairs = list(dict.fromkeys((r["forget"], r["retain"]) for r in table))
    fig, axes = plt.subplots(len(pairs), 1, figsize=(7.5, 3.2 * len(pairs)), squeeze=False)
    for ax, pair in zip(axes[:, 0], pairs):
        rs = [r for r in table if (r["forget"], r["retain"]) == pair]
        x = np.arange(len(rs))
        for j, k in enumerate(KINDS):
            fe = np.array([r[f"FE_{k}"] for r in rs])
            lo = np.array([r[f"FE_{k}_lo"] if r[f"FE_{k}_lo"] is not None else r[f"FE_{k}"] for r in rs])
            hi = np.array([r[f"FE_{k}_hi"] if r[f"FE_{k}_hi"] is not None else r[f"FE_{k}"] for r in rs])
            ax.bar(x + (j - 1) * 0.27, fe, 0.27, yerr=[fe - lo, hi - fe], capsize=2,
                   label={"trained": "as trained", "relearned": "after relearning",
                          "quantized": "after quantization"}[k])
        ax.set_xticks(x, [labels.get(r["method"], r["method"]).split(" (")[0] for r in rs], rotation=30, ha="right",
                      fontsize=8)
        ax.set_ylabel("FE (asked half)")
        ax.set_title(f"{pair[0]} x {pair[1]}", fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    io.save_figure(fig, path)
    plt.close(fig)


def add_arguments(p):
    p.add_argument("--records", nargs="+", required=True, help="attack records (clue attack), Origin's included")
    p.add_argument("--audits", nargs="*", default=[], help="audit records (clue audit) of the same checkpoints: KRS")
    p.add_argument("--csv", required=True, help="the robust-FE table")
    p.add_argument("--differences", required=True, help="CLUE minus every other method, paired, with intervals")
    p.add_argument("--md", required=True, help="the table in Markdown")
    p.add_argument("--figure", required=True, help="FE as trained, after relearning and after quantization")


def main(args):
    import pandas as pd

    from clue.reports.table1 import method_labels

    records = [io.read_json(p) for p in args.records]
    audits = [io.read_json(p) for p in args.audits]
    table, diffs = [], []
    for pair in dict.fromkeys((r["forget"], r["retain"]) for r in records):
        krs = {a["method"]: a for a in audits if (a.get("forget"), a.get("retain")) == pair}
        t, d = rows([r for r in records if (r["forget"], r["retain"]) == pair], krs)
        table += t
        diffs += d
    with io.atomic_path(args.csv) as tmp:
        pd.DataFrame(table, columns=COLUMNS).to_csv(tmp, index=False, float_format="%.4f")
    with io.atomic_path(args.differences) as tmp:
        pd.DataFrame(diffs, columns=["forget", "retain", "method", "FE", "clue_minus_method", "lo", "hi",
                                     "outside"]).to_csv(tmp, index=False, float_format="%.4f")
    labels = method_labels()
    text = markdown(table, diffs, labels)
    with io.atomic_path(args.md) as tmp:
        tmp.write_text(text)
    figure(table, labels, args.figure)
    print(text, file=sys.stderr)
    return 0
