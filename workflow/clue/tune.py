"""Stage `tune`: every method's learning rate and epochs, chosen on validation questions by one
rule fixed in the config before any test number is seen (config section ``tune``).

For each method of the config and each learning rate of ``tune.grid.lr``, one training on each
tuning pair (``tune.pairs``: one a forget set, default the paper pair for all) runs for the
largest epoch count of ``tune.grid.epochs``; after every epoch whose count is in the grid, the
model answers the validation questions (``validation.jsonl``: disjoint from test, train,
refusals and circuit pairs) of the forget set, the retain set and the general tasks, so one training gives every
epoch count (the epochs are read off, not retrained). FE, RU and GU are computed from them as in
Table 1. The grid is the same for every method: ``epochs`` counts all epochs, CLUE's first
``unlearn.epochs_forget`` of them on its forget mask and the rest on its conflict mask, a
baseline's all on its own parameters; CLUE gets no knob the others lack.

Every point also keeps whether each validation question of the forget set was answered correctly
(``forget_correct``, in file order), and the record the fact each of them asks where the questions
name one (``forget_facts``): what the 95% bootstrap interval of the point's validation FE
resamples (clue.reports.tuning).

``clue tune-select`` (clue.reports.tuning) then applies ``tune.rule`` to every method's points and
reports, for every budget of ``tune.budgets``, the best FE that keeps that fraction of Origin's
RU and GU.
"""

import json
import sys
import time
from pathlib import Path

from clue import io
from clue.errors import ClueError
from clue.names import suggest

METRICS = ("FE", "RU", "GU")
DEFAULTS = {
    "grid": None,          # {lr: [...], epochs: [...]}; null: no tuning (Table 1 uses unlearn's settings)
    "methods": None,       # the methods tuned; null: every trained method of the config
    "pairs": None,         # [forget__retain], one a forget set; null: the paper pair for all
    "rule": {"maximize": "FE", "at_least": {"RU": 0.95, "GU": 0.95}},
    "budgets": [0.95, 0.90, 0.80],   # fractions of Origin's RU and GU: the budget table's columns
}
GRID_KEYS = ("lr", "epochs")


def check_grid(grid, epochs_forget, key="tune.grid"):
    """The grid as {lr: sorted floats, epochs: sorted ints}; ClueError naming the key."""
    if not isinstance(grid, dict) or not grid:
        raise ClueError(f"config key {key}: give a grid of settings, e.g. {{lr: [1e-4, 1e-3], epochs: [2, 4, 6]}}")
    unknown = sorted(set(grid) - set(GRID_KEYS))
    if unknown:
        raise ClueError(f"config key {key}.{unknown[0]}: unknown setting{suggest(unknown[0], GRID_KEYS)}; the grid "
                        f"tunes {', '.join(GRID_KEYS)}")
    out = {}
    for name in GRID_KEYS:
        values = grid.get(name)
        if not isinstance(values, list) or not values:
            raise ClueError(f"config key {key}.{name}: an empty or missing list; give at least one value")
        if name == "lr" and not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in values):
            raise ClueError(f"config key {key}.lr: learning rates must be positive numbers, not {values!r}")
        if name == "epochs" and not all(isinstance(v, int) and not isinstance(v, bool) and v >= max(1, epochs_forget)
                                        for v in values):
            raise ClueError(f"config key {key}.epochs: epoch counts must be integers of at least "
                            f"unlearn.epochs_forget ({epochs_forget}) and 1, not {values!r}")
        out[name] = sorted(set(values))
    return out


def check_rule(rule, key="tune.rule"):
    """The selection rule; ClueError naming the key when it names a metric that does not exist."""
    if not isinstance(rule, dict) or set(rule) - {"maximize", "at_least"}:
        raise ClueError(f"config key {key}: give maximize (a metric) and at_least ({{metric: fraction of Origin's}})")
    target = rule.get("maximize", "FE")
    if target not in METRICS:
        raise ClueError(f"config key {key}.maximize: unknown metric {target!r}{suggest(target, METRICS)}; "
                        f"known: {', '.join(METRICS)}")
    floors = rule.get("at_least", {}) or {}
    for metric, value in floors.items():
        if metric not in METRICS:
            raise ClueError(f"config key {key}.at_least.{metric}: unknown metric{suggest(metric, METRICS)}; "
                            f"known: {', '.join(METRICS)}")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise ClueError(f"config key {key}.at_least.{metric}: a non-negative fraction of Origin's value, "
                            f"not {value!r}")
    return {"maximize": target, "at_least": dict(floors)}


def check_budgets(budgets, key="tune.budgets"):
    """The utility budgets as a list of floats in (0, 1]; ClueError naming the key and the bad value."""
    if not isinstance(budgets, list) or not budgets:
        raise ClueError(f"config key {key}: give a non-empty list of fractions of Origin's RU and GU in (0, 1], "
                        f"e.g. [0.95, 0.9, 0.8], not {budgets!r}")
    for i, b in enumerate(budgets):
        if not isinstance(b, (int, float)) or isinstance(b, bool) or not 0 < b <= 1:
            raise ClueError(f"config key {key}: {b!r} (item {i}) is not a fraction in (0, 1]")
        if b in budgets[:i]:
            raise ClueError(f"config key {key}: {b!r} (item {i}) is given twice")
    return [float(b) for b in budgets]


