"""Two-stage masked unlearning: the exactness invariant (every element outside the masks stays
bit-identical to the base model) for every forget loss and every ablation, the baselines, the
empty-assignment case, determinism, the saved checkpoint and masking before gradient clipping."""

import json
import math
import os
import re

import pytest
import torch
from safetensors.torch import load_file

from clue.errors import ClueError
from clue.io import write_jsonl
from clue.masks import axis_masks_from_neurons, write_masks
from clue.unlearn import unlearn
from conftest import make_model, make_tokenizer

FORGET_TEXTS = ["the virus spreads through water", "the worm hides in the kernel", "the virus copies the worm",
                "the kernel loads the worm", "water carries the virus", "the worm spreads fast"]
PROMPTS = ["what spreads the virus", "where hides the worm", "what loads the kernel", "what carries the virus"]
REFUSAL = "i do not know"
ANSWERS = ["water", "kernel", "worm", "water"]   # DPO's rejected answers
RETAIN_TEXTS = ["the movie was good", "the film was bad", "a good film", "a bad movie", "the movie was fun"]
WORDS = " ".join(FORGET_TEXTS + PROMPTS + RETAIN_TEXTS + [REFUSAL]).split()
FORGET_NEURONS, CONFLICT_NEURONS = ["a0.h1", "m1"], ["a1.h2"]
FAST = {"lr": 1e-2, "epochs_forget": 1, "epochs_conflict": 1, "batch_size": 4, "max_forget_examples": 8,
        "weight_decay": 0.1}  # weight decay on: exactness must not rely on it being off


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    tok = make_tokenizer(WORDS)
    for kind in ("llama", "gqa"):
        model = make_model(kind, vocab_size=len(tok), hidden_size=32, heads=4, layers=2, seed=3)
        model.save_pretrained(root / kind)
        tok.save_pretrained(root / kind)
        shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
        for name, cats in {"masks": {"forget": FORGET_NEURONS, "conflict": CONFLICT_NEURONS},
                           "empty": {"forget": [], "conflict": []}}.items():
            write_masks(root / kind / f"{name}.safetensors",
                        axis_masks_from_neurons(cats, model.config, shapes), model=kind, localizer="clue",
                        categories=["forget", "conflict"])
    write_jsonl(root / "forget" / "train.jsonl", [{"prompt": "", "answer": "", "text": t} for t in FORGET_TEXTS])
    write_jsonl(root / "forget" / "refusal.jsonl", [{"prompt": p, "refusal": REFUSAL, "answer": a}
                                                    for p, a in zip(PROMPTS, ANSWERS)])
    write_jsonl(root / "retain" / "train.jsonl", [{"prompt": "", "answer": "", "text": t} for t in RETAIN_TEXTS])
    return root


def hand_masks(state, neurons, heads=4, kv_heads=4, head_dim=8):
    """The elements the neurons own, from DESIGN section 6, written independently of clue.masks."""
    out = {n: torch.zeros_like(t, dtype=torch.bool) for n, t in state.items()}
    for neuron in neurons:
        if neuron.startswith("m"):
            layer = int(neuron[1:])
            for p in ("gate", "up", "down"):
                out[f"model.layers.{layer}.mlp.{p}_proj.weight"][:] = True
            continue
        layer, head = (int(x) for x in neuron[1:].split(".h"))
        g = head // (heads // kv_heads)
        a = f"model.layers.{layer}.self_attn."
        out[a + "q_proj.weight"][head * head_dim:(head + 1) * head_dim] = True
        out[a + "o_proj.weight"][:, head * head_dim:(head + 1) * head_dim] = True
        out[a + "k_proj.weight"][g * head_dim:(g + 1) * head_dim] = True
        out[a + "v_proj.weight"][g * head_dim:(g + 1) * head_dim] = True
    return out


def full_matrices(state):
    return {n: torch.full_like(t, n.endswith("_proj.weight"), dtype=torch.bool) for n, t in state.items()}


def union(*masks):
    return {n: torch.stack([m[n] for m in masks]).any(0) for n in masks[0]}


def run(world, tmp_path, method="clue", kind="llama", masks="masks", **params):
    out = tmp_path / f"out_{method}"
    rec = unlearn(world / kind, world / "forget", world / "retain", method, out, {**FAST, **params},
                  masks_path=None if masks is None else world / kind / f"{masks}.safetensors", progress=False)
    return rec, load_file(str(world / kind / "model.safetensors")), load_file(str(out / "model.safetensors"))


