"""Circuit discovery: the edge-masked forward, the gates' training, and the `circuit` stage."""

import json
import os
import re

import pytest
import torch

from clue.circuits import discover as D
from clue.circuits.masked_forward import (LowPrecisionWeights, _reader_norm, build_graph, candidate_edges, forward,
                                         live_nodes, reader_owners)
from clue.errors import ClueError
from conftest import make_model, make_tokenizer


def sharpen(model, seed=1):
    """Large random weights so attention is far from uniform: a wrong rotary embedding, mask or
    head slicing then changes the logits visibly."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(1 + 0.2 * torch.randn_like(p) if "norm" in name else 0.4 * torch.randn_like(p))
    return model


def models():
    from transformers import LlamaConfig, LlamaForCausalLM

    biased = LlamaForCausalLM(LlamaConfig(  # o_proj bias too (attention_bias=True)
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, attention_bias=True, tie_word_embeddings=False))
    return {"llama": make_model("llama", layers=3), "gqa": make_model("gqa", layers=3),
            "qwen2": make_model("qwen2", layers=3), "llama_bias": biased.eval()}


@pytest.mark.parametrize("kind", ["llama", "gqa", "qwen2", "llama_bias"])
def test_all_gates_open_reproduce_hf_and_all_closed_give_corrupted(kind):
    model = sharpen(models()[kind]).double()
    graph = build_graph(model.config)
    torch.manual_seed(0)
    x, x_other = torch.randint(0, 64, (2, 2, 9))
    with torch.no_grad():
        ref, ref_other = model(x).logits, model(x_other).logits
        plain, _ = forward(model, graph, x)
        _, other = forward(model, graph, x_other)
        ones, _ = forward(model, graph, x, torch.ones(graph.n_edges, dtype=torch.float64), other)
        zeros, _ = forward(model, graph, x, torch.zeros(graph.n_edges, dtype=torch.float64), other)
    assert (ref - ref_other).abs().max() > 1.0            # the inputs give different outputs
    torch.testing.assert_close(plain, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(ones, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(zeros, ref_other, atol=1e-5, rtol=0)


def test_float32_default_init_matches_hf():
    model = make_model("gqa", layers=2)
    graph = build_graph(model.config)
    x = torch.randint(0, 64, (3, 7))
    with torch.no_grad():
        _, other = forward(model, graph, torch.randint(0, 64, (3, 7)))
        out, _ = forward(model, graph, x, torch.ones(graph.n_edges), other, positions=torch.tensor([6, 3, 0]))
        ref = model(x).logits
    torch.testing.assert_close(out, ref[torch.arange(3), torch.tensor([6, 3, 0])], atol=1e-5, rtol=0)


def test_edge_count_and_names():
    graph = build_graph(make_model("gqa", layers=4, heads=4, kv_heads=2).config)
    # layer l attention: 8 readers x (1 + 5 l) writers; MLP: 1 + 5 l + 4; out: 21 writers
    assert graph.n_edges == 8 * (1 + 6 + 11 + 16) + (5 + 10 + 15 + 20) + 21 == 343
    names = set(graph.edge_names())
    assert ("a0.h3", "m0") in names and ("m0", "a1.h1.k") in names and ("m3", "out") in names
    assert ("m0", "m0") not in names and ("a1.h0", "a1.h0.q") not in names
    assert "a0.h1.k" in graph.readers and "a0.h2.k" not in graph.readers


def test_gradients_reach_the_gates(monkeypatch):
    import gc
    import weakref

    from clue.circuits import masked_forward as MF

    stores = []
    init = MF._DiffStore.__init__

    def recording_init(self, *args):
        init(self, *args)
        stores.append(weakref.ref(self))

    monkeypatch.setattr(MF._DiffStore, "__init__", recording_init)
    model = make_model("qwen2", layers=2)
    graph = build_graph(model.config)
    x, x_other = torch.randint(0, 64, (2, 2, 6))
    with torch.no_grad():
        _, other = forward(model, graph, x_other)
    # every edge: gates at 0.5 (inside the clamp), a loss of the answer-position logits
    gates = torch.full((graph.n_edges,), 0.5, requires_grad=True)
    logits, _ = forward(model, graph, x, gates, other, torch.tensor([5, 3]))
    loss = (logits ** 2).sum()
    gc.collect()
    assert len(stores) == 1 and stores[0]() is not None
    loss.backward()
    assert torch.isfinite(gates.grad).all() and (gates.grad != 0).all()
    # the writer differences and their gradients (a 7B step's largest buffers, 16.5 GiB) go with
    # the backward, though the loss, and so the graph, lives on until the next step's loss
    # replaces it: else two steps' stores would meet in the next forward
    gc.collect()
    assert stores[0]() is None
    # and through the hard-concrete sample to log_alpha
    log_alpha = torch.zeros(graph.n_edges, requires_grad=True)
    logits, _ = forward(model, graph, x, D.sample_gates(log_alpha), other, torch.tensor([5, 3]))
    (logits ** 2).sum().backward()
    assert (log_alpha.grad != 0).sum() > graph.n_edges // 3   # about 1/3 of samples are clamped


def test_hard_concrete_and_threshold():
    la = torch.tensor([-5.0, 0.0, 5.0])
    # P(z > 0) = P(stretched s > 0) = sigmoid(log_alpha - beta * log(-l / r)): check by sampling
    torch.manual_seed(0)
    samples = torch.stack([D.sample_gates(la) for _ in range(20000)])
    assert ((samples >= 0) & (samples <= 1)).all()
    torch.testing.assert_close((samples > 0).float().mean(0), D.keep_probability(la), atol=0.01, rtol=0)


@pytest.mark.parametrize("target, kept", [(0.6, [0, 1, 0, 1, 0]), (0.2, [0, 1, 1, 1, 1]), (0.8, [0, 1, 0, 0, 0])])
def test_threshold_cut_keeps_the_edges_the_target_sparsity_allows(target, kept):
    """Edge Pruning's final cut: a threshold found by binary search so that round((1 - target) x
    edges) gates stay, the most likely open ones; not a fixed 0.5 (which would keep 0.9 and 0.51
    at every target)."""
    scores = torch.tensor([0.1, 0.9, 0.5, 0.51, 0.2])
    gates, t = D.threshold_cut(scores, target)
    assert gates.tolist() == kept and ((scores > t).float() == gates).all()
    # ties: never more than the target allows
    gates, _ = D.threshold_cut(torch.tensor([0.3, 0.3, 0.3, 0.9]), 0.5)
    assert gates.tolist() == [0, 0, 0, 1]


# ---------------------------------------------------------------------------------------------
# Dead ends

def live_by_paths(graph, kept):
    """Reference: kept edges on a path embed -> ... -> out of kept edges, by enumerating every
    path explicitly (exponential, fine for a tiny graph). A path enters a writer through one of
    its readers (q of its head, k/v of its key/value group, the MLP reader) and leaves it by an
    edge from that writer."""
    group = graph.n_heads // graph.n_kv

    def feeds(reader):                       # writers a reader is an input of
        parts = reader.split(".")
        if reader == "out":
            return []
        if len(parts) == 1:
            return [reader]
        if parts[2] == "q":
            return [f"{parts[0]}.{parts[1]}"]
        g = int(parts[1][1:])
        return [f"{parts[0]}.h{h}" for h in range(g * group, (g + 1) * group)]

    out_edges = {}
    for i, (w, r) in enumerate(graph.edge_names()):
        if kept[i]:
            out_edges.setdefault(w, []).append((i, r))
    live = set()

    def walk(writer, path):
        for i, r in out_edges.get(writer, []):
            if r == "out":
                live.update(path + [i])
            for nxt in feeds(r):
                walk(nxt, path + [i])

    walk("embed", [])
    return live


@pytest.mark.parametrize("seed", range(6))
def test_dead_ends_removed_match_path_enumeration_and_leave_logits_unchanged(seed):
    model = make_model("gqa", layers=2, heads=4, kv_heads=2)
    graph = build_graph(model.config)
    g = torch.Generator().manual_seed(seed)
    kept = (torch.rand(graph.n_edges, generator=g) < 0.12).float()
    pruned = D.remove_dead_ends(graph, kept)
    assert {i for i, k in enumerate(pruned.tolist()) if k} == live_by_paths(graph, kept.tolist())
    assert (pruned <= kept).all() and pruned.sum() < kept.sum()   # these draws all have dead ends
    x, x_other = torch.randint(0, 64, (2, 3, 5), generator=g)
    with torch.no_grad():
        _, other = forward(model, graph, x_other)
        a, _ = forward(model, graph, x, kept, other)
        b, _ = forward(model, graph, x, pruned, other)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_a_head_reached_through_its_shared_value_input_is_live():
    # a0.h1 shares key/value head 0 with a0.h0 (2 query heads per kv head): an edge into
    # a0.h0.v reaches both heads, so a0.h1 -> out is live and a0.h2 -> out is not
    model = make_model("gqa", layers=1, heads=4, kv_heads=2)
    graph = build_graph(model.config)
    names = graph.edge_names()
    kept = torch.tensor([1.0 if n in {("embed", "a0.h0.v"), ("a0.h1", "out"), ("a0.h2", "out")} else 0.0
                         for n in names])
    pruned = D.remove_dead_ends(graph, kept)
    assert {n for n, k in zip(names, pruned.tolist()) if k} == {("embed", "a0.h0.v"), ("a0.h1", "out")}


# ---------------------------------------------------------------------------------------------
# Planted AND / OR gates

def planted_model(gate):
    """One layer, 4 heads sharing one kv head, hidden 8. The prompt is one token: ``x`` (clean,
    feature f = 1) or ``y`` (corrupted, f = 0). Residual dims: 0 f, 1 a large constant (so RMSNorm
    scales every state by about the same factor), 2..5 heads A, B, C, D, 6 the MLP.

    q = k = 0, v = f, so every head outputs f; head h writes it to dim 2 + h. The MLP reads A and B:
    AND: m = relu(A + B - 1.5) / 0.5; OR: m = (relu(A + B - 0.5) - relu(A + B - 1)) / 0.5, both
    relative to the constant dim so RMSNorm only rescales. The answer logits: yes = 2.5 m + 1.5 C
    + 1.0 D, no = 2.5 (constant). So m matters most, then C, then D; in the test's budget of 5
    edges, D is what the mode whose gate needs only one of A, B spends its spare edge on.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = make_tokenizer(["x", "y", "yes", "no"])
    c = 20.0
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=8, intermediate_size=2, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=1, head_dim=2, tie_word_embeddings=False)).eval()
    s = c / 8 ** 0.5            # RMS of a state dominated by the constant: normed = raw / s
    layer = model.model.layers[0]
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for norm in (layer.input_layernorm, layer.post_attention_layernorm, model.model.norm):
            norm.weight.fill_(1.0)
        emb = model.model.embed_tokens.weight
        emb[:, 1] = c
        emb[tok.convert_tokens_to_ids("x"), 0] = 1.0
        layer.self_attn.v_proj.weight[0, 0] = s
        for h in range(4):
            layer.self_attn.o_proj.weight[2 + h, 2 * h] = 1.0
        k = 40.0 * s
        mlp = layer.mlp
        for i, t in enumerate([1.5] if gate == "AND" else [0.5, 1.0]):
            mlp.gate_proj.weight[i, 2:4] = k
            mlp.gate_proj.weight[i, 1] = -k * t / c
            mlp.up_proj.weight[i, 1] = s / c
            mlp.down_proj.weight[6, i] = (1.0 if i == 0 else -1.0) / 20.0
        w = model.lm_head.weight
        yes, no = tok.convert_tokens_to_ids(["yes", "no"])
        w[:, 1] = -3.0 * s / c
        w[yes, 1], w[no, 1] = 0.0, 2.5 * s / c
        w[yes, 4:7] = torch.tensor([1.5, 1.0, 2.5]) * s
    return model, tok


