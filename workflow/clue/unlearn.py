"""Masked two-stage unlearning (paper section 4) and the fine-tuning baselines.

``--method clue``: stage 1 trains only the forget-mask elements (M_f) with the forget loss
(``epochs_forget``); stage 2 trains only the conflict-mask elements (M_c) with forget loss +
lambda * retain loss (``epochs_conflict``). Table 2's ablations are the ``ablation`` switch and
``stage_losses``. ``--method ga|npo|po``: the same forget loss + lambda * retain loss on every
parameter for ``epochs_forget + epochs_conflict`` epochs (or, given ``--masks``, on the union of
its categories: the masked fine-tuning of the localization baselines).

Masking is exact by construction: a stage marks as trainable only the matrices its mask touches
(everything else is frozen: no gradient, no optimizer state), multiplies their gradients by the
mask (so AdamW's moments only see masked elements) and, after every optimizer step, writes back
``param = where(mask, param, value_at_stage_start)``. AdamW's decoupled weight decay and momentum
therefore cannot move an element outside the mask by even one bit.
"""

import json
import random
import sys
import time
from pathlib import Path

from clue.errors import ClueError
from clue.io import atomic_dir, json_params, read_jsonl, sample_covering, with_defaults



def methods():
    """``clue`` and every registered forget loss (clue/losses)."""
    from clue.losses import FORGET_LOSSES

    return ("clue", *FORGET_LOSSES)

ABLATIONS = ("none", "no_forget_mask", "full_conflict_mask", "conflict_first")

# The `unlearn` config section. lr: the paper grid-searches 1e-5 for 7B models; a small model
# trained from scratch needs a larger step to move in a few hundred steps.
DEFAULTS = {
    "lr": 1e-4,
    "epochs_forget": 1,
    "epochs_conflict": 5,
    "lambda": 1.0,
    "stage_losses": ["po", "po"],
    "npo_beta": 0.1,
    "dpo_beta": 0.1,
    "batch_size": 8,
    "max_forget_examples": 256,
    "ablation": "none",
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "seed": 0,
    "device": "auto",
    "dtype": "auto",
    # fp32 master weights for a bf16/fp16 model (run_stage); False steps the low-precision weights
    # directly: 4 bytes a parameter less (a 7B model's full fine-tuning fits 80 GB), most lr-1e-5
    # updates rounded away
    "master_weights": True,
    # null: every product in the model's dtype; "bfloat16": the forward and backward matrix products
    # in bf16 under torch.autocast (weights, AdamW and the saved checkpoint stay in the model's
    # dtype): 2.2x faster a step for SmolLM2 on one CPU thread, 2.6x with the fused
    # AdamW (bench/bench_train_step.py)
    "autocast": None,
    # AdamW's fused kernel: the same update up to float rounding (not bit-identical to the loop),
    # 7x faster on CPU (0.09 s against 0.65 s a step over SmolLM2-135M's weights)
    "fused_optimizer": False,
    "jobs": "per_checkpoint",  # read by the workflow only: one job per checkpoint, or a pair's all in one
    # The global negative effect (Hong et al. section 4): greedy answers to this many forget test
    # questions and general-task test questions (the unrelated knowledge), before training and after
    # every epoch, kept in clue_unlearn.json; the audit scores them with BLEU. 0 and 0: not recorded.
    "trajectory_forget_questions": 10,
    "trajectory_unrelated_questions": 50,
    "trajectory_tokens": 16,
}


