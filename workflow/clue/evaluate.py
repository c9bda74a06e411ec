"""Stage `evaluate`: lm-eval's ``simple_evaluate`` (model ``hf``) on a checkpoint.

Local tasks (every task with a data directory: the toy world, and real tasks converted by the
`data` stage) are evaluated through task YAMLs written here, one per task, over the task's
``test.jsonl``; standard lm-eval tasks (arc_easy, boolq, ...) are evaluated by name.

Metrics (DESIGN.md section 8): FE = 1 - forget accuracy, RU = retain accuracy, GU = mean accuracy
over the general tasks.
"""

import json
import os
import tempfile
from pathlib import Path

from clue import io
from clue.errors import ClueError

TASK_YAML = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {test_file}
test_split: test
output_type: multiple_choice
doc_to_text: prompt
doc_to_choice: choices
doc_to_target: label
metric_list:
  - metric: acc
metadata:
  version: 1.0
"""


# doc_to_text / doc_to_choice name the test.jsonl fields: lm-eval reads a field directly, where a
# Jinja template ("{{prompt}}") would be compiled anew for every document.


def lm_eval_task_name(task):
    return f"clue_{task}"


def run_lm_eval(checkpoint, tasks, data_root, params):
    """Accuracy of ``checkpoint`` on each task: {task: acc}. Tasks with a directory under
    ``data_root`` use a local YAML; the others must be lm-eval task names."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    local = {t: Path(data_root) / t / "test.jsonl" for t in tasks if (Path(data_root) / t / "test.jsonl").exists()}
    standard = [t for t in tasks if t not in local]
    with tempfile.TemporaryDirectory(prefix="clue-lm-eval-") as yaml_dir:
        for task, test_file in local.items():
            (Path(yaml_dir) / f"{task}.yaml").write_text(
                TASK_YAML.format(name=lm_eval_task_name(task), test_file=json.dumps(str(test_file.resolve()))))
        # Scanning lm-eval's hundreds of built-in task YAMLs is slow; skip it when every task is local.
        manager = TaskManager(include_path=yaml_dir, include_defaults=bool(standard))
        names = [lm_eval_task_name(t) if t in local else t for t in tasks]
        model_args = dict(pretrained=str(checkpoint), dtype=params["dtype"])
        out = lm_eval.simple_evaluate(
            model="hf", model_args=model_args, tasks=names, task_manager=manager,
            batch_size=params["batch_size"], device=params["device"], limit=params.get("limit"),
            log_samples=False, random_seed=params["seed"], numpy_random_seed=params["seed"],
            torch_random_seed=params["seed"], fewshot_random_seed=params["seed"], bootstrap_iters=0)
    results = out["results"]
    acc = {}
    for task, name in zip(tasks, names):
        if name not in results:
            raise ClueError(f"lm-eval returned no result for task {name}")
        acc[task] = float(results[name]["acc,none"])
    return acc, lm_eval.__version__ if hasattr(lm_eval, "__version__") else _version("lm_eval")


def _version(dist):
    from importlib.metadata import version

    return version(dist.replace("_", "-"))


def pair_metrics(accuracy, forget, retain, general):
    """FE, RU, GU from per-task accuracy (DESIGN.md section 8)."""
    missing = [t for t in [forget, retain, *general] if t not in accuracy]
    if missing:
        raise ClueError(f"no accuracy for task(s) {', '.join(missing)}")
    return dict(FE=1.0 - accuracy[forget], RU=accuracy[retain],
                GU=sum(accuracy[g] for g in general) / len(general) if general else None)


def add_arguments(p):
    p.add_argument("--checkpoint", nargs="+", help="HF checkpoint directory to evaluate (lm-eval runs on it); "
                   "several, with as many --method and --out, are evaluated one after the other in this process")
    p.add_argument("--from-eval", help="reuse per-task accuracies from this eval JSON instead of running "
                   "lm-eval (the Origin rows reuse one evaluation of the base model)")
    p.add_argument("--tasks", nargs="*", default=[], help="tasks to evaluate (with --checkpoint and no pair)")
    p.add_argument("--forget", help="forget task of the pair")
    p.add_argument("--retain", help="retain task of the pair")
    p.add_argument("--general", nargs="*", default=[], help="general tasks (GU averages them)")
    p.add_argument("--data-root", required=True, help="results/{model}/data")
    p.add_argument("--method", nargs="+", default=["origin"], help="the Table 1 row of each checkpoint")
    p.add_argument("--base-dir", help="base model directory: unlearned_param_pct is measured against it")
    p.add_argument("--params", required=True, help="JSON: the `evaluate` config section")
    p.add_argument("--out", nargs="+", required=True, help="eval JSON, one per checkpoint")


def evaluate_one(args, params, checkpoint, method, out):
    pair = args.forget is not None
    tasks = [args.forget, args.retain, *args.general] if pair else list(args.tasks)
    if args.from_eval:
        source = io.read_json(args.from_eval)
        accuracy, version, checkpoint = source["accuracy"], source["lm_eval_version"], source["checkpoint"]
    else:
        accuracy, version = run_lm_eval(checkpoint, tasks, args.data_root, params)
    record = dict(method=method, checkpoint=str(checkpoint), lm_eval_version=version)
    if pair:
        record.update(forget=args.forget, retain=args.retain, general=args.general,
                      **pair_metrics(accuracy, args.forget, args.retain, args.general))
        record["accuracy"] = {t: accuracy[t] for t in tasks}
        pct = None
        if method != "origin" and args.base_dir:
            from clue.masks import unlearned_param_pct_dirs

            pct = unlearned_param_pct_dirs(args.base_dir, checkpoint)
        record["unlearned_param_pct"] = pct
    else:
        record["accuracy"] = accuracy
    io.write_json(out, record)
    print(json.dumps({k: v for k, v in record.items() if k in ("FE", "RU", "GU")} or record["accuracy"]))


def main(args):
    params = json.loads(args.params)
    if args.from_eval:
        checkpoints = [None]
    elif args.checkpoint:
        checkpoints = args.checkpoint
    else:
        raise ClueError("give --checkpoint (run lm-eval) or --from-eval (reuse an evaluation)")
    if not len(checkpoints) == len(args.method) == len(args.out):
        raise ClueError(f"give as many --method ({len(args.method)}) and --out ({len(args.out)}) as "
                        f"checkpoints ({len(checkpoints)})")
    # one process for several checkpoints: importing torch, transformers and lm-eval takes longer
    # than evaluating a toy checkpoint (evaluate.jobs: per_pair)
    for checkpoint, method, out in zip(checkpoints, args.method, args.out):
        evaluate_one(args, params, checkpoint, method, out)
