"""Stage `table1`: the eval JSONs of every forget x retain x method, as a tidy CSV
(``results/table1.csv``) and in the paper's layouts in Markdown (``results/table1.md``): Table 1
(FE / RU / GU), Table 6 (forget efficacy as 1-accuracy, MIA, 1-Rouge-L) and the utility as the
probability of the correct choice (RU_prob / GU_prob).

Intervals: every FE, RU and GU gets a 95% bootstrap interval over the test questions (each
task's questions resampled with replacement, 2,000 times, with a fixed seed; GU and a retain set
of several tasks resample every task independently), and CLUE's difference from every other
method of the same pair a paired interval: both methods are scored on the same resampled
questions, so what the two share cancels. A difference whose interval excludes 0 is marked.
With several seeds the interval combines both sources of spread, a two-level bootstrap: each
replicate draws the method's seeds with replacement (its checkpoints, the same draw for every task
of the pair), averages each question's score over the drawn seeds, and resamples the questions (or
facts) as above; the ± is the seeds' sample std.

Warnings (clue.caveats) stand under Table 1 in the Markdown and in the job's log: a forget set the
base model answers at or below chance (from Origin's eval JSON and the forget set's test file,
``--data``), a task whose choices the model cannot tell apart (the eval JSONs' ``choices_tied``),
a circuit below its floor on held-out pairs (``--circuits``) and an empty CLUE mask (``--masks``)."""

import sys

from clue import io
from clue.errors import ClueError

COLUMNS = ["forget", "retain", "method", "seed", "unlearned_param_pct", "FE", "RU", "GU", "MIA", "RougeL",
           "RU_prob", "GU_prob"]
METRICS = COLUMNS[4:]
INTERVAL_COLUMNS = [f"{m}_{end}" for m in ("FE", "RU", "GU") for end in ("lo", "hi")]
NORM_COLUMNS = ["FE_norm", "RU_norm", "GU_norm"]   # from lm-eval's length-normalised accuracy
DIFFERENCE_COLUMNS = ["forget", "retain", "method", "metric", "clue_minus_method", "lo", "hi", "outside"]
BOOTSTRAP = 2000

# (title, note, [(column header, CSV column, shown as 1 - value)]) of each Markdown table; the
# cells of one retain set repeat per retain set, as in the paper.
TABLES = [
    ("Table 1: performance overview of LLM unlearning",
     "FE = 1 - accuracy on the forget set (higher is better); RU = accuracy on the retain set's test "
     "split; GU = mean accuracy over the general tasks.",
     [("FE", "FE", False), ("RU", "RU", False), ("GU", "GU", False)]),
    ("Table 6: forget efficacy with 1-accuracy, MIA, Rouge-L",
     "1-accuracy = FE; MIA = 1 - AUC of Min-20% Prob separating the forget set's training texts from "
     "held-out texts (0.5: indistinguishable; higher is better; '-' without held-out texts); "
     "1-Rouge-L = 1 - mean Rouge-L recall of the correct answer in greedy generations on the forget "
     "questions (higher is better; the CSV's RougeL is the recall itself).",
     [("1-accuracy", "FE", False), ("MIA", "MIA", False), ("1-Rouge-L", "RougeL", True)]),
    ("Utility as the probability of the correct choice",
     "RU_prob = mean probability (softmax over the choices' log-likelihoods) of the correct choice on "
     "the retain set's test split; GU_prob = its mean over the general tasks that have one. Unlike "
     "accuracy it does not saturate at 1.",
     [("RU_prob", "RU_prob", False), ("GU_prob", "GU_prob", False)]),
]


def method_labels():
    """Row names as in the paper's Table 1; forget losses and localizers name theirs when they
    register."""
    from clue.localizers import LOCALIZERS
    from clue.losses import FORGET_LOSSES

    return {"origin": "Origin", **{n: x.label for n, x in {**FORGET_LOSSES, **LOCALIZERS}.items()},
            "clue": "CLUE", "random": "Random mask (CLUE's sizes)",
            **{f"random-{n}": f"Random mask ({x.label}'s sizes)" for n, x in LOCALIZERS.items()}}