def planted_pairs(tok, n=8):
    ids = lambda word: torch.tensor([tok.convert_tokens_to_ids([word])] * n)
    return {"clean": ids("x"), "corrupted": ids("y"), "last": torch.zeros(n, dtype=torch.long)}


def head_prob(model, tok, gate_values):
    """p(yes) in a noising run on ``x`` where only the edges named in gate_values are set."""
    graph = build_graph(model.config)
    pairs = planted_pairs(tok, 1)
    gates = torch.ones(graph.n_edges)
    for i, name in enumerate(graph.edge_names()):
        if name in gate_values:
            gates[i] = gate_values[name]
    with torch.no_grad():
        _, other = forward(model, graph, pairs["corrupted"])
        logits, _ = forward(model, graph, pairs["clean"], gates, other, pairs["last"])
    return logits.softmax(-1)[0, tok.convert_tokens_to_ids("yes")].item()


@pytest.mark.parametrize("gate", ["AND", "OR"])
def test_planted_model_premise(gate):
    # the hand-set model computes the gate: corrupting one of A, B flips the answer for AND only
    model, tok = planted_model(gate)
    A, B = ("a0.h0", "m0"), ("a0.h1", "m0")
    full, one, both = (head_prob(model, tok, {}), head_prob(model, tok, {A: 0.0}),
                       head_prob(model, tok, {A: 0.0, B: 0.0}))
    assert full > 0.9 and both < 0.5
    assert (one < 0.5) if gate == "AND" else (one > 0.9)


@pytest.mark.parametrize("gate, both_mode", [("AND", "noising"), ("OR", "denoising")])
def test_planted_gates_recovered_by_the_right_intervention(gate, both_mode):
    model, tok = planted_model(gate)
    graph = build_graph(model.config)
    # a gentle sparsity controller: with 13 edges, each gate carries 1/13 of the sparsity
    params = {"steps": 300, "target_sparsity": 1 - 5 / graph.n_edges, "batch_size": 8, "seed": 1,
              "sparsity_penalty": 4.0, "lagrangian_lr": 0.3}
    pair = {("a0.h0", "m0"), ("a0.h1", "m0")}
    kept_pair = {}
    for mode in D.MODES:
        result = D.discover(model, planted_pairs(tok), mode, params, progress=False)
        kept = {n for n, k in zip(graph.edge_names(), result["kept"].tolist()) if k}
        assert 5 <= len(kept) <= 6    # the learned gates, not a top-5 cut
        # the path that carries f into the heads and the MLP's answer edge are needed either way
        assert {("embed", "a0.h0.v"), ("m0", "out"), ("a0.h2", "out")} <= kept
        kept_pair[mode] = len(kept & pair)
    other = "denoising" if both_mode == "noising" else "noising"
    assert kept_pair[both_mode] == 2 and kept_pair[other] < 2


# ---------------------------------------------------------------------------------------------
# The `circuit` stage

WORDS = [f"w{i}" for i in range(30)]


def write_task(tmp_path, same_answer=False):
    import random

    tok = make_tokenizer(WORDS)
    # sharpened: a random init barely reacts to the corruption, so no edge would matter
    model = sharpen(make_model("gqa", vocab_size=len(tok), layers=2))
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    rng = random.Random(0)
    data_dir = tmp_path / "task"
    data_dir.mkdir()
    lines = []
    for i in range(12):
        clean = [rng.choice(WORDS) for _ in range(3 + i % 4)]   # prompts of different lengths
        corrupted = list(clean)
        corrupted[0] = rng.choice(WORDS)
        lines.append(json.dumps({"clean": " ".join(clean), "corrupted": " ".join(corrupted),
                                 "clean_answer": "w1", "corrupted_answer": "w1" if same_answer and i == 3 else "w2"}))
    (data_dir / "pairs.jsonl").write_text("\n".join(lines[:7]) + "\n")
    (data_dir / "validation_pairs.jsonl").write_text("\n".join(lines[7:9]) + "\n")
    (data_dir / "heldout_pairs.jsonl").write_text("\n".join(lines[9:]) + "\n")
    return model_dir, data_dir


# enough steps and a strong enough Lagrangian for the tiny model's gates to reach the target
# no floor (the default is 0.85): these tests are about the mechanics; the floor's own tests set one
CLI_PARAMS = {"steps": 150, "batch_size": 4, "target_sparsity": 0.8, "lr": 0.2, "lagrangian_lr": 1.0,
              "sparsity_penalty": 8.0, "min_faithfulness": 0.0}


def run_cli(model_dir, data_dir, out, mode="noising", task="toy_demo", params=None, drawing=None, extra=()):
    from clue.cli import main

    argv = ["circuit", "--model-dir", str(model_dir), "--data-dir", str(data_dir), "--task", task,
            "--model-name", "tiny", "--mode", mode, "--out", str(out), "--quiet",
            "--params", json.dumps(params or CLI_PARAMS), *extra]
    if drawing:
        argv += ["--drawing", str(drawing)]
    return main(argv)