def resolve_params(params):
    """Defaults + the config section, validated. Unknown keys are reported (not fatal: the config
    section may carry keys meant for the workflow, such as a list of methods)."""
    p = with_defaults(params, DEFAULTS, "unlearn", strict=False)
    from clue.losses import get_forget_loss

    losses = p["stage_losses"]
    if not isinstance(losses, (list, tuple)) or len(losses) != 2:
        raise ClueError(f"unlearn.stage_losses must be two forget-loss names (stage 1, stage 2), not {losses!r}")
    p["stage_losses"] = [str(x) for x in losses]
    for name in p["stage_losses"]:
        get_forget_loss(name)
    if p["ablation"] not in ABLATIONS:
        raise ClueError(f"unlearn.ablation must be one of {', '.join(ABLATIONS)}, not {p['ablation']!r}")
    for key in ("lr", "npo_beta", "dpo_beta"):
        if not isinstance(p[key], (int, float)) or p[key] <= 0:
            raise ClueError(f"unlearn.{key} must be a positive number, not {p[key]!r}")
    for key in ("epochs_forget", "epochs_conflict", "batch_size", "max_forget_examples", "seed",
                "trajectory_forget_questions", "trajectory_unrelated_questions", "trajectory_tokens"):
        if not isinstance(p[key], int) or isinstance(p[key], bool) or p[key] < (1 if key in ("batch_size", "max_forget_examples") else 0):
            raise ClueError(f"unlearn.{key} must be a non-negative integer (batch_size, max_forget_examples >= 1), "
                            f"not {p[key]!r}")
    for key in ("master_weights", "fused_optimizer"):
        if not isinstance(p[key], bool):
            raise ClueError(f"unlearn.{key} must be true or false, not {p[key]!r}")
    from clue.losses import autocast_dtype

    autocast_dtype(p["autocast"], "unlearn.autocast")
    for key in ("lambda", "weight_decay", "max_grad_norm"):
        if not isinstance(p[key], (int, float)) or p[key] < 0:
            raise ClueError(f"unlearn.{key} must be a non-negative number, not {p[key]!r}")
    return p


# --------------------------------------------------------------------------- stages

def plan_stages(method, params, masks):
    """The training stages: a list of dicts (name, mask: {param: bool} or None for every parameter,
    loss, epochs, retain: bool). Stages whose mask is empty are kept with ``mask == {}`` so the
    log records that they were skipped."""
    from clue.masks import union_masks

    lf, lc = params["stage_losses"]
    if method != "clue":
        total = params["epochs_forget"] + params["epochs_conflict"]
        mask = None if masks is None else union_masks(masks)
        return [{"name": "all" if mask is None else "masked", "mask": mask, "loss": method,
                 "epochs": total, "retain": True}]
    forget = {"name": "forget", "mask": masks.get("forget", {}), "loss": lf,
              "epochs": params["epochs_forget"], "retain": False}
    conflict = {"name": "conflict", "mask": masks.get("conflict", {}), "loss": lc,
                "epochs": params["epochs_conflict"], "retain": True}
    ablation = params["ablation"]
    if ablation == "no_forget_mask":
        return [conflict]
    if ablation == "full_conflict_mask":
        conflict["name"], conflict["mask"] = "conflict(full)", "full"
    if ablation == "conflict_first":
        return [conflict, forget]
    return [forget, conflict]


def _full_mask(model):
    """The paper's full-true M_c: every element of every attention/MLP weight matrix."""
    import torch
    from clue.masks import matrix_names

    params = dict(model.named_parameters())
    return {n: torch.ones_like(params[n], dtype=torch.bool) for n in matrix_names(model)}


class _Cycle:
    """Endless retain batches: a fresh seeded shuffle on every pass over the retain set."""

    def __init__(self, encoded, batch_size, rng, pad_id):
        self.encoded, self.batch_size, self.rng, self.pad_id = encoded, batch_size, rng, pad_id
        self.queue = []

    def next(self):
        from clue.losses import collate

        while len(self.queue) < self.batch_size:
            order = list(range(len(self.encoded)))
            self.rng.shuffle(order)
            self.queue.extend(order)
        idx, self.queue = self.queue[: self.batch_size], self.queue[self.batch_size:]
        return collate([self.encoded[i] for i in idx], self.pad_id)


def _reference_logps(model, encoded, batch_size, pad_id, device):
    """Sequence log-probabilities of the frozen base model (NPO's reference), computed once before
    any update: the reference *is* the starting model, so no second copy is kept in memory."""
    import torch
    from clue.losses import collate, sequence_logprob, to_device

    out = []
    with torch.no_grad():
        for i in range(0, len(encoded), batch_size):
            batch = to_device(collate(encoded[i: i + batch_size], pad_id), device)
            out.append(sequence_logprob(model, batch).detach().cpu())
    return torch.cat(out)