def collect(eval_paths, first_seed=0, with_accuracy=False):
    """One row per eval JSON. ``seed`` is the checkpoint's unlearn.seed; the base model's rows
    (Origin, no seed) and eval JSONs from before repeats existed count as ``first_seed``."""
    import pandas as pd

    rows = []
    for path in eval_paths:
        rec = io.read_json(path)
        missing = [k for k in COLUMNS if k not in rec and k != "seed"]
        if missing:
            raise ClueError(f"{path}: eval JSON is missing {', '.join(missing)}")
        row = {k: rec.get(k) for k in COLUMNS + NORM_COLUMNS}
        if row["seed"] is None:
            row["seed"] = first_seed
        if with_accuracy:
            row["accuracy"] = rec.get("accuracy", {})
            row["general"] = rec.get("general", [])
            row["correct"] = rec.get("correct", {})
            row["facts"] = rec.get("facts", {})
            row["FE_forms"] = rec.get("FE_forms", {})
            row["choices_tied"] = rec.get("choices_tied", {})   # absent in eval JSONs from before it
        rows.append(row)
    extra = ["accuracy", "general", "correct", "facts", "FE_forms", "choices_tied"] if with_accuracy else []
    # float columns even where every value is null (MIA without held-out texts)
    return pd.DataFrame(rows, columns=COLUMNS + NORM_COLUMNS + extra).astype(
        {k: float for k in METRICS + NORM_COLUMNS} | {"seed": int})


# --------------------------------------------------------------------------- intervals

def _pair_tasks(row):
    return [row.forget], row.retain.split("+"), list(row.general)


def _resamples(forget, retain, task, n):
    """[BOOTSTRAP, n] question indices of one task, the same for every method of the pair (which
    is what makes the differences paired), from a seed fixed by the pair and the task."""
    import hashlib

    import numpy as np

    seed = int.from_bytes(hashlib.sha256(f"{forget}__{retain}/{task}".encode()).digest()[:8], "little")
    return np.random.default_rng(seed).integers(0, n, size=(BOOTSTRAP, n))


def _task_replicates(values, forget, retain, task, facts=None, draws=None):
    """[BOOTSTRAP] resampled accuracies of one task: its questions resampled, or, where each
    question names the fact it asks (a fact asked in several forms), its facts, each with all of
    its questions (the forms of one fact are not independent). ``values``: the questions' scores;
    with ``draws`` ([BOOTSTRAP, k] seed indices, _seed_draws), [k, n] scores of k seeds, each
    replicate averaging every question over its own draw of the seeds first."""
    import numpy as np

    values = np.asarray(values, dtype=float)
    if draws is not None:
        values = values[draws].mean(1)   # [BOOTSTRAP, n]: replicate b's seeds, averaged

    def pick(v, idx):   # resample: the same indices for every row of a draw, or a row each
        return v[idx] if draws is None else np.take_along_axis(v, idx, 1)

    n = values.shape[-1]
    if facts is None or len(facts) != n:
        return pick(values, _resamples(forget, retain, task, n)).mean(1)
    names = list(dict.fromkeys(facts))
    index = {f: i for i, f in enumerate(names)}
    counts = np.zeros(len(names))
    if draws is None:
        sums = np.zeros(len(names))
        for v, f in zip(values, facts):
            sums[index[f]] += v
            counts[index[f]] += 1
    else:
        onehot = np.zeros((n, len(names)))
        onehot[np.arange(n), [index[f] for f in facts]] = 1
        sums, counts = values @ onehot, onehot.sum(0)
    idx = _resamples(forget, retain, task, len(names))
    return pick(sums, idx).sum(1) / counts[idx].sum(1)


def _replicates(scores, forget, retain, tasks, facts=None, draws=None):
    """{FE, RU, GU: [BOOTSTRAP] replicates} of one method from per-question scores (``facts``:
    {task: the fact of each question} where known; ``draws``: as in _task_replicates, with each
    task's scores [k seeds, n]); None for a metric whose tasks lack them."""
    import numpy as np

    f, r, g = tasks
    facts = facts or {}

    def means(names):
        if not names or any(t not in scores for t in names):
            return None
        return np.mean([_task_replicates(scores[t], forget, retain, t, facts.get(t), draws) for t in names], axis=0)

    fe = means(f)
    return {"FE": None if fe is None else 1.0 - fe, "RU": means(r), "GU": means(g)}