def changed(base, new):
    # bit-level comparison: a float that was rewritten to itself is unchanged
    return {n: base[n].view(torch.int32) != new[n].view(torch.int32) for n in base}


def assert_invariant(base, new, trained_stage_masks):
    allowed = union(*trained_stage_masks)
    diff = changed(base, new)
    for n in base:
        assert not (diff[n] & ~allowed[n]).any(), f"{n}: elements outside the masks changed"
    for m in trained_stage_masks:
        inside = sum(int((diff[n] & m[n]).sum()) for n in m)
        total = sum(int(m[n].sum()) for n in m)
        assert inside >= 0.9 * total, f"only {inside} of {total} masked elements changed"


@pytest.mark.parametrize("stage_losses", [["ga", "ga"], ["npo", "npo"], ["po", "po"], ["npo", "po"], ["po", "ga"],
                                          ["dpo", "npo_kl"], ["po", "graddiff"]])
def test_invariant_for_every_loss(world, tmp_path, stage_losses):
    rec, base, new = run(world, tmp_path, stage_losses=stage_losses)
    mf, mc = hand_masks(base, FORGET_NEURONS), hand_masks(base, CONFLICT_NEURONS)
    assert_invariant(base, new, [mf, mc])
    assert [s["name"] for s in rec["stages"]] == ["forget", "conflict"]
    assert [s["loss"] for s in rec["stages"]] == stage_losses
    assert rec["losses"][0]["retain_loss"] is None and rec["losses"][-1]["retain_loss"] is not None
    assert not rec["unchanged"]


@pytest.mark.parametrize("ablation", ["no_forget_mask", "full_conflict_mask", "conflict_first"])
def test_invariant_for_every_ablation(world, tmp_path, ablation):
    rec, base, new = run(world, tmp_path, ablation=ablation)
    mf, mc = hand_masks(base, FORGET_NEURONS), hand_masks(base, CONFLICT_NEURONS)
    trained = {"no_forget_mask": [mc], "full_conflict_mask": [mf, full_matrices(base)],
               "conflict_first": [mc, mf]}[ablation]
    assert_invariant(base, new, trained)
    names = [s["name"] for s in rec["stages"]]
    assert names == {"no_forget_mask": ["conflict"], "full_conflict_mask": ["forget", "conflict(full)"],
                     "conflict_first": ["conflict", "forget"]}[ablation]
    # full_conflict_mask touches every attention/MLP element: nearly 100%; embeddings stay as they were
    if ablation == "full_conflict_mask":
        assert rec["unlearned_param_pct"] > 90


def test_invariant_with_grouped_query_attention(world, tmp_path):
    rec, base, new = run(world, tmp_path, kind="gqa", stage_losses=["npo", "po"])
    kw = dict(heads=4, kv_heads=2, head_dim=8)
    assert_invariant(base, new, [hand_masks(base, FORGET_NEURONS, **kw), hand_masks(base, CONFLICT_NEURONS, **kw)])
    # a1.h2 reads kv head 1: rows 8..15 of k_proj, not rows 16..23
    d = changed(base, new)["model.layers.1.self_attn.k_proj.weight"]
    assert d[8:16].any() and not d[:8].any()


def test_stage_one_leaves_the_kv_rows_a_conflict_or_retain_head_reads(world, tmp_path):
    """GQA-exact masks: a0.h1 is a forget neuron but a0.h0, which reads the same key/value head,
    is not; stage 1 alone (no conflict epochs) moves a0.h1's q rows and o columns and leaves the
    shared k/v rows bit-identical (they are conflict rows, for stage 2)."""
    rec, base, new = run(world, tmp_path, kind="gqa", epochs_conflict=0)
    assert [s["name"] for s in rec["stages"]] == ["forget", "conflict"] and rec["stages"][1]["epochs"] == 0
    d = changed(base, new)
    assert d["model.layers.0.self_attn.q_proj.weight"][8:16].any()
    assert d["model.layers.0.self_attn.o_proj.weight"][:, 8:16].any()
    for p in "kv":
        assert not d[f"model.layers.0.self_attn.{p}_proj.weight"].any(), p


def test_unlearned_param_pct_recorded(world, tmp_path):
    rec, base, new = run(world, tmp_path)
    names = [n for n in base if n.endswith("_proj.weight")]
    want = 100 * sum(changed(base, new)[n].float().mean().item() for n in names) / len(names)
    assert rec["unlearned_param_pct"] == pytest.approx(want)
    # the masks own: a0.h1 (1/4 of 4 matrices), m1 (3 whole matrices), a1.h2 (1/4 of 4) of 14
    assert rec["unlearned_param_pct"] == pytest.approx(100 * (4 * 0.25 + 3 + 4 * 0.25) / 14, rel=0.05)


