"""Baseline localizers (WAGLE, DEPN, PCGU, MEMIT causal tracing): the requested ratio, each
score against an independent computation, planted units each must select (and planted ones it must
not), the masked-update invariant through clue.unlearn, and the bad-ratio / nothing-selected
errors."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from clue.errors import ClueError
from clue.io import write_jsonl
from clue.localizers import (Context, LOCALIZERS, accumulate_gradients, load_base, localize, prompt_batch,
                             resolve_params, run_localizer)
from clue.localizers.depn import integrated_gradients
from clue.localizers.memit import corrupted_embeddings, trace
from clue.localizers.pcgu import least_similar_rows, row_cosine
from clue.localizers.wagle import select_top, wagle_scores
from clue.masks import load_masks, mask_param_pct, matrix_names, read_masks
from clue.unlearn import unlearn
from conftest import make_model, make_tokenizer

FORGET_TEXTS = ["the virus spreads through water", "the worm hides in the kernel", "the virus copies the worm",
                "the kernel loads the worm", "water carries the virus", "the worm spreads fast"]
PAIRS = [("the virus spreads through", "water", "the worm spreads through", "kernel"),
         ("the worm hides in the", "kernel", "the virus hides in the", "water"),
         ("water carries the", "virus", "kernel carries the", "worm"),
         ("the kernel loads the", "worm", "a kernel", "virus")]  # last: other length -> noise corruption
PROMPTS = ["what spreads the virus", "where hides the worm", "what loads the kernel", "what carries the virus"]
REFUSAL = "i do not know"
RETAIN_TEXTS = ["the movie was good", "the film was bad", "a good film", "a bad movie", "the movie was fun"]
WORDS = " ".join(FORGET_TEXTS + PROMPTS + RETAIN_TEXTS + [REFUSAL, "a"]).split()
LAYERS, INTER = 2, 64
# ratios chosen so MEMIT takes one whole layer plus part of the other (floor(0.6 * 128) = 76 = 64 + 12)
RATIOS = {"wagle": 0.3, "pcgu": 0.4, "depn": 0.3, "memit": 0.6}
PARAMS = {"ratios": RATIOS, "n_examples": 8, "batch_size": 4, "ig_steps": 4, "seed": 0}
UNLEARN = {"lr": 1e-2, "epochs_forget": 1, "epochs_conflict": 1, "batch_size": 4, "max_forget_examples": 8,
           "weight_decay": 0.1}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("loc")
    tok = make_tokenizer(WORDS)
    model = make_model("llama", vocab_size=len(tok), hidden_size=32, heads=4, layers=LAYERS,
                       intermediate_size=INTER, seed=5)
    model.save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    (root / "base" / "clue_base.json").write_text(json.dumps({"source": "toy"}))
    write_jsonl(root / "forget" / "train.jsonl", [{"prompt": "", "answer": t, "text": t} for t in FORGET_TEXTS])
    write_jsonl(root / "forget" / "pairs.jsonl", [{"clean": c, "clean_answer": ca, "corrupted": x,
                                                   "corrupted_answer": xa} for c, ca, x, xa in PAIRS])
    write_jsonl(root / "forget" / "refusal.jsonl", [{"prompt": p, "refusal": REFUSAL} for p in PROMPTS])
    write_jsonl(root / "retain" / "train.jsonl", [{"prompt": "", "answer": t, "text": t} for t in RETAIN_TEXTS])
    return root


@pytest.fixture(scope="module")
def masks(world):
    """Every localizer run once through the public entry point: {name: (record, mask path)}."""
    out = {}
    for name in ("wagle", "pcgu", "depn", "memit"):
        path = world / "masks" / f"{name}.safetensors"
        out[name] = (localize(world / "base", world / "forget", world / "retain", [name], [path], PARAMS,
                              model_name="toy")[0], path)
    return out


@pytest.fixture(scope="module")
def ctx(world):
    model, tok = load_base(world / "base", torch.device("cpu"))
    return Context(model, tok, world / "forget", world / "retain", resolve_params(PARAMS), torch.device("cpu"))


def test_registry_has_every_baseline():
    assert set(LOCALIZERS) >= {"wagle", "depn", "pcgu", "memit"}


def test_forget_only_localizers_give_the_same_bytes_without_a_retain_set(world, masks, tmp_path):
    """DEPN and MEMIT score the forget set alone (the workflow makes their mask once a forget set
    and copies it to each pair); WAGLE and PCGU read the retain set and say so without one."""
    assert sorted(n for n, loc in LOCALIZERS.items() if not loc.reads_retain) == ["depn", "memit"]
    for name in ("depn", "memit"):
        path = tmp_path / f"{name}.safetensors"
        localize(world / "base", world / "forget", [], [name], [path], PARAMS, model_name="toy")
        assert path.read_bytes() == masks[name][1].read_bytes()
    for name in ("wagle", "pcgu"):
        with pytest.raises(ClueError, match=f"localizer {name} scores the retain set: give --retain-dir"):
            localize(world / "base", world / "forget", [], [name], [tmp_path / "x.safetensors"], PARAMS,
                     model_name="toy")
    assert not (tmp_path / "x.safetensors").exists()


# --------------------------------------------------------------------------- requested ratio

@pytest.mark.parametrize("name", ["wagle", "pcgu", "depn", "memit"])
def test_mask_has_requested_ratio(world, masks, name):
    rec, path = masks[name]
    meta, raw = read_masks(path)
    assert meta["localizer"] == name and float(meta["ratio"]) == RATIOS[name]
    assert meta["categories"] == "forget"
    model = make_model("llama", vocab_size=len(make_tokenizer(WORDS)), hidden_size=32, heads=4, layers=LAYERS,
                       intermediate_size=INTER, seed=5)
    dense = load_masks(path, model)
    shapes = {n: p.shape for n, p in model.named_parameters()}
    ratio = RATIOS[name]
    if name == "wagle":  # exactly floor(ratio * N) of all N attention/MLP weights, ranked together
        names = matrix_names(model)
        total = sum(shapes[n].numel() for n in names)
        assert sum(int(dense["forget"].get(n, torch.zeros(1)).sum()) for n in names) == math.floor(ratio * total)
        assert all(set(raw["forget"][n]) == {"dense"} for n in raw["forget"])
    elif name == "pcgu":
        for n in matrix_names(model):
            frac = dense["forget"][n].float().mean().item()
            assert abs(frac - ratio) <= 1 / shapes[n][0], (n, frac)
            assert set(raw["forget"][n]) == {"rows"}  # whole rows
        assert abs(mask_param_pct(dense, model) - 100 * ratio) <= 100 / 16  # 16: fewest rows (k/v)
    else:
        # MLP neurons only: the same neuron set on gate rows, up rows and down columns
        total = 0
        for layer in range(LAYERS):
            mlp = f"model.layers.{layer}.mlp."
            gate = raw["forget"].get(mlp + "gate_proj.weight", {}).get("rows", torch.zeros(INTER, dtype=torch.uint8))
            assert torch.equal(gate, raw["forget"].get(mlp + "up_proj.weight", {}).get("rows", gate * 0))
            assert torch.equal(gate, raw["forget"].get(mlp + "down_proj.weight", {}).get("cols", gate * 0))
            total += int(gate.sum())
        assert total == math.floor(ratio * LAYERS * INTER)
        assert not any("self_attn" in n for n in raw["forget"])
        assert mask_param_pct(dense, model) == pytest.approx(100 * 3 / 7 * total / (LAYERS * INTER))
    assert rec["mask_param_pct"] == pytest.approx(mask_param_pct(dense, model))


def test_memit_takes_whole_layers_by_indirect_effect(masks):
    rec, path = masks["memit"]
    info = rec["info"]
    _, raw = read_masks(path)
    ie = info["indirect_effect"]
    assert info["layer_order"] == sorted(range(LAYERS), key=lambda i: -ie[i])
    best = info["layer_order"][0]
    assert info["full_layers"] == [best] and info["partial_neurons"] == math.floor(0.6 * 128) - 64
    assert int(raw["forget"][f"model.layers.{best}.mlp.gate_proj.weight"]["rows"].sum()) == INTER


# --------------------------------------------------------------------------- scores vs hand computations

class TwoParams(torch.nn.Module):
    def __init__(self, x, y):
        super().__init__()
        self.x = torch.nn.Parameter(torch.tensor([[x]]))
        self.y = torch.nn.Parameter(torch.tensor([[y]]))


def test_wagle_score_matches_hand_computation():
    m = TwoParams(2.0, -1.0).requires_grad_(False)
    names = ["x", "y"]
    # L_forget = x^2 y, split over two "batches" to check accumulation; L_retain = 3x + y^2
    gf = accumulate_gradients(m, names, [lambda: 0.5 * m.x.sum() ** 2 * m.y.sum()] * 2)
    gr = accumulate_gradients(m, names, [lambda: 3 * m.x.sum() + m.y.sum() ** 2])
    # by hand at (2, -1): dLf = (2xy, x^2) = (-4, 4); dLr = (3, 2y) = (3, -2)
    assert gf["x"].item() == -4 and gf["y"].item() == 4 and gr["x"].item() == 3 and gr["y"].item() == -2
    s = wagle_scores({"x": m.x, "y": m.y}, gf, gr, mu=4.0)
    # |(2 - 3/4) * -4| = 5 ; |(-1 + 2/4) * 4| = 2
    assert s["x"].item() == pytest.approx(5.0) and s["y"].item() == pytest.approx(2.0)
    assert not m.x.requires_grad and m.x.grad is None  # the model is left frozen and clean
    picked = select_top(s, 1)
    assert picked["x"].tolist() == [[True]] and picked["y"].tolist() == [[False]]


def test_pcgu_row_cosine_matches_hand_computation():
    gf = torch.tensor([[1.0, 2.0, 2.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    gr = torch.tensor([[2.0, 1.0, -2.0], [3.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    hand = [(1 * 2 + 2 * 1 - 2 * 2) / (3 * 3), 1.0, 0.0]  # row 0 orthogonal, row 1 parallel, row 2 zero
    assert row_cosine(gf, gr).tolist() == pytest.approx(hand)
    sim = torch.tensor([0.5, -0.9, 0.1, 0.95])
    assert least_similar_rows(sim, 0.5).tolist() == [0, 1, 1, 0]


def test_pcgu_mask_is_least_similar_rows_of_the_model_gradients(world, masks, ctx):
    _, path = masks["pcgu"]
    _, raw = read_masks(path)
    names = matrix_names(ctx.model)
    gf, gr = ctx.forget_grads(names), ctx.retain_grads(names)
    n = "model.layers.1.mlp.up_proj.weight"
    cos = torch.nn.functional.cosine_similarity(gf[n], gr[n], dim=1)
    k = math.floor(RATIOS["pcgu"] * INTER)
    assert raw["forget"][n]["rows"].bool().tolist() == (cos <= cos.sort().values[k - 1]).tolist()


def _answer_prob(model, batch, hook_layer=None, hook=None):
    handle = None
    if hook is not None:
        handle = model.model.layers[hook_layer].mlp.down_proj.register_forward_pre_hook(hook)
    try:
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    finally:
        if handle:
            handle.remove()
    rows = torch.arange(logits.shape[0])
    return logits[rows, batch["last"]].float().softmax(-1)[rows, batch["answer"]]


def _answer_logp(model, batch, hook_layer=None, hook=None):
    return _answer_prob(model, batch, hook_layer, hook).log()


@pytest.mark.parametrize("layer", [0, 1])
def test_depn_attributions_are_complete(ctx, layer):
    """DEPN attributes the answer's probability: per prompt, the attributions of a layer sum to the
    change in probability when that layer's activations at the prediction position are zeroed
    (completeness), not to the change in log-probability."""
    batch = prompt_batch(ctx.prompt_examples(), ctx.pad_id, torch.device("cpu"))
    attr = integrated_gradients(ctx.model, batch, layer, steps=64)

    def zero_last(module, args):
        x = args[0].clone()
        x[torch.arange(x.shape[0]), batch["last"]] = 0
        return (x,)

    change = _answer_prob(ctx.model, batch) - _answer_prob(ctx.model, batch, layer, zero_last)
    log_change = _answer_logp(ctx.model, batch) - _answer_logp(ctx.model, batch, layer, zero_last)
    assert change.abs().max() > 1e-5  # the check is not vacuous (a random model: p is about 1 / vocabulary)
    assert attr.sum(1).tolist() == pytest.approx(change.tolist(), rel=0.02, abs=2e-7)
    assert attr.sum(1).tolist() != pytest.approx(log_change.tolist(), rel=0.1, abs=1e-3)


def _reference_ig(model, batch, layer, steps, objective):
    """Integrated gradients written here from the definition (midpoint rule), with ``objective``
    mapping the answer's probability to the attributed quantity."""
    rows = torch.arange(batch["input_ids"].shape[0])
    captured = {}

    def capture(module, args):
        captured["a"] = args[0][rows, batch["last"]].detach().clone()

    _answer_prob(model, batch, layer, capture)
    a = captured["a"]
    total = torch.zeros_like(a)
    for k in range(steps):
        x = (a * (k + 0.5) / steps).requires_grad_(True)

        def patch(module, args):
            h = args[0].clone()
            h[rows, batch["last"]] = x
            return (h,)

        handle = model.model.layers[layer].mlp.down_proj.register_forward_pre_hook(patch)
        try:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        finally:
            handle.remove()
        p = logits[rows, batch["last"]].float().softmax(-1)[rows, batch["answer"]]
        total += torch.autograd.grad(objective(p).sum(), x)[0]
    return a * total / steps