def _interval(x):
    import numpy as np

    return (None, None) if x is None else tuple(float(v) for v in np.percentile(x, [2.5, 97.5]))


def _seed_scores(rows):
    """Per task, the [k, n] question scores of the rows (the k seeds of one method); tasks without
    per-question results of one length in every row are left out."""
    import numpy as np

    tasks = set.intersection(*(set(r.correct) for r in rows)) if rows else set()
    out = {}
    for t in tasks:
        vectors = [r.correct[t] for r in rows]
        if len({len(v) for v in vectors}) == 1:
            out[t] = np.asarray(vectors, dtype=float)
    return out


def add_intervals(df):
    """The INTERVAL_COLUMNS of every row (that checkpoint's own questions)."""
    for col in INTERVAL_COLUMNS:
        df[col] = float("nan")
    for i, row in df.iterrows():
        reps = _replicates(row.correct, row.forget, row.retain, _pair_tasks(row), row.facts)
        for m in ("FE", "RU", "GU"):
            lo, hi = _interval(reps[m])
            if lo is not None:
                df.at[i, f"{m}_lo"], df.at[i, f"{m}_hi"] = lo, hi
    return df


def _seed_draws(forget, retain, method, k):
    """[BOOTSTRAP, k] seed indices of one method of a pair (drawn with replacement), from a seed
    fixed by the pair and the method: one draw for all the method's tasks."""
    import hashlib

    import numpy as np

    seed = int.from_bytes(hashlib.sha256(f"seeds/{forget}__{retain}/{method}".encode()).digest()[:8], "little")
    return np.random.default_rng(seed).integers(0, k, size=(BOOTSTRAP, k))


def seed_intervals(df):
    """{(forget, retain, method): {metric: (lo, hi)}} over question scores (with several seeds,
    seeds and questions resampled together), and {(forget, retain, method): replicates} for the
    paired differences."""
    out, reps = {}, {}
    for (f, r, m), block in df.groupby(["forget", "retain", "method"], sort=False):
        rows = list(block.itertuples())
        scores = _seed_scores(rows)
        if len(rows) == 1:   # one seed: its questions alone
            rep = _replicates({t: v[0] for t, v in scores.items()}, f, r, _pair_tasks(rows[0]), rows[0].facts)
        else:
            rep = _replicates(scores, f, r, _pair_tasks(rows[0]), rows[0].facts, _seed_draws(f, r, m, len(rows)))
        reps[(f, r, m)] = rep
        out[(f, r, m)] = {k: _interval(v) for k, v in rep.items()}
    return out, reps


def differences(df, methods):
    """CLUE minus every other method of each pair, on seed means, with paired 95% intervals:
    rows of DIFFERENCE_COLUMNS (none without a CLUE row)."""
    import pandas as pd

    mean = df.groupby(["forget", "retain", "method"], sort=False)[["FE", "RU", "GU"]].mean()
    _, reps = seed_intervals(df)
    rows = []
    for (f, r, m) in mean.index:
        if m == "clue" or (f, r, "clue") not in mean.index:
            continue
        for metric in ("FE", "RU", "GU"):
            a, b = reps[(f, r, "clue")][metric], reps[(f, r, m)][metric]
            lo, hi = _interval(None if a is None or b is None else a - b)
            diff = mean.loc[(f, r, "clue"), metric] - mean.loc[(f, r, m), metric]
            rows.append({"forget": f, "retain": r, "method": m, "metric": metric, "clue_minus_method": diff,
                         "lo": lo, "hi": hi, "outside": None if lo is None else bool(lo > 0 or hi < 0)})
    order = {m: i for i, m in enumerate(methods)}
    out = pd.DataFrame(rows, columns=DIFFERENCE_COLUMNS)
    return out.sort_values(["forget", "retain", "method"], key=lambda s: s.map(order) if s.name == "method" else s,
                           kind="stable").reset_index(drop=True)