def master_weights(trained):
    """The tensors AdamW steps, {name: tensor}. A bf16/fp16 model at lr 1e-5 would round most
    updates away (bf16 keeps 8 mantissa bits: a step below half an ulp of the weight is lost), so
    each trained low-precision matrix gets an fp32 master copy and the model the rounded result
    (:func:`step_each_matrix`); an fp32 parameter is its own master."""
    import torch

    return {n: p if p.dtype == torch.float32 else p.detach().float() for n, p in trained.items()}


def step_each_matrix(trained, master, mask, opt, max_grad_norm):
    """The AdamW step of a model with master weights, one matrix at a time, so that only one
    matrix's fp32 gradient exists at once (a 7B full fine-tuning saves 29 GB). The same update as
    one step over all matrices: AdamW keeps its moments and step count per parameter and skips
    parameters without a gradient, so every gradient is taken off its parameter first and handed
    to its master alone for that matrix's step (a float32 parameter is its own master: leaving the
    others' gradients in place would step them again on every call). The gradients are clipped by
    their global norm first, as clip_grad_norm_ does (max_norm / (norm + 1e-6), at most 1).
    Outside the mask the master gets back the value it held before the step."""
    import torch

    coef = 1.0
    if max_grad_norm > 0:
        norm = torch.sqrt(sum(p.grad.float().pow(2).sum() for p in trained.values()))
        coef = min(1.0, max_grad_norm / (float(norm) + 1e-6))
    grads = {}
    for n, p in trained.items():
        grads[n], p.grad = p.grad, None
    for n, p in trained.items():
        own = master[n] is p
        # a low-precision weight holds the stage-start value outside the mask; a float32 one is
        # about to be stepped, so keep its pre-step value (one matrix at a time)
        before = p.detach().clone() if own and mask is not None else None
        grad = grads.pop(n)
        master[n].grad = (grad if own else grad.float()).mul_(coef)
        opt.step()
        master[n].grad = None
        if mask is not None:
            master[n].copy_(torch.where(mask[n], master[n], before if own else p.float()))
        if not own:
            p.copy_(master[n])


def describe_master(trained, master):
    import torch

    name = lambda p: str(p.dtype).removeprefix("torch.")  # noqa: E731
    low = sorted({name(p) for n, p in trained.items() if master[n] is not p})
    direct = sorted({name(p) for n, p in trained.items() if master[n] is p and p.dtype != torch.float32})
    if direct:
        return f"none (the {', '.join(direct)} weights are stepped directly)"
    return f"float32 (model in {', '.join(low)})" if low else "the model's own (float32)"


def autocast(params, device):
    """The context the losses are computed in: torch.autocast at ``unlearn.autocast``, or nothing."""
    from clue import losses

    return losses.autocast(params["autocast"], "unlearn.autocast", device.type)