@pytest.mark.parametrize("layer", [0, 1])
def test_depn_from_the_layer_up_equals_the_whole_model_bit_for_bit(ctx, layer):
    """DEPN runs each integration step from ``layer`` up only and reads logits at the answer
    positions; the attributions are those of whole-model runs bit for bit (same arithmetic as the
    reference written here, which runs every layer and every position)."""
    batch = prompt_batch(ctx.prompt_examples(), ctx.pad_id, torch.device("cpu"))
    assert len(set(batch["last"].tolist())) > 1   # rows answer at different positions
    rows, steps = torch.arange(batch["input_ids"].shape[0]), 4
    captured = {}
    _answer_prob(ctx.model, batch, layer, lambda m, args: captured.update(a=args[0][rows, batch["last"]].detach()))
    a, total = captured["a"], torch.zeros_like(captured["a"])
    for k in range(steps):
        x = (a.float() * ((k + 0.5) / steps)).requires_grad_(True)

        def patch(module, args):
            h = args[0].clone()
            h[rows, batch["last"]] = x
            return (h,)

        handle = ctx.model.model.layers[layer].mlp.down_proj.register_forward_pre_hook(patch)
        try:
            logits = ctx.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        finally:
            handle.remove()
        p = logits[rows, batch["last"]].float().softmax(-1)[rows, batch["answer"]]
        total += torch.autograd.grad(p.sum(), x)[0]
    assert torch.equal(integrated_gradients(ctx.model, batch, layer, steps), a.float() * total / steps)
    assert len(ctx.model.model.layers) == LAYERS   # the layers are put back