def over_seeds(df):
    """Mean and sample std (NaN for one seed) of every metric per forget x retain x method."""
    g = df.groupby(["forget", "retain", "method"], sort=False)[METRICS]
    return g.mean(), g.std(ddof=1)


# --------------------------------------------------------------------------- warnings

def warnings(df, data_dirs=(), circuit_paths=(), mask_paths=()):
    """The warnings of clue.caveats about this table's numbers, in order: forget sets at or below
    chance for the base model (Origin's rows and each forget set's ``data_dirs`` test file), tasks
    whose choices tie (every row's ``choices_tied``), circuits below their floor on held-out pairs
    (``circuit_paths``, circuit JSONs) and empty CLUE masks (``mask_paths``, each
    ``.../masks/{forget}__{retain}/clue.safetensors``)."""
    from pathlib import Path

    from clue import caveats
    from clue.masks import mask_sizes

    out = []
    tests = {Path(d).name: Path(d) / "test.jsonl" for d in data_dirs}
    origin = df[df.method == "origin"]
    for forget in dict.fromkeys(df.forget):
        rows = origin[origin.forget == forget]
        if rows.empty or forget not in tests:
            continue
        row = rows.iloc[0]
        accuracy = (row.accuracy if "accuracy" in df.columns else {}).get(forget)
        if accuracy is None:
            continue
        correct = (row.correct if "correct" in df.columns else {}).get(forget)
        out.append(caveats.forget_set_at_chance(forget, accuracy, tests[forget], len(correct) if correct else None))

    if "choices_tied" in df.columns:
        labels = method_labels()
        roles, fractions = {}, {}
        for row in df.itertuples():
            tasks = ([(row.forget, "forget set")] + [(t, "retain set") for t in row.retain.split("+")]
                     + [(t, "general task") for t in row.general])
            for task, role in tasks:
                roles.setdefault(task, [])
                if role not in roles[task]:
                    roles[task].append(role)
                if task in row.choices_tied:
                    fractions.setdefault(task, []).append((labels.get(row.method, row.method), row.choices_tied[task]))
        out += [caveats.choices_tied(task, " and ".join(roles[task]), found) for task, found in fractions.items()]

    out += [caveats.circuit(io.read_json(path)) for path in circuit_paths]
    for path in mask_paths:
        pair = Path(path).parent.name
        out.append(caveats.empty_masks(pair, pair.split("__")[0], mask_sizes(path)))
    return [w for w in out if w]


