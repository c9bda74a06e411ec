"""Stage `attack`: does the forgetting survive an attacker? Two attacks on one checkpoint (config
section ``attack``), each scored on the same questions:

- relearning (Deeb & Roger 2024; Lucki et al. 2024): the forget set's test facts are split in two
  halves with a seed; the checkpoint is fine-tuned for ``relearn_steps`` AdamW steps on the first
  half's facts in the train form with their answers ("Fact: Lyon is a city that belongs to
  France", from ``refusal.jsonl``), then answers the second half's test questions, so no
  relearned fact is asked;
- quantization (Zhang et al., ICLR 2025): every attention and MLP weight matrix rounded to
  ``bits`` bits, symmetric round-to-nearest with one scale per group of ``group_size`` input
  weights of a row (plain PyTorch); then the same questions.

FE (1 - lm-eval accuracy) on the second half's questions is recorded as trained, after
relearning and after quantization, with each question's correctness for the intervals of the
robust-FE table (clue.reports.robust). Origin's record (the base model attacked the same way)
gives the knowledge there is to recover."""

import json
import random
import sys
import tempfile
from pathlib import Path

from clue import io
from clue.errors import ClueError

DEFAULTS = {
    "relearn_steps": 20,       # AdamW steps on the relearned half (the same for every method)
    "relearn_lr": 1e-4,        # the unlearn default; the configs set their unlearn.lr
    "relearn_batch_size": 8,
    "bits": 4,                 # quantization: bits a weight
    "group_size": 64,          # quantization: input weights a scale covers (the whole row when larger)
    "seed": 0,                 # which half of the test facts is relearned, and the example order
}


def resolve_params(params):
    p = io.with_defaults(params, DEFAULTS, "attack", strict=True)
    for key in ("relearn_steps", "relearn_batch_size", "bits", "group_size"):
        if not isinstance(p[key], int) or isinstance(p[key], bool) or p[key] < 1:
            raise ClueError(f"config key attack.{key}: a positive integer, not {p[key]!r}")
    if not 2 <= p["bits"] <= 16:
        # symmetric rounding keeps 2^(bits-1) - 1 levels a sign: 1 bit would round every weight to 0
        raise ClueError(f"config key attack.bits: 2 to 16 bits, not {p['bits']!r}")
    if not isinstance(p["relearn_lr"], (int, float)) or isinstance(p["relearn_lr"], bool) or p["relearn_lr"] <= 0:
        raise ClueError(f"config key attack.relearn_lr: a positive number, not {p['relearn_lr']!r}")
    return p


def quantize_(weight, bits, group_size):
    """Round ``weight`` [out, in] in place to ``bits`` bits: symmetric round-to-nearest, one scale
    (the group's largest magnitude over 2^(bits-1) - 1) per ``group_size`` consecutive inputs of a
    row; a group of zeros stays zero."""
    import torch

    rows, cols = weight.shape
    size = min(group_size, cols)
    pad = (-cols) % size
    w = torch.nn.functional.pad(weight.detach().float(), (0, pad)).view(rows, -1, size)
    levels = 2 ** (bits - 1) - 1
    scale = w.abs().amax(dim=-1, keepdim=True) / max(levels, 1)
    q = torch.where(scale > 0, torch.round(w / scale.clamp_min(1e-30)).clamp(-levels, levels) * scale, w)
    weight.copy_(q.view(rows, -1)[:, :cols].to(weight.dtype))


def quantize_model_(model, bits, group_size):
    """Quantize every attention and MLP weight matrix of ``model`` in place (Table 1's matrices)."""
    import torch

    from clue.masks import matrix_names

    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in matrix_names(model):
            quantize_(params[name], bits, group_size)


def split_facts(test, seed):
    """(relearned facts, asked facts): the test questions' facts in two halves, by a seeded shuffle."""
    facts = sorted({r["fact"] for r in test})
    random.Random(f"attack-{seed}").shuffle(facts)
    half = len(facts) // 2
    return set(facts[:half]), set(facts[half:])