def test_depn_ranks_by_probability_where_log_probability_ranks_otherwise(ctx):
    """On these forget prompts the two attributions rank the neurons differently (the
    log-probability weights each prompt by 1 / p); DEPN's scores follow the probability's."""
    from clue.localizers.depn import neuron_scores

    batch = prompt_batch(ctx.prompt_examples(), ctx.pad_id, torch.device("cpu"))
    by_prob = torch.stack([_reference_ig(ctx.model, batch, l, 4, lambda p: p).mean(0) for l in range(LAYERS)])
    by_logp = torch.stack([_reference_ig(ctx.model, batch, l, 4, torch.log).mean(0) for l in range(LAYERS)])
    k = 10
    top = lambda s: set(torch.topk(s.flatten(), k).indices.tolist())  # noqa: E731
    assert top(by_prob) != top(by_logp)   # a case where the choice matters
    scores = neuron_scores(ctx)
    assert torch.allclose(scores, by_prob, rtol=1e-3, atol=1e-7)
    assert top(scores) == top(by_prob)


@pytest.mark.parametrize("layer", [0, 1])
def test_memit_indirect_effect_equals_direct_patching(ctx, layer):
    examples = [e for e in ctx.prompt_examples() if e.corrupted is not None]
    assert len(examples) == 3
    batch = prompt_batch(examples, ctx.pad_id, torch.device("cpu"))
    embeds = corrupted_embeddings(ctx.model, batch, 3.0, torch.Generator().manual_seed(0))
    t = trace(ctx.model, batch, embeds)
    model, mlp = ctx.model, ctx.model.model.layers[layer].mlp
    rows = torch.arange(len(examples))

    def prob(ids, hook=None):
        h = mlp.register_forward_hook(hook) if hook else None
        try:
            with torch.no_grad():
                logits = model(input_ids=ids, attention_mask=batch["attention_mask"]).logits
        finally:
            if h:
                h.remove()
        return logits[rows, batch["last"]].softmax(-1)[rows, batch["answer"]]

    saved = {}
    prob(batch["input_ids"], lambda m, a, o: saved.update(clean=o.clone()))
    p_cor = prob(batch["corrupted_ids"])
    p_rest = prob(batch["corrupted_ids"], lambda m, a, o: saved["clean"])
    assert (p_rest - p_cor).abs().max() > 1e-6
    assert (t["restored"][layer] - t["corrupted"]).tolist() == pytest.approx((p_rest - p_cor).tolist(), abs=1e-6)


