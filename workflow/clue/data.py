"""Stage `data`: write one task's splits to ``results/{model}/data/{task}/`` (docs/formats.md).

Toy tasks are generated from the seed; real tasks load through ``datasets`` (clue.tasks.real)."""

import json
from pathlib import Path

from clue import io
from clue.errors import ClueError
from clue.tasks import GENERATED_TASKS, REAL_TASK_ROLES, check_task, task_role
from clue.tasks.toy import TOY_TASKS, generate_task

SPLIT_FIELDS = {
    "train": ("prompt", "answer", "text"),
    "test": ("prompt", "choices", "label"),
    "validation": ("prompt", "choices", "label"),
    "pairs": ("clean", "corrupted", "clean_answer", "corrupted_answer"),
    "validation_pairs": ("clean", "corrupted", "clean_answer", "corrupted_answer"),
    "heldout_pairs": ("clean", "corrupted", "clean_answer", "corrupted_answer"),
    "refusal": ("prompt", "refusal"),
    "holdout": ("text",),
}
# Fields written where a task has them: the template a question is asked in and the fact it asks
# (a fact asked in several forms); the facts a forget document states and the fact a refusal
# refuses, so that a capped sample of the forget data still covers every fact (clue.io.sample_covering);
# a refusal's true answer (DPO's rejected response, the relearning attack's target).
OPTIONAL_FIELDS = {"test": ("form", "fact"), "validation": ("form", "fact"), "train": ("facts",),
                   "refusal": ("answer", "fact")}
# Splits written for forget sets only.
FORGET_ONLY = ("refusal", "holdout")


def train_side_prompts(splits):
    """Every prompt a training, refusal, circuit or localizer step may see, by split."""
    return {
        "train": {r["prompt"] for r in splits["train"] if r["prompt"]},
        "refusal": {r["prompt"] for r in splits.get("refusal", [])},
        "pairs": {p[k] for p in splits["pairs"] for k in ("clean", "corrupted")},
        "validation_pairs": {p[k] for p in splits.get("validation_pairs", []) for k in ("clean", "corrupted")},
        "heldout_pairs": {p[k] for p in splits.get("heldout_pairs", []) for k in ("clean", "corrupted")},
    }


def check_disjoint(task, splits):
    """Splits are sacred (DESIGN.md section 8): no test prompt is a prompt of any other split, and
    no validation prompt (what settings are chosen on) is one of the train side's or the test's."""
    test = {r["prompt"] for r in splits["test"]}
    validation = {r["prompt"] for r in splits.get("validation", [])}
    for held, name in ((test, "test"), (validation, "validation")):
        for split, prompts in {**train_side_prompts(splits), **({"test": test} if name == "validation" else {})}.items():
            overlap = sorted(held & prompts)
            if overlap:
                raise ClueError(f"task {task}: {len(overlap)} {name} prompt(s) also in {split}, e.g. {overlap[0]!r}")


def build_task(task, params, read_rows=None, warn=None):
    """Return the splits of ``task`` as {split: [records]} from the task's `data` params. A real
    task's ``read_rows`` and ``warn`` go to load_real_task (the check before any job reads local
    files with clue.tasks.real.read_local_rows, which knows each row's line)."""
    check_task(task, "data")
    seed, n_train, n_test, n_pairs = (params["seed"], params["n_train"], params["n_test"], params["n_pairs"])
    n_heldout, n_val_pairs = params.get("n_heldout_pairs", 0), params.get("n_validation_pairs", 0)
    n_validation = params.get("n_validation", 0)
    if task in GENERATED_TASKS:
        splits = generate_task(GENERATED_TASKS[task], seed, n_train, n_test, n_pairs, n_heldout, n_val_pairs,
                               n_validation)
    else:
        from clue.tasks.real import load_real_task

        splits = load_real_task(task, params.get("source") or {}, seed, n_train, n_test, n_pairs, n_heldout,
                                n_val_pairs, n_validation, read_rows=read_rows, warn=warn)
    for pair in splits["pairs"] + splits["validation_pairs"] + splits["heldout_pairs"]:
        if pair["clean_answer"] == pair["corrupted_answer"]:
            raise ClueError(f"task {task}: a clean/corrupted pair has the same answer "
                            f"{pair['clean_answer']!r} (prompt {pair['clean']!r}); the corruption must change it")
    check_disjoint(task, splits)
    check_pair_sets_disjoint(task, splits)
    return splits