def relearn_(model, tokenizer, texts, params):
    """Fine-tune every parameter of ``model`` in place on ``texts`` for relearn_steps AdamW steps,
    as the audit relearns (clue.audit.finetune)."""
    from clue.audit import finetune

    for _ in finetune(model, tokenizer, texts, params["relearn_lr"], params["relearn_batch_size"], params["seed"],
                      [params["relearn_steps"]]):
        pass


def attack(checkpoint, forget_dir, task, params, eval_params, method):
    """The attack record of one checkpoint (module docstring)."""
    from clue.evaluate import load_checkpoint, run_lm_eval

    forget_dir = Path(forget_dir)
    test = io.read_jsonl(forget_dir / "test.jsonl", required=["prompt", "choices", "label"])
    if not all("fact" in r for r in test):
        raise ClueError(f"{forget_dir / 'test.jsonl'}: the relearning attack splits the test questions by the fact "
                        "they ask, and these records name none (a knowledge task generated here names them)")
    relearned, asked = split_facts(test, params["seed"])
    refusals = io.read_jsonl(forget_dir / "refusal.jsonl", required=["prompt", "answer", "fact"])
    texts = [f"{r['prompt']} {r['answer']}" for r in refusals if r["fact"] in relearned]
    if len(texts) != len(relearned):
        raise ClueError(f"{forget_dir / 'refusal.jsonl'}: {len(relearned) - len(texts)} relearned fact(s) have no "
                        "train-form record")
    questions = [r for r in test if r["fact"] in asked]

    def fe(model, tokenizer, files):
        got = run_lm_eval(model, tokenizer, [task], files, eval_params)
        return 1.0 - got.acc[task], got.correct.get(task)

    with tempfile.TemporaryDirectory(prefix="clue-attack-") as tmp:
        files = {task: Path(tmp) / "asked.jsonl"}
        io.write_jsonl(files[task], questions)
        record = {"method": method, "forget": task, "checkpoint": str(checkpoint), "params": params,
                  "relearned_facts": len(relearned), "asked_facts": len(asked), "questions": len(questions),
                  "facts": [r["fact"] for r in questions], "FE": {}, "correct": {}}
        model, tokenizer = load_checkpoint(checkpoint, eval_params)
        record["FE"]["trained"], record["correct"]["trained"] = fe(model, tokenizer, files)
        relearn_(model, tokenizer, texts, params)
        record["FE"]["relearned"], record["correct"]["relearned"] = fe(model, tokenizer, files)
        model, tokenizer = load_checkpoint(checkpoint, eval_params)
        quantize_model_(model, params["bits"], params["group_size"])
        record["FE"]["quantized"], record["correct"]["quantized"] = fe(model, tokenizer, files)
    return record


def add_arguments(parser):
    parser.add_argument("--checkpoint", required=True, help="the unlearned checkpoint (or the base model: Origin)")
    parser.add_argument("--method", required=True, help="its Table 1 row")
    parser.add_argument("--forget-dir", required=True, help="the forget task's data dir (test.jsonl, refusal.jsonl)")
    parser.add_argument("--retain", required=True, help="the pair's retain set (recorded)")
    parser.add_argument("--params", default="{}", help="the `attack` config section as JSON")
    parser.add_argument("--eval-params", default="{}", help="the `evaluate` config section as JSON")
    parser.add_argument("--out", required=True, help="the attack record (JSON)")


def main(args):
    from clue.evaluate import DEFAULTS as EVAL_DEFAULTS

    params = resolve_params(io.json_params(args.params, "attack"))
    eval_params = io.with_defaults(io.json_params(args.eval_params, "evaluate"), EVAL_DEFAULTS, "evaluate",
                                   strict=True)
    task = Path(args.forget_dir).name
    record = attack(args.checkpoint, args.forget_dir, task, params, eval_params, args.method)
    record["retain"] = args.retain
    io.write_json(args.out, record)
    fe = record["FE"]
    print(f"clue attack: {args.method} on {task}: FE on {record['questions']} questions of {record['asked_facts']} "
          f"facts: as trained {fe['trained']:.3f}, after relearning {record['relearned_facts']} facts "
          f"{fe['relearned']:.3f}, after {params['bits']}-bit quantization {fe['quantized']:.3f}", file=sys.stderr)
    print(json.dumps(fe))
    return 0
