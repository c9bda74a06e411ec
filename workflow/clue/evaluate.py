"""Stage `evaluate`: lm-eval's ``simple_evaluate`` (model ``hf``) on a checkpoint, then the forget
efficacy metrics of the paper's appendix G on the same model, loaded once.

Local tasks (every task with a data directory: the toy world, and real tasks converted by the
`data` stage) are evaluated through task YAMLs written here, one per task, over the task's
``test.jsonl``; standard lm-eval tasks (arc_easy, boolq, ...) are evaluated by name.

Metrics (DESIGN.md section 8): FE = 1 - forget accuracy, RU = retain accuracy, GU = mean accuracy
over the general tasks; RU_prob and GU_prob, the same with the mean probability of the correct
choice (accuracy saturates at 1, this does not); MIA (Min-20% Prob AUC, forget set vs held-out
text) and RougeL (recall of greedy generations on the forget questions).
"""

import json
import logging
import os
import random
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from clue import io
from clue.errors import ClueError

DEFAULTS = dict(batch_size=64, device="cpu", dtype="float32", limit=None, seed=0, mia_samples=200,
                mia_max_length=512, max_new_tokens=8, jobs="per_checkpoint", autocast=None)
# Min-k% Prob with k = 20%: the MIA score of the paper's appendix G (Shi et al. 2023)
MIN_K = 0.2

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
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


# doc_to_text / doc_to_choice name the test.jsonl fields: lm-eval reads a field directly, where a
# Jinja template ("{{prompt}}") would be compiled anew for every document.


def lm_eval_task_name(task):
    return f"clue_{task}"


def check_test_file(path):
    """Every line of a local ``test.jsonl`` is {prompt: str, choices: >= 2 str, label: index}:
    checked here because lm-eval would fail deep inside, or silently score a bad label as wrong."""
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        raise ClueError(f"{path}: file not found") from None
    n = 0
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path} line {lineno}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ClueError(f"{where}: not valid JSON ({e})") from None
        if not isinstance(rec, dict):
            raise ClueError(f"{where}: not a JSON object")
        for key in ("prompt", "choices", "label"):
            if key not in rec:
                raise ClueError(f"{where}: missing field '{key}'")
        choices, label = rec["choices"], rec["label"]
        if not isinstance(rec["prompt"], str):
            raise ClueError(f"{where}: field 'prompt' must be a string, not {type(rec['prompt']).__name__}")
        if not (isinstance(choices, list) and len(choices) >= 2 and all(isinstance(c, str) for c in choices)):
            raise ClueError(f"{where}: field 'choices' must be a list of at least 2 strings")
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < len(choices):
            raise ClueError(f"{where}: field 'label' must be an integer index into choices "
                            f"(0..{len(choices) - 1}), not {label!r}")
        n += 1
    if n == 0:
        raise ClueError(f"{path}: no test records")


def local_test_files(tasks, data_root, split="test"):
    """{task: <split>.jsonl} of the tasks with a data directory (the test questions, or the
    validation questions that settings are chosen on), each file checked."""
    local = {t: Path(data_root) / t / f"{split}.jsonl" for t in tasks if (Path(data_root) / t).is_dir()}
    for path in local.values():
        check_test_file(path)
    return local