def test_cli_record_matches_recomputation(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, data_dir = write_task(tmp_path)
    out, svg = tmp_path / "c" / "denoising.json", tmp_path / "c" / "denoising.svg"
    assert run_cli(model_dir, data_dir, out, mode="denoising", drawing=svg) == 0
    rec = json.loads(out.read_text())
    assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()
    assert {k for k in rec} == {"model", "task", "mode", "writers", "readers", "edges", "target_sparsity",
                                "expected_sparsity", "achieved_sparsity", "threshold", "dead_end_edges_removed",
                                "kl", "validation", "faithfulness", "selection", "candidates", "node_level", "circuit",
                                "steps", "steps_run", "early_stop_checks", "config"}
    assert rec["circuit"] == "edge_pruning" and rec["early_stop_checks"] == []   # no early stop configured
    assert rec["mode"] == "denoising" and rec["task"] == "toy_demo" and rec["steps"] == rec["steps_run"] == 150
    assert rec["candidates"] == {"writers": len(rec["writers"]) - 1, "edges": len(rec["edges"]), "rule": "every writer"}
    n_kept = sum(e["kept"] for e in rec["edges"])
    assert rec["achieved_sparsity"] == pytest.approx(1 - n_kept / len(rec["edges"]))
    # training reached the target; the circuit is the edges above the threshold that keeps
    # (1 - target) x edges of them (Edge Pruning's cut), less the dead ends
    assert abs(rec["expected_sparsity"] - 0.8) <= D.SPARSITY_TOLERANCE
    assert rec["expected_sparsity"] == pytest.approx(1 - sum(e["score"] for e in rec["edges"]) / len(rec["edges"]),
                                                     abs=1e-5)
    assert all(e["score"] > rec["threshold"] for e in rec["edges"] if e["kept"])
    above = sum(e["score"] > rec["threshold"] for e in rec["edges"])
    assert above == n_kept + rec["dead_end_edges_removed"] == round(0.2 * len(rec["edges"]))

    # KL of the saved circuit, recomputed pair by pair from the checkpoint and the saved edges
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    graph = build_graph(model.config)
    gates = D.gates_from_record(graph, rec)

    def mean_kl(filename, gates):
        kls = []
        for line in (data_dir / filename).read_text().splitlines():
            r = json.loads(line)
            if len(r["clean"].split()) != len(r["corrupted"].split()):
                continue
            run = torch.tensor([tok(r["corrupted"])["input_ids"]])    # denoising runs on corrupted
            with torch.no_grad():
                _, clean_acts = forward(model, graph, torch.tensor([tok(r["clean"])["input_ids"]]))
                circ, _ = forward(model, graph, run, gates, clean_acts)
                full = model(run).logits
            p, q = full[0, -1].log_softmax(-1), circ[0, -1].log_softmax(-1)
            kls.append((p.exp() * (p - q)).sum().item())
        return sum(kls) / len(kls)

    assert rec["kl"] == pytest.approx(mean_kl("pairs.jsonl", gates), rel=1e-4, abs=1e-7)
    # validation pairs (which chose the sparsity) and held-out pairs (which report faithfulness):
    # the circuit's KL, the empty circuit's, 1 - their ratio
    v = rec["validation"]
    assert v["pairs"] == 2 and rec["selection"]["chosen"] == 0.8
    assert v["kl_circuit"] == pytest.approx(mean_kl("validation_pairs.jsonl", gates), rel=1e-4, abs=1e-7)
    assert v["kl_empty"] == pytest.approx(mean_kl("validation_pairs.jsonl", torch.zeros_like(gates)), rel=1e-4)
    f = rec["faithfulness"]
    assert f["pairs"] == 3
    assert f["kl_circuit"] == pytest.approx(mean_kl("heldout_pairs.jsonl", gates), rel=1e-4, abs=1e-7)
    assert f["kl_empty"] == pytest.approx(mean_kl("heldout_pairs.jsonl", torch.zeros_like(gates)), rel=1e-4)
    assert f["faithfulness"] == pytest.approx(1 - f["kl_circuit"] / f["kl_empty"])


def test_missed_sparsity_target_fails_naming_task_mode_and_value(tmp_path, capsys):
    model_dir, data_dir = write_task(tmp_path)
    params = {**CLI_PARAMS, "steps": 3}
    assert run_cli(model_dir, data_dir, tmp_path / "x.json", mode="noising", task="toy_slow", params=params) == 2
    err = capsys.readouterr().err
    reached = re.search(r"circuit toy_slow noising: training reached expected sparsity ([0-9.]+), not the "
                        r"target 0.8", err)
    assert reached and float(reached.group(1)) < 0.5 and "circuit.steps" in err
    assert not (tmp_path / "x.json").exists()


def test_the_sparsest_candidate_faithful_on_validation_pairs_is_chosen(tmp_path, capsys):
    """Candidates 0.8 and 0.5: with no floor the sparsest (0.8) is the circuit and 0.5 is never
    trained; with a floor above 0.8's validation faithfulness but not above 0.5's, 0.5 is chosen.
    The held-out pairs take no part: other held-out pairs give the same circuit."""
    model_dir, data_dir = write_task(tmp_path)
    params = {**CLI_PARAMS, "target_sparsity": [0.5, 0.8]}
    assert run_cli(model_dir, data_dir, tmp_path / "first.json", params=params) == 0
    first = json.loads((tmp_path / "first.json").read_text())
    assert first["selection"]["candidates"] == [0.8, 0.5] and first["target_sparsity"] == 0.8
    assert [t["target_sparsity"] for t in first["selection"]["tried"]] == [0.8]
    f8 = first["validation"]["faithfulness"]
    assert first["selection"]["tried"][0]["validation_faithfulness"] == f8
    floor = round(f8 + 0.001, 4)
    assert run_cli(model_dir, data_dir, tmp_path / "second.json", params={**params, "min_faithfulness": floor}) == 0
    second = json.loads((tmp_path / "second.json").read_text())
    assert [t["target_sparsity"] for t in second["selection"]["tried"]] == [0.8, 0.5]
    assert second["target_sparsity"] == 0.5 and second["validation"]["faithfulness"] >= floor
    # other held-out pairs: the same edges, only the reported faithfulness differs
    held = (data_dir / "heldout_pairs.jsonl").read_text().splitlines()
    (data_dir / "heldout_pairs.jsonl").write_text("\n".join(held[1:]) + "\n")
    assert run_cli(model_dir, data_dir, tmp_path / "third.json", params={**params, "min_faithfulness": floor}) == 0
    third = json.loads((tmp_path / "third.json").read_text())
    assert third["edges"] == second["edges"] and third["faithfulness"]["pairs"] == 2


def test_same_sparsity_as_trains_only_the_candidate_the_other_circuit_was_chosen_at(tmp_path, capsys):
    """Table 3's circuits after unlearning are found at the candidate their circuits before were
    chosen at. Here the circuit before chose 0.5 (0.8 missed the floor); found again with
    --same-sparsity-as on the same model, only 0.5 is trained, and it is the same circuit (discovery
    seeds itself). A missing JSON is named."""
    model_dir, data_dir = write_task(tmp_path)
    params = {**CLI_PARAMS, "target_sparsity": [0.5, 0.8]}
    assert run_cli(model_dir, data_dir, tmp_path / "sparsest.json", params=params) == 0
    floor = round(json.loads((tmp_path / "sparsest.json").read_text())["validation"]["faithfulness"] + 0.001, 4)
    params = {**params, "min_faithfulness": floor, "if_unfaithful": "most_faithful"}
    assert run_cli(model_dir, data_dir, tmp_path / "before.json", params=params) == 0
    before = json.loads((tmp_path / "before.json").read_text())
    assert before["selection"]["chosen"] == 0.5
    assert run_cli(model_dir, data_dir, tmp_path / "after.json", params=params,
                   extra=["--same-sparsity-as", str(tmp_path / "before.json")]) == 0
    after = json.loads((tmp_path / "after.json").read_text())
    assert [t["target_sparsity"] for t in after["selection"]["tried"]] == [0.5]
    assert after["selection"]["candidates"] == [0.5] and after["edges"] == before["edges"]
    assert run_cli(model_dir, data_dir, tmp_path / "x.json", params=params,
                   extra=["--same-sparsity-as", str(tmp_path / "missing.json")]) == 2
    assert f"--same-sparsity-as {tmp_path / 'missing.json'}: file not found" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_no_faithful_candidate_fails_naming_task_mode_and_values(tmp_path, capsys):
    model_dir, data_dir = write_task(tmp_path)
    assert run_cli(model_dir, data_dir, tmp_path / "ok.json", mode="noising") == 0
    value = json.loads((tmp_path / "ok.json").read_text())["validation"]["faithfulness"]
    assert value < 1.0
    params = {**CLI_PARAMS, "min_faithfulness": round(value + 0.001, 4)}
    assert run_cli(model_dir, data_dir, tmp_path / "x.json", mode="noising", task="toy_weak", params=params) == 2
    err = capsys.readouterr().err
    assert (f"circuit toy_weak noising: no candidate sparsity reaches circuit.min_faithfulness "
            f"{params['min_faithfulness']} on the 2 validation pairs (0.8: {value:.4f}); add lower candidates to "
            "circuit.target_sparsity, or lower circuit.min_faithfulness (or set circuit.if_unfaithful: "
            "most_faithful to keep the most faithful, with a warning)") in err
    assert not (tmp_path / "x.json").exists()


def test_cli_is_deterministic(tmp_path):
    """Same config, same bytes: the circuit JSON and its drawing (no date, no random SVG ids)."""
    model_dir, data_dir = write_task(tmp_path)
    run_cli(model_dir, data_dir, tmp_path / "a.json", drawing=tmp_path / "a.svg")
    run_cli(model_dir, data_dir, tmp_path / "b.json", drawing=tmp_path / "b.svg")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert (tmp_path / "a.svg").read_bytes() == (tmp_path / "b.svg").read_bytes()


def test_both_modes_in_one_process_match_one_mode_per_process(tmp_path, capsys):
    """circuit.jobs per_task runs `--mode noising denoising` in one process: each circuit must be
    the one its own process gives, byte for byte (the model is not changed by the first mode,
    and each mode starts from the seed)."""
    from clue.cli import main

    model_dir, data_dir = write_task(tmp_path)
    for mode in ("noising", "denoising"):
        run_cli(model_dir, data_dir, tmp_path / f"alone_{mode}.json", mode=mode)
    base = ["circuit", "--model-dir", str(model_dir), "--data-dir", str(data_dir), "--task", "toy_demo",
            "--model-name", "tiny", "--mode", "noising", "denoising", "--quiet", "--params", json.dumps(CLI_PARAMS)]
    assert main(base + ["--out", str(tmp_path / "both_noising.json"), str(tmp_path / "both_denoising.json")]) == 0
    for mode in ("noising", "denoising"):
        assert (tmp_path / f"both_{mode}.json").read_bytes() == (tmp_path / f"alone_{mode}.json").read_bytes()
    assert main(base + ["--out", str(tmp_path / "one.json")]) == 2
    assert "--mode names 2 mode(s): give as many --out paths" in capsys.readouterr().err
    assert not (tmp_path / "one.json").exists()


def test_same_answer_fails_naming_the_task(tmp_path, capsys):
    model_dir, data_dir = write_task(tmp_path, same_answer=True)
    assert run_cli(model_dir, data_dir, tmp_path / "x.json", task="toy_broken") == 2
    err = capsys.readouterr().err
    assert "toy_broken" in err and "the clean and corrupted answers start with the same token" in err
    assert not (tmp_path / "x.json").exists()


def test_prompt_longer_than_the_context_fails_before_training(tmp_path, capsys):
    model_dir, data_dir = write_task(tmp_path)
    config = json.loads((model_dir / "config.json").read_text())
    # write_task's prompts have 3 + i % 4 words: pair 3 is 5 words and its answer, 6 tokens of the
    # word-level tokenizer (no special tokens), the first that 5 positions cannot hold
    config["max_position_embeddings"] = 5
    (model_dir / "config.json").write_text(json.dumps(config))
    assert run_cli(model_dir, data_dir, tmp_path / "x.json", task="toy_long") == 2
    err = capsys.readouterr().err
    assert "task toy_long:" in err and "pairs.jsonl line 3 is 6 tokens long" in err
    assert "more than the model's context of 5 tokens" in err
    assert not (tmp_path / "x.json").exists()


def test_unsupported_model_fails_naming_the_class():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=16))
    with pytest.raises(ClueError, match="GPT2LMHeadModel.*LlamaForCausalLM.*Qwen2ForCausalLM"):
        D.discover(model, {"clean": torch.zeros(1, 2, dtype=torch.long)}, "noising", {})