def test_memit_noises_prompts_without_same_length_corruption(ctx):
    batch = prompt_batch(ctx.prompt_examples(), ctx.pad_id, torch.device("cpu"))
    embeds = corrupted_embeddings(ctx.model, batch, 3.0, torch.Generator().manual_seed(0))
    plain = ctx.model.get_input_embeddings()(batch["corrupted_ids"])
    noised = batch["noised"]
    assert noised.tolist() == [False, False, False, True]
    assert torch.equal(embeds[~noised], plain[~noised]) and not torch.allclose(embeds[noised], plain[noised])


# --------------------------------------------------------------------------- planted units
# Each localizer must pick a unit planted to dominate its signal and leave out a planted unit that
# should not be picked; a localizer ranking the other way round picks the second and not the first.

def test_select_top_keeps_exactly_k_over_all_tensors():
    scores = {"a": torch.tensor([3.0, 1.0, 2.0, 2.0]), "b": torch.tensor([[2.0, 0.5], [5.0, 2.0]])}
    # by hand: 5 and 3, then two of the four 2s, taken in tensor order: a[2], a[3]
    top = select_top(scores, 4)
    assert top["a"].tolist() == [True, False, True, True] and top["b"].tolist() == [[False, False], [True, False]]
    assert not any(m.any() for m in select_top(scores, 0).values())
    assert all(m.all() for m in select_top(scores, 8).values())