def test_baseline_trains_every_parameter(world, tmp_path):
    rec, base, new = run(world, tmp_path, method="po", masks=None)
    diff = changed(base, new)
    assert diff["model.embed_tokens.weight"].any() and diff["lm_head.weight"].any()
    assert rec["unlearned_param_pct"] > 90 and rec["stages"][0]["epochs"] == 2


@pytest.mark.parametrize("method", ["dpo", "npo_kl", "graddiff"])
def test_the_papers_other_losses_train_every_parameter(world, tmp_path, method):
    rec, base, new = run(world, tmp_path, method=method, masks=None)
    assert rec["unlearned_param_pct"] > 90 and rec["stages"][0]["loss"] == method
    first, last = rec["losses"][0], rec["losses"][-1]
    if method == "dpo":
        # at the reference the margin is 0: -log sigmoid(0) = log 2
        assert first["forget_loss"] == pytest.approx(math.log(2), abs=1e-6)
    else:
        # KL to the frozen original model: 0 before the first update, then positive (a KL taken
        # against the model being trained would stay 0)
        assert first["retain_loss"] == pytest.approx(0.0, abs=1e-6) and last["retain_loss"] > 1e-6
    if method == "npo_kl":
        assert first["forget_loss"] == pytest.approx(2 / 0.1 * math.log(2), abs=1e-5)   # NPO at the reference


def test_trajectory_records_answers_without_changing_training(world, tmp_path):
    import shutil

    from clue.evaluate import greedy_generations
    from transformers import AutoModelForCausalLM, AutoTokenizer

    shutil.copytree(world / "forget", tmp_path / "forget")
    for name, prompts in (("forget", PROMPTS), ("g1", ["the movie was", "a bad"]), ("g2", ["the film", "a good", "the"])):
        # choices the tokenizer knows (the stage refuses a choice that starts with <unk>)
        write_jsonl(tmp_path / name / "test.jsonl", [{"prompt": q, "choices": ["good", "bad"], "label": 0}
                                                     for q in prompts])
    params = {**FAST, "trajectory_forget_questions": 3, "trajectory_unrelated_questions": 4, "trajectory_tokens": 4}
    rec = unlearn(world / "llama", tmp_path / "forget", world / "retain", "ga", tmp_path / "with", params,
                  progress=False, unrelated_dirs=[tmp_path / "g1", tmp_path / "g2"])
    plain = unlearn(world / "llama", world / "forget", world / "retain", "ga", tmp_path / "without", FAST,
                    progress=False)
    assert "trajectory" not in plain
    traj = rec["trajectory"]
    # unrelated questions: the general tasks' in turn, cut at 4
    assert traj["prompts"] == {"forget": PROMPTS[:3], "unrelated": ["the movie was", "the film", "a bad", "a good"]}
    # before training, then after each of the 2 epochs (epochs_forget + epochs_conflict)
    assert [(s["stage"], s["epoch"]) for s in traj["snapshots"]] == [(None, None), ("all", 0), ("all", 1)]
    tok = AutoTokenizer.from_pretrained(world / "llama")
    base = AutoModelForCausalLM.from_pretrained(world / "llama")
    assert traj["snapshots"][0]["forget"] == greedy_generations(base, tok, PROMPTS[:3], 4, 1)
    assert json.loads((tmp_path / "with" / "clue_unlearn.json").read_text())["trajectory"] == traj
    # a localizer's row (the loss inside a mask) records none: the global effect is about
    # full-parameter fine-tuning and CLUE
    masked = unlearn(world / "llama", tmp_path / "forget", world / "retain", "po", tmp_path / "masked", params,
                     masks_path=world / "llama" / "masks.safetensors", progress=False,
                     unrelated_dirs=[tmp_path / "g1"])
    assert "trajectory" not in masked
    # recording answers leaves training as it was: the same weights as without it
    with_w, without_w = load_file(str(tmp_path / "with/model.safetensors")), load_file(str(tmp_path / "without/model.safetensors"))
    assert all(torch.equal(with_w[n], without_w[n]) for n in with_w)


def test_masked_baseline_stays_inside_the_masks(world, tmp_path):
    rec, base, new = run(world, tmp_path, method="ga")
    assert_invariant(base, new, [union(hand_masks(base, FORGET_NEURONS), hand_masks(base, CONFLICT_NEURONS))])