@pytest.mark.parametrize("params, message", [
    ({"target_sparsity": 1.0}, "target_sparsity"), ({"target_sparsity": 0}, "target_sparsity"),
    ({"target_sparsity": []}, "target_sparsity is an empty list"), ({"target_sparsity": [0.9, 1.2]}, "got 1.2"),
    ({"target_sparsity_per_task": {"t": [0.5, True]}}, "target_sparsity_per_task.t"),
    ({"steps": 0}, "steps"), ({"sparsity": 0.5}, "unknown key"), ({"lr": -1}, "lr"),
    ({"candidate_nodes": 0}, "candidate_nodes must be in"), ({"candidate_nodes": 1.5}, "candidate_nodes must be in"),
    ({"candidate_nodes": True}, "candidate_nodes must be in"), ({"attribution_steps": 0}, "attribution_steps"),
    ({"node_level_fallback": "yes"}, "node_level_fallback must be true or false"),
    ({"attribution_fallback": 1}, "circuit config: attribution_fallback must be true or false, got 1"),
    ({"threads": 0}, "threads must be a positive integer, got 0"),
    ({"early_stop_every": -1}, "early_stop_every must be 0 \\(off\\) or a positive integer, got -1"),
    ({"autocast": "bf16"}, "circuit.autocast must be null, auto or one of bfloat16, float16, not 'bf16'"),
    ({"dtype": "float64"}, "circuit config: dtype must be one of float32, bfloat16, float16, got 'float64'"),
    ({"keep_other_runs": "no"}, "circuit config: keep_other_runs must be true or false, got 'no'")])
def test_bad_params(params, message):
    with pytest.raises(ClueError, match=message):
        D.resolve_params(params)


PEAK_MEMORY_PROBE = """
import json, resource, sys, torch
from transformers import LlamaConfig, LlamaForCausalLM
from clue.circuits.masked_forward import build_graph, forward
torch.manual_seed(0)
model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=256, intermediate_size=256,
                                     num_hidden_layers=int(sys.argv[1]), num_attention_heads=8,
                                     num_key_value_heads=4, tie_word_embeddings=False)).eval().requires_grad_(False)
graph = build_graph(model.config)
x, y = torch.randint(0, 64, (2, 16, 64))
with torch.no_grad():
    _, other = forward(model, graph, y)
gates = torch.full((graph.n_edges,), 0.5, requires_grad=True)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
logits, _ = forward(model, graph, x, gates, other, torch.full((16,), 63))
logits.square().sum().backward()
print(json.dumps((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024))
"""


def test_memory_of_a_discovery_step_grows_linearly_with_depth(tmp_path):
    """Peak extra memory of a gated forward + backward (16 x 64 tokens, hidden 256, 8 heads) at
    6 and 12 layers, each in a fresh process (ru_maxrss). Twice the layers may cost about twice
    the memory; concatenating every upstream writer per reader group (kept for backward) made it
    grow with the square of the depth: 3.1x from 4 to 8 layers and 2.8x from 8 to 16, against
    1.7x and 1.8x now (measured with this probe)."""
    import subprocess
    import sys

    probe = tmp_path / "probe.py"
    probe.write_text(PEAK_MEMORY_PROBE)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    mb = {}
    for layers in (6, 12):
        out = subprocess.run([sys.executable, str(probe), str(layers)], capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr[-2000:]
        mb[layers] = float(out.stdout.strip().splitlines()[-1])
    assert mb[6] > 100          # the step's activations stand out of the RSS noise
    assert mb[12] / mb[6] < 2.3, mb


def test_the_default_floor_is_085_in_the_schema_and_the_stage():
    import yaml

    schema = yaml.safe_load(open(os.path.join(os.path.dirname(__file__), "..", "workflow", "schemas",
                                              "config.schema.yaml")))
    assert schema["properties"]["circuit"]["properties"]["min_faithfulness"]["default"] == 0.85
    assert D.resolve_params({})["min_faithfulness"] == 0.85


def test_a_circuit_below_the_floor_on_held_out_pairs_is_kept_with_a_warning(tmp_path, capsys):
    """One candidate, no early stop: the floor changes no edge. No floor: no warning. A floor just
    above the circuit's held-out faithfulness, with if_unfaithful: most_faithful: the same circuit,
    and its job log says it is below the floor, with the keys that change it (clue.caveats)."""
    model_dir, data_dir = write_task(tmp_path)
    capsys.readouterr()
    assert run_cli(model_dir, data_dir, tmp_path / "free.json") == 0
    assert "warning" not in capsys.readouterr().err
    free = json.loads((tmp_path / "free.json").read_text())
    held, validation = free["faithfulness"]["faithfulness"], free["validation"]["faithfulness"]
    floor = round(held + 0.001, 4)
    params = {**CLI_PARAMS, "min_faithfulness": floor, "if_unfaithful": "most_faithful"}
    assert run_cli(model_dir, data_dir, tmp_path / "floor.json", params=params) == 0
    assert json.loads((tmp_path / "floor.json").read_text())["edges"] == free["edges"]
    missed = "" if validation >= floor else "; no candidate reached the floor on validation, the most faithful kept"
    assert [line for line in capsys.readouterr().err.splitlines() if "warning" in line] == [
        f"clue circuit: warning: circuit toy_demo noising: held-out faithfulness {held:.3f} is below "
        f"circuit.min_faithfulness {floor:g} (validation {validation:.3f}{missed}): the circuit does not do what the "
        "model does, so CLUE's neurons from it may be the wrong ones; add lower candidates to "
        "circuit.target_sparsity (or circuit.target_sparsity_per_task.toy_demo), or lower "
        "circuit.min_faithfulness to accept it"]


def test_with_if_unfaithful_most_faithful_the_best_candidate_is_kept(tmp_path):
    """No candidate reaches an unreachable floor: the most faithful on validation is kept and the
    record says the floor was not reached."""
    model_dir, data_dir = write_task(tmp_path)
    params = {**CLI_PARAMS, "target_sparsity": [0.5, 0.8], "min_faithfulness": 1.0, "if_unfaithful": "most_faithful"}
    assert run_cli(model_dir, data_dir, tmp_path / "c.json", params=params) == 0
    rec = json.loads((tmp_path / "c.json").read_text())
    tried = rec["selection"]["tried"]
    assert [t["target_sparsity"] for t in tried] == [0.8, 0.5] and rec["selection"]["reached_min_faithfulness"] is False
    best = max(tried, key=lambda t: t["validation_faithfulness"])
    assert rec["target_sparsity"] == best["target_sparsity"] == rec["selection"]["chosen"]
    assert rec["validation"]["faithfulness"] == pytest.approx(best["validation_faithfulness"])


def reference_candidates(graph, live):
    """The edges a run with these live writers can open, from the reader owners (test's own
    derivation): from a live writer into ``out`` or into a reader of a live writer."""
    owners = reader_owners(graph)
    return torch.tensor([1.0 if live[w] and (not owners[r] or any(live[o] for o in owners[r])) else 0.0
                         for w, r in graph.edges])


def run_and_other(model, seed, shape):
    """The graph of ``model``, a run's token ids [B, T] (``shape``) and the writer outputs of the
    other run (on other ids), both drawn after seeding with ``seed``."""
    graph = build_graph(model.config)
    torch.manual_seed(seed)
    x, x_other = torch.randint(0, 64, (2, *shape))
    with torch.no_grad():
        _, other = forward(model, graph, x_other)
    return graph, x, other


@pytest.mark.parametrize("kind", ["llama", "gqa", "llama_bias"])
def test_a_run_on_live_nodes_equals_the_whole_graph_with_their_edges_closed(kind):
    """Computing only the live writers is exact: same logits and gate gradients as the whole
    graph with every edge that touches a dead writer closed (and an every-writer plan is the
    plain gated run, bit for bit)."""
    model = sharpen(models()[kind]).double()
    graph, x, other = run_and_other(model, 0, (2, 7))
    n = len(graph.writers)
    masks = [torch.rand(n) < 0.5, torch.zeros(n, dtype=torch.bool),      # half; embed alone
             torch.tensor([not w.startswith("m") for w in graph.writers]),   # heads only
             torch.tensor([not w.startswith("a") for w in graph.writers])]   # MLPs only
    for live in masks:
        plan = live_nodes(graph, live)
        candidate = reference_candidates(graph, plan.live)
        assert torch.equal(candidate_edges(graph, plan.live), candidate)
        z = torch.rand(graph.n_edges, dtype=torch.float64, requires_grad=True)
        fast, _ = forward(model, graph, x, z, other, torch.tensor([6, 4]), live=plan)
        grad_fast, = torch.autograd.grad(fast.square().sum(), z)
        slow, _ = forward(model, graph, x, z * candidate, other, torch.tensor([6, 4]))
        grad_slow, = torch.autograd.grad(slow.square().sum(), z)
        torch.testing.assert_close(fast, slow, atol=1e-9, rtol=0)
        torch.testing.assert_close(grad_fast, grad_slow, atol=1e-9, rtol=0)
        assert (grad_fast[candidate == 0] == 0).all()
    z = torch.rand(graph.n_edges, dtype=torch.float64)
    every, _ = forward(model, graph, x, z, other, live=live_nodes(graph))
    plain, _ = forward(model, graph, x, z, other)
    assert torch.equal(every, plain)


@pytest.mark.parametrize("kind", ["gqa", "qwen2"])
def test_low_precision_weights_change_no_number_of_an_autocast_step(kind):
    """The bf16 copies of the Linear weights only save autocast's casts: a gated step under
    autocast gives the same logits and gate gradients, bit for bit, with them in place (over a
    plan with dead heads, whose projections read some heads' rows). Inside the context o_proj,
    the MLP and lm_head are bf16 while the norms, the tied embedding and q/k/v stay float32
    (copying those would change the numbers: q/k/v get bf16 copies of their rows times the norm's
    weight instead); after it the model has its own parameters, tie included and no copy left."""
    model = sharpen(make_model(kind, layers=2, tied=True))
    model.lm_head.weight = model.model.embed_tokens.weight      # sharpen drew them apart
    own = dict(model.named_parameters(remove_duplicate=False))
    graph = build_graph(model.config)
    torch.manual_seed(0)
    x, x_other = torch.randint(0, 64, (2, 3, 7))
    with torch.no_grad():
        _, other = forward(model, graph, x_other)
    plan = live_nodes(graph, torch.tensor([w not in ("a0.h1", "a1.h0", "a1.h3") for w in graph.writers]))
    z = torch.rand(graph.n_edges)
    steps = []
    for dtype in (None, torch.bfloat16):
        weights = LowPrecisionWeights(model, dtype)
        gates = z.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16), weights.in_place():
            k_proj = model.model.layers[1].self_attn.k_proj
            # q/k/v: their rows times the norm weight, in the copies' dtype or the model's
            assert k_proj.folded_weight.dtype == (dtype or torch.float32)
            if dtype is None:
                assert model.model.layers[1].self_attn.o_proj.weight.dtype == torch.float32
            else:
                assert model.model.layers[1].self_attn.o_proj.weight.dtype == torch.bfloat16
                assert model.model.layers[1].mlp.up_proj.weight.dtype == torch.bfloat16
                assert k_proj.weight.dtype == torch.float32
                assert model.lm_head.weight.dtype == torch.bfloat16
                assert model.model.embed_tokens.weight.dtype == torch.float32
                assert model.model.layers[0].input_layernorm.weight.dtype == torch.float32
            logits, _ = forward(model, graph, x, gates, other, torch.tensor([6, 5, 4]), live=plan)
            loss = logits.float().square().mean()
        loss.backward()
        steps.append((logits, gates.grad))
    assert logits.dtype == torch.bfloat16
    assert torch.equal(steps[0][0], steps[1][0]) and torch.equal(steps[0][1], steps[1][1])
    assert all(p is own[name] for name, p in model.named_parameters(remove_duplicate=False))
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert not any(hasattr(m, "folded_weight") for m in model.modules())


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
@pytest.mark.parametrize("autocast", [False, True])
def test_reader_norm_gives_the_norm_modules_numbers_bit_for_bit(kind, autocast):
    """The MLP reader's RMSNorm, written out, is the model's own norm module forward and backward,
    bit for bit, on the reader's input in a gated step (the mix's output, bf16 under autocast),
    followed by the MLP (whose two products each cast it, their gradients added in float32)."""
    model = sharpen(make_model(kind, layers=1))
    layer = model.model.layers[0]
    torch.manual_seed(0)
    x0 = 3 * torch.randn(3, 7, 32)                      # [B, T, D]
    x0 = x0.bfloat16() if autocast else x0
    runs = []
    for norm in (layer.post_attention_layernorm, lambda x: _reader_norm(layer.post_attention_layernorm, x)):
        x = x0.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            y = layer.mlp(norm(x))
        (y.float() * torch.linspace(-1, 1, y.numel()).view(y.shape)).sum().backward()
        runs.append((y, x.grad))
    assert y.dtype == (torch.bfloat16 if autocast else torch.float32)
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])