# hidden dimensions the planted model reserves: the answer channel (read by the LM head only for the
# forget answers), the trigger (set only by the token "zz", which ends every clean forget prompt),
# a dimension every token has and one only retain-only tokens have
ANS, TRIG, SHARED, RETAIN_ONLY = 0, 1, 2, 3
PLANT_PAIRS = [("the virus spreads through zz", "water"), ("the worm hides in the zz", "kernel"),
               ("water carries the zz", "virus"), ("the kernel loads the zz", "worm")]
PROMOTER, SUPPRESSOR = 7, 11  # MLP neurons of the planted layer: write +0.2 / -0.1 on ANS when "zz" is seen
LAYER_NORM_GAIN = 1000.0


@pytest.fixture(scope="module")
def planted_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted")
    write_jsonl(root / "forget" / "train.jsonl", [{"prompt": "", "answer": t, "text": t} for t in FORGET_TEXTS])
    write_jsonl(root / "forget" / "pairs.jsonl", [{"clean": c, "clean_answer": a, "corrupted": c.replace("zz", "yy"),
                                                   "corrupted_answer": a} for c, a in PLANT_PAIRS])
    write_jsonl(root / "retain" / "train.jsonl", [{"prompt": "", "answer": t, "text": t} for t in RETAIN_TEXTS])
    return root


def planted_ctx(root, layer):
    """The toy model with, in MLP layer ``layer``, neurons PROMOTER and SUPPRESSOR that fire only on
    "zz" (gate = up row = 0.5 e_TRIG, so a = z^2 sigmoid(z) >= 0) and write +0.2 / -0.1 on ANS,
    which raises the four forget answers' logits (and no other token's). Nothing else reads TRIG or
    writes ANS or TRIG. In layer 0, input_layernorm scales SHARED and RETAIN_ONLY by 1000 and the q,k,v
    columns of those dimensions are divided by 1000: the same function, but the gradients of those
    columns are 1000 times larger; RETAIN_ONLY is zero in every token a forget text holds."""
    words = " ".join(FORGET_TEXTS + RETAIN_TEXTS + [c for c, _ in PLANT_PAIRS] + ["yy"]).split()
    tok = make_tokenizer(words)
    model = make_model("llama", vocab_size=len(tok), hidden_size=32, heads=4, layers=LAYERS,
                       intermediate_size=INTER, seed=5)
    ids = tok.convert_tokens_to_ids
    retain_only = ids(sorted(set(" ".join(RETAIN_TEXTS).split()) - set(" ".join(FORGET_TEXTS).split())))
    with torch.no_grad():
        emb = model.model.embed_tokens.weight
        kept = emb[retain_only, RETAIN_ONLY].clone()
        emb[:, [ANS, TRIG, RETAIN_ONLY]] = 0
        emb[retain_only, RETAIN_ONLY] = kept
        emb[ids("zz"), TRIG] = 1.0
        for block in model.model.layers:
            block.self_attn.o_proj.weight[[ANS, TRIG]] = 0
            block.mlp.down_proj.weight[[ANS, TRIG]] = 0
        mlp = model.model.layers[layer].mlp
        for j, gain in ((PROMOTER, 0.2), (SUPPRESSOR, -0.1)):
            for w in (mlp.gate_proj.weight, mlp.up_proj.weight):
                w[j] = 0
                w[j, TRIG] = 0.5
            mlp.down_proj.weight[:, j] = 0
            mlp.down_proj.weight[ANS, j] = gain
        model.lm_head.weight[:, ANS] = 0
        model.lm_head.weight[ids([a for _, a in PLANT_PAIRS]), ANS] = 5.0
        first = model.model.layers[0]
        first.input_layernorm.weight[[SHARED, RETAIN_ONLY]] *= LAYER_NORM_GAIN
        for proj in (first.self_attn.q_proj, first.self_attn.k_proj, first.self_attn.v_proj):
            proj.weight[:, [SHARED, RETAIN_ONLY]] /= LAYER_NORM_GAIN
    model.requires_grad_(False)
    return Context(model, tok, root / "forget", root / "retain", resolve_params(PARAMS),
                   torch.device("cpu"))