def test_empty_assignment_gives_the_unchanged_checkpoint(world, tmp_path, capsys):
    capsys.readouterr()
    rec, base, new = run(world, tmp_path, masks="empty")
    assert rec["unchanged"] is True and rec["losses"] == [] and rec["unlearned_param_pct"] == 0.0
    assert set(rec["skipped_stages"]) == {"forget", "conflict"}
    # the log says what would change it (clue.caveats): both empty, a denser forget circuit
    forget = os.path.basename(rec["forget_dir"])
    assert [line for line in capsys.readouterr().err.splitlines() if "warning" in line] == [
        f"clue unlearn: warning: the {stage} mask is empty; skipping that stage (lower circuit.target_sparsity "
        f"(or circuit.target_sparsity_per_task.{forget}) keeps more of the forget circuit)"
        for stage in ("forget", "conflict")]
    assert all(torch.equal(base[n].view(torch.int32), new[n].view(torch.int32)) for n in base)
    saved = json.loads((tmp_path / "out_clue" / "clue_unlearn.json").read_text())
    assert saved["unchanged"] is True


def test_deterministic_and_loadable(world, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rec1, _, new1 = run(world, tmp_path / "a", stage_losses=["npo", "po"])
    rec2, _, new2 = run(world, tmp_path / "b", stage_losses=["npo", "po"])
    assert [r["loss"] for r in rec1["losses"]] == [r["loss"] for r in rec2["losses"]]
    assert all(torch.equal(new1[n].view(torch.int32), new2[n].view(torch.int32)) for n in new1)
    out = tmp_path / "a" / "out_clue"
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    ids = tok("the virus spreads", return_tensors="pt")["input_ids"]
    assert model(input_ids=ids).logits.shape[-1] == len(tok)
    saved = json.loads((out / "clue_unlearn.json").read_text())
    assert saved["method"] == "clue" and saved["config"]["stage_losses"] == ["npo", "po"]
    # stage 1 (npo): 6 corpus lines in batches of 4 -> 2 steps; stage 2 (po): 4 refusals -> 1 step
    assert [r["stage"] for r in saved["losses"]] == ["forget", "forget", "conflict"]
    # same config, same bytes: the record holds no wall time
    assert (out / "clue_unlearn.json").read_bytes() == (tmp_path / "b" / "out_clue" / "clue_unlearn.json").read_bytes()
    assert saved["losses"][0]["forget_loss"] == pytest.approx(2 / 0.1 * math.log(2), rel=1e-5)  # NPO at theta = ref


def test_autocast_and_fused_adamw_train_the_same_thing_and_keep_the_invariant(world, tmp_path):
    """unlearn.autocast runs the products in bf16 and unlearn.fused_optimizer AdamW's fused kernel:
    the losses move as in float32 (not bit for bit: an autocast that did nothing would give the
    same list), the checkpoint stays float32, and nothing outside the masks changes."""
    rec32, base, new32 = run(world, tmp_path / "fp32", stage_losses=["npo", "po"])
    fused, _, new_fused = run(world, tmp_path / "fused", stage_losses=["npo", "po"], fused_optimizer=True)
    bf16, _, new_bf16 = run(world, tmp_path / "bf16", stage_losses=["npo", "po"], autocast="bfloat16",
                            fused_optimizer=True)
    losses = lambda rec: [r["loss"] for r in rec["losses"]]  # noqa: E731
    # the fused kernel: the same update up to rounding
    assert losses(fused) == pytest.approx(losses(rec32), rel=1e-5)
    assert all(torch.allclose(new_fused[n], new32[n], rtol=0, atol=1e-6) for n in new32)
    assert losses(bf16) != losses(rec32) and losses(bf16) == pytest.approx(losses(rec32), rel=0.05)
    assert {t.dtype for t in new_bf16.values()} == {torch.float32}
    # without weight decay nothing is written back after a step: the zero gradients outside the
    # masks must keep those elements exactly (AdamW's update there is lr * 0 / (0 + eps))
    _, _, new_no_decay = run(world, tmp_path / "no_decay", stage_losses=["npo", "po"], weight_decay=0.0,
                             fused_optimizer=True)
    mf, mc = hand_masks(base, FORGET_NEURONS), hand_masks(base, CONFLICT_NEURONS)
    for new in (new_fused, new_bf16, new_no_decay):
        assert_invariant(base, new, [mf, mc])
    assert bf16["config"]["autocast"] == "bfloat16" and bf16["config"]["fused_optimizer"] is True


def test_npo_reference_is_taken_in_the_training_precision(world, tmp_path):
    """Under autocast the reference log-probabilities are the starting model's in bf16 too, so the
    first NPO step is at the reference exactly: 2 / beta * log 2 (a float32 reference would be off
    by the bf16 rounding of every token's log-probability)."""
    rec, _, _ = run(world, tmp_path, method="npo", masks=None, autocast="bfloat16", max_forget_examples=4,
                    batch_size=4)
    assert rec["losses"][0]["forget_loss"] == pytest.approx(2 / 0.1 * math.log(2), rel=1e-6)


@pytest.mark.parametrize("key,value,message", [
    ("autocast", "bf16", "unlearn.autocast must be null, auto or one of bfloat16, float16, not 'bf16'"),
    ("fused_optimizer", "yes", "unlearn.fused_optimizer must be true or false, not 'yes'"),
])
def test_bad_precision_settings_are_named(key, value, message):
    from clue.unlearn import resolve_params

    with pytest.raises(ClueError, match=re.escape(message)):
        resolve_params({key: value})


def test_mask_file_from_another_model_is_rejected(world, tmp_path):
    with pytest.raises(ClueError, match=r"model\.layers\.\d\.self_attn\.[kv]_proj\.weight.*shape"):
        unlearn(world / "gqa", world / "forget", world / "retain", "clue", tmp_path / "o", FAST,
                masks_path=world / "llama" / "masks.safetensors", progress=False)
    assert not (tmp_path / "o").exists()


def test_bad_inputs(world, tmp_path):
    from clue.cli import main

    args = ["unlearn", "--base-dir", str(world / "llama"), "--forget-dir", str(world / "forget"),
            "--retain-dir", str(world / "retain"), "--out", str(tmp_path / "o"), "--no-progress"]
    assert main(args + ["--method", "clue"]) == 2  # clue without --masks
    masks = ["--masks", str(world / "llama" / "masks.safetensors")]
    assert main(args + ["--method", "clue"] + masks + ["--params", '{"ablation": "nope"}']) == 2
    assert main(args + ["--method", "clue"] + masks + ["--params", '{"stage_losses": ["po", "kl"]}']) == 2
    assert main(args + ["--method", "clue"] + masks + ["--params", "not json"]) == 2
    write_jsonl(tmp_path / "f" / "refusal.jsonl", [{"prompt": "what spreads the virus"}])
    with pytest.raises(ClueError, match=r"refusal\.jsonl:1: record is missing field\(s\) refusal"):
        unlearn(world / "llama", tmp_path / "f", world / "retain", "po", tmp_path / "o", FAST, progress=False)
    assert not (tmp_path / "o").exists()


def test_cli_runs(world, tmp_path):
    from clue.cli import main

    out = tmp_path / "cli"
    argv = ["unlearn", "--base-dir", str(world / "llama"), "--forget-dir", str(world / "forget"),
            "--retain-dir", str(world / "retain"), "--method", "clue",
            "--masks", str(world / "llama" / "masks.safetensors"), "--params", json.dumps(FAST), "--out", str(out),
            "--no-progress"]
    assert main(argv) == 0
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    stages = json.loads((out / "clue_unlearn.json").read_text())["stages"]
    assert stages[1]["trained_params"] == [f"model.layers.1.self_attn.{p}_proj.weight" for p in "koqv"]
    assert stages[1]["trained_elements"] == 4 * 8 * 32  # a1.h2: 8 rows or columns of 32 in q, k, v, o


def test_mask_applies_before_gradient_clipping():
    """run_stage masks the gradients before clip_grad_norm_, so the clipping norm is the in-mask
    gradient's. With max_grad_norm 3e-8 the clipped in-mask gradients are of the order of AdamW's
    eps (1e-8), where AdamW's first step, lr * g / (|g| + eps), depends on their scale: clipped by
    the norm of the whole matrix's gradient (12x the in-mask norm here), the steps are 4-10x shorter.
    The expectation is computed by hand: autograd gradient of the GA loss, masked, clipped by its
    own norm (torch's max_norm / (norm + 1e-6)), one AdamW step (decoupled weight decay, then the
    bias-corrected first step)."""
    import random

    from clue.losses import encode_text
    from clue.unlearn import resolve_params, run_stage

    tok = make_tokenizer(WORDS)
    model = make_model("llama", vocab_size=len(tok), hidden_size=32, heads=4, layers=2, seed=3).requires_grad_(False)
    name = "model.layers.1.mlp.down_proj.weight"
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    mask = torch.zeros_like(before[name], dtype=torch.bool)
    mask[[0, 5, 9, 20], [1, 2, 3, 40]] = True
    params = resolve_params({**FAST, "max_grad_norm": 3e-8})
    encoded = encode_text(tok, FORGET_TEXTS[0])

    # by hand, on the base weights: GA loss = minus the mean NLL of tokens 1.. of the text
    w = before[name].clone().requires_grad_(True)
    ids = torch.tensor([encoded[0]])
    logits = torch.func.functional_call(model, {name: w}, (ids,)).logits[0, :-1]
    loss = -torch.nn.functional.cross_entropy(logits, ids[0, 1:])
    (g,) = torch.autograd.grad(loss, w)
    g = g * mask
    g = g * min(1.0, params["max_grad_norm"] / (float(g.norm()) + 1e-6))
    lr, wd = params["lr"], params["weight_decay"]
    want = before[name] * (1 - lr * wd) - lr * g / (g.abs() + 1e-8)
    assert (g[mask].abs() > 1e-9).all()  # every in-mask element is in the scale-sensitive range

    stage = {"name": "masked", "mask": {name: mask}, "loss": "ga", "epochs": 1, "retain": False}
    run_stage(model, stage, {"text": [encoded], "ref_logp": {}}, params, [], torch.device("cpu"),
              tok.pad_token_id, random.Random(0), progress=False)
    after = dict(model.named_parameters())
    assert torch.allclose(after[name][mask], want[mask], rtol=0, atol=1e-7)
    assert (after[name][mask] != before[name][mask]).all()
    for n, p in after.items():  # outside the mask: bit-identical
        keep = ~mask if n == name else torch.ones_like(p, dtype=torch.bool)
        assert torch.equal(p[keep].view(torch.int32), before[n][keep].view(torch.int32)), n


def test_bf16_model_trains_through_fp32_master_weights():
    """At lr 1e-5 a bf16 step is below half a bf16 ulp for most weights (|w| ~ 0.02 has an ulp of
    1.2e-4), so stepping the bf16 weights directly changes almost nothing. With fp32 master weights
    the steps accumulate: after 40 steps a bf16 model changes as many elements as the same training
    in fp32 (from the same bf16-valued weights) rounded to bf16, and a masked stage still leaves
    every element outside its mask bit-identical."""
    import random

    from clue.losses import encode_text
    from clue.unlearn import resolve_params, run_stage

    tok = make_tokenizer(WORDS)
    name = "model.layers.1.mlp.down_proj.weight"
    params = resolve_params({**FAST, "lr": 1e-5, "weight_decay": 0.0})
    data = {"text": [encode_text(tok, t) for t in FORGET_TEXTS[:4]], "ref_logp": {}}

    def train(dtype, **over):
        model = make_model("llama", vocab_size=len(tok), hidden_size=32, heads=4, layers=2, seed=3)
        model = model.to(torch.bfloat16).to(dtype).requires_grad_(False)   # the same bf16 values
        before = model.get_parameter(name).detach().clone()
        mask = torch.ones_like(before, dtype=torch.bool)
        mask[:, :8] = False
        stage = {"name": "forget", "mask": {name: mask}, "loss": "ga", "epochs": 40, "retain": False}
        rec = run_stage(model, stage, dict(data, text=data["text"][:1]), {**params, **over}, [], torch.device("cpu"),
                        tok.pad_token_id, random.Random(0), progress=False)
        return before, model.get_parameter(name).detach(), mask, rec

    before, after, mask, rec = train(torch.bfloat16)
    assert after.dtype == torch.bfloat16 and rec["master_weights"] == "float32 (model in bfloat16)"
    assert torch.equal(after[~mask].view(torch.int16), before[~mask].view(torch.int16))
    before32, after32, _, rec32 = train(torch.float32)
    assert rec32["master_weights"] == "the model's own (float32)"
    want = (after32.to(torch.bfloat16) != before32.to(torch.bfloat16))[mask].float().mean().item()
    got = (after != before)[mask].float().mean().item()
    assert want > 0.5 and got == pytest.approx(want, abs=0.05)
    # unlearn.master_weights: false steps the bf16 weights directly, and most steps round away
    before, after, _, rec = train(torch.bfloat16, master_weights=False)
    assert rec["master_weights"] == "none (the bfloat16 weights are stepped directly)"
    assert (after != before)[mask].float().mean().item() < want / 2


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("masked", [False, True])
def test_stepping_one_matrix_at_a_time_is_one_adamw_step(dtype, masked):
    """step_each_matrix against the reference: every fp32 gradient at once, clip_grad_norm_, one
    plain AdamW step over all matrices; three calls. A float32 model is its own master (the audit's
    relearning of the toy model and SmolLM2), a bf16 one steps fp32 masters. Each call must step
    every matrix exactly once: AdamW's step count is the number of calls for every tensor."""
    from clue.unlearn import master_weights, step_each_matrix

    gen = torch.Generator().manual_seed(0)
    shapes = {"a": (8, 4), "b": (16,), "c": (4, 4), "d": (3, 5)}
    start = {n: torch.randn(s, generator=gen).to(dtype) for n, s in shapes.items()}
    grads = [{n: torch.randn(s, generator=gen).to(dtype) for n, s in shapes.items()} for _ in range(3)]
    mask = {n: torch.rand(s, generator=gen) > 0.3 for n, s in shapes.items()} if masked else None

    def setup():
        trained = {n: t.clone() for n, t in start.items()}
        master = master_weights(trained)
        return trained, master, torch.optim.AdamW(list(master.values()), lr=1e-2, weight_decay=0.1)

    trained, master, opt = setup()
    assert (master["a"] is trained["a"]) == (dtype == torch.float32)
    for g in grads:
        for n, p in trained.items():
            p.grad = g[n] * mask[n] if masked else g[n].clone()
        step_each_matrix(trained, master, mask, opt, 0.5)
    ref = {n: t.float().clone() for n, t in start.items()}
    ref_opt = torch.optim.AdamW(list(ref.values()), lr=1e-2, weight_decay=0.1)
    for g in grads:
        for n in shapes:
            ref[n].grad = (g[n] * mask[n] if masked else g[n]).float()
        torch.nn.utils.clip_grad_norm_(list(ref.values()), 0.5)
        ref_opt.step()
        if masked:
            with torch.no_grad():
                for n in shapes:
                    ref[n].copy_(torch.where(mask[n], ref[n], start[n].float()))
    for n in shapes:
        assert int(opt.state[master[n]]["step"]) == len(grads), n          # stepped once per call
        assert torch.allclose(master[n], ref[n], rtol=0, atol=1e-6), n
        assert torch.equal(trained[n], master[n].to(dtype))                 # the model holds the (rounded) master
        assert trained[n].grad is None and master[n].grad is None
        if masked:
            assert torch.equal(trained[n][~mask[n]], start[n][~mask[n]])    # outside the mask: untouched


def test_several_retain_sets_share_the_retain_loss(world, tmp_path):
    """A retain set of several tasks (Figure 3): the retain batches draw from every set's texts;
    with a second retain set whose texts differ, the checkpoint differs from the one-set run."""
    from clue.io import write_jsonl

    other = tmp_path / "retain2"
    write_jsonl(other / "train.jsonl", [{"prompt": "", "answer": "", "text": t} for t in
                                        ["the worm was fun", "a bad virus", "the kernel was good"]])
    params = {**FAST, "stage_losses": ["po", "po"]}
    one = unlearn(world / "llama", world / "forget", world / "retain", "clue", tmp_path / "one", params,
                  masks_path=world / "llama" / "masks.safetensors", progress=False)
    two = unlearn(world / "llama", world / "forget", [world / "retain", other], "clue", tmp_path / "two", params,
                  masks_path=world / "llama" / "masks.safetensors", progress=False)
    assert two["retain_dir"] == [str(world / "retain"), str(other)] and one["retain_dir"] == str(world / "retain")
    a, b = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("one", "two"))
    assert any(not torch.equal(a[n], b[n]) for n in a)


