"""Stage ``audit``: does an unlearned checkpoint still hold the knowledge? (Hong et al., "Dissecting
fine-tuning unlearning in large language models", sections 3 and 4, appendix C.)

**Knowledge Recovery Score.** The paper writes a layer's update as X_{l+1} = X_l + M_l + A_l with
M_l = W_V^l m_l: m_l the MLP coefficients (the input of ``down_proj``), W_V^l the value vectors
(``down_proj``'s weight), A_l the attention output. For each layer's window of ``window``
consecutive layers, the unlearned model gets back from the base model

- ``m``: the coefficients m_l (activation patching: the base model's input of ``down_proj``),
- ``W_V``: the value vectors (parameter restoration: the base ``down_proj`` weights),
- ``A``: the attention outputs A_l (activation patching),
- ``m+A``: m_l and A_l together,
- ``layer`` (not in the default ``kinds``): every parameter of the window's layers, a reference
  (over all layers it gives back the base model, up to embeddings, final norm and unembedding),

(for each layer, the ``window`` layers centred on it, cut at the ends, as in the causal tracing
of Meng et al. that the paper follows), and KRS = 1 - loss_restored / loss_unlearned (Eq. 3), each loss the mean squared error between
that model's next-token logits and the base model's, averaged over the vocabulary, the next
``n_tokens`` positions and ``n_questions`` forget-set test questions. The continuation: the base
model's greedy continuation of each question (``n_tokens`` new tokens, end-of-text suppressed),
fed to every model (teacher forcing), so all three models' logits are read along the same tokens.

**Isolated variant** (appendix C): the same restorations while the other two elements are held
at the unlearned model's own states (recorded from an unpatched run of the unlearned model) in
the window's layers and every later layer: restoring m holds A; restoring A holds m; restoring
W_V holds m and A (so only W_V's own effect on M_l in the window remains). ``m+A`` has no
isolated variant (the remaining element, W_V, is a parameter the unlearned model keeps anyway).

A checkpoint whose logits equal the base model's on these tokens (up to a relative 1e-10 of
their mean square) has nothing to recover: its KRS values are ``null`` and ``nothing_unlearned``
is true, instead of a division by zero.

**Relearning.** The unlearned checkpoint is fine-tuned (next-token loss, AdamW) on a held-out
slice of the forget corpus that no test question is built from (the forget set's
``holdout.jsonl``) for each step count of ``relearn_steps``, and FE (1 - lm-eval accuracy on the
forget test questions, as in Table 1) is measured after each; the base model relearning the same
slice is the reference (``clue audit --checkpoint BASE``).

**Global negative effect** (section 4): the unlearn stage records greedy answers to forget test
questions and to general-task test questions (the unrelated knowledge) before training and after every
epoch; the audit scores each epoch's answers with BLEU against the starting model's (1: the same
answers, 0: none of their n-grams).
"""

import sys
from pathlib import Path

from clue import io
from clue.errors import ClueError

KINDS = ("m", "W_V", "A", "m+A", "layer")
NOTHING_UNLEARNED = 1e-10   # relative: see krs_curves
ISOLATED_KINDS = ("m", "W_V", "A")
DEFAULTS = {
    "window": None,             # consecutive layers restored at once; None: min(5, layers)
    "n_questions": 10,          # N of Eq. 3 (paper: 10)
    "n_tokens": 30,             # I of Eq. 3 (paper: 30)
    "kinds": ["m", "W_V", "A", "m+A"],
    "isolated": True,
    "relearn_steps": [10, 50],  # FE after this many relearning steps (cumulative); [] to skip
    "relearn_lr": 1e-4,         # the unlearn default; set it to the config's unlearn.lr
    "relearn_batch_size": 8,
    "seed": 0,
    "eval_batch_size": 64,
    "device": "cpu",            # auto: CUDA when there is a GPU
    "dtype": "float32",         # bfloat16 halves the memory of the two models held (7B: 2 x 14 GB)
    "methods": None,            # read by the workflow only: which checkpoints get an audit job
}