@pytest.mark.parametrize("kind", ["gqa", "qwen2"])
def test_head_projection_folds_the_norm_exactly(kind):
    """A q/k/v reader's norm folded into its projection (the norm's weight into the head's rows,
    1 / rms applied to the projected head) is the module's norm then the head's rows: in float64
    against the formula written out (the module itself computes in float32), forward and
    backward, over live heads and groups that skip some; in a float32 model under autocast,
    within bf16's rounding of the module's norm then the same rows."""
    from clue.circuits.masked_forward import _head_proj

    model = sharpen(make_model(kind, layers=1))
    attn, norm = model.model.layers[0].self_attn, model.model.layers[0].input_layernorm
    hd = attn.head_dim
    heads, groups = torch.tensor([0, 2, 3]), torch.tensor([0, 1])
    torch.manual_seed(0)
    x0 = 3 * torch.randn(len(heads) + 2 * len(groups), 3, 7, 32, dtype=torch.float64)
    weigh = [torch.randn(3, n, 7, hd, dtype=torch.float64) for n in (len(heads), len(groups), len(groups))]

    def written_out(x):
        normed = norm.weight.double() * x / torch.sqrt(x.square().mean(-1, keepdim=True) + norm.variance_epsilon)
        outs = []
        for linear, which, y in zip((attn.q_proj, attn.k_proj, attn.v_proj), (heads, groups, groups),
                                    normed.split([len(heads), len(groups), len(groups)])):
            rows = linear.weight.double().view(-1, hd, 32)[which]          # [n, hd, D]
            out = torch.stack([y[i] @ rows[i].T for i in range(len(which))], 1)
            outs.append(out + linear.bias.double().view(-1, hd)[which].view(1, -1, 1, hd) if linear.bias is not None else out)
        return outs

    runs = []
    for project in (written_out, lambda x: _head_proj(attn.double(), norm.double(), x, heads, groups, hd)):
        x = x0.clone().requires_grad_(True)
        outs = project(x)
        sum((o * w).sum() for o, w in zip(outs, weigh)).backward()
        runs.append((outs, x.grad))
        model.float()
    for a, b in zip(runs[0][0], runs[1][0]):
        assert a.shape == b.shape and b.dtype == torch.float64
        torch.testing.assert_close(b, a, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(runs[1][1], runs[0][1], atol=1e-12, rtol=1e-12)
    # float32 model, autocast, on the bf16 reader inputs of a gated step: the products in bf16, r
    # in float32; output and input gradient within a few bf16 roundings (2^-8 relative) of exact
    x = x0.bfloat16().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        module = _head_proj_by_module(attn, norm, x.detach(), heads, groups, hd)
        folded = _head_proj(attn, norm, x, heads, groups, hd)
    sum((o.double() * w).sum() for o, w in zip(folded, weigh)).backward()
    exact_x = x.detach().double().requires_grad_(True)
    exact = written_out(exact_x)
    sum((o * w).sum() for o, w in zip(exact, weigh)).backward()
    for a, b, e in zip(module, folded, exact):
        scale = e.abs().max().item()
        assert (b.double() - e).abs().max() < 0.02 * scale and (a.double() - e).abs().max() < 0.02 * scale
    assert x.grad.dtype == torch.bfloat16
    assert (x.grad.double() - exact_x.grad).abs().max() < 0.03 * exact_x.grad.abs().max()


def _head_proj_by_module(attn, norm, x, heads, groups, hd):
    # the norm module, then each reader's rows of q/k/v (as the HF model would compute them)
    outs = []
    for linear, which, y in zip((attn.q_proj, attn.k_proj, attn.v_proj), (heads, groups, groups),
                                norm(x).split([len(heads), len(groups), len(groups)])):
        rows = linear.weight.view(-1, hd, x.shape[-1])[which]
        out = torch.stack([torch.nn.functional.linear(y[i], rows[i]) for i in range(len(which))], 1)
        outs.append(out + linear.bias.view(-1, hd)[which].view(1, -1, 1, hd) if linear.bias is not None else out)
    return outs


@pytest.mark.parametrize("kind", ["gqa", "qwen2"])
def test_layers_sharing_one_product_give_what_one_product_a_layer_gives(kind, monkeypatch):
    """A gated run reads the stored rows once for MIX_GROUP layers' readers (the later layers
    adding the rows stored since, over the other run's stream as it has grown): the same logits
    and gate gradients as every layer reading all its rows itself (MIX_GROUP 1), in float64, on
    seven layers (groups of three, a last group of one) with random gates, for every writer,
    half of them, and a plan with a layer of no live node inside a group; and the tensors it keeps
    for the backward take no more memory (no reader's input a view of the later layers' sums)."""
    from clue.circuits import masked_forward as MF

    model = sharpen(make_model(kind, layers=7)).double()
    graph, x, other = run_and_other(model, 1, (2, 6))
    n = len(graph.writers)
    dead_layer = torch.tensor([not w.startswith(("a2.", "m2")) for w in graph.writers])
    assert MF.MIX_GROUP == 3
    for live in (None, torch.rand(n) < 0.5, dead_layer):
        plan = live_nodes(graph, live)
        z = torch.rand(graph.n_edges, dtype=torch.float64)
        runs = []
        for group in (1, 3):
            monkeypatch.setattr(MF, "MIX_GROUP", group)
            gates = z.clone().requires_grad_(True)
            logits, _ = forward(model, graph, x, gates, other, torch.tensor([5, 3]), live=plan)
            (logits * torch.linspace(-1, 1, logits.numel(), dtype=torch.float64).view(logits.shape)).sum().backward()
            runs.append((logits, gates.grad))
        torch.testing.assert_close(runs[1][0], runs[0][0], atol=1e-10, rtol=0)
        torch.testing.assert_close(runs[1][1], runs[0][1], atol=1e-10, rtol=0)
        assert (runs[1][1] != 0).sum() > 0.9 * candidate_edges(graph, plan.live).sum()
    # and keeps no more for the backward: the bytes of every tensor saved, storage by storage
    kept = []
    for group in (1, 3):
        monkeypatch.setattr(MF, "MIX_GROUP", group)
        storages = {}

        def pack(t):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            forward(model, graph, x, z.clone().requires_grad_(True), other, torch.tensor([5, 3]), live=plan)
        kept.append(sum(storages.values()))
    assert kept[1] <= kept[0]


def attribution_batch(seed, last):
    """A float64 two-layer model, its graph and one discovery batch of three pairs."""
    model = sharpen(make_model("gqa", layers=2)).double()
    graph = build_graph(model.config)
    torch.manual_seed(seed)
    x, x_other = torch.randint(0, 64, (2, 3, 6))
    last = torch.tensor(last)
    with torch.no_grad():
        _, other = forward(model, graph, x_other)
        full, _ = forward(model, graph, x, positions=last)
    return model, graph, {"ids": x, "last": last, "other": other, "full": full}


def test_attributions_sum_to_the_kl_of_the_empty_circuit():
    """EAP-IG completeness: the edge attributions sum to KL(empty) - KL(full) = KL(empty), up to
    the midpoint rule's error; writer scores are the sums over each writer's out-edges."""
    model, graph, b = attribution_batch(0, [5, 5, 5])
    with torch.no_grad():
        empty, _ = forward(model, graph, b["ids"], torch.zeros(graph.n_edges, dtype=torch.float64), b["other"], b["last"])
    kl_empty = D.kl_full_circuit(b["full"], empty).item()
    batch = [b]
    coarse = D.attribute(model, graph, batch, 2)[0].sum().item()
    edges, writers = D.attribute(model, graph, batch, 64)
    assert kl_empty > 0.5
    assert abs(edges.sum().item() - kl_empty) < 0.01 * kl_empty < abs(coarse - kl_empty)
    by_writer = [sum(edges[i].item() for i, (w, _) in enumerate(graph.edges) if w == k) for k in range(len(graph.writers))]
    torch.testing.assert_close(writers, torch.tensor(by_writer, dtype=writers.dtype), atol=1e-6, rtol=0)


def test_attribution_of_a_batch_is_the_mean_of_its_pairs():
    """The attribution pass runs a batch in two halves (3 pairs: 2 and 1); weighted by their
    pairs, the halves give the batch's mean, the same as attributing every pair on its own."""
    model, graph, b = attribution_batch(1, [5, 4, 5])
    whole = [b]
    single = [{"ids": b["ids"][i:i + 1], "last": b["last"][i:i + 1], "other": b["other"][:, i:i + 1],
               "full": b["full"][i:i + 1]} for i in range(3)]
    edges, writers = D.attribute(model, graph, whole, 3)
    one_by_one = D.attribute(model, graph, single, 3)
    assert edges.abs().max() > 1e-3
    torch.testing.assert_close(edges, one_by_one[0], atol=1e-6, rtol=1e-5)   # float32 sums
    torch.testing.assert_close(writers, one_by_one[1], atol=1e-6, rtol=1e-5)


def test_candidate_writers_are_embed_and_the_largest_attributions():
    graph = build_graph(make_model("gqa", layers=2).config)
    scores = torch.zeros(len(graph.writers))
    scores[[3, 7, 9]] = torch.tensor([-5.0, 2.0, 4.0])   # |-5| ranks first
    scores[0] = -100.0                                  # embed is always kept, never counted
    live = D.candidate_writers(graph, scores, 3 / (len(graph.writers) - 1))
    assert live.nonzero().flatten().tolist() == [0, 3, 7, 9]


def test_discovery_from_candidate_nodes_keeps_only_candidate_edges(tmp_path):
    """With candidate_nodes 0.5 the circuit meets its target and every kept edge joins two of
    the half of the writers with the largest attribution; the JSON says how it started."""
    model_dir, data_dir = write_task(tmp_path)
    params = {**CLI_PARAMS, "candidate_nodes": 0.5, "target_sparsity": 0.9}
    assert run_cli(model_dir, data_dir, tmp_path / "c.json", params=params) == 0
    record = json.loads((tmp_path / "c.json").read_text())
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval().requires_grad_(False)
    graph = build_graph(model.config)
    pairs = D.load_pairs(data_dir, "toy_demo", AutoTokenizer.from_pretrained(model_dir), 64)
    batches = D._prepare_batches(model, graph, pairs, "noising", CLI_PARAMS["batch_size"], torch.device("cpu"))
    _, writer_scores = D.attribute(model, graph, batches, 4)
    live = D.candidate_writers(graph, writer_scores, 0.5)
    allowed = reference_candidates(graph, live)
    kept = D.gates_from_record(graph, record)
    assert kept.sum() > 0 and (kept <= allowed).all()
    assert record["candidates"]["writers"] == round(0.5 * (len(graph.writers) - 1))
    assert record["candidates"]["edges"] == int(allowed.sum())
    assert abs(record["expected_sparsity"] - 0.9) <= D.SPARSITY_TOLERANCE


def test_node_level_fallback_is_the_last_candidate(tmp_path):
    """With node_level_fallback, a floor the Edge Pruning candidate misses but the candidate
    writers with all their edges reach gives the node-level circuit: every edge between the
    candidates (less dead ends, which change no logit), no training, its faithfulness the one of
    those edges all open; the selection lists both. Without the fallback the same floor keeps the
    Edge Pruning circuit (most_faithful)."""
    model_dir, data_dir = write_task(tmp_path)
    base = {**CLI_PARAMS, "candidate_nodes": 0.7, "target_sparsity": 0.8, "if_unfaithful": "most_faithful"}
    assert run_cli(model_dir, data_dir, tmp_path / "ep.json", params=base) == 0
    edge_pruned = json.loads((tmp_path / "ep.json").read_text())
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval().requires_grad_(False)
    tok = AutoTokenizer.from_pretrained(model_dir)
    graph = build_graph(model.config)
    pairs = D.load_pairs(data_dir, "toy_demo", tok, 64)
    batches = D._prepare_batches(model, graph, pairs, "noising", CLI_PARAMS["batch_size"], torch.device("cpu"))
    allowed = reference_candidates(graph, D.candidate_writers(graph, D.attribute(model, graph, batches, 4)[1], 0.7))
    validation = D.load_pairs(data_dir, "toy_demo", tok, 64, "validation_pairs.jsonl")
    nodes = D.faithfulness(model, graph, validation, "noising", allowed, CLI_PARAMS, "cpu")["faithfulness"]
    ep = edge_pruned["validation"]["faithfulness"]
    assert nodes > ep + 0.002, (nodes, ep)   # the toy task separates them, else the test proves nothing
    floor = round((nodes + ep) / 2, 4)

    params = {**base, "min_faithfulness": floor, "node_level_fallback": True}
    assert run_cli(model_dir, data_dir, tmp_path / "c.json", params=params) == 0
    rec = json.loads((tmp_path / "c.json").read_text())
    kept = D.gates_from_record(graph, rec)
    assert rec["node_level"] is True and rec["steps"] == 0 and rec["threshold"] is None
    assert (kept <= allowed).all() and kept.sum() > 0
    assert rec["target_sparsity"] == pytest.approx(1 - allowed.mean().item())
    assert rec["dead_end_edges_removed"] == int(allowed.sum() - kept.sum())
    assert rec["validation"]["faithfulness"] == pytest.approx(nodes, abs=1e-6)
    sel = rec["selection"]
    assert [(t["target_sparsity"], t["node_level"]) for t in sel["tried"]] == [
        (0.8, False), (pytest.approx(rec["target_sparsity"]), True)]
    assert sel["node_level"] is True and sel["reached_min_faithfulness"] is True
    assert sel["tried"][0]["validation_faithfulness"] == pytest.approx(ep)

    assert run_cli(model_dir, data_dir, tmp_path / "no.json", params={**params, "node_level_fallback": False}) == 0
    without = json.loads((tmp_path / "no.json").read_text())
    assert without["node_level"] is False and without["edges"] == edge_pruned["edges"]


def test_node_level_fallback_needs_candidate_nodes(tmp_path, capsys):
    model_dir, data_dir = write_task(tmp_path)
    params = {**CLI_PARAMS, "node_level_fallback": True}
    assert run_cli(model_dir, data_dir, tmp_path / "x.json", params=params) == 2
    assert ("circuit config: node_level_fallback needs candidate_nodes below 1 (with every writer the node-level "
            "circuit is the whole model)") in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_too_few_candidate_edges_for_the_target_fail_naming_the_key(tmp_path, capsys):
    model_dir, data_dir = write_task(tmp_path)
    params = {**CLI_PARAMS, "candidate_nodes": 0.1, "target_sparsity": 0.5}
    assert run_cli(model_dir, data_dir, tmp_path / "x.json", params=params) == 2
    err = capsys.readouterr().err
    assert re.search(r"candidate_nodes 0.1 leaves \d+ candidate edges, fewer than the \d+ that target sparsity "
                     r"0.5 keeps; raise circuit.candidate_nodes", err)
    assert not (tmp_path / "x.json").exists()


def test_early_stop_ends_on_the_first_check_that_reaches_the_floor(tmp_path):
    """early_stop_every 25, no warmup (so a run of s steps is the first s steps of a longer one):
    with a floor every circuit reaches, training stops at the first multiple of 25 at which the
    expected sparsity is within tolerance of the target, and the circuit is the one a run of just
    that many steps gives (scores, kept edges, history, validation figures). With a floor no
    circuit reaches, it trains every step and equals a run without checks."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, data_dir = write_task(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval().requires_grad_(False)
    tok = AutoTokenizer.from_pretrained(model_dir)
    pairs = D.load_pairs(data_dir, "toy_demo", tok, 64)
    validation = D.load_pairs(data_dir, "toy_demo", tok, 64, "validation_pairs.jsonl")
    base = {**CLI_PARAMS, "sparsity_warmup": 0.0}

    def run(**overrides):
        return D.discover(model, pairs, "noising", {**base, **overrides}, progress=False, validation=validation)

    stopped = run(early_stop_every=25, min_faithfulness=-1e9)
    s = stopped["steps_run"]
    assert s % 25 == 0 and s < base["steps"] and len(stopped["history"]) == s
    plain = run(steps=s)
    assert torch.equal(stopped["scores"], plain["scores"]) and torch.equal(stopped["kept"], plain["kept"])
    assert stopped["history"] == plain["history"] and stopped["validation"] == plain["validation"]
    assert abs(stopped["expected_sparsity"] - base["target_sparsity"]) <= D.SPARSITY_TOLERANCE
    for earlier in range(25, s, 25):   # no earlier check had reached the target sparsity
        assert abs(run(steps=earlier)["expected_sparsity"] - base["target_sparsity"]) > D.SPARSITY_TOLERANCE
    # each check is recorded with its step; the one it stopped at measured the circuit it returned
    assert [c["step"] for c in stopped["checks"]] == list(range(25, s + 1, 25))
    assert stopped["checks"][-1]["validation_faithfulness"] == stopped["validation"]["faithfulness"]
    assert all(c["validation_faithfulness"] is None for c in stopped["checks"][:-1])
    never = run(early_stop_every=25, min_faithfulness=1.0)
    full = run()
    assert never["steps_run"] == full["steps_run"] == base["steps"]
    assert torch.equal(never["scores"], full["scores"]) and never["validation"] == full["validation"]
    # a check's figure is that of the circuit a run of just that many steps ends with
    assert [c["step"] for c in never["checks"]] == list(range(25, base["steps"], 25))
    measured = [c for c in never["checks"] if c["validation_faithfulness"] is not None]
    assert measured and measured[0]["step"] == s
    later = measured[-1]
    assert later["validation_faithfulness"] == run(steps=later["step"])["validation"]["faithfulness"]


def test_select_circuit_prepares_what_its_candidates_share_once(tmp_path, monkeypatch):
    """select_circuit trains two target sparsities and then the node-level circuit, with an
    early-stop check every 25 steps: the discovery batches are prepared once for the attribution
    and every candidate (one copy in memory, not one more a candidate), the validation batches
    once for every check and candidate, and the empty circuit runs once on the validation pairs
    (at the first check) and once on the held-out pairs, however many figures use it. Each
    candidate is the one it is alone (its own batches and figures), the held-out figures are the
    held-out pairs', and a cache refuses other pairs."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, data_dir = write_task(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval().requires_grad_(False)
    tok = AutoTokenizer.from_pretrained(model_dir)
    pairs, validation, heldout = (D.load_pairs(data_dir, "toy_demo", tok, 64, f) for f in
                                  ("pairs.jsonl", "validation_pairs.jsonl", "heldout_pairs.jsonl"))
    params = {**CLI_PARAMS, "steps": 100, "sparsity_warmup": 0.0, "early_stop_every": 25, "candidate_nodes": 0.7,
              "target_sparsity": [0.85, 0.8], "node_level_fallback": True, "min_faithfulness": 1.0,
              "if_unfaithful": "most_faithful"}
    prepared, empty_runs, checks = [], [], []
    prepare, gated, faithfulness = D._prepare_batches, D.forward, D.faithfulness

    def counting_prepare(model, graph, pairs_, *args, **kwargs):
        prepared.append("discovery" if pairs_ is pairs else "validation" if pairs_ is validation else "held-out")
        return prepare(model, graph, pairs_, *args, **kwargs)

    def counting_forward(model, graph, input_ids, gates=None, *args, **kwargs):
        if gates is not None and not gates.any():
            empty_runs.append(input_ids.shape[0])
        return gated(model, graph, input_ids, gates, *args, **kwargs)

    def counting_faithfulness(model, graph, pairs_, *args, **kwargs):
        checks.append(pairs_ is validation)
        return faithfulness(model, graph, pairs_, *args, **kwargs)

    monkeypatch.setattr(D, "_prepare_batches", counting_prepare)
    monkeypatch.setattr(D, "forward", counting_forward)
    monkeypatch.setattr(D, "faithfulness", counting_faithfulness)
    result = D.select_circuit(model, pairs, "noising", params, validation, heldout=heldout, progress=False)
    tried = result["selection"]["tried"]
    assert [(t["target_sparsity"], t["node_level"]) for t in tried][:2] == [(0.85, False), (0.8, False)]
    assert len(tried) == 3 and tried[2]["node_level"]
    assert sum(checks) >= 4      # each candidate's figures, and an early-stop check or more
    assert sorted(prepared) == ["discovery", "held-out", "validation"]   # each set of pairs once
    # one empty run a batch: the validation pairs' (2 pairs, batch 4) and the held-out pairs' (3)
    assert empty_runs == [2, 3]

    monkeypatch.undo()
    p = D.resolve_params(params)
    fresh = D.faithfulness(model, result["graph"], validation, "noising", result["kept"], p, torch.device("cpu"))
    assert result["validation"] == fresh
    assert [t["validation_kl_empty"] for t in tried] == [fresh["kl_empty"]] * 3
    # each candidate alone, preparing everything itself, gives what the selection recorded of it
    alone = [D.discover(model, pairs, "noising", {**params, "target_sparsity": t}, progress=False,
                        validation=validation, heldout=heldout) for t in (0.85, 0.8)]
    alone.append(D.node_circuit(model, pairs, "noising", params, validation=validation))
    for t, a in zip(tried, alone):
        assert (t["kept"], t["steps_run"]) == (int(a["kept"].sum()), a["steps_run"])
        assert (t["validation_faithfulness"], t["validation_kl_circuit"], t["validation_kl_empty"]) == (
            a["validation"]["faithfulness"], a["validation"]["kl_circuit"], a["validation"]["kl_empty"])
    chosen = alone[[(t["target_sparsity"], t["node_level"]) for t in tried].index(
        (result["selection"]["chosen"], result["selection"]["node_level"]))]
    assert torch.equal(chosen["scores"], result["scores"]) and torch.equal(chosen["kept"], result["kept"])
    # held-out figures on the held-out pairs, not the validation pairs' batches or empty circuit
    held = D.faithfulness(model, alone[0]["graph"], heldout, "noising", alone[0]["kept"], p, torch.device("cpu"))
    assert alone[0]["faithfulness"] == held and held["kl_empty"] != alone[0]["validation"]["kl_empty"]
    cache = {}
    D.faithfulness(model, result["graph"], validation, "noising", result["kept"], p, torch.device("cpu"), cache)
    for other_pairs, mode, other_p in ((heldout, "noising", p), (validation, "denoising", p),
                                       (validation, "noising", {**p, "batch_size": 1})):
        with pytest.raises(ValueError, match="this cache was filled for other pairs, another model, mode or batching"):
            D.faithfulness(model, result["graph"], other_pairs, mode, result["kept"], other_p, "cpu", cache)


def test_eap_ig_circuit_keeps_the_candidate_edges_of_largest_attribution(tmp_path):
    """attribution_circuit at target sparsity 0.8 from 0.7 of the writers: brute force, the
    round(0.2 x edges) candidate edges of the largest |EAP-IG attribution| (a sort, not the
    threshold's binary search), less their dead ends, is exactly what it keeps; no step trained."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, data_dir = write_task(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval().requires_grad_(False)
    tok = AutoTokenizer.from_pretrained(model_dir)
    pairs = D.load_pairs(data_dir, "toy_demo", tok, 64)
    p = D.resolve_params({**CLI_PARAMS, "candidate_nodes": 0.7, "target_sparsity": 0.8})
    model, graph, batches, _ = D._setup(model, pairs, "noising", p)
    attribution = D.attribute(model, graph, batches, p["attribution_steps"])
    result = D.attribution_circuit(model, pairs, "noising", p, attribution=attribution)
    _, candidate = D._candidate_nodes(model, graph, batches, p, attribution)
    ranked = sorted(candidate.nonzero().flatten().tolist(), key=lambda e: -abs(attribution[0][e].item()))
    top = torch.zeros(graph.n_edges)
    top[ranked[:round(0.2 * graph.n_edges)]] = 1
    assert not candidate.all() and len(ranked) > round(0.2 * graph.n_edges)
    assert torch.equal(result["kept"], D.remove_dead_ends(graph, top))
    assert result["dead_end_edges_removed"] == int(top.sum() - result["kept"].sum())
    assert (result["circuit"], result["steps_run"], result["node_level"]) == ("attribution", 0, False)
    assert result["scores"].max() == 1 and not result["scores"][~candidate].any()


def test_select_circuit_tries_eap_ig_after_edge_pruning_at_each_target(tmp_path):
    """attribution_fallback: at each target, sparsest first, EAP-IG's circuit right after Edge
    Pruning's, the node-level circuit last; with the floor at EAP-IG's figure at 0.85 the choice
    is the first candidate reaching it, and the circuit JSON and --same-sparsity-as name its kind."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, data_dir = write_task(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval().requires_grad_(False)
    tok = AutoTokenizer.from_pretrained(model_dir)
    pairs, validation = (D.load_pairs(data_dir, "toy_demo", tok, 64, f) for f in ("pairs.jsonl", "validation_pairs.jsonl"))
    params = {**CLI_PARAMS, "steps": 100, "sparsity_warmup": 0.0, "candidate_nodes": 0.7, "target_sparsity": [0.85, 0.8],
              "attribution_fallback": True, "node_level_fallback": True, "min_faithfulness": 1.0,
              "if_unfaithful": "most_faithful"}
    every = D.select_circuit(model, pairs, "noising", params, validation, progress=False)["selection"]["tried"]
    assert [(t["target_sparsity"], t["circuit"]) for t in every][:4] == [
        (0.85, "edge_pruning"), (0.85, "attribution"), (0.8, "edge_pruning"), (0.8, "attribution")]
    assert len(every) == 5 and every[4]["circuit"] == "node_level" and every[4]["node_level"]
    floor = every[1]["validation_faithfulness"]
    first = next(t for t in every if t["validation_faithfulness"] >= floor)
    result = D.select_circuit(model, pairs, "noising", {**params, "min_faithfulness": floor}, validation,
                              progress=False)
    s = result["selection"]
    assert (s["chosen"], s["circuit"], s["reached_min_faithfulness"]) == (0.85, first["circuit"], True)
    assert len(s["tried"]) == every.index(first) + 1
    record = D.circuit_record(result, "m", "toy_demo", "noising")
    assert record["circuit"] == first["circuit"] == result["circuit"]
    path = tmp_path / "before.json"
    path.write_text(json.dumps(record))
    assert D.chosen_candidate(path) == (0.85, first["circuit"])
    # a circuit JSON from before `circuit` was recorded: its node_level flag says the kind
    del record["selection"]["circuit"]
    record["selection"]["node_level"] = True
    path.write_text(json.dumps(record))
    assert D.chosen_candidate(path) == (None, "node_level")


def test_autocast_trains_the_gates_in_bf16_and_measures_the_circuit_in_float32(tmp_path):
    """circuit.autocast bfloat16: the gates' gradients through the masked forward (whose backward
    runs its own matrix products) are those of float32 up to bf16 rounding, and reach float32
    gates; discovery trains differently, but its KL and faithfulness figures are the float32
    ones of the circuit it cut (recomputed here outside autocast)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = sharpen(make_model("gqa", layers=2))
    graph = build_graph(model.config)
    torch.manual_seed(0)
    x, x_other = torch.randint(0, 64, (2, 4, 7))
    with torch.no_grad():
        _, other = forward(model, graph, x_other)
    grads = []
    for enabled in (False, True):
        gates = torch.full((graph.n_edges,), 0.5, requires_grad=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
            logits, _ = forward(model, graph, x, gates, other, torch.tensor([6, 5, 4, 3]))
            loss = logits.float().square().mean()
        loss.backward()
        assert gates.grad.dtype == torch.float32
        grads.append(gates.grad)
    assert not torch.equal(grads[0], grads[1])
    assert (grads[1] - grads[0]).norm() < 0.05 * grads[0].norm()

    model_dir, data_dir = write_task(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval().requires_grad_(False)
    tok = AutoTokenizer.from_pretrained(model_dir)
    pairs, heldout = (D.load_pairs(data_dir, "toy_demo", tok, 64, f) for f in ("pairs.jsonl", "heldout_pairs.jsonl"))
    fp32 = D.discover(model, pairs, "noising", CLI_PARAMS, progress=False)
    bf16 = D.discover(model, pairs, "noising", {**CLI_PARAMS, "autocast": "bfloat16"}, progress=False, heldout=heldout)
    assert fp32["history"] != bf16["history"]
    p = D.resolve_params(CLI_PARAMS)
    batches = D._prepare_batches(model, bf16["graph"], pairs, "noising", p["batch_size"], torch.device("cpu"))
    assert bf16["kl"] == D.circuit_kl(model, bf16["graph"], batches, bf16["kept"])
    assert bf16["faithfulness"] == D.faithfulness(model, bf16["graph"], heldout, "noising", bf16["kept"], p,
                                                  torch.device("cpu"))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind", ["llama", "gqa", "qwen2", "llama_bias"])
def test_a_half_precision_model_runs_gated_about_as_close_to_float32_as_the_model_itself(kind, dtype):
    """circuit.dtype bfloat16 / float16 (a 7B model's weights and activations at half the
    memory): the gated forward of the half-precision model, all gates open, is as far from the
    float32 model's logits as that model's own forward is, within a factor of 3 (the masked
    forward sums the residual stream in another order, and splits an o_proj bias over the
    heads); all closed, the same for the other input; the gates' gradients, float32, point where
    float32's do."""
    import copy

    model = sharpen(models()[kind])
    half = copy.deepcopy(model).to(dtype)
    graph = build_graph(model.config)
    torch.manual_seed(0)
    x, x_other = torch.randint(0, 64, (2, 4, 9))
    last = torch.full((4,), 8)
    with torch.no_grad():
        ref, ref_other = model(x).logits, model(x_other).logits
        own, own_other = half(x).logits.float(), half(x_other).logits.float()
        _, other = forward(half, graph, x_other)
        ones, _ = forward(half, graph, x, torch.ones(graph.n_edges), other)
        zeros, _ = forward(half, graph, x, torch.zeros(graph.n_edges), other)
    assert other.dtype == ones.dtype == dtype
    assert (ref - ref_other).abs().max() > 5            # the two inputs' logits differ far beyond the rounding
    assert (ones.float() - ref).abs().max() <= 3 * (own - ref).abs().max()
    assert (zeros.float() - ref_other).abs().max() <= 3 * (own_other - ref_other).abs().max()

    grads = []
    for m in (model, half):
        with torch.no_grad():
            _, other = forward(m, graph, x_other)
            full, _ = forward(m, graph, x, positions=last)
        log_alpha = torch.full((graph.n_edges,), 0.5, requires_grad=True)
        torch.manual_seed(1)
        logits, _ = forward(m, graph, x, D.sample_gates(log_alpha), other, last)
        D.kl_full_circuit(full, logits).backward()
        grads.append(log_alpha.grad)
    assert grads[1].dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(grads[0], grads[1], 0) > 0.95


def test_cli_loads_the_model_in_circuit_dtype(tmp_path):
    """circuit.dtype bfloat16: `clue circuit` trains and measures the circuit on the model loaded
    in bf16; its KL is the one the bf16 model gives the saved circuit (float32 gives another)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, data_dir = write_task(tmp_path)
    out = tmp_path / "noising.json"
    assert run_cli(model_dir, data_dir, out, params={**CLI_PARAMS, "dtype": "bfloat16"}) == 0
    rec = json.loads(out.read_text())
    assert rec["config"]["dtype"] == "bfloat16"
    assert abs(rec["expected_sparsity"] - 0.8) <= D.SPARSITY_TOLERANCE
    tok = AutoTokenizer.from_pretrained(model_dir)
    pairs = D.load_pairs(data_dir, "toy_demo", tok, 64)
    p = D.resolve_params(CLI_PARAMS)
    kls = {}
    for dtype in (torch.bfloat16, torch.float32):
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).eval().requires_grad_(False)
        graph = build_graph(model.config)
        batches = D._prepare_batches(model, graph, pairs, "noising", p["batch_size"], torch.device("cpu"))
        kls[dtype] = D.circuit_kl(model, graph, batches, D.gates_from_record(graph, rec))
    assert rec["kl"] == pytest.approx(kls[torch.bfloat16], rel=1e-6)
    assert rec["kl"] != pytest.approx(kls[torch.float32], rel=1e-3)


@pytest.mark.parametrize("autocast", [None, "bfloat16"])
def test_recomputing_the_other_runs_gives_the_circuit_keeping_them_gives(tmp_path, monkeypatch, autocast):
    """circuit.keep_other_runs false (a 7B model on one GPU: one batch's other-input writer
    outputs in memory at a time): the attribution, the training steps, the cut and the KL and
    faithfulness figures see the same numbers as with every batch's outputs kept, so the circuit
    is the same bit for bit, with bf16 steps too (the outputs recomputed outside autocast and the
    bf16 weight copies); batches are recomputed, not kept (one tensor a use)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, data_dir = write_task(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval().requires_grad_(False)
    tok = AutoTokenizer.from_pretrained(model_dir)
    pairs, validation, heldout = (D.load_pairs(data_dir, "toy_demo", tok, 64, f) for f in
                                  ("pairs.jsonl", "validation_pairs.jsonl", "heldout_pairs.jsonl"))
    params = {**CLI_PARAMS, "steps": 40, "candidate_nodes": 0.6, "autocast": autocast}
    unmasked_runs = []

    def counting_forward(model, graph, input_ids, gates=None, *args, **kwargs):
        unmasked_runs[-1] += gates is None
        return forward(model, graph, input_ids, gates, *args, **kwargs)

    monkeypatch.setattr(D, "forward", counting_forward)
    results = []
    for keep in (True, False):
        unmasked_runs.append(0)
        results.append(D.discover(model, pairs, "denoising", {**params, "keep_other_runs": keep}, progress=False,
                                  validation=validation, heldout=heldout))
    kept, recomputed = results
    # kept: two unmasked runs (other input, full model) a batch of each set: 2 discovery batches of
    # 7 pairs, 1 validation, 1 held-out = 8; recomputed: two a batch for the attribution (4), two a
    # training step (80), two a batch for the KL (4), the validation and held-out figures (2 + 2)
    assert unmasked_runs == [8, 92]
    assert torch.equal(kept["scores"], recomputed["scores"]) and torch.equal(kept["kept"], recomputed["kept"])
    assert kept["history"] == recomputed["history"] and kept["kl"] == recomputed["kl"]
    assert kept["validation"] == recomputed["validation"] and kept["faithfulness"] == recomputed["faithfulness"]
    assert kept["candidates"]["edges"] < len(kept["scores"])     # the attribution pass ran

    graph = build_graph(model.config)
    batch, = D._prepare_batches(model, graph, validation, "denoising", 8, torch.device("cpu"), keep=False)
    kept_batch, = D._prepare_batches(model, graph, validation, "denoising", 8, torch.device("cpu"))
    assert isinstance(batch, D._Recomputed) and batch["other"] is not batch["other"]
    with torch.autocast("cpu", dtype=torch.bfloat16):     # recomputed as kept, whatever the context
        assert torch.equal(batch["other"], kept_batch["other"]) and torch.equal(batch["full"], kept_batch["full"])