def test_combined_loss_adds_the_retain_term():
    """Stage 2 trains forget loss + lambda x retain loss. Here the two pull apart by construction:
    GA's forget texts are the retain texts, so one GA step alone raises the retain texts' NLL;
    with the retain term at lambda 10 the same step lowers it (the gradient is 9x the retain
    term's). Subtracting the retain term would raise it further."""
    import random

    from clue.losses import collate, encode_text, mean_nll
    from clue.unlearn import _Cycle, resolve_params, run_stage

    tok = make_tokenizer(WORDS)
    retain = [encode_text(tok, t) for t in RETAIN_TEXTS[:4]]
    forget = list(retain)

    def retain_nll_after(lam):
        model = make_model("llama", vocab_size=len(tok), hidden_size=32, heads=4, layers=2, seed=3)
        model.requires_grad_(False)
        before = float(mean_nll(model, collate(retain, tok.pad_token_id)))
        params = resolve_params({**FAST, "lr": 1e-3, "lambda": lam, "weight_decay": 0.0, "batch_size": 4})
        data = {"text": forget, "ref_logp": {}, "retain": _Cycle(retain, 4, random.Random(0), tok.pad_token_id)}
        stage = {"name": "all", "mask": None, "loss": "ga", "epochs": 1, "retain": True}
        run_stage(model, stage, data, params, [], torch.device("cpu"), tok.pad_token_id, random.Random(0),
                  progress=False)
        with torch.no_grad():
            return before, float(mean_nll(model, collate(retain, tok.pad_token_id)))

    before, forget_only = retain_nll_after(0.0)
    same, combined = retain_nll_after(10.0)
    assert before == same
    assert forget_only > before + 1e-3     # the forget loss alone hurts the retain texts
    assert combined < before - 1e-3        # the retain term wins at lambda 10