def markdown(df, forget, retain, methods, intervals=None, diffs=None, warnings=None):
    """Each table of TABLES: one block per forget set, one row per method, its cells per retain
    set (mean +- std over the seeds when there are several, then the 95% interval over the test
    questions from ``intervals`` where there is one), and the unlearned parameter % (mean over
    the block's retain sets) as in the paper, ``warnings`` (lines) under Table 1; then CLUE's
    differences (``diffs``)."""
    labels = method_labels()
    mean, std = over_seeds(df)
    n_seeds = df.groupby(["forget", "retain", "method"], sort=False).size()
    intervals = intervals or {}

    def fmt(v, sd=None, ci=(None, None)):
        if v is None or v != v:   # v != v: NaN
            return "-"
        text = f"{v:.3f}" if sd is None or sd != sd else f"{v:.3f} ± {sd:.3f}"
        return text if ci[0] is None else f"{text} [{ci[0]:.2f}, {ci[1]:.2f}]"

    df = mean.reset_index()
    lines = []
    seeds_note = (f" Mean ± sample std over {n_seeds.max()} seeds (Origin, the base model, is evaluated once); "
                  "the intervals of these rows resample the seeds and the test questions together (a two-level "
                  "bootstrap), so they hold both sources of spread."
                  if n_seeds.max() > 1 else "")
    for title, note, cells in TABLES:
        lines += [f"# {title}", "", note + seeds_note, ""]
        header = "| Method | Unlearned parameter | " + " | ".join(f"{r} {h}" for r in retain for h, _, _ in cells) + " |"
        sep = "|" + "---|" * (2 + len(cells) * len(retain))
        for f in forget:
            lines += [f"## Forget set: {f}", "", header, sep]
            for m in methods:
                block = df[(df.forget == f) & (df.method == m)]
                pct = block.unlearned_param_pct.dropna()
                row = [labels.get(m, m), "-" if pct.empty else f"{pct.mean():.2f}%"]
                for r in retain:
                    found = block[block.retain == r]
                    if found.empty:
                        row += ["-"] * len(cells)
                        continue
                    sd = std.loc[(f, r, m)]
                    ci = intervals.get((f, r, m), {})
                    row += [fmt(1 - found.iloc[0][c] if flip else found.iloc[0][c], sd[c],
                                (None, None) if flip else ci.get(c, (None, None))) for _, c, flip in cells]
                lines.append("| " + " | ".join(row) + " |")
            lines.append("")
        if title.startswith("Table 1") and any(lo is not None for ci in intervals.values() for lo, _ in ci.values()):
            lines += ["[a, b]: 95% bootstrap interval over the test questions (2,000 resamples).", ""]
        if title.startswith("Table 1") and warnings:
            lines += ["# Warnings: numbers that may mean nothing", "",
                      *[f"- {w}" for w in warnings], ""]
    if diffs is not None and len(diffs):
        lines += ["# CLUE minus each method, with paired 95% intervals", "",
                  "Both methods scored on the same resampled test questions; * marks a difference whose "
                  "interval excludes 0. Positive FE: CLUE forgets more; positive RU / GU: CLUE keeps more.", ""]
        header = "| Method | " + " | ".join(f"{r} Δ{x}" for r in retain for x in ("FE", "RU", "GU")) + " |"
        for f in forget:
            block = diffs[diffs.forget == f]
            if block.empty:
                continue
            lines += [f"## Forget set: {f}", "", header, "|" + "---|" * (1 + 3 * len(retain))]
            for m in methods:
                rows = block[block.method == m]
                if rows.empty:
                    continue
                cells = [labels.get(m, m)]
                for r in retain:
                    for x in ("FE", "RU", "GU"):
                        d = rows[(rows.retain == r) & (rows.metric == x)]
                        if d.empty or d.iloc[0].clue_minus_method != d.iloc[0].clue_minus_method:
                            cells.append("-")
                            continue
                        d = d.iloc[0]
                        ci = "" if d.lo is None or d.lo != d.lo else f" [{d.lo:+.2f}, {d.hi:+.2f}]"
                        outside = d.outside is not None and d.outside == d.outside and bool(d.outside)
                        cells.append(f"{d.clue_minus_method:+.3f}{ci}{'*' if outside else ''}")
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
    norm = df.dropna(subset=NORM_COLUMNS, how="all") if set(NORM_COLUMNS) <= set(df.columns) else df.iloc[0:0]
    if len(norm):
        nmean = norm.groupby(["forget", "retain", "method"], sort=False)[NORM_COLUMNS].mean()
        lines += ["# Length-normalised accuracy", "",
                  "FE_norm, RU_norm, GU_norm: as FE, RU, GU with lm-eval's acc_norm (each choice's "
                  "log-likelihood per character), which does not favour short answers when answers take "
                  "several tokens.", ""]
        header = "| Method | " + " | ".join(f"{r} {x}" for r in retain for x in NORM_COLUMNS) + " |"
        for f in forget:
            lines += [f"## Forget set: {f}", "", header, "|" + "---|" * (1 + 3 * len(retain))]
            for m in methods:
                cells = [labels.get(m, m)]
                for r in retain:
                    cells += [fmt(nmean.loc[(f, r, m), c]) if (f, r, m) in nmean.index else "-" for c in NORM_COLUMNS]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


def table5(df):
    """Appendix F: every general task's accuracy, one row per checkpoint and task."""
    import pandas as pd

    rows = [{"forget": r.forget, "retain": r.retain, "method": r.method, "seed": r.seed, "task": t,
             "accuracy": r.accuracy[t]} for r in df.itertuples() for t in r.general]
    return pd.DataFrame(rows, columns=["forget", "retain", "method", "seed", "task", "accuracy"])