def validation_facts(data_root, task):
    """The fact each validation question of ``task`` asks, in file order; None unless every one names one."""
    path = Path(data_root) / task / "validation.jsonl"
    if not path.is_file():
        return None   # validation_scores names the missing questions
    records = io.read_jsonl(path)
    return [r["fact"] for r in records] if records and all("fact" in r for r in records) else None


def validation_scores(model, tokenizer, forget, retain, general, data_root, eval_params):
    """FE, RU, GU of ``model`` on the validation questions, as Table 1 computes them on test, and
    ``forget_correct``: whether each forget validation question was answered correctly (0/1, file
    order; None if lm-eval gave no per-question result)."""
    from clue.evaluate import local_test_files, pair_metrics, run_lm_eval

    tasks = list(dict.fromkeys([forget, *retain.split("+"), *general]))
    files = local_test_files(tasks, data_root, split="validation")
    missing = [t for t in tasks if t not in files]
    if missing:
        raise ClueError(f"task(s) {', '.join(missing)} have no validation questions under {data_root}: the tune "
                        "stage scores local tasks only")
    result = run_lm_eval(model, tokenizer, tasks, files, eval_params)
    m = pair_metrics(result.acc, {}, forget, retain, general)
    return {**{k: m[k] for k in METRICS}, "forget_correct": result.correct.get(forget)}


def tune_method(args, unlearn_params, grid, eval_params):
    """Every grid point of one method: {"method", "points": [{lr, epochs, FE, RU, GU, forget_correct}]}."""
    from clue.unlearn import unlearn

    wanted = set(grid["epochs"])
    points = []
    for lr in grid["lr"]:
        p = dict(unlearn_params, lr=lr, epochs_conflict=max(grid["epochs"]) - unlearn_params["epochs_forget"])

        def score(model, tokenizer, epochs, lr=lr):
            if epochs in wanted:
                was_training = model.training
                model.eval()
                points.append({"lr": lr, "epochs": epochs, **validation_scores(
                    model, tokenizer, args.forget, args.retain, args.general, args.data_root, eval_params)})
                model.train(was_training)

        t0 = time.time()
        unlearn(args.base_dir, Path(args.data_root) / args.forget, [Path(args.data_root) / t for t in args.retain.split("+")],
                args.method, None, p, masks_path=None if args.masks in (None, "none") else args.masks,
                progress=False, after_each_epoch=score)
        print(f"clue tune: {args.row} at lr {lr:g}: {len([q for q in points if q['lr'] == lr])} epoch counts scored "
              f"in {time.time() - t0:.1f} s", file=sys.stderr)
    return {"method": args.row, "trains": args.method, "points": points}


def add_arguments(p):
    p.add_argument("--base-dir", required=True, help="base checkpoint directory")
    p.add_argument("--data-root", required=True, help="results/{model}/data")
    p.add_argument("--forget", required=True, help="the tuning pair's forget task")
    p.add_argument("--retain", required=True, help="its retain task (several joined by +)")
    p.add_argument("--general", nargs="*", default=[], help="general tasks (GU)")
    p.add_argument("--method", help="what `clue unlearn --method` trains (clue, a forget loss); absent: score "
                   "the base model itself (Origin's validation values, which the rule's floors refer to)")
    p.add_argument("--row", help="the Table 1 row tuned (a localizer's row trains po inside its mask)")
    p.add_argument("--masks", help="the row's mask file (clue and the localizers)")
    p.add_argument("--unlearn-params", default="{}", help="the `unlearn` config section as JSON")
    p.add_argument("--tune-params", default="{}", help="the `tune` config section as JSON")
    p.add_argument("--eval-params", default="{}", help="the `evaluate` config section as JSON")
    p.add_argument("--out", required=True, help="the JSON of this method's grid points")


def main(args):
    from clue.evaluate import DEFAULTS as EVAL_DEFAULTS
    from clue.unlearn import resolve_params

    tune = io.with_defaults(io.json_params(args.tune_params, "tune"), DEFAULTS, "tune", strict=True)
    unlearn_params = resolve_params(io.json_params(args.unlearn_params, "unlearn"))
    grid = check_grid(tune["grid"], unlearn_params["epochs_forget"])
    facts = validation_facts(args.data_root, args.forget)
    eval_params = io.with_defaults(io.json_params(args.eval_params, "evaluate"), EVAL_DEFAULTS, "evaluate",
                                   strict=True)
    if args.method is None:
        from clue.evaluate import load_checkpoint

        model, tokenizer = load_checkpoint(args.base_dir, eval_params)
        record = {"method": "origin", "points": [{"lr": None, "epochs": 0, **validation_scores(
            model, tokenizer, args.forget, args.retain, args.general, args.data_root, eval_params)}]}
    else:
        record = tune_method(args, unlearn_params, grid, eval_params)
    n = {len(p["forget_correct"]) for p in record["points"] if p["forget_correct"] is not None}
    if facts is not None and len(n) == 1:
        facts = facts[:n.pop()]   # evaluate.limit: lm-eval scores the first questions of the file
    record.update(forget=args.forget, retain=args.retain, general=args.general, grid=grid, forget_facts=facts)
    io.write_json(args.out, record)
    print(json.dumps({"method": record["method"], "points": len(record["points"])}))
    return 0