def resolve_params(params, n_layers=None):
    """The ``audit`` config section with defaults; ClueError naming the key on a bad value."""
    p = io.with_defaults(params, DEFAULTS, "audit", strict=True)
    unknown = [k for k in p["kinds"] if k not in KINDS]
    if unknown or not p["kinds"]:
        raise ClueError(f"audit.kinds: unknown restoration kind(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
                        f"known: {', '.join(KINDS)}")
    if p["dtype"] not in ("float32", "bfloat16", "float16"):
        raise ClueError(f"audit.dtype must be float32, bfloat16 or float16, not {p['dtype']!r}")
    for key in ("n_questions", "n_tokens", "relearn_batch_size", "eval_batch_size"):
        if not isinstance(p[key], int) or isinstance(p[key], bool) or p[key] < 1:
            raise ClueError(f"audit.{key} must be a positive integer, not {p[key]!r}")
    if p["window"] is not None and (not isinstance(p["window"], int) or isinstance(p["window"], bool)
                                    or p["window"] < 1):
        raise ClueError(f"audit.window must be a positive integer or null, not {p['window']!r}")
    if n_layers is not None and p["window"] is not None and p["window"] > n_layers:
        raise ClueError(f"audit.window {p['window']} is larger than the model's {n_layers} layers")
    steps = p["relearn_steps"]
    if not isinstance(steps, list) or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in steps) \
            or steps != sorted(set(steps)):
        raise ClueError(f"audit.relearn_steps must be increasing non-negative integers, not {steps!r}")
    if not isinstance(p["relearn_lr"], (int, float)) or p["relearn_lr"] <= 0:
        raise ClueError(f"audit.relearn_lr must be a positive number, not {p['relearn_lr']!r}")
    return p


# --------------------------------------------------------------------------- patching

def layers_of(model):
    """The decoder layers of a Llama-family HF model (Llama, Mistral, Qwen2: ``model.layers``,
    each with ``mlp.down_proj`` and ``self_attn``)."""
    from clue.base_model import check_model_type

    check_model_type(model)
    return list(model.model.layers)


class Patcher:
    """Forward hooks that record or replace m_l (the input of ``down_proj``) and A_l (the first
    output of ``self_attn``), and in-place swaps of ``down_proj`` weights (W_V)."""

    def __init__(self, model):
        self.layers = layers_of(model)

    def run(self, model, batch, *, record=False, patch_m=None, patch_a=None):
        """Logits of ``model`` on ``batch`` with m_l := patch_m[l] and A_l := patch_a[l] (dicts
        layer -> tensor); with ``record``, also {"m": [...], "A": [...]} of every layer."""
        import torch

        patch_m, patch_a = patch_m or {}, patch_a or {}
        rec = {"m": [None] * len(self.layers), "A": [None] * len(self.layers)}
        handles = []
        for l, layer in enumerate(self.layers):
            def pre_mlp(module, args, l=l):
                if record:
                    rec["m"][l] = args[0].detach()
                if l in patch_m:
                    return (patch_m[l],) + tuple(args[1:])

            def post_attn(module, args, output, l=l):
                if record:
                    rec["A"][l] = output[0].detach()
                if l in patch_a:
                    return (patch_a[l],) + tuple(output[1:])

            handles.append(layer.mlp.down_proj.register_forward_pre_hook(pre_mlp))
            handles.append(layer.self_attn.register_forward_hook(post_attn))
        try:
            with torch.no_grad():
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        finally:
            for h in handles:
                h.remove()
        return (logits, rec) if record else logits

    def swap(self, other_layers, window, kind):
        """Exchange the ``down_proj`` weights (``W_V``) or every parameter (``layer``) of the
        layers in ``window`` with ``other_layers`` (call twice to undo): parameter restoration
        without a copy of either model."""
        import torch

        with torch.no_grad():
            for l in window:
                mine, theirs = self.layers[l], other_layers[l]
                if kind == "W_V":
                    mine, theirs = mine.mlp.down_proj, theirs.mlp.down_proj
                for (name, a), (_, b) in zip(mine.named_parameters(), theirs.named_parameters()):
                    if kind == "W_V" and name != "weight":
                        continue
                    tmp = a.detach().clone()
                    a.copy_(b)
                    b.copy_(tmp)