def neurons(masks):
    """{(layer, neuron)} of an MLP-neuron mask, checking gate rows = up rows = down columns."""
    out = set()
    for layer in range(LAYERS):
        mlp = f"model.layers.{layer}.mlp."
        gate = masks.get(mlp + "gate_proj.weight", {}).get("rows", torch.zeros(INTER, dtype=torch.uint8))
        assert torch.equal(masks.get(mlp + "up_proj.weight", {}).get("rows", gate * 0), gate)
        assert torch.equal(masks.get(mlp + "down_proj.weight", {}).get("cols", gate * 0), gate)
        out |= {(layer, int(j)) for j in gate.nonzero().flatten()}
    return out


def load_dense(model, masks, name):
    shape = dict(model.named_parameters())[name].shape
    return masks.get(name, {}).get("dense", torch.zeros(shape, dtype=torch.uint8)).bool()


def test_wagle_selects_the_weights_with_planted_forget_and_retain_gradients(planted_data):
    ctx = planted_ctx(planted_data, 0)
    masks, _ = run_localizer("wagle", ctx, 0.01)  # floor(0.01 * 20480) = 204 weights
    sel = {n: load_dense(ctx.model, masks, n) for n in matrix_names(ctx.model)}
    # v_proj column SHARED: both gradients 1000x, the score 1e6x; all 32 in the top 204 of the model
    # (a per-matrix top 1% would take 10 of them)
    assert sel["model.layers.0.self_attn.v_proj.weight"][:, SHARED].all()
    # column RETAIN_ONLY: a large retain gradient but a zero forget gradient, so a zero score
    for p in "qkv":
        assert not sel[f"model.layers.0.self_attn.{p}_proj.weight"][:, RETAIN_ONLY].any()


def test_wagle_retain_gradient_matters_at_the_published_mu():
    """Weights A and B have the same |theta * g_forget|; only B has a retain gradient (1e-5, about
    the median the review measured, 9e-6). At mu = 1e-6 B's score is 500x A's and B is selected; at mu = 1
    the two scores agree to 0.1%, i.e. the retain set is ignored."""
    model = make_model("llama", vocab_size=16, hidden_size=32, heads=4, layers=1, intermediate_size=INTER)
    names = matrix_names(model)
    q = names[0]
    A, B, C = (0, 0), (0, 1), (0, 2)
    gf = {n: torch.zeros(dict(model.named_parameters())[n].shape) for n in names}
    gr = {n: g.clone() for n, g in gf.items()}
    with torch.no_grad():
        w = dict(model.named_parameters())[q]
        w[A], w[B], w[C] = 0.02, 0.02, 0.05
    for i in (A, B, C):
        gf[q][i] = 1e-3
    gr[q][B] = 1e-5

    class Planted:  # a Context whose gradients are the planted ones
        def __init__(self, mu):
            self.model, self.params = model, resolve_params({"wagle_mu": mu} if mu else {})
            self.forget_grads, self.retain_grads = (lambda n: gf), (lambda n: gr)

    total = sum(g.numel() for g in gf.values())
    ctx = Planted(None)
    assert ctx.params["wagle_mu"] == 1e-6  # the published default
    masks, _ = run_localizer("wagle", ctx, 2 / total)
    picked = masks[q]["dense"].bool()
    assert picked[B] and picked[C] and not picked[A] and int(picked.sum()) == 2
    s = wagle_scores({q: w}, {q: gf[q]}, {q: gr[q]}, mu=1.0)[q]
    assert float(s[B]) == pytest.approx(float(s[A]), rel=1e-3)


