"""The knowledge-recovery audit (clue.audit): KRS by activation patching and parameter restoration,
checked on models that differ from the base in known places, where the KRS of each restoration
follows from the residual-stream algebra X_{l+1} = X_l + A_l + W_V^l m_l; relearning with no step
gives the checkpoint's own FE (an independent multiple-choice scorer)."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import make_model  # noqa: E402

from clue import audit, io  # noqa: E402
from clue.base_model import multiple_choice_accuracy  # noqa: E402
from clue.cli import main  # noqa: E402
from clue.data import write_task  # noqa: E402

LAYERS = 4
PARAMS = audit.resolve_params({"window": 1, "n_questions": 4, "n_tokens": 5})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from clue.base_model import build_tokenizer, task_texts

    root = tmp_path_factory.mktemp("audit")
    data = root / "data" / "toy_cyber"
    write_task("toy_cyber", dict(seed=1, n_train=40, n_test=12, n_pairs=4), data)
    tok = build_tokenizer(task_texts(data))
    base = make_model("gqa", vocab_size=len(tok), layers=LAYERS, seed=3)
    base.save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    prompts = [r["prompt"] for r in io.read_jsonl(data / "test.jsonl")[:4]]
    return {"root": root, "data": data, "tok": tok, "base": base,
            "batch": audit.continuation_batch(base, tok, prompts, 5)}


def changed(base, names, seed=7):
    """A copy of ``base`` with random noise added to the named parameters only."""
    import copy

    import torch

    model = copy.deepcopy(base)
    g = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in names:
            params[name].add_(torch.randn(params[name].shape, generator=g) * 0.5)
    return model


def curves(base, model, batch, **params):
    return audit.krs_curves(base, model, batch, {**PARAMS, **params})


def test_continuation_scores_exactly_the_generated_tokens(world):
    b = world["batch"]
    lengths = b["attention_mask"].sum(1)
    assert (b["scored"].sum(1) == 5).all()
    for i in range(b["input_ids"].shape[0]):
        scored = b["scored"][i].nonzero().flatten().tolist()
        # the positions that predict the 5 new tokens: the prompt's last token to the one before the end
        assert scored == list(range(int(lengths[i]) - 6, int(lengths[i]) - 1))


def test_restoring_every_parameter_of_every_layer_gives_krs_one(world):
    every = [n for n, _ in world["base"].named_parameters() if ".layers." in n]
    model = changed(world["base"], every)
    res = curves(world["base"], model, world["batch"], window=LAYERS, kinds=["layer"], isolated=False)
    assert res["loss_unlearned"] > 0
    whole = [w for w in res["windows"] if w["layers"] == [0, LAYERS - 1]]
    assert len(whole) == 1 and whole[0]["krs"]["layer"] == pytest.approx(1.0, abs=1e-6)
    # a window that leaves a changed layer out recovers less
    assert all(w["krs"]["layer"] < 1 - 1e-3 for w in res["windows"] if w["layers"] != [0, LAYERS - 1])


def test_windows_are_centred_and_cut_at_the_ends():
    # causal tracing's window: layers l - w//2 .. l - w//2 + w - 1, within 0 .. n - 1
    assert audit.windows(4, 1) == {0: [0], 1: [1], 2: [2], 3: [3]}
    assert audit.windows(4, 2) == {0: [0], 1: [0, 1], 2: [1, 2], 3: [2, 3]}
    assert audit.windows(6, 5) == {0: [0, 1, 2], 1: [0, 1, 2, 3], 2: [0, 1, 2, 3, 4], 3: [1, 2, 3, 4, 5],
                                   4: [2, 3, 4, 5], 5: [3, 4, 5]}


def test_restoring_a_layer_that_did_not_change_gives_krs_zero(world):
    model = changed(world["base"], ["model.layers.2.mlp.up_proj.weight"])
    res = curves(world["base"], model, world["batch"], kinds=["layer", "W_V"])
    krs = {w["layers"][0]: w["krs"] for w in res["windows"]}
    assert krs[2]["layer"] == pytest.approx(1.0, abs=1e-6)
    for layer in (0, 1, 3):
        assert krs[layer]["layer"] == 0.0 and krs[layer]["W_V"] == 0.0


@pytest.mark.parametrize("layer", [1, 3])
def test_value_vectors_changed_in_one_layer(world, layer):
    model = changed(world["base"], [f"model.layers.{layer}.mlp.down_proj.weight"])
    res = curves(world["base"], model, world["batch"], kinds=["W_V", "m"])
    for w in res["windows"]:
        inside = w["layers"][0] == layer
        assert w["krs"]["W_V"] == pytest.approx(1.0 if inside else 0.0, abs=1e-6)
        if w["layers"][0] <= layer:
            # m_l up to this layer is the base model's already: patching it changes nothing
            assert w["krs"]["m"] == pytest.approx(0.0, abs=1e-6)
    if layer == LAYERS - 1:
        # no later layer to hold: the isolated restoration is the plain one
        assert res["windows"][layer]["krs_isolated"]["W_V"] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("layer", [1, 3])
def test_coefficients_changed_in_one_layer(world, layer):
    # gate_proj feeds only m_l: patching m_l undoes the whole change, an earlier window nothing
    model = changed(world["base"], [f"model.layers.{layer}.mlp.gate_proj.weight"])
    res = curves(world["base"], model, world["batch"], kinds=["m", "W_V", "A"])
    krs = {w["layers"][0]: w for w in res["windows"]}
    assert krs[layer]["krs"]["m"] == pytest.approx(1.0, abs=1e-6)
    assert krs[0]["krs"]["m"] == pytest.approx(0.0, abs=1e-6)
    assert all(krs[l]["krs"]["W_V"] == 0.0 for l in range(LAYERS))
    if layer == LAYERS - 1:
        # the A held in the last layer is the base one (attention runs before the changed MLP)
        assert krs[layer]["krs_isolated"]["m"] == pytest.approx(1.0, abs=1e-6)


def test_attention_changed_in_one_layer(world):
    model = changed(world["base"], ["model.layers.2.self_attn.o_proj.weight"])
    res = curves(world["base"], model, world["batch"], kinds=["m", "A", "m+A"])
    krs = {w["layers"][0]: w for w in res["windows"]}
    assert krs[2]["krs"]["A"] == pytest.approx(1.0, abs=1e-6)
    assert krs[2]["krs"]["m+A"] == pytest.approx(1.0, abs=1e-6)
    assert krs[0]["krs"]["A"] == pytest.approx(0.0, abs=1e-6)
    # restoring layer 0 changes nothing, so the states held in the isolated variant must be the
    # unlearned model's own (holding the base model's m_2, m_3 or A_2 would recover knowledge)
    assert krs[0]["krs_isolated"]["A"] == pytest.approx(0.0, abs=1e-6)
    assert krs[0]["krs_isolated"]["m"] == pytest.approx(0.0, abs=1e-6)
    assert krs[0]["krs_isolated"]["m"] is not None


@pytest.mark.parametrize("changed_param,kind", [
    ("model.layers.1.mlp.gate_proj.weight", "m"),
    ("model.layers.1.mlp.down_proj.weight", "W_V"),
    ("model.layers.1.self_attn.o_proj.weight", "A"),
])
def test_the_isolated_variant_holds_the_later_layers(world, changed_param, kind):
    # restoring the changed element of layer 1 undoes the change (KRS 1); holding the other
    # elements of layers 1..3 at the unlearned model's states keeps the change's effect on them
    # (A_2, A_3 or m_1..m_3 were computed from the changed residual), so less comes back. A
    # variant that held nothing, or held only the window's own layer, would give 1 here too.
    model = changed(world["base"], [changed_param])
    res = curves(world["base"], model, world["batch"], kinds=[kind])
    w = res["windows"][1]
    assert w["krs"][kind] == pytest.approx(1.0, abs=1e-6)
    assert w["krs_isolated"][kind] < 1 - 1e-3


def test_a_checkpoint_equal_to_the_base_has_nothing_unlearned(world):
    import copy

    res = curves(world["base"], copy.deepcopy(world["base"]), world["batch"])
    assert res["nothing_unlearned"] is True and res["loss_unlearned"] == 0.0
    assert all(v is None for w in res["windows"] for v in {**w["krs"], **w["krs_isolated"]}.values())


def test_restoration_leaves_the_models_as_they_were(world):
    import torch

    model = changed(world["base"], ["model.layers.0.mlp.down_proj.weight", "model.layers.3.mlp.down_proj.weight"])
    before = {n: p.clone() for n, p in model.state_dict().items()}
    base_before = {n: p.clone() for n, p in world["base"].state_dict().items()}
    curves(world["base"], model, world["batch"], kinds=["W_V", "layer", "m+A"])
    assert all(torch.equal(before[n], p) for n, p in model.state_dict().items())
    assert all(torch.equal(base_before[n], p) for n, p in world["base"].state_dict().items())
    assert not model._forward_pre_hooks and all(
        not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cli_relearning_with_zero_steps_gives_the_checkpoints_fe(world, tmp_path, dtype):
    model = changed(world["base"], ["model.layers.3.mlp.down_proj.weight"])
    ckpt = tmp_path / "ga"
    model.save_pretrained(ckpt)
    world["tok"].save_pretrained(ckpt)
    texts = [r["text"] for r in io.read_jsonl(world["data"] / "train.jsonl")[:16]]
    io.write_jsonl(world["data"] / "holdout.jsonl", [{"text": t} for t in texts])
    out = tmp_path / "ga.json"
    assert main(["audit", "--base-dir", str(world["root"] / "base"), "--checkpoint", str(ckpt),
                 "--method", "ga", "--forget-dir", str(world["data"]), "--forget", "toy_cyber",
                 "--retain", "toy_sst2", "--out", str(out), "--params",
                 json.dumps({"window": 2, "n_questions": 3, "n_tokens": 4, "relearn_steps": [0, 3],
                             "relearn_lr": 0.01, "dtype": dtype})]) == 0
    rec = json.loads(out.read_text())
    records = io.read_jsonl(world["data"] / "test.jsonl")
    if dtype == "float32":   # (in bf16 lm-eval's batches and the direct scoring round differently)
        assert rec["relearn"][0] == {"steps": 0, "FE": pytest.approx(1 - multiple_choice_accuracy(model, world["tok"], records))}
    assert rec["relearn"][1]["steps"] == 3
    assert [w["layers"] for w in rec["krs"]["windows"]] == [[0, 0], [0, 1], [1, 2], [2, 3]]
    # in bf16 the restorations are exact too (the same weights are swapped in); only the losses are coarser
    assert [w["krs"]["W_V"] for w in rec["krs"]["windows"]] == pytest.approx([0, 0, 0, 1], abs=1e-6 if dtype == "float32" else 1e-2)


@pytest.mark.parametrize("params,message", [
    ({"kinds": ["m", "V"]}, "audit.kinds: unknown restoration kind(s) 'V'; known: m, W_V, A, m+A"),
    ({"window": 0}, "audit.window must be a positive integer or null, not 0"),
    ({"relearn_steps": [50, 10]}, "audit.relearn_steps must be increasing non-negative integers"),
    ({"n_tokenz": 3}, "n_tokenz"),
    ({"dtype": "float8"}, "audit.dtype must be float32, bfloat16 or float16, not 'float8'"),
])
def test_bad_params_name_the_key(params, message):
    from clue.errors import ClueError

    with pytest.raises(ClueError, match=None) as e:
        audit.resolve_params(params)
    assert message in str(e.value)


def test_window_larger_than_the_model_fails_naming_the_key(world, tmp_path, capsys):
    out = tmp_path / "x.json"
    assert main(["audit", "--base-dir", str(world["root"] / "base"), "--checkpoint", str(world["root"] / "base"),
                 "--method", "origin", "--forget-dir", str(world["data"]), "--forget", "toy_cyber",
                 "--retain", "toy_sst2", "--out", str(out), "--params", json.dumps({"window": 5})]) == 2
    assert "audit.window 5 is larger than the model's 4 layers" in capsys.readouterr().err
    assert not out.exists()


def test_global_effect_scores_every_epoch_against_the_starting_answers(tmp_path):
    import sacrebleu

    snaps = [{"stage": None, "epoch": None, "forget": ["the worm hides in the kernel", "water"],
              "unrelated": ["a good film"]},
             {"stage": "all", "epoch": 0, "forget": ["the worm hides in the", "i do not know"],
              "unrelated": ["a good film"]}]
    (tmp_path / "clue_unlearn.json").write_text(json.dumps({"trajectory": {"snapshots": snaps}}))
    got = audit.global_effect(tmp_path)
    assert got[0] == {"stage": None, "epoch": None, "forget_bleu": pytest.approx(1.0), "unrelated_bleu": pytest.approx(1.0)}
    want = (sacrebleu.sentence_bleu("the worm hides in the", ["the worm hides in the kernel"]).score
            + sacrebleu.sentence_bleu("i do not know", ["water"]).score) / 200
    assert got[1]["forget_bleu"] == pytest.approx(want) and 0 < want < 1
    assert got[1]["unrelated_bleu"] == pytest.approx(1.0)
    snaps[1]["unrelated"], snaps[0]["unrelated"] = [""], [""]   # the same empty answer is the same answer
    (tmp_path / "clue_unlearn.json").write_text(json.dumps({"trajectory": {"snapshots": snaps}}))
    assert audit.global_effect(tmp_path)[1]["unrelated_bleu"] == 1.0
    (tmp_path / "clue_unlearn.json").write_text(json.dumps({"method": "ga"}))
    assert audit.global_effect(tmp_path) is None


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_hooks_work_for_every_supported_architecture(world, kind):
    # Llama with full multi-head attention, and Qwen2 (biases on q/k/v): the same exact algebra
    base = make_model(kind, vocab_size=len(world["tok"]), layers=3, seed=5)
    batch = audit.continuation_batch(base, world["tok"], ["the"], 4)
    for name, restore in (("model.layers.1.mlp.down_proj.weight", "W_V"),
                          ("model.layers.1.self_attn.o_proj.weight", "A"),
                          ("model.layers.1.mlp.up_proj.weight", "m")):
        res = curves(base, changed(base, [name]), batch, kinds=[restore], isolated=False)
        got = [w["krs"][restore] for w in res["windows"]]
        assert got[1] == pytest.approx(1.0, abs=1e-6) and got[0] == pytest.approx(0.0, abs=1e-6), (kind, name)


def test_relearning_is_plain_adamw_on_the_heldout_corpus(world, tmp_path):
    """One relearning step of a float32 model is one AdamW step over every parameter on the
    held-out corpus (a reference written here); it changes the weights and lowers the forget
    loss. Catches a zero learning rate and a step that moves some matrices more than once."""
    import copy

    import torch

    from clue.losses import collate, encode_text, mean_nll

    data = tmp_path / "toy_cyber"
    write_task("toy_cyber", dict(seed=1, n_train=40, n_test=12, n_pairs=4), data)
    texts = [r["text"] for r in io.read_jsonl(data / "train.jsonl")[:6]]
    io.write_jsonl(data / "holdout.jsonl", [{"text": t} for t in texts])
    tok, base = world["tok"], world["base"]
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    batch = collate([encode_text(tok, t) for t in texts], pad)

    ref = copy.deepcopy(base).requires_grad_(True)
    opt = torch.optim.AdamW(list(ref.parameters()), lr=0.01, weight_decay=0.0)
    mean_nll(ref, batch).backward()
    opt.step()

    model = copy.deepcopy(base)
    before = float(mean_nll(model, batch).detach())
    params = audit.resolve_params({"window": 1, "relearn_steps": [1], "relearn_lr": 0.01,
                                   "relearn_batch_size": len(texts)})
    curve = audit.relearn(model, tok, data, "toy_cyber", params, {"batch_size": 64, "seed": 0, "limit": None})
    assert [c["steps"] for c in curve] == [1]
    after = float(mean_nll(model, batch).detach())
    assert after < before - 1e-3
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        assert torch.allclose(p, q, rtol=0, atol=1e-6), name
        assert not torch.equal(p, dict(base.named_parameters())[name]), name