def continuation_batch(base, tokenizer, prompts, n_tokens):
    """The base model's greedy continuation of each prompt (``n_tokens`` tokens, end-of-text
    suppressed), right-padded into one batch: input_ids, attention_mask and ``scored`` (the
    positions whose next-token logits predict a continuation token)."""
    import torch

    rows, scored = [], []
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"].to(base.device)
        with torch.no_grad():
            out = base.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n_tokens,
                                min_new_tokens=n_tokens, do_sample=False,
                                pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None
                                else tokenizer.eos_token_id)
        seq = out[0].tolist()
        n_prompt = ids.shape[1]
        rows.append(seq)
        scored.append(list(range(n_prompt - 1, len(seq) - 1)))
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    attention = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, pos in enumerate(scored):
        mask[i, pos] = True
    return {"input_ids": input_ids, "attention_mask": attention, "scored": mask}


def logit_mse(logits, reference, scored):
    """Mean over scored positions of the MSE (over the vocabulary) between two logit tensors."""
    diff = (logits.float() - reference.float()) ** 2
    return diff.mean(-1)[scored].mean().item()


def windows(n_layers, width):
    """{layer: the layers restored for it}: ``width`` layers centred on each layer and cut at the
    first and last layer, as in causal tracing (Meng et al. 2022, whose windows the paper uses),
    so every layer, the last ones included, has its point."""
    return {l: list(range(max(0, l - width // 2), min(n_layers, l - width // 2 + width))) for l in range(n_layers)}


def krs_curves(base, unlearned, batch, params):
    """KRS for every window and kind (and the isolated variant): the dict stored under ``krs``."""
    import torch

    p = params
    n_layers = len(layers_of(unlearned))
    width = p["window"] or min(5, n_layers)
    if width > n_layers:
        raise ClueError(f"audit.window {width} is larger than the model's {n_layers} layers")
    patcher, base_layers = Patcher(unlearned), layers_of(base)
    reference, base_states = Patcher(base).run(base, batch, record=True)
    logits_u, own = patcher.run(unlearned, batch, record=True)
    loss_u = logit_mse(logits_u, reference, batch["scored"])
    # "nothing unlearned": the logits differ from the base model's by float noise at most (a
    # relative 1e-10 of their mean square), where a KRS would divide noise by noise
    scale = logit_mse(reference, torch.zeros_like(reference), batch["scored"])
    nothing = loss_u <= NOTHING_UNLEARNED * scale
    result = {"window": width, "loss_unlearned": loss_u, "nothing_unlearned": nothing,
              "windows": [], "kinds": list(p["kinds"]), "isolated": bool(p["isolated"])}

    def krs(**patch):
        if nothing:
            return None
        return 1.0 - logit_mse(patcher.run(unlearned, batch, **patch), reference, batch["scored"]) / loss_u

    for centre, win in windows(n_layers, width).items():
        later = range(win[0], n_layers)          # the window's layers and every later one
        row = {"layer": centre, "layers": [win[0], win[-1]], "krs": {}, "krs_isolated": {}}
        for kind in p["kinds"]:
            if kind in ("W_V", "layer"):
                patcher.swap(base_layers, win, kind)
                try:
                    row["krs"][kind] = krs()
                    if p["isolated"] and kind in ISOLATED_KINDS:
                        row["krs_isolated"]["W_V"] = krs(patch_m={l: own["m"][l] for l in later},
                                                         patch_a={l: own["A"][l] for l in later})
                finally:
                    patcher.swap(base_layers, win, kind)
                continue
            restore_m = {l: base_states["m"][l] for l in win} if "m" in kind else {}
            restore_a = {l: base_states["A"][l] for l in win} if "A" in kind else {}
            row["krs"][kind] = krs(patch_m=restore_m, patch_a=restore_a)
            if p["isolated"] and kind in ISOLATED_KINDS:
                if kind == "m":
                    row["krs_isolated"]["m"] = krs(patch_m=restore_m, patch_a={l: own["A"][l] for l in later})
                else:
                    row["krs_isolated"]["A"] = krs(patch_m={l: own["m"][l] for l in later}, patch_a=restore_a)
        result["windows"].append(row)
    return result


# --------------------------------------------------------------------------- relearning

def relearn(model, tokenizer, forget_dir, task, params, eval_params):
    """FE of ``model`` after each step count of ``relearn_steps`` of fine-tuning on the forget
    set's held-out corpus; trains ``model`` in place. [{"steps": k, "FE": ...}]."""
    import torch

    from clue.evaluate import local_test_files, run_lm_eval

    if not params["relearn_steps"]:
        return []
    path = Path(forget_dir) / "holdout.jsonl"
    if not path.is_file():
        raise ClueError(f"task {task}: {path} not found: relearning needs the forget set's held-out corpus")
    texts = [r["text"] for r in io.read_jsonl(path, required=["text"])]
    test_files = local_test_files([task], Path(forget_dir).parent)
    curve = []
    for target in finetune(model, tokenizer, texts, params["relearn_lr"], params["relearn_batch_size"], params["seed"],
                           params["relearn_steps"]):
        with torch.no_grad():
            acc = run_lm_eval(model, tokenizer, [task], test_files, eval_params).acc
        curve.append({"steps": target, "FE": 1.0 - acc[task]})
    return curve


def finetune(model, tokenizer, texts, lr, batch_size, seed, targets):
    """Fine-tune every parameter of ``model`` in place on ``texts`` (their NLL), in
    batches of a seeded order, with AdamW steps as unlearning takes them (fp32 master weights for
    a low-precision model, no clipping); yields each step count of ``targets`` (increasing) once
    it is reached, so the caller can score the model there. Relearning in the audit and in the
    relearning attack (clue.attack)."""
    import random

    import torch

    from clue.losses import collate, encode_text, mean_nll, to_device
    from clue.unlearn import master_weights, step_each_matrix

    encoded = [encode_text(tokenizer, t) for t in texts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rng = random.Random(seed)
    torch.manual_seed(seed)
    trained = dict(model.named_parameters())
    for q in trained.values():
        q.requires_grad_(True)
    master = master_weights(trained)   # fp32 steps for a bf16 model, as in unlearning
    opt = torch.optim.AdamW(list(master.values()), lr=lr, weight_decay=0.0)
    done, order = 0, []
    for target in targets:
        model.train(False)   # no dropout: the same steps give the same model
        while done < target:
            if len(order) < batch_size:
                fresh = list(range(len(encoded)))
                rng.shuffle(fresh)
                order += fresh
            idx, order = order[:batch_size], order[batch_size:]
            loss = mean_nll(model, to_device(collate([encoded[i] for i in idx], pad), model.device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():   # one matrix at a time, as unlearning steps (no clipping)
                step_each_matrix(trained, master, None, opt, 0)
            done += 1
        yield target
    for q in model.parameters():
        q.requires_grad_(False)


# --------------------------------------------------------------------------- global negative effect

def global_effect(checkpoint):
    """BLEU (sacrebleu, sentence level, 0..1, averaged over questions) of the greedy answers after
    every epoch against the answers of the starting model, on the forget questions and on the
    unrelated (general-task) questions: [{"stage", "epoch", "forget_bleu", "unrelated_bleu"}], or
    None when the checkpoint recorded no trajectory (clue_unlearn.json, unlearn.trajectory_*)."""
    import sacrebleu

    path = Path(checkpoint) / "clue_unlearn.json"
    if not path.is_file():
        return None
    trajectory = io.read_json(path).get("trajectory")
    if not trajectory:
        return None
    start, *later = trajectory["snapshots"]

    def bleu(key, snap):
        if not start[key]:
            return None
        # sacrebleu scores an empty answer 0 even against an empty reference; two empty answers
        # are the same answer
        scores = [1.0 if not h.strip() and not r.strip() else sacrebleu.sentence_bleu(h, [r]).score / 100
                  for h, r in zip(snap[key], start[key])]
        return sum(scores) / len(scores)

    return [{"stage": snap["stage"], "epoch": snap["epoch"], "forget_bleu": bleu("forget", snap),
             "unrelated_bleu": bleu("unrelated", snap)} for snap in [start, *later]]


# --------------------------------------------------------------------------- CLI

def add_arguments(parser):
    parser.add_argument("--base-dir", required=True, help="the base model (results/{model}/base)")
    parser.add_argument("--checkpoint", nargs="+", required=True,
                        help="unlearned checkpoint(s) to audit; the base directory itself gives the relearning reference")
    parser.add_argument("--method", nargs="+", required=True, help="the Table 1 row of each checkpoint")
    parser.add_argument("--forget-dir", required=True, help="the forget set's data directory")
    parser.add_argument("--forget", required=True, help="forget task name")
    parser.add_argument("--retain", required=True, help="retain task name (recorded)")
    parser.add_argument("--params", default="{}", help="the `audit` config section as JSON")
    parser.add_argument("--out", nargs="+", required=True, help="audit JSON, one per checkpoint")


def load(path, device, dtype="float32"):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from clue.masks import resolve_base

    source = resolve_base(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, dtype))
    except OSError as e:
        raise ClueError(f"{path}: cannot load checkpoint {source} ({e})") from None
    return model.to(device).eval(), tokenizer


def main(args):
    import torch

    if not len(args.checkpoint) == len(args.method) == len(args.out):
        raise ClueError(f"give as many --method ({len(args.method)}) and --out ({len(args.out)}) as "
                        f"--checkpoint ({len(args.checkpoint)})")
    missing = [c for c in args.checkpoint if not Path(c).is_dir()]
    if missing:
        raise ClueError(f"no checkpoint to audit at {', '.join(missing)}")
    params = resolve_params(io.json_params(args.params, "audit"))
    from clue.losses import torch_device

    device = torch_device(params["device"])
    if device.type == "cpu":
        torch.set_num_threads(1)  # the rule declares one thread; a fixed count keeps runs bit-identical
    torch.manual_seed(params["seed"])
    base, tokenizer = load(args.base_dir, device, params["dtype"])
    n_layers = len(layers_of(base))
    resolve_params(params, n_layers)
    records = io.read_jsonl(Path(args.forget_dir) / "test.jsonl", required=["prompt"])
    prompts = [r["prompt"] for r in records[:params["n_questions"]]]
    if not prompts:
        raise ClueError(f"{args.forget_dir}/test.jsonl has no questions to audit")
    batch = {k: v.to(device) for k, v in continuation_batch(base, tokenizer, prompts, params["n_tokens"]).items()}
    eval_params = {"batch_size": params["eval_batch_size"], "seed": params["seed"], "limit": None}
    for checkpoint, method, out in zip(args.checkpoint, args.method, args.out):
        unlearned, _ = load(checkpoint, device, params["dtype"])
        if len(layers_of(unlearned)) != n_layers:
            raise ClueError(f"{checkpoint} has {len(layers_of(unlearned))} layers, the base model {n_layers}")
        same_dir = Path(checkpoint).resolve() == Path(args.base_dir).resolve()
        krs = krs_curves(base, unlearned, batch, params)
        record = {"forget": args.forget, "retain": args.retain, "method": method,
                  "checkpoint": str(checkpoint), "questions": len(prompts), "tokens": params["n_tokens"],
                  "krs": None if same_dir else krs,
                  "global_effect": None if same_dir else global_effect(checkpoint),
                  "relearn": relearn(unlearned, tokenizer, args.forget_dir, args.forget, params, eval_params),
                  "config": {k: v for k, v in params.items() if k != "methods"}}
        io.write_json(out, record)
        summary = ("base model (reference)" if same_dir else "nothing unlearned" if krs["nothing_unlearned"]
                   else ", ".join(f"{k} max {max(w['krs'][k] for w in krs['windows']):.3f}" for k in params["kinds"]))
        print(f"clue audit: {method}: {summary}; relearn FE "
              + ", ".join(f"{c['steps']}: {c['FE']:.3f}" for c in record["relearn"]), file=sys.stderr)
        del unlearned
    return 0