def check_pair_sets_disjoint(task, splits):
    """Discovery, validation and held-out pairs share no clean prompt: the sparsity is chosen on
    pairs discovery never trained on, and faithfulness reported on pairs neither step saw."""
    sets = {k: {p["clean"] for p in splits[k]} for k in ("pairs", "validation_pairs", "heldout_pairs")}
    for a, b in (("pairs", "validation_pairs"), ("pairs", "heldout_pairs"), ("validation_pairs", "heldout_pairs")):
        both = sorted(sets[a] & sets[b])
        if both:
            raise ClueError(f"task {task}: {len(both)} clean prompt(s) in both {a} and {b}, e.g. {both[0]!r}")


def write_task(task, params, out):
    splits = build_task(task, params)
    role = task_role(task)
    with io.atomic_dir(out) as tmp:
        for split, fields in SPLIT_FIELDS.items():
            if split in FORGET_ONLY and role != "forget":
                continue
            # questions keep their form and fact where the task has them (FE per form, intervals
            # that resample facts)
            extra = OPTIONAL_FIELDS.get(split, ())
            io.write_jsonl(tmp / f"{split}.jsonl", [{k: r[k] for k in (*fields, *extra) if k in r}
                                                    for r in splits[split]])
        meta = dict(task=task, role=role, source="toy" if task in TOY_TASKS else "generated" if task in GENERATED_TASKS else "hf",
                    n_train=len(splits["train"]), n_test=len(splits["test"]),
                    n_validation=len(splits["validation"]),
                    n_pairs=len(splits["pairs"]), n_validation_pairs=len(splits["validation_pairs"]),
                    n_heldout_pairs=len(splits["heldout_pairs"]),
                    seed=params["seed"])
        io.write_json(tmp / "meta.json", meta)
    return meta


def add_arguments(p):
    p.add_argument("--task", required=True, help="task name (toy_* or a real task: "
                   + ", ".join(sorted(REAL_TASK_ROLES)) + ")")
    p.add_argument("--params", required=True,
                   help="JSON: the `data` config section for this task (seed, n_train, n_test, n_pairs, source)")
    p.add_argument("--out", required=True, help="output directory results/{model}/data/{task}")


def main(args):
    meta = write_task(args.task, json.loads(args.params), args.out)
    print(f"{args.task}: {meta['n_train']} train, {meta['n_test']} test, {meta['n_pairs']} pairs -> {args.out}")


def _sequences(split, rec):
    """The longest texts a stage feeds the model for one record of ``split``."""
    if split == "train" or split == "holdout":
        return [rec.get("text", ""), (rec.get("prompt") or "") + " " + (rec.get("answer") or "")]
    if split in ("test", "validation"):
        return [rec["prompt"] + " " + str(c) for c in rec["choices"]]
    if split in ("pairs", "validation_pairs", "heldout_pairs"):
        return [rec["clean"] + " " + rec["clean_answer"], rec["corrupted"] + " " + rec["corrupted_answer"]]
    if split == "refusal":
        return [rec["prompt"] + " " + rec["refusal"]]
    return []


_CONTEXT_CHECKED = set()   # (data dir, context, tokenizer) already checked in this process


def check_context(tokenizer, max_positions, data_dir, task, model_dir):
    """Fail (naming the task, file and line) when a record of the task is longer, in the model's
    tokens, than its context (``max_position_embeddings``): called before any training starts,
    so no job spends minutes before the model meets a prompt it cannot read. A process that
    trains several checkpoints on the same data (unlearn.jobs: per_pair) checks it once."""
    key = (str(Path(data_dir).resolve()), max_positions, tokenizer.name_or_path, len(tokenizer))
    if key in _CONTEXT_CHECKED:
        return
    check_choice_tokens(tokenizer, data_dir, task, model_dir)
    for split in SPLIT_FIELDS:
        path = Path(data_dir) / f"{split}.jsonl"
        if not path.is_file():
            continue
        for i, rec in enumerate(io.read_jsonl(path, required=SPLIT_FIELDS[split]), 1):
            for text in _sequences(split, rec):
                n = len(tokenizer(text)["input_ids"])
                if n > max_positions:
                    raise ClueError(
                        f"task {task}: {path} line {i} is {n} tokens long, more than the model's "
                        f"context of {max_positions} tokens (max_position_embeddings of {model_dir}); "
                        "shorten the task's prompts or use a model with a longer context")
    _CONTEXT_CHECKED.add(key)