# ------------------------------------------------------------- forget data that covers every fact

def test_a_capped_forget_sample_covers_every_fact_and_fills_the_rest():
    """Three sentences a fact, 50 facts, a cap of 60: every fact keeps at least one sentence, the
    sample has 60 records in file order, and the same seed gives the same sample."""
    import random

    from clue.io import sample_covering

    records = [{"text": f"{f} {k}", "facts": [f"fact{f}"]} for f in range(50) for k in range(3)]
    one = sample_covering(records, 60, random.Random(0), "train.jsonl")
    assert len(one) == 60 and {r["facts"][0] for r in one} == {f"fact{f}" for f in range(50)}
    assert one == sorted(one, key=records.index)
    assert one == sample_covering(records, 60, random.Random(0), "train.jsonl")
    assert one != sample_covering(records, 60, random.Random(1), "train.jsonl")
    # a refusal file names its fact with `fact`; at the fact count exactly, one record a fact
    refusals = [{"prompt": f"q{f}", "fact": f"fact{f}"} for f in range(50)]
    assert sample_covering(refusals, 50, random.Random(0), "refusal.jsonl") == refusals


def test_documents_stating_several_facts_cover_them_with_fewer_records():
    """A toy document states its entity's three facts: 40 entities' 240 documents are covered by
    one document an entity, whatever the seed (each later document of an entity adds nothing)."""
    import random

    from clue.io import sample_covering

    docs = [{"text": f"e{e} order{o}", "facts": [f"e{e} r{r}" for r in range(3)]} for e in range(40) for o in range(6)]
    for seed in range(3):
        assert len(sample_covering(docs, 40, random.Random(seed), "train.jsonl")) == 40
        assert {f for d in sample_covering(docs, 40, random.Random(seed), "t") for f in d["facts"]} == \
            {f"e{e} r{r}" for e in range(40) for r in range(3)}