def load_checkpoint(checkpoint, params):
    """(model, tokenizer) on ``params['device']``: one load serves lm-eval and the forget efficacy
    metrics. A pretrained base directory only records its HF id or path (clue_base.json)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from clue.base_model import base_model_path
    from clue.losses import torch_device

    path = base_model_path(checkpoint) if (Path(checkpoint) / "clue_base.json").exists() else str(checkpoint)
    dtype = params["dtype"] if params["dtype"] == "auto" else getattr(torch, params["dtype"])
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(torch_device(params["device"]))
    return model.eval(), tokenizer


def prob_correct(samples):
    """Mean over documents of softmax(choice log-likelihoods)[gold], from lm-eval's per-sample
    ``filtered_resps`` ((log-likelihood, is_greedy) per choice). None for a task whose samples are
    not single-gold choice indices (winogrande's gold is a context, truthfulqa_mc2's several)."""
    import numpy as np

    probs = []
    for s in samples:
        gold, lls = s["target"], np.array([r[0] for r in s["filtered_resps"]], dtype=np.float64)
        if isinstance(gold, bool) or not isinstance(gold, int) or not 0 <= gold < len(lls):
            return None
        p = np.exp(lls - lls.max())
        probs.append(p[gold] / p.sum())
    return float(np.mean(probs)) if probs else None


class _Once(logging.Filter):
    """Lets each distinct message through once per process: lm-eval repeats the same warning for
    every checkpoint a process evaluates."""

    def __init__(self):
        super().__init__()
        self.seen = set()

    def filter(self, record):
        key = (record.levelno, record.getMessage())
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


def _no_progress_bars_in_logs():
    """lm-eval passes its progress bars an explicit ``disable=False``, so TQDM_DISABLE (clue.cli)
    cannot reach them: off a terminal, its modules get a tqdm that is always disabled."""
    import contextlib
    import sys
    from unittest import mock

    if sys.stderr.isatty():
        return contextlib.nullcontext()
    from tqdm import tqdm

    def quiet(*args, **kwargs):
        return tqdm(*args, **{**kwargs, "disable": True})

    stack = contextlib.ExitStack()
    for module in ("lm_eval.models.huggingface", "lm_eval.api.model", "lm_eval.api.task"):
        stack.enter_context(mock.patch(f"{module}.tqdm", quiet))
    return stack


def _lm_eval_logging():
    """lm-eval's warnings in the job log once each, through one handler (lm-eval's own setup adds
    a second one and would print them twice)."""
    import lm_eval.utils

    logger = logging.getLogger("lm_eval")
    if getattr(logger, "clue_configured", False):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("lm-eval %(levelname)s: %(message)s"))
    handler.addFilter(_Once())
    logger.handlers, logger.propagate, logger.clue_configured = [handler], False, True
    logger.setLevel(logging.WARNING)
    lm_eval.utils._LOGGING_CONFIGURED = True   # lm-eval's setup_logging then adds no handler


@dataclass
class LmEvalResult:
    """What one lm-eval run gives per task: accuracy, length-normalised accuracy (lm-eval's
    acc_norm: log-likelihood per character of each choice, which does not favour short answers
    when answers take several tokens), the probability of the correct choice, and whether each
    test question was answered correctly (0/1 in document order: what the intervals of Table 1
    resample)."""

    acc: dict
    prob: dict
    version: str
    acc_norm: dict = field(default_factory=dict)
    correct: dict = field(default_factory=dict)
    # the fraction of each task's questions whose choices all got the same log-likelihood: the
    # model cannot tell them apart (e.g. choices that tokenize alike), so its answer there means nothing
    tied: dict = field(default_factory=dict)
    # each question's choice log-likelihoods, in document order
    loglikelihoods: dict = field(default_factory=dict)


def mixed_precision(params):
    """``evaluate.autocast`` as a torch dtype (None: every product in the checkpoint's dtype)."""
    from clue.losses import autocast_dtype

    device = params.get("device", "cpu")
    return autocast_dtype(params.get("autocast"), "evaluate.autocast", None if device == "auto" else device.split(":")[0])


def run_lm_eval(model, tokenizer, tasks, test_files, params):
    """lm-eval on the loaded model, an LmEvalResult. Tasks in ``test_files`` (see
    local_test_files) use a local YAML; the others must be lm-eval task names."""
    from unittest import mock

    import lm_eval
    import torch.utils.collect_env  # noqa: F401  (patched below)
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _lm_eval_logging()
    standard = [t for t in tasks if t not in test_files]
    # lm-eval's own mixed precision: its forward passes run under torch.autocast at this dtype (and
    # with autocast disabled when it is None, whatever the caller's context)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=params["batch_size"],
              mixed_precision_dtype=mixed_precision(params))
    with tempfile.TemporaryDirectory(prefix="clue-lm-eval-") as yaml_dir:
        for task, test_file in test_files.items():
            (Path(yaml_dir) / f"{task}.yaml").write_text(
                TASK_YAML.format(name=lm_eval_task_name(task), test_file=json.dumps(str(test_file.resolve()))))
        # Scanning lm-eval's hundreds of built-in task YAMLs is slow; skip it when every task is local.
        manager = TaskManager(include_path=yaml_dir, include_defaults=bool(standard))
        names = [lm_eval_task_name(t) if t in test_files else t for t in tasks]
        # simple_evaluate records torch's collect_env report, which runs `pip list` and probes
        # for GPUs in subprocesses (~1 s per call, longer than evaluating a toy checkpoint); the
        # eval JSON does not keep that report, so skip collecting it.
        # It also runs `git describe` in the working directory for a git hash that the eval JSON
        # does not keep either; outside a git checkout that prints "fatal: not a git repository"
        # into every job log.
        with mock.patch("torch.utils.collect_env.get_pretty_env_info", return_value="not collected"), \
                mock.patch("lm_eval.evaluator.get_git_commit_hash", return_value=None), \
                _no_progress_bars_in_logs():
            out = lm_eval.simple_evaluate(
                model=lm, tasks=names, task_manager=manager, limit=params.get("limit"),
                log_samples=True, random_seed=params["seed"], numpy_random_seed=params["seed"],
                torch_random_seed=params["seed"], fewshot_random_seed=params["seed"], bootstrap_iters=0)
    results = out["results"]
    version = lm_eval.__version__ if hasattr(lm_eval, "__version__") else _version("lm_eval")
    r = LmEvalResult({}, {}, version)
    for task, name in zip(tasks, names):
        if name not in results:
            raise ClueError(f"lm-eval returned no result for task {name}")
        r.acc[task] = float(results[name]["acc,none"])
        if "acc_norm,none" in results[name]:
            r.acc_norm[task] = float(results[name]["acc_norm,none"])
        samples = sorted(out["samples"].get(name, []), key=lambda s: s["doc_id"])
        if samples and all("acc" in s for s in samples):
            r.correct[task] = [int(round(float(s["acc"]))) for s in samples]
        config = out["configs"].get(name, {})
        # only lm-eval's own multiple-choice scoring makes filtered_resps one log-likelihood per choice
        if config.get("output_type") == "multiple_choice" and not config.get("process_results"):
            p = prob_correct(samples)
            if p is not None:
                r.prob[task] = p
            if samples:
                r.loglikelihoods[task] = [[float(x[0]) for x in s["filtered_resps"]] for s in samples]
                r.tied[task] = sum(len(set(ll)) == 1 for ll in r.loglikelihoods[task]) / len(samples)
    return r