# ------------------------------------------------------------------------- answers as tokens

def answer_ids(tokenizer, answer):
    """The tokens of ``answer`` as it continues a prompt: after a space, as lm-eval scores a choice
    and as circuit discovery predicts an answer's first token (check_pair_tokens)."""
    return tokenizer(" " + str(answer), add_special_tokens=False)["input_ids"]


def _shown(tokenizer, answers, ids):
    """'A' -> ['▁A'], 'B' -> ['<unk>']: each answer with its first tokens."""
    out = []
    for a, i in zip(answers, ids):
        text = a if len(a) <= 40 else a[:37] + "..."
        toks = tokenizer.convert_ids_to_tokens(i[:4]) + (["..."] if len(i) > 4 else [])
        out.append(f"{text!r} -> {toks}")
    return ", ".join(out)


def choice_problem(tokenizer, choices, ids):
    """Why a question's choices cannot be scored with this tokenizer, or None: a choice that starts
    with the unknown token (the model is asked for <unk>, not the answer) or two choices that encode
    to the same tokens (no model can tell them apart)."""
    unk = tokenizer.unk_token_id
    for c, i in zip(choices, ids):
        if not i:
            return f"{str(c)!r} encodes to no tokens"
        if unk is not None and i[0] == unk:
            return f"{str(c)!r} starts with the unknown token {tokenizer.unk_token!r}"
    for a in range(len(choices)):
        for b in range(a + 1, len(choices)):
            if ids[a] == ids[b]:
                return f"{str(choices[a])!r} and {str(choices[b])!r} encode to the same tokens"
    return None


def check_choice_tokens(tokenizer, data_dir, task, model_dir):
    """Every test and validation question of a task can be scored with the model's tokenizer
    (choice_problem); ClueError naming the task, file, line, the choices and their tokens. Called
    with check_context, before any circuit or training step: a tokenizer that maps the letters B and
    D to <unk> used to surface as a circuit pair "with the same clean and corrupted answer"."""
    seen = {}
    for split in ("test", "validation"):
        path = Path(data_dir) / f"{split}.jsonl"
        if not path.is_file():
            continue
        for line, rec in enumerate(io.read_jsonl(path, required=SPLIT_FIELDS[split]), 1):
            choices = tuple(str(c) for c in rec["choices"])
            if choices not in seen:
                ids = [answer_ids(tokenizer, c) for c in choices]
                seen[choices] = (choice_problem(tokenizer, choices, ids), ids)
            problem, ids = seen[choices]
            if problem:
                raise ClueError(f"task {task}: {path} line {line}: {problem} with the tokenizer of {model_dir} "
                                f"({_shown(tokenizer, choices, ids)}); the model cannot score this question: use a "
                                "model whose tokenizer has the task's answers, or other choices")


def check_pair_tokens(tokenizer, path, task, records):
    """Each circuit pair's clean and corrupted answers start with different tokens, neither the
    unknown token: discovery compares the model's prediction of the answers' first tokens.
    ClueError naming the task, file, line, the answers and their tokens."""
    unk = tokenizer.unk_token_id
    for line, rec in enumerate(records, 1):
        answers = (rec["clean_answer"], rec["corrupted_answer"])
        ids = [answer_ids(tokenizer, a) for a in answers]
        if not ids[0] or not ids[1]:
            problem = "an answer encodes to no tokens"
        elif unk is not None and unk in (ids[0][0], ids[1][0]):
            problem = f"an answer starts with the unknown token {tokenizer.unk_token!r}"
        elif ids[0][0] == ids[1][0]:
            problem = "the clean and corrupted answers start with the same token"
        else:
            continue
        raise ClueError(f"task {task}: {path} line {line}: {problem} with the tokenizer of "
                        f"{tokenizer.name_or_path} ({_shown(tokenizer, answers, ids)}); a corruption must change "
                        "the answer's first token: use a model whose tokenizer has the task's answers")