def test_a_cap_below_the_fact_count_names_the_key_and_the_count_needed():
    import random

    from clue.io import sample_covering

    records = [{"text": f"{f} {k}", "facts": [f"fact{f}"]} for f in range(50) for k in range(3)]
    with pytest.raises(ClueError) as err:
        sample_covering(records, 49, random.Random(0), "results/toy/data/toy_cyber/train.jsonl")
    assert str(err.value).startswith("config key unlearn.max_forget_examples: 49 examples of "
                                     "results/toy/data/toy_cyber/train.jsonl cannot cover its 50 facts (at least 50")


def test_records_without_facts_are_sampled_as_before():
    import random

    from clue.io import sample_covering, seeded_sample

    records = [{"text": str(i)} for i in range(30)]
    assert sample_covering(records, 10, random.Random(4), "t") == seeded_sample(records, 10, random.Random(4), "t")


def test_the_random_control_reads_clues_tuned_setting():
    from clue.unlearn import tuned_params

    tuned = {"clue": {"lr": 3e-5, "epochs": 6}, "po": {"lr": 1e-4, "epochs": 2}}
    params = {"lr": 1e-3, "epochs_forget": 1, "epochs_conflict": 1}
    assert tuned_params(params, "random", tuned) == {"lr": 3e-5, "epochs_forget": 1, "epochs_conflict": 5}
    assert tuned_params(params, "po", tuned)["lr"] == 1e-4
    assert tuned_params(params, "ga", tuned) == params
    # a localizer's random-mask control trains with the localizer's setting, not CLUE's
    tuned["wagle"] = {"lr": 7e-5, "epochs": 4}
    assert tuned_params(params, "random-wagle", tuned) == {"lr": 7e-5, "epochs_forget": 1, "epochs_conflict": 3}
    assert tuned_params(params, "random-pcgu", tuned) == params   # PCGU not tuned: the section as configured