def table6(df):
    """Appendix G: forget efficacy as 1-accuracy, MIA and Rouge-L (and 1-Rouge-L, higher is better)."""
    out = df[["forget", "retain", "method", "seed"]].copy()
    out["1-accuracy"], out["MIA"], out["Rouge-L"], out["1-Rouge-L"] = df.FE, df.MIA, df.RougeL, 1 - df.RougeL
    return out


def add_arguments(p):
    p.add_argument("--evals", nargs="+", required=True, help="eval JSONs (results/{model}/eval/...)")
    p.add_argument("--forget", nargs="+", required=True)
    p.add_argument("--retain", nargs="+", required=True)
    p.add_argument("--methods", nargs="+", required=True)
    p.add_argument("--first-seed", type=int, default=0, help="the seed of the base model's (Origin) rows")
    p.add_argument("--csv", help="Table 1, tidy: a row per forget x retain x method x seed")
    p.add_argument("--md", help="Table 1 (and Table 6, probabilities) in the paper's layout, mean +- std over seeds")
    p.add_argument("--table5", help="CSV of every general task's accuracy per checkpoint (appendix F)")
    p.add_argument("--table6", help="CSV of 1-accuracy, MIA, Rouge-L per checkpoint (appendix G)")
    p.add_argument("--differences", help="CSV of CLUE minus every other method of each pair, with paired 95% "
                   "intervals over the test questions")
    p.add_argument("--data", nargs="*", default=[], help="the forget sets' data directories (results/{model}/data/"
                   "{task}): their test.jsonl gives chance, for the warning on a base model at or below it")
    p.add_argument("--circuits", nargs="*", default=[], help="Table 1's circuit JSONs: a warning for each below "
                   "circuit.min_faithfulness on its held-out pairs")
    p.add_argument("--masks", nargs="*", default=[], help="CLUE's mask files (results/{model}/masks/{forget}__"
                   "{retain}/clue.safetensors): a warning for each empty forget or conflict mask")


def main(args):
    if not (args.csv or args.md or args.table5 or args.table6 or args.differences):
        raise ClueError("give at least one output: --csv, --md, --table5, --table6 or --differences")
    df = collect(args.evals, args.first_seed, with_accuracy=True)
    order = {m: i for i, m in enumerate(args.methods)}
    df = df.sort_values(["forget", "retain", "method", "seed"],
                        key=lambda s: s.map(order) if s.name == "method" else s).reset_index(drop=True)
    if args.csv or args.md or args.differences:
        df = add_intervals(df)
        intervals, _ = seed_intervals(df)
        diffs = differences(df, args.methods)
    found = []
    if args.md:   # warned about once, by the job that writes the Markdown
        found = warnings(df, args.data, args.circuits, args.masks)
        for line in found:
            print(f"clue table1: warning: {line}", file=sys.stderr)
    forms = list(dict.fromkeys(f for d in df.FE_forms for f in d))
    for form in forms:   # FE in each form a forget question is asked in (Table 1's FE is their mean)
        df[f"FE_{form}"] = [d.get(form, float("nan")) for d in df.FE_forms]
    outputs = [(args.csv, lambda tmp: df[COLUMNS + INTERVAL_COLUMNS + NORM_COLUMNS + [f"FE_{f}" for f in forms]].to_csv(
                    tmp, index=False, float_format="%.4f")),
               (args.md, lambda tmp: tmp.write_text(markdown(df, args.forget, args.retain, args.methods, intervals,
                                                             diffs, found) + "\n")),
               (args.differences, lambda tmp: diffs.to_csv(tmp, index=False, float_format="%.4f")),
               (args.table5, lambda tmp: table5(df).to_csv(tmp, index=False, float_format="%.4f")),
               (args.table6, lambda tmp: table6(df).to_csv(tmp, index=False, float_format="%.4f"))]
    for path, write in outputs:
        if path:
            with io.atomic_path(path) as tmp:
                write(tmp)
    print(f"{len(df)} rows -> {', '.join(p for p, _ in outputs if p)}")