def _version(dist):
    from importlib.metadata import version

    return version(dist.replace("_", "-"))


def _batch_size(params):
    # evaluate.batch_size may be lm-eval's "auto"; the metrics here then batch by 16
    return params["batch_size"] if isinstance(params["batch_size"], int) else 16


def min_k_prob(model, tokenizer, texts, batch_size, max_length, k=MIN_K):
    """Min-k% Prob of each text: the mean of its lowest k% token log-probabilities (at least one
    token), each token scored given its prefix; texts are cut to ``max_length`` tokens."""
    import torch

    from clue.losses import collate, encode_text, to_device, token_logprobs

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scores = []
    for start in range(0, len(texts), batch_size):
        encoded = [tuple(x[:max_length] for x in encode_text(tokenizer, t)) for t in texts[start:start + batch_size]]
        with torch.no_grad():
            logp, scored = token_logprobs(model, to_device(collate(encoded, pad), model.device))
        for row, keep in zip(logp, scored):
            values = row[keep].sort().values
            scores.append(values[:max(1, int(len(values) * k))].mean().item())
    return scores


def auc(positive, negative):
    """Area under the ROC curve of scores where ``positive`` should score higher (ties count 1/2)."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score([1] * len(positive) + [0] * len(negative), list(positive) + list(negative)))


def mia(model, tokenizer, data_dir, params):
    """(MIA, note) of a forget set, as reported in the paper's appendix G (after Jia et al.): MIA =
    1 - AUC of Min-20% Prob separating forget-set members (train.jsonl ``text``) from held-out
    non-members (holdout.jsonl ``text``), members positive. Higher is better unlearning: 0.5 means
    the forget set is indistinguishable from text the model never saw; below 0.5 it still looks
    like training data (the base model: ~0.42 in the paper's Table 6); towards 1 it is less likely
    than unseen text (GA: ~0.95). MIA is None, and ``note`` says why, without held-out text."""
    holdout = Path(data_dir) / "holdout.jsonl"
    if not holdout.exists():
        return None, f"no {holdout}: no held-out text to tell the forget set from"
    nonmembers = [r["text"] for r in io.read_jsonl(holdout, required=("text",))]
    if not nonmembers:
        return None, f"{holdout} is empty: no held-out text to tell the forget set from"
    members = [r["text"] for r in io.read_jsonl(Path(data_dir) / "train.jsonl", required=("text",))]
    n = params["mia_samples"]
    # one generator per side, so the members drawn do not depend on the holdout's size
    members = io.seeded_sample(members, n, random.Random(params["seed"]), Path(data_dir) / "train.jsonl")
    nonmembers = io.seeded_sample(nonmembers, n, random.Random(params["seed"]), holdout)
    members, nonmembers = (min_k_prob(model, tokenizer, texts, _batch_size(params), params["mia_max_length"])
                           for texts in (members, nonmembers))
    return 1.0 - auc(members, nonmembers), None


def greedy_generations(model, tokenizer, prompts, max_new_tokens, batch_size):
    """Greedy continuations (new tokens only, decoded) of each prompt, batched with left padding."""
    import torch

    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # Llama tokenizers ship none; pads are masked
    out = []
    for start in range(0, len(prompts), batch_size):
        enc = tokenizer(prompts[start:start + batch_size], padding=True, padding_side="left",
                        return_tensors="pt", return_token_type_ids=False).to(model.device)
        with torch.no_grad():
            ids = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        out += tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return out


def rouge_l_recall(references, generations):
    """Mean Rouge-L recall (rouge_score's tokenization: lower-cased alphanumeric words) of each
    reference in its generation. Lower is better unlearning."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    recalls = [scorer.score(ref, gen)["rougeL"].recall for ref, gen in zip(references, generations, strict=True)]
    return sum(recalls) / len(recalls)


def forget_efficacy(model, tokenizer, data_dir, params):
    """MIA, mia_note and RougeL of one forget set (the paper's Table 6, beside 1-accuracy); RougeL
    scores the correct choice of each forget test question in the greedy generation after its
    prompt."""
    import torch

    records = io.read_jsonl(Path(data_dir) / "test.jsonl")[:params["limit"] or None]  # lm-eval's limit
    dtype = mixed_precision(params)
    with torch.autocast(model.device.type, dtype=dtype, enabled=dtype is not None):
        value, note = mia(model, tokenizer, data_dir, params)
        generations = greedy_generations(model, tokenizer, [r["prompt"] for r in records],
                                         params["max_new_tokens"], _batch_size(params))
    return dict(MIA=value, mia_note=note,
                RougeL=rouge_l_recall([r["choices"][r["label"]] for r in records], generations))


def pair_metrics(accuracy, prob, forget, retain, general):
    """FE, RU, GU from per-task accuracy and RU_prob, GU_prob from per-task probability of the
    correct choice (DESIGN.md section 8). GU_prob averages the general tasks that have one."""
    retained = retain.split("+")   # a retain set of several tasks (Figure 3): RU is their mean
    missing = [t for t in [forget, *retained, *general] if t not in accuracy]
    if missing:
        raise ClueError(f"no accuracy for task(s) {', '.join(missing)}")
    general_prob = [prob[g] for g in general if g in prob]
    retain_prob = [prob[t] for t in retained if t in prob]
    return dict(FE=1.0 - accuracy[forget], RU=sum(accuracy[t] for t in retained) / len(retained),
                GU=sum(accuracy[g] for g in general) / len(general) if general else None,
                RU_prob=sum(retain_prob) / len(retain_prob) if len(retain_prob) == len(retained) else None,
                GU_prob=sum(general_prob) / len(general_prob) if general_prob else None)


def question_meta(data_root, tasks):
    """({task: [form of each test question]}, {task: [fact of each test question]}) for the local
    tasks whose test questions carry them (a fact asked in several forms)."""
    forms, facts = {}, {}
    for t in tasks:
        path = Path(data_root) / t / "test.jsonl"
        if not path.is_file():
            continue
        records = io.read_jsonl(path)
        if records and all("form" in r for r in records):
            forms[t] = [r["form"] for r in records]
        if records and all("fact" in r for r in records):
            facts[t] = [r["fact"] for r in records]
    return forms, facts


def fe_by_form(correct, forms):
    """{form: 1 - accuracy on the questions asked in that form}; Table 1's FE is their mean when
    every fact is asked in every form."""
    if len(correct) != len(forms):
        raise ClueError(f"{len(correct)} answers for {len(forms)} forget questions: the test file changed")
    out = {}
    for form in dict.fromkeys(forms):
        picked = [c for c, f in zip(correct, forms) if f == form]
        out[form] = 1.0 - sum(picked) / len(picked)
    return out


def norm_metrics(acc_norm, forget, retain, general):
    """FE_norm, RU_norm, GU_norm: FE, RU and GU from lm-eval's length-normalised accuracy (None
    where a task has none)."""
    retained = retain.split("+")

    def mean(tasks):
        return sum(acc_norm[t] for t in tasks) / len(tasks) if tasks and all(t in acc_norm for t in tasks) else None

    return dict(FE_norm=None if forget not in acc_norm else 1.0 - acc_norm[forget], RU_norm=mean(retained),
                GU_norm=mean(general))


def add_arguments(p):
    p.add_argument("--checkpoint", nargs="+", help="HF checkpoint directory to evaluate (lm-eval runs on it); "
                   "several, with as many --method and --out, are evaluated one after the other in this process")
    p.add_argument("--from-eval", help="reuse per-task metrics from this eval JSON instead of evaluating "
                   "(the Origin rows reuse one evaluation of the base model)")
    p.add_argument("--tasks", nargs="*", default=[], help="tasks to evaluate (with --checkpoint and no pair)")
    p.add_argument("--forget-sets", nargs="*", default=[], help="with --tasks: forget sets whose MIA and "
                   "Rouge-L are measured too")
    p.add_argument("--forget", help="forget task of the pair")
    p.add_argument("--retain", help="retain task of the pair (several joined by +: RU is their mean)")
    p.add_argument("--general", nargs="*", default=[], help="general tasks (GU averages them)")
    p.add_argument("--data-root", required=True, help="results/{model}/data")
    p.add_argument("--method", nargs="+", default=["origin"], help="the Table 1 row of each checkpoint")
    p.add_argument("--base-dir", help="base model directory: unlearned_param_pct is measured against it")
    p.add_argument("--params", required=True, help="JSON: the `evaluate` config section")
    p.add_argument("--out", nargs="+", required=True, help="eval JSON, one per checkpoint")


def evaluate_one(args, params, checkpoint, method, out):
    pair = args.forget is not None
    # each task once: a retain set may be made of general tasks (Figure 3's general corpus)
    tasks = list(dict.fromkeys([args.forget, *args.retain.split("+"), *args.general] if pair else args.tasks))
    forget_sets = [args.forget] if pair else list(args.forget_sets)
    if args.from_eval:
        source = io.read_json(args.from_eval)
        checkpoint = source["checkpoint"]
        result = LmEvalResult(source["accuracy"], source["prob_correct"], source["lm_eval_version"],
                              source.get("accuracy_norm", {}), source.get("correct", {}),
                              source.get("choices_tied", {}))
        efficacy = source["forget_efficacy"]
        missing = [f for f in forget_sets if f not in efficacy]
        if missing:
            raise ClueError(f"{args.from_eval} has no MIA / Rouge-L for forget set(s) {', '.join(missing)} "
                            "(evaluate the base model with --forget-sets)")
    else:
        test_files = local_test_files(tasks, args.data_root)  # bad test files fail before any load
        model, tokenizer = load_checkpoint(checkpoint, params)
        from clue.data import check_choice_tokens

        for task, path in test_files.items():   # a choice the tokenizer cannot tell apart fails here
            check_choice_tokens(tokenizer, path.parent, task, checkpoint)
        result = run_lm_eval(model, tokenizer, tasks, test_files, params)
        efficacy = {f: forget_efficacy(model, tokenizer, Path(args.data_root) / f, params) for f in forget_sets}
    record = dict(method=method, checkpoint=str(checkpoint), lm_eval_version=result.version)
    if pair:
        record.update(forget=args.forget, retain=args.retain, general=args.general,
                      **pair_metrics(result.acc, result.prob, args.forget, args.retain, args.general),
                      **norm_metrics(result.acc_norm, args.forget, args.retain, args.general),
                      **efficacy[args.forget])
        record["accuracy"] = {t: result.acc[t] for t in tasks}
        record["accuracy_norm"] = {t: result.acc_norm[t] for t in tasks if t in result.acc_norm}
        record["prob_correct"] = {t: result.prob[t] for t in tasks if t in result.prob}
        record["correct"] = {t: result.correct[t] for t in tasks if t in result.correct}
        record["choices_tied"] = {t: result.tied[t] for t in tasks if t in result.tied}
        forms, facts = question_meta(args.data_root, tasks)
        # the fact each question asks (a fact asked in several forms): Table 1's intervals resample facts
        record["facts"] = {t: facts[t] for t in tasks if t in facts}
        if args.forget in forms and args.forget in result.correct:
            record["FE_forms"] = fe_by_form(result.correct[args.forget], forms[args.forget])
        pct = None
        if method != "origin" and args.base_dir:
            from clue.masks import unlearned_param_pct_dirs

            pct = unlearned_param_pct_dirs(args.base_dir, checkpoint)
        record["unlearned_param_pct"] = pct
        # the repeat this checkpoint belongs to (its unlearn.seed); None for the base model
        meta = Path(checkpoint) / "clue_unlearn.json" if method != "origin" else None
        record["seed"] = io.read_json(meta)["config"]["seed"] if meta is not None and meta.exists() else None
    else:
        record.update(accuracy=result.acc, accuracy_norm=result.acc_norm, prob_correct=result.prob,
                      correct=result.correct, choices_tied=result.tied, forget_efficacy=efficacy)
    io.write_json(out, record)
    for line in caveats_of(record, args, tasks, forget_sets, method):
        print(f"warning: {line}", file=sys.stderr)
    shown = ("FE", "RU", "GU", "RU_prob", "GU_prob", "MIA", "RougeL")
    print(json.dumps({k: v for k, v in record.items() if k in shown} or record["accuracy"]))


def caveats_of(record, args, tasks, forget_sets, method):
    """The warnings an evaluation finds (clue.caveats): a task whose choices the model cannot tell
    apart; for the base model, a forget set it answers at or below chance."""
    from clue import caveats

    roles = {t: "general task" for t in tasks}
    roles.update({t: "retain set" for t in (args.retain.split("+") if args.retain else [])})
    roles.update({t: "forget set" for t in forget_sets})
    lines = [caveats.choices_tied(t, roles[t], [(method, x)]) for t, x in record.get("choices_tied", {}).items()]
    if method == "origin":
        for forget in forget_sets:
            correct = record.get("correct", {}).get(forget)
            test = Path(args.data_root) / forget / "test.jsonl"
            if correct and test.is_file():
                lines.append(caveats.forget_set_at_chance(forget, record["accuracy"][forget], test, len(correct)))
    return [line for line in lines if line]


def main(args):
    params = io.with_defaults(io.json_params(args.params, "evaluate"), DEFAULTS, "evaluate", strict=True)
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