def run_stage(model, stage, data, params, log, device, pad_id, rng, progress=True, after_epoch=None):
    """Train one stage in place. ``data``: {"text"|"refusal": encoded forget examples,
    "retain": _Cycle, "ref_logp": {"text": tensor}}. Appends per-step losses to ``log``."""
    import torch
    from tqdm import tqdm

    from clue.losses import collate, collate_preference, get_forget_loss, to_device
    from clue.losses.retain import retain_kl, retain_loss

    spec = get_forget_loss(stage["loss"])
    mask = stage["mask"]
    params_by_name = dict(model.named_parameters())
    if mask is None:
        trained = dict(params_by_name)
    else:
        trained = {n: params_by_name[n] for n, m in mask.items() if bool(m.any())}
        mask = {n: mask[n].to(device) for n in trained}
    for n, p in params_by_name.items():
        p.requires_grad_(n in trained)
    master = master_weights(trained) if params["master_weights"] else dict(trained)
    stepwise = any(master[n] is not p for n, p in trained.items())
    # value of every trained matrix at the start of the stage, written back outside the mask after
    # each step (an element may hold an earlier stage's update). With master weights the model's
    # own low-precision weights hold it: outside the mask they are never changed. Without weight
    # decay nothing is to be written back: a stage's AdamW starts with zero moments, so an element
    # whose gradient is always 0 gets the update lr * 0 / (0 + eps) = 0 and keeps its value exactly.
    anchor = None if mask is None or stepwise or params["weight_decay"] == 0 else {
        n: q.detach().clone() for n, q in master.items()}
    opt = torch.optim.AdamW(list(master.values()), lr=params["lr"], weight_decay=params["weight_decay"],
                            fused=params["fused_optimizer"] or None)

    examples = data[spec.data]
    ref = data["ref_logp"].get(spec.data) if spec.needs_reference else None
    bs = params["batch_size"]
    steps_per_epoch = (len(examples) + bs - 1) // bs
    bar = tqdm(total=stage["epochs"] * steps_per_epoch, desc=f"unlearn {stage['name']} ({stage['loss']})",
               disable=None if progress else True, file=sys.stderr)
    for epoch in range(stage["epochs"]):
        order = list(range(len(examples)))
        rng.shuffle(order)
        for start in range(0, len(order), bs):
            idx = order[start: start + bs]
            batch = (collate_preference if spec.data == "preference" else collate)(
                [examples[i] for i in idx], pad_id, None if ref is None else ref[idx])
            with autocast(params, device):
                forget = spec.fn(model, to_device(batch, device), params)
                loss = forget
                retain = None
                if stage["retain"] and params["lambda"] > 0:
                    retain_batch = to_device(data["retain"].next(), device)
                    retain = (retain_kl(model, data["reference_model"], retain_batch) if spec.retain == "kl"
                              else retain_loss(model, retain_batch))
                    loss = forget + params["lambda"] * retain
            if not torch.isfinite(loss):
                raise ClueError(f"stage {stage['name']}: the loss became {loss.item()} at epoch {epoch} "
                                f"(lower unlearn.lr or use a bounded forget loss such as npo or po)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():
                if mask is not None:
                    for n, p in trained.items():
                        p.grad.masked_fill_(~mask[n], 0.0)   # one matrix's complement at a time
                if stepwise:
                    step_each_matrix(trained, master, mask, opt, params["max_grad_norm"])
                else:   # an fp32 model: one AdamW step over every trained matrix
                    if params["max_grad_norm"] > 0:
                        torch.nn.utils.clip_grad_norm_(list(master.values()), params["max_grad_norm"])
                    opt.step()
                    if anchor is not None:
                        for n, p in trained.items():
                            p.copy_(torch.where(mask[n], p, anchor[n]))
            log.append({"stage": stage["name"], "epoch": epoch, "step": len(log),
                        "forget_loss": forget.item(), "retain_loss": None if retain is None else retain.item(),
                        "loss": loss.item()})
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if after_epoch is not None:
            after_epoch(stage["name"], epoch)
    bar.close()
    for p in params_by_name.values():
        p.requires_grad_(False)
    del opt, anchor
    return {"name": stage["name"], "loss": stage["loss"], "epochs": stage["epochs"],
            "master_weights": describe_master(trained, master),
            "retain": stage["retain"], "steps": stage["epochs"] * steps_per_epoch,
            "trained_params": sorted(trained) if mask is not None else "all",
            "trained_elements": int(sum(m.sum().item() for m in mask.values())) if mask is not None
            else int(sum(p.numel() for p in trained.values()))}


# --------------------------------------------------------------------------- data

def _load_forget_data(forget_dir, tokenizer, kinds, cap, rng):
    """The forget examples of each kind the stages' losses need, at most ``cap`` of each, covering
    every fact of the forget set (clue.io.sample_covering)."""
    from clue.losses import encode_preference, encode_prompt_target, encode_text

    out = {}
    forget_dir = Path(forget_dir)
    if "text" in kinds:
        recs = read_jsonl(forget_dir / "train.jsonl", required=["text"])
        out["text"] = [encode_text(tokenizer, r["text"]) for r in sample_covering(recs, cap, rng, forget_dir / "train.jsonl")]
    if "refusal" in kinds:
        path = forget_dir / "refusal.jsonl"
        recs = read_jsonl(path, required=["prompt", "refusal"])
        out["refusal"] = [encode_prompt_target(tokenizer, r["prompt"], r["refusal"]) for r in sample_covering(recs, cap, rng, path)]
    if "preference" in kinds:
        # DPO: the refusal preferred over the original answer of the same fact
        path = forget_dir / "refusal.jsonl"
        recs = read_jsonl(path, required=["prompt", "refusal", "answer"])
        out["preference"] = [encode_preference(tokenizer, r["prompt"], r["refusal"], r["answer"])
                             for r in sample_covering(recs, cap, rng, path)]
    return out


def _trajectory_recorder(model, tokenizer, forget_dir, unrelated_dirs, p, record):
    """Record greedy answers to the trajectory questions now (the starting model) and return the
    callback that records them after every epoch; None when there are none. The forget questions
    are the forget set's first test questions; the unrelated ones are taken in turn from the test
    questions of ``unrelated_dirs`` (the general tasks: nothing trains on them, unlike the retain
    set). Greedy decoding changes nothing in the model, so training is the same either way."""
    import copy

    from clue.evaluate import greedy_generations

    tokenizer = copy.deepcopy(tokenizer)   # generation may set a pad token; the saved one stays as loaded

    def test_prompts(where):
        path = Path(where) / "test.jsonl"
        return [r["prompt"] for r in read_jsonl(path, required=["prompt"])] if path.is_file() else []

    prompts = {"forget": test_prompts(forget_dir)[:p["trajectory_forget_questions"]], "unrelated": []}
    pools = [test_prompts(d) for d in unrelated_dirs]
    for i in range(max(map(len, pools), default=0)):
        prompts["unrelated"] += [pool[i] for pool in pools if i < len(pool)]
    prompts["unrelated"] = prompts["unrelated"][:p["trajectory_unrelated_questions"]]
    if not any(prompts.values()):
        return None
    record["trajectory"] = {"prompts": prompts, "snapshots": []}

    def snapshot(stage, epoch):
        answers = {k: greedy_generations(model, tokenizer, v, p["trajectory_tokens"], 64) if v else []
                   for k, v in prompts.items()}
        record["trajectory"]["snapshots"].append({"stage": stage, "epoch": epoch, **answers})

    snapshot(None, None)
    return snapshot


# --------------------------------------------------------------------------- entry points

def unlearn(base_dir, forget_dir, retain_dir, method, out, params=None, masks_path=None, progress=True,
            unrelated_dirs=(), after_each_epoch=None):
    """Unlearn and write the checkpoint directory ``out`` (None: write nothing, for the tune
    stage); returns the clue_unlearn.json record. ``after_each_epoch(model, tokenizer, epochs)``
    is called after every epoch with the number of epochs trained so far, over all stages (the
    tune stage scores the validation questions there)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from clue.losses import encode_text, get_forget_loss, torch_device
    from clue.masks import load_masks, resolve_base, unlearned_param_pct_dirs

    if method not in methods():
        raise ClueError(f"unknown unlearning method {method!r} (known: {', '.join(methods())})")
    p = resolve_params(params)
    if method == "clue" and masks_path is None:
        raise ClueError("--method clue needs --masks (the forget and conflict masks of `clue masks`)")
    if method != "clue" and p["ablation"] != "none":
        raise ClueError(f"unlearn.ablation={p['ablation']} applies to --method clue only, not {method}")
    t0 = time.time()
    torch.manual_seed(p["seed"])
    rng = random.Random(p["seed"])
    device = torch_device(p["device"])

    base_dir = Path(base_dir)
    dtype = p["dtype"] if p["dtype"] == "auto" else getattr(torch, p["dtype"], None)
    if dtype is None:
        raise ClueError(f"unlearn.dtype {p['dtype']!r} is not a torch dtype")
    source = resolve_base(base_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except OSError as e:
        raise ClueError(f"{base_dir}: cannot load the base checkpoint {source} ({e})") from None
    from clue.base_model import check_model_type

    check_model_type(model)
    from clue.data import check_context

    retain_dirs = [retain_dir] if isinstance(retain_dir, (str, Path)) else list(retain_dir)
    for task_dir in (forget_dir, *retain_dirs):
        check_context(tokenizer, model.config.max_position_embeddings, task_dir,
                      Path(task_dir).name, base_dir)
    model.to(device).eval()  # eval: no dropout, so steps and NPO's cached reference agree
    for q in model.parameters():
        q.requires_grad_(False)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)

    masks = None
    if masks_path is not None:
        masks = load_masks(masks_path, model, device="cpu")
    stages = plan_stages(method, p, masks)
    for st in stages:
        if st["mask"] == "full":
            st["mask"] = _full_mask(model)
    active = [st for st in stages if st["mask"] is None or any(bool(m.any()) for m in st["mask"].values())]
    # `jobs` only tells the workflow how to batch processes: the same checkpoint either way
    record = {"method": method, "config": {k: v for k, v in p.items() if k != "jobs"}, "base_dir": str(base_dir), "forget_dir": str(forget_dir),
              "retain_dir": str(retain_dirs[0]) if len(retain_dirs) == 1 else [str(d) for d in retain_dirs], "masks": None if masks_path is None else str(masks_path),
              "stages": [], "skipped_stages": [st["name"] for st in stages if st not in active],
              "losses": [], "unchanged": not active}
    from clue.caveats import EMPTY_MASK_SETTING

    both = {"forget", "conflict"} <= set(record["skipped_stages"])
    for name in record["skipped_stages"]:
        # what an empty CLUE mask means is the masks stage's warning; here the setting that changes it
        hint = EMPTY_MASK_SETTING["both" if both else name] if name in EMPTY_MASK_SETTING else None
        setting = f" ({hint.format(forget=Path(forget_dir).name)})" if hint else ""
        print(f"clue unlearn: warning: the {name} mask is empty; skipping that stage{setting}", file=sys.stderr)

    if active:
        kinds = {get_forget_loss(st["loss"]).data for st in active}
        data = _load_forget_data(forget_dir, tokenizer, kinds, p["max_forget_examples"], rng)
        # several retain sets (Figure 3): the retain loss draws from all their training texts
        retain_recs = []
        for d in retain_dirs:
            recs = read_jsonl(Path(d) / "train.jsonl", required=["text"])
            if not recs:
                raise ClueError(f"{Path(d) / 'train.jsonl'}: no records")
            retain_recs += recs
        data["retain"] = _Cycle([encode_text(tokenizer, r["text"]) for r in retain_recs], p["batch_size"],
                                random.Random(p["seed"] + 1), pad_id)
        data["ref_logp"] = {}
        specs = [get_forget_loss(st["loss"]) for st in active]
        for kind in {spec.data for spec in specs if spec.needs_reference}:
            # in the precision of the training steps, so that the reference is the starting model's
            # own value in them (NPO's ratio starts at exactly 1)
            with autocast(p, device):
                if kind == "preference":   # [N, 2]: the refusal, then the original answer
                    data["ref_logp"][kind] = torch.stack([
                        _reference_logps(model, [pair[i] for pair in data[kind]], p["batch_size"], pad_id, device)
                        for i in (0, 1)], dim=1)
                else:
                    data["ref_logp"][kind] = _reference_logps(model, data[kind], p["batch_size"], pad_id, device)
        # NPO+KL and GradDiff regularise towards the original model: keep a frozen copy of it
        if p["lambda"] > 0 and any(spec.retain == "kl" and st["retain"] for spec, st in zip(specs, active)):
            import copy

            data["reference_model"] = copy.deepcopy(model).eval()
        # the global effect concerns full-parameter fine-tuning and CLUE, not the localizers' rows
        trajectory = (_trajectory_recorder(model, tokenizer, forget_dir, unrelated_dirs, p, record)
                      if out is not None and (method == "clue" or masks_path is None) else None)
        done = [sum(st["epochs"] for st in stages[:stages.index(active[0])])]   # skipped stages count as done

        def after_epoch(stage, epoch):
            done[0] += 1
            if trajectory is not None:
                trajectory(stage, epoch)
            if after_each_epoch is not None:
                after_each_epoch(model, tokenizer, done[0])

        for st in active:
            record["stages"].append(run_stage(model, st, data, p, record["losses"], device, pad_id, rng, progress,
                                              after_epoch))
    else:
        print("clue unlearn: the masks have no forget and no conflict elements (the assignment has no forget "
              "and no conflict neurons); writing the base model unchanged", file=sys.stderr)

    if out is None:
        record["seconds"] = round(time.time() - t0, 3)
        return record
    with atomic_dir(out) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        record["unlearned_param_pct"] = unlearned_param_pct_dirs(base_dir, tmp)
        (tmp / "clue_unlearn.json").write_text(json.dumps(record, indent=2) + "\n")
    # the wall time goes to the log, not the checkpoint: the same config gives the same bytes
    record["seconds"] = round(time.time() - t0, 3)
    return record


def add_arguments(parser):
    parser.add_argument("--base-dir", required=True, help="base checkpoint directory (save_pretrained + tokenizer)")
    parser.add_argument("--forget-dir", required=True, help="forget task data dir (train.jsonl, refusal.jsonl)")
    parser.add_argument("--retain-dir", required=True, nargs="+",
                        help="retain task data dir (train.jsonl); several: the retain loss draws from all")
    parser.add_argument("--unrelated-dirs", nargs="*", default=[],
                        help="data dirs whose test questions are the unrelated knowledge of the global-effect record")
    parser.add_argument("--method", required=True, nargs="+", choices=methods(),
                        help="clue: two-stage masked unlearning; ga/npo/po: that loss on all parameters. Several, "
                        "with as many --out (and --masks), are trained one after the other in this process")
    parser.add_argument("--masks", nargs="+", default=None,
                        help="mask .safetensors per method, 'none' for no mask (required for clue; for ga/npo/po "
                        "restricts training to its union)")
    parser.add_argument("--params", default="{}", help="the `unlearn` config section as a JSON object")
    parser.add_argument("--out", required=True, nargs="+", help="output checkpoint directory, one per method")
    parser.add_argument("--rows", nargs="+", default=None,
                        help="the Table 1 row of each --method, for the log (a localizer's row trains PO: "
                        "--method po --rows wagle)")
    parser.add_argument("--tuned", nargs="+", help="the tune stage's choices (selected/{method}.json): each row's "
                        "learning rate and epochs replace unlearn.lr and the epochs (a variant such as "
                        "clue-no_forget_mask takes its method's, the random-mask control CLUE's)")
    parser.add_argument("--no-progress", action="store_true", help="hide the tqdm progress bar")


def read_tuned(paths):
    """{row: {lr, epochs}} of the tune stage's choice files (selected/{method}.json), or {} without."""
    from clue.io import read_json

    out = {}
    for path in paths or []:
        out.update(read_json(path)["methods"])
    return out


def tuned_params(params, row, tuned):
    """The unlearn section for one Table 1 row: its tuned learning rate and epochs where the tune
    stage chose them (``epochs`` counts all epochs: CLUE's first epochs_forget on the forget mask,
    a baseline's all), else the section as configured."""
    from clue.names import tuned_from

    # a random-mask control trains with its matched method's setting: only the neurons differ
    choice = next((tuned[m] for m in tuned_from(row) if tuned.get(m)), None)
    if not choice:
        return params
    ef = params.get("epochs_forget", DEFAULTS["epochs_forget"])
    return {**params, "lr": choice["lr"], "epochs_conflict": choice["epochs"] - ef}


def main(args):
    params = json_params(args.params, "unlearn")
    masks = args.masks or ["none"] * len(args.method)
    rows = args.rows or list(args.method)
    if not len(args.method) == len(masks) == len(args.out) == len(rows):
        raise ClueError(f"give as many --out ({len(args.out)}), --masks ({len(masks)}) and --rows ({len(rows)}) "
                        f"as --method ({len(args.method)})")
    # one process for several checkpoints (unlearn.jobs: per_pair): on a CPU with a toy model,
    # importing torch and transformers takes about as long as a masked fine-tuning
    tuned = read_tuned(args.tuned)
    for method, row, mask, out in zip(args.method, rows, masks, args.out):
        rec = unlearn(args.base_dir, args.forget_dir, args.retain_dir, method, out, tuned_params(params, row, tuned),
                      unrelated_dirs=args.unrelated_dirs,
                      masks_path=None if mask == "none" else mask, progress=not args.no_progress)
        last = rec["losses"][-1]["loss"] if rec["losses"] else None
        trained = method if row == method else f"{method} inside its mask"
        print(f"clue unlearn: {row} ({trained}): {len(rec['losses'])} steps, final loss {last}, "
              f"unlearned {rec['unlearned_param_pct']:.2f}% of parameters, {rec['seconds']:.1f}s -> {out}",
              file=sys.stderr)
    return 0