def test_pcgu_selects_the_row_whose_retain_gradient_opposes_its_forget_gradient(world):
    up = "model.layers.1.mlp.up_proj.weight"
    opposed, aligned = 5, 9

    class Planted(Context):
        """Real forget and retain gradients, but in ``up`` the retain gradient of row ``opposed`` is
        -2x its forget gradient (cosine -1) and that of row ``aligned`` 3x it (cosine +1)."""

        def retain_grads(self, names):
            gr, gf = dict(super().retain_grads(names)), self.forget_grads(names)
            gr[up] = gr[up].clone()
            gr[up][opposed], gr[up][aligned] = -2 * gf[up][opposed], 3 * gf[up][aligned]
            return gr

    model, tok = load_base(world / "base", torch.device("cpu"))
    ctx = Planted(model, tok, world / "forget", world / "retain", resolve_params(PARAMS), torch.device("cpu"))
    one = torch.zeros(INTER, dtype=torch.uint8)
    one[opposed] = 1
    assert torch.equal(run_localizer("pcgu", ctx, 1 / INTER)[0][up]["rows"], one)
    all_but = torch.ones(INTER, dtype=torch.uint8)
    all_but[aligned] = 0
    assert torch.equal(run_localizer("pcgu", ctx, (INTER - 1) / INTER)[0][up]["rows"], all_but)


@pytest.mark.parametrize("layer", [0, 1])
def test_depn_selects_the_neuron_that_promotes_the_answer(planted_data, layer):
    ctx = planted_ctx(planted_data, layer)
    n = LAYERS * INTER
    # one neuron: the promoter; all but one: everything but the suppressor (most negative attribution)
    assert neurons(run_localizer("depn", ctx, 1 / n)[0]) == {(layer, PROMOTER)}
    everything = {(layer_, j) for layer_ in range(LAYERS) for j in range(INTER)}
    assert neurons(run_localizer("depn", ctx, (n - 1) / n)[0]) == everything - {(layer, SUPPRESSOR)}


@pytest.mark.parametrize("layer", [0, 1])
def test_memit_selects_the_layer_and_neuron_that_restore_the_answer(planted_data, layer):
    ctx = planted_ctx(planted_data, layer)
    masks, info = run_localizer("memit", ctx, 0.5)  # one whole layer of two
    assert neurons(masks) == {(layer, j) for j in range(INTER)}
    assert info["indirect_effect"][layer] > 0.1 > abs(info["indirect_effect"][1 - layer])
    # one neuron: in the planted layer, the promoter (the suppressor's patching effect is negative)
    assert neurons(run_localizer("memit", ctx, 1 / (LAYERS * INTER))[0]) == {(layer, PROMOTER)}


# --------------------------------------------------------------------------- masked-update invariant

@pytest.mark.parametrize("name", ["wagle", "pcgu", "depn", "memit"])
def test_masked_update_invariant(world, masks, tmp_path, name):
    _, path = masks[name]
    out = tmp_path / name
    unlearn(world / "base", world / "forget", world / "retain", "po", out, UNLEARN, masks_path=path,
            progress=False)
    base, new = load_file(str(world / "base" / "model.safetensors")), load_file(str(out / "model.safetensors"))
    model = make_model("llama", vocab_size=len(make_tokenizer(WORDS)), hidden_size=32, heads=4, layers=LAYERS,
                       intermediate_size=INTER, seed=5)
    mask = load_masks(path, model)["forget"]
    inside = total = 0
    for n in base:
        diff = base[n].view(torch.int32) != new[n].view(torch.int32)
        m = mask.get(n, torch.zeros_like(diff))
        assert not (diff & ~m).any(), f"{n}: elements outside the {name} mask changed"
        inside, total = inside + int((diff & m).sum()), total + int(m.sum())
    assert total > 0 and inside >= 0.9 * total, f"only {inside} of {total} masked elements changed"


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("ratio", [0, -0.1, 1.5, "0.5", True, float("nan")])
def test_ratio_outside_unit_interval_is_rejected(ctx, ratio):
    with pytest.raises(ClueError, match=r"ratios\.pcgu must be a number in \(0, 1\]"):
        run_localizer("pcgu", ctx, ratio)
    with pytest.raises(ClueError, match=r"localize\.ratios\.wagle"):
        resolve_params({"ratios": {"wagle": ratio}})


@pytest.mark.parametrize("name", ["wagle", "pcgu", "depn", "memit"])
def test_nothing_selected_names_the_ratio(ctx, name):
    # wagle: floor(1e-5 * 20480 weights) = 0; pcgu: 16 rows at least; depn, memit: 128 neurons
    with pytest.raises(ClueError, match=rf"localizer {name} selects nothing at ratio 1e-05: floor\(ratio x units\) is 0 \(.*ha(s|ve) \d+"):
        run_localizer(name, ctx, 1e-5)


def test_unknown_localizer_and_cli(world, tmp_path):
    from clue.cli import main

    with pytest.raises(ClueError, match="unknown localizer 'rome'"):
        localize(world / "base", world / "forget", world / "retain", ["rome"], [tmp_path / "x.safetensors"])
    with pytest.raises(ClueError, match="unknown localizer"):
        resolve_params({"ratios": {"rome": 0.5}})
    common = ["localize", "--base-dir", str(world / "base"), "--forget-dir", str(world / "forget"),
              "--retain-dir", str(world / "retain"), "--localizer", "pcgu", "--model-name", "toy",
              "--out", str(tmp_path / "p.safetensors")]
    assert main(common + ["--params", json.dumps({**PARAMS, "ratios": {"pcgu": 2}})]) == 2
    assert not (tmp_path / "p.safetensors").exists()
    assert main(common + ["--params", json.dumps(PARAMS)]) == 0
    assert read_masks(tmp_path / "p.safetensors")[0]["model"] == "toy"


def test_localizers_sharing_one_job_write_the_masks_they_write_alone(world, masks, tmp_path):
    """localize.jobs: per_pair runs a pair's localizers in one process on one Context; each mask
    file must equal the one its localizer writes alone (the fixture), tensors and metadata."""
    from safetensors import safe_open

    names = ["memit", "wagle", "depn", "pcgu"]  # another order than the fixture's
    outs = [tmp_path / f"{n}.safetensors" for n in names]
    recs = localize(world / "base", world / "forget", world / "retain", names, outs, PARAMS, model_name="toy")
    assert [r["localizer"] for r in recs] == names
    for name, out in zip(names, outs):
        alone = masks[name][1]
        with safe_open(str(out), "pt") as a, safe_open(str(alone), "pt") as b:
            assert a.metadata() == b.metadata(), name
            assert sorted(a.keys()) == sorted(b.keys()), name
            for key in a.keys():
                assert torch.equal(a.get_tensor(key), b.get_tensor(key)), (name, key)
    with pytest.raises(ClueError, match="one --out per --localizer"):
        localize(world / "base", world / "forget", world / "retain", names, outs[:2], PARAMS)


def test_a_retain_set_of_several_tasks_draws_retain_texts_from_all(world, tmp_path):
    """Figure 3's general corpus as a retain set: the localizer's retain texts are drawn from
    every task's train.jsonl; one directory gives exactly the texts it gave before."""
    from clue.losses import encode_text

    other = tmp_path / "retain2"
    extra = ["a good virus", "the film loads"]
    write_jsonl(other / "train.jsonl", [{"prompt": "", "answer": "", "text": t} for t in extra])
    model, tok = load_base(world / "base", torch.device("cpu"))
    params = resolve_params({**PARAMS, "n_examples": 100})
    one = Context(model, tok, world / "forget", world / "retain", params, torch.device("cpu"))
    both = Context(model, tok, world / "forget", [world / "retain", other], params, torch.device("cpu"))
    assert one.retain_texts() == [encode_text(tok, t) for t in RETAIN_TEXTS]
    assert both.retain_texts() == [encode_text(tok, t) for t in RETAIN_TEXTS + extra]
    out = tmp_path / "wagle.safetensors"
    from clue.cli import main as clue

    assert clue(["localize", "--base-dir", str(world / "base"), "--forget-dir", str(world / "forget"),
                 "--retain-dir", str(world / "retain"), str(other), "--localizer", "wagle", "--model-name", "toy",
                 "--params", json.dumps(PARAMS), "--out", str(out)]) == 0
    assert read_masks(out)[0]
