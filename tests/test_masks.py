"""Axis masks: neuron -> parameter slices, the safetensors format, the dense loader and the
unlearned-parameter percentages. Expected slices are written out by hand from the head dimension."""

import json

import pytest
import torch
from safetensors import safe_open

from clue.errors import ClueError
from clue.masks import (axis_masks_from_neurons, dense_to_axis_masks, load_masks, mask_param_pct,
                        matrix_names, neuron_slices, unlearned_param_pct, unlearned_param_pct_dirs,
                        write_masks)
from conftest import make_model

ATTN = "model.layers.{}.self_attn.{}_proj.weight"
MLP = "model.layers.{}.mlp.{}_proj.weight"


def shapes_of(model):
    return {n: tuple(p.shape) for n, p in model.named_parameters()}


def write(tmp_path, model, by_cat, name="m.safetensors"):
    path = tmp_path / name
    write_masks(path, axis_masks_from_neurons(by_cat, model.config, shapes_of(model)), model="toy",
                localizer="clue", categories=["forget", "conflict"])
    return path


def rows_mask(shape, lo, hi):
    m = torch.zeros(shape, dtype=torch.bool)
    m[lo:hi, :] = True
    return m


def cols_mask(shape, lo, hi):
    m = torch.zeros(shape, dtype=torch.bool)
    m[:, lo:hi] = True
    return m


def test_head_slices_are_its_rows_and_columns(tmp_path):
    # hidden 32, 4 heads -> head_dim 8: head 2 owns rows 16..23 of q/k/v and columns 16..23 of o
    model = make_model("llama", hidden_size=32, heads=4, layers=2)
    masks = load_masks(write(tmp_path, model, {"forget": ["a1.h2"], "conflict": []}), model)
    got = masks["forget"]
    assert set(got) == {ATTN.format(1, p) for p in "qkvo"}
    assert masks["conflict"] == {}
    for p in "qkv":
        assert torch.equal(got[ATTN.format(1, p)], rows_mask((32, 32), 16, 24)), p
    assert torch.equal(got[ATTN.format(1, "o")], cols_mask((32, 32), 16, 24))
    assert got[ATTN.format(1, "q")].sum().item() == 8 * 32


@pytest.mark.parametrize("heads,kv_heads,head,kv", [(4, 2, 0, 0), (4, 2, 1, 0), (4, 2, 3, 1), (8, 2, 5, 1), (8, 2, 3, 0)])
def test_gqa_maps_query_head_to_its_kv_head(tmp_path, heads, kv_heads, head, kv):
    """One forget head of a group of several: its q rows and o columns are forget, but its group's
    k/v rows, which the group's other heads read too, are conflict rows (GQA-exact masks)."""
    model = make_model("gqa", hidden_size=32, heads=heads, kv_heads=kv_heads, layers=1)
    hd = 32 // heads
    masks = load_masks(write(tmp_path, model, {"forget": [f"a0.h{head}"], "conflict": []}), model)
    got, conflict = masks["forget"], masks["conflict"]
    kv_shape = (kv_heads * hd, 32)
    assert set(got) == {ATTN.format(0, p) for p in "qo"}
    assert torch.equal(got[ATTN.format(0, "q")], rows_mask((32, 32), head * hd, (head + 1) * hd))
    assert torch.equal(got[ATTN.format(0, "o")], cols_mask((32, 32), head * hd, (head + 1) * hd))
    assert set(conflict) == {ATTN.format(0, p) for p in "kv"}
    for p in "kv":
        assert torch.equal(conflict[ATTN.format(0, p)], rows_mask(kv_shape, kv * hd, (kv + 1) * hd)), p


def test_kv_head_selected_when_any_head_of_group_is(tmp_path):
    # 4 query heads share 2 kv heads: heads 2 and 3 read kv head 1; both forget: it is forget, once
    model = make_model("gqa", hidden_size=32, heads=4, kv_heads=2, layers=1)
    masks = load_masks(write(tmp_path, model, {"forget": ["a0.h2", "a0.h3"], "conflict": []}), model)
    got = masks["forget"]
    assert torch.equal(got[ATTN.format(0, "k")], rows_mask((16, 32), 8, 16))
    assert torch.equal(got[ATTN.format(0, "q")], rows_mask((32, 32), 16, 32))
    assert masks["conflict"] == {}


def test_a_group_whose_heads_fall_in_two_categories_gives_its_kv_rows_to_conflict(tmp_path):
    """8 query heads, 2 kv heads (4 a group). Layer 0: group 0 all forget (k/v forget), group 1
    forget and conflict (k/v conflict). Layer 1: group 0 one conflict head, the rest outside both
    (k/v conflict). The masks are disjoint, so the forget and conflict percentages add up to the
    union's, which the unlearned-parameter percentage counts; worked out by hand below."""
    model = make_model("gqa", hidden_size=32, heads=8, kv_heads=2, layers=2)   # head_dim 4
    by_cat = {"forget": ["a0.h0", "a0.h1", "a0.h2", "a0.h3", "a0.h4", "a0.h5"], "conflict": ["a0.h6", "a1.h1"]}
    masks = load_masks(write(tmp_path, model, by_cat), model)
    f, c = masks["forget"], masks["conflict"]
    assert torch.equal(f[ATTN.format(0, "k")], rows_mask((8, 32), 0, 4))
    assert torch.equal(c[ATTN.format(0, "k")], rows_mask((8, 32), 4, 8))
    assert torch.equal(c[ATTN.format(1, "v")], rows_mask((8, 32), 0, 4)) and ATTN.format(1, "v") not in f
    assert torch.equal(f[ATTN.format(0, "q")], rows_mask((32, 32), 0, 24))
    assert torch.equal(c[ATTN.format(0, "q")], rows_mask((32, 32), 24, 28))
    for name in set(f) & set(c):
        assert not (f[name] & c[name]).any(), name
    pct = {k: mask_param_pct({k: m}, model) for k, m in masks.items()}
    union = mask_param_pct(masks, model)
    # 14 matrices; layer 0: q 24/32 + 4/32 rows, o the same columns, k and v 4/8 + 4/8 rows;
    # layer 1: q and o 4/32, k and v 4/8
    assert pct["forget"] == pytest.approx(100 * (2 * 24 / 32 + 2 * 4 / 8) / 14)
    assert pct["conflict"] == pytest.approx(100 * (2 * 4 / 32 + 2 * 4 / 8 + 2 * 4 / 32 + 2 * 4 / 8) / 14)
    assert pct["forget"] + pct["conflict"] == pytest.approx(union)


def test_mlp_neuron_owns_gate_up_rows_and_down_columns(tmp_path):
    model = make_model("llama", hidden_size=32, intermediate_size=64, layers=2)
    got = load_masks(write(tmp_path, model, {"forget": [], "conflict": ["m1"]}), model)["conflict"]
    assert set(got) == {MLP.format(1, p) for p in ("gate", "up", "down")}
    assert all(bool(m.all()) for m in got.values())
    assert got[MLP.format(1, "down")].shape == (32, 64)


def test_qwen2_head_includes_its_qkv_bias_rows(tmp_path):
    model = make_model("qwen2", hidden_size=32, heads=4, kv_heads=2, layers=1)
    # heads 0 and 1 make up kv group 0: both forget, so its k/v bias rows are forget rows too
    got = load_masks(write(tmp_path, model, {"forget": ["a0.h0", "a0.h1"], "conflict": []}), model)["forget"]
    q_bias = torch.zeros(32, dtype=torch.bool)
    q_bias[0:16] = True
    kv_bias = torch.zeros(16, dtype=torch.bool)
    kv_bias[0:8] = True
    assert torch.equal(got["model.layers.0.self_attn.q_proj.bias"], q_bias)
    assert torch.equal(got["model.layers.0.self_attn.k_proj.bias"], kv_bias)
    assert torch.equal(got["model.layers.0.self_attn.v_proj.bias"], kv_bias)


def test_file_format_and_metadata(tmp_path):
    model = make_model("llama", layers=2)
    path = write(tmp_path, model, {"forget": ["a0.h0"], "conflict": ["m1"]})
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        keys = set(f.keys())
        vec = f.get_tensor("forget/model.layers.0.self_attn.q_proj.weight/rows")
    assert meta == {"format": "clue-axis-mask/1", "model": "toy", "localizer": "clue", "categories": "forget,conflict"}
    assert keys == {"forget/" + ATTN.format(0, "q") + "/rows", "forget/" + ATTN.format(0, "o") + "/cols",
                    "forget/" + ATTN.format(0, "k") + "/rows", "forget/" + ATTN.format(0, "v") + "/rows",
                    "conflict/" + MLP.format(1, "gate") + "/rows", "conflict/" + MLP.format(1, "up") + "/rows",
                    "conflict/" + MLP.format(1, "down") + "/cols"}
    assert vec.dtype == torch.uint8 and vec.tolist() == [1] * 8 + [0] * 24


def test_equal_masks_give_byte_identical_files(tmp_path):
    """Determinism: safetensors writes its metadata map in hash order; write_masks sorts it. Ten
    writes of the same masks (with six metadata keys: 720 possible orders) must be one file."""
    from clue.masks import write_masks

    masks = {"forget": {"w": {"rows": torch.tensor([1, 0, 1])}}, "conflict": {}}
    files = []
    for i in range(10):
        write_masks(tmp_path / f"{i}.safetensors", masks, model="toy", localizer="clue",
                    extra_metadata={"ratio": 0.5, "mask_param_pct": "33.3"})
        files.append((tmp_path / f"{i}.safetensors").read_bytes())
    assert len(set(files)) == 1
    with safe_open(str(tmp_path / "0.safetensors"), "pt") as f:
        assert f.metadata() == {"format": "clue-axis-mask/1", "model": "toy", "localizer": "clue",
                                "categories": "forget,conflict", "ratio": "0.5", "mask_param_pct": "33.3"}
        assert f.get_tensor("forget/w/rows").tolist() == [1, 0, 1]


def test_dense_mask_equals_axis_definition(tmp_path):
    # element (r, c) is in the mask iff rows[r] or cols[c] or dense[r, c]: checked element by element
    model = make_model("llama", hidden_size=32, layers=1)
    g = torch.Generator().manual_seed(1)
    rows = (torch.rand(64, generator=g) < 0.2).to(torch.uint8)
    cols = (torch.rand(32, generator=g) < 0.2).to(torch.uint8)
    dense = torch.rand(64, 32, generator=g) < 0.05
    param = MLP.format(0, "up")
    path = tmp_path / "d.safetensors"
    write_masks(path, {"forget": {param: {"rows": rows, "cols": cols, "dense": dense}}}, model="toy",
                localizer="x")
    got = load_masks(path, model)["forget"][param]
    for r in range(64):
        for c in range(32):
            assert bool(got[r, c]) == (rows[r].item() == 1 or cols[c].item() == 1 or bool(dense[r, c])), (r, c)


def test_dense_to_axis_masks_roundtrip(tmp_path):
    model = make_model("llama", layers=1)
    m = torch.zeros(64, 32, dtype=torch.bool)
    m[3, 5] = m[10, 0] = True
    empty = torch.zeros(32, 32, dtype=torch.bool)
    path = tmp_path / "u.safetensors"
    write_masks(path, dense_to_axis_masks({"forget": {MLP.format(0, "gate"): m, ATTN.format(0, "q"): empty}}),
                model="toy", localizer="wagle")
    got = load_masks(path, model)["forget"]
    assert list(got) == [MLP.format(0, "gate")] and torch.equal(got[MLP.format(0, "gate")], m)


def test_mask_from_another_model_names_the_parameter(tmp_path):
    two_layers = make_model("llama", layers=2)
    path = write(tmp_path, two_layers, {"forget": ["a1.h0"], "conflict": []})
    with pytest.raises(ClueError, match=r"model\.layers\.1\.self_attn\.[qkvo]_proj\.weight"):
        load_masks(path, make_model("llama", layers=1))
    wider = make_model("llama", hidden_size=48, heads=4, layers=2)
    with pytest.raises(ClueError, match=r"model\.layers\.1\.self_attn\.[qkvo]_proj\.weight.*shape|shape.*model\.layers\.1"):
        load_masks(path, wider)


def test_bad_files_and_neurons(tmp_path):
    model = make_model("llama", layers=2, heads=4)
    with pytest.raises(ClueError, match="a2.h0"):
        neuron_slices("a2.h0", model.config, shapes_of(model))
    with pytest.raises(ClueError, match="a0.h4"):
        neuron_slices("a0.h4", model.config, shapes_of(model))
    with pytest.raises(ClueError, match="embed"):
        neuron_slices("embed", model.config, shapes_of(model))
    with pytest.raises(ClueError, match="not found"):
        load_masks(tmp_path / "missing.safetensors", model)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ClueError, match="junk.safetensors"):
        load_masks(tmp_path / "junk.safetensors", model)


def test_matrix_names_are_seven_per_layer():
    model = make_model("qwen2", layers=3)
    names = matrix_names(model)
    assert len(names) == 21 and names[0] == ATTN.format(0, "q") and names[-1] == MLP.format(2, "down")
    assert not any(n.endswith("bias") for n in names)


def test_mask_param_pct_by_hand(tmp_path):
    # 2 layers x 7 matrices = 14; head a1.h2 covers 1/4 of q, k, v and o; m0 covers gate, up, down
    model = make_model("llama", hidden_size=32, heads=4, layers=2)
    masks = load_masks(write(tmp_path, model, {"forget": ["a1.h2"], "conflict": ["m0"]}), model)
    assert mask_param_pct(masks, model) == pytest.approx(100 * (4 * 0.25 + 3 * 1.0) / 14)
    both = load_masks(write(tmp_path, model, {"forget": ["a1.h2"], "conflict": ["a1.h2"]}, "b.safetensors"), model)
    assert mask_param_pct(both, model) == pytest.approx(100 * (4 * 0.25) / 14)  # a union, not a sum


def test_unlearned_param_pct_by_hand(tmp_path):
    base = make_model("llama", hidden_size=32, layers=2)
    edited = make_model("llama", hidden_size=32, layers=2)
    assert unlearned_param_pct(base, edited) == 0.0
    with torch.no_grad():
        q = dict(edited.named_parameters())[ATTN.format(0, "q")]
        q[0, 0] += 1.0
        q[5, 7] -= 1.0
        q[31, 31] = q[31, 31].item()  # rewritten with the same value: unchanged
        edited.model.embed_tokens.weight.add_(1.0)  # not an attention/MLP matrix: not counted
        dict(edited.named_parameters())[MLP.format(1, "down")].mul_(2.0)
    expected = 100 * (2 / 1024 + 1.0) / 14
    assert unlearned_param_pct(base, edited) == pytest.approx(expected)
    base.save_pretrained(tmp_path / "base")
    edited.save_pretrained(tmp_path / "edited")
    assert unlearned_param_pct_dirs(tmp_path / "base", tmp_path / "edited") == pytest.approx(expected)


def test_unlearned_param_pct_compares_values_across_dtypes(tmp_path):
    # an fp32 base saved again in bf16 without training changed nothing but its precision
    base = make_model("llama", hidden_size=32, layers=2)
    edited = make_model("llama", hidden_size=32, layers=2).to(torch.bfloat16)
    assert unlearned_param_pct(base, edited) == 0.0
    with torch.no_grad():
        down = dict(edited.named_parameters())[MLP.format(0, "down")]
        down[3, :4] += 1.0   # 4 elements moved by far more than a bf16 ulp
        up = dict(edited.named_parameters())[MLP.format(1, "up")]
        up[0, 0] = up[0, 0].item()   # written back to its own value
    expected = 100 * (4 / down.numel()) / 14
    assert unlearned_param_pct(base, edited) == pytest.approx(expected)
    base.save_pretrained(tmp_path / "base")
    edited.save_pretrained(tmp_path / "edited")
    assert unlearned_param_pct_dirs(tmp_path / "base", tmp_path / "edited") == pytest.approx(expected)


def test_masks_cli(tmp_path):
    from clue.cli import main

    model = make_model("gqa", hidden_size=32, heads=4, kv_heads=2, layers=2)
    model.save_pretrained(tmp_path / "base")
    neurons = {f"a{l}.h{h}": {"value": 1, "category": "safe"} for l in range(2) for h in range(4)}
    neurons.update({"m0": {"value": 1, "category": "retain"}, "m1": {"value": 0, "category": "forget"}})
    neurons["a1.h3"] = {"value": None, "category": "conflict"}
    (tmp_path / "assign.json").write_text(json.dumps({"status": "UNSAT", "neurons": neurons}))
    out = tmp_path / "masks" / "clue.safetensors"
    argv = ["masks", "--assign", str(tmp_path / "assign.json"), "--model-dir", str(tmp_path / "base"),
            "--localizer", "clue", "--model-name", "toy", "--out", str(out)]
    assert main(argv) == 0
    masks = load_masks(out, model)
    assert set(masks["forget"]) == {MLP.format(1, p) for p in ("gate", "up", "down")}
    assert torch.equal(masks["conflict"][ATTN.format(1, "k")], rows_mask((16, 32), 8, 16))

    for n in neurons.values():
        n["category"] = "safe"
    (tmp_path / "assign.json").write_text(json.dumps({"status": "SAT", "neurons": neurons}))
    assert main(argv) == 0
    assert load_masks(out, model) == {"forget": {}, "conflict": {}}

    (tmp_path / "bad.json").write_text(json.dumps({"neurons": {"a9.h0": {"category": "forget"}}}))
    assert main(argv[:2] + [str(tmp_path / "bad.json")] + argv[3:]) == 2


def test_pretrained_base_dir_resolves_through_clue_base_json(tmp_path):
    # a paper-config base dir records the pretrained model instead of copying it
    from clue.masks import checkpoint_geometry

    model = make_model("gqa", layers=1)
    model.save_pretrained(tmp_path / "hub_copy")
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "clue_base.json").write_text(json.dumps({"source": "pretrained",
                                                                   "pretrained": str(tmp_path / "hub_copy")}))
    assert unlearned_param_pct_dirs(tmp_path / "base", tmp_path / "hub_copy") == 0.0
    config, shapes = checkpoint_geometry(tmp_path / "base")
    assert shapes == shapes_of(model)   # read from the safetensors headers, no model built
    assert (config.num_hidden_layers, config.num_key_value_heads) == (1, model.config.num_key_value_heads)
    with pytest.raises(ClueError, match="no model.safetensors"):
        unlearned_param_pct_dirs(tmp_path / "base", tmp_path)


def test_checkpoint_geometry_names_a_config_that_is_not_llama_family(tmp_path):
    from clue.masks import checkpoint_geometry

    model = make_model("llama", layers=1)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["num_attention_heads"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ClueError, match=r"config\.json: not a Llama-family config \(no num_attention_heads\)"):
        checkpoint_geometry(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(ClueError, match=r"config\.json: file not found"):
        checkpoint_geometry(tmp_path)


# ------------------------------------------------------------------ the random-mask control

def per_matrix(masks, model):
    """{(category, matrix): fraction of its elements} of dense masks."""
    return {(c, n): m.float().mean().item() for c, params in masks.items() for n, m in params.items()}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_the_random_control_keeps_every_matrix_fraction_and_moves_the_heads(tmp_path, seed):
    """8 query heads in 2 key/value groups, 2 layers: layer 0 has a whole forget group, a mixed
    group and an MLP conflict neuron; layer 1 one conflict head. The control's masks cover each
    matrix exactly as much as CLUE's, category by category (k/v too: a group's make-up moves with
    it), keep the MLPs where CLUE has them, and put the heads elsewhere for some seed."""
    from clue.masks import random_control

    model = make_model("gqa", hidden_size=32, heads=8, kv_heads=2, layers=2)
    by_cat = {"forget": ["a0.h0", "a0.h1", "a0.h2", "a0.h3", "a0.h5"], "conflict": ["a0.h6", "m0", "a1.h1"]}
    clue = load_masks(write(tmp_path, model, by_cat, "clue.safetensors"), model)
    moved = random_control(by_cat, model.config, seed)
    assert moved == random_control(by_cat, model.config, seed)
    assert "m0" in moved["conflict"] and sorted(map(len, moved.values())) == sorted(map(len, by_cat.values()))
    control = load_masks(write(tmp_path, model, moved, "random.safetensors"), model)
    assert per_matrix(control, model) == pytest.approx(per_matrix(clue, model))
    heads = {n for names in moved.values() for n in names if n.startswith("a")}
    assert len(heads) == 7 and {n for n in heads if n.startswith("a1")} != set() and len(
        {n for n in heads if n.startswith("a0")}) == 6


def test_the_random_control_draws_other_heads_for_other_seeds():
    from clue.masks import random_control

    model = make_model("gqa", hidden_size=32, heads=8, kv_heads=2, layers=2)
    by_cat = {"forget": ["a0.h0", "a0.h5"], "conflict": ["a1.h1", "a1.h6"]}
    draws = {tuple(sorted(random_control(by_cat, model.config, s)["forget"])) for s in range(8)}
    assert len(draws) > 1
    pairs = {tuple(sorted(random_control(by_cat, model.config, 0, p)["forget"])) for p in ("a__b", "a__c", "d__b")}
    assert len(pairs) > 1   # each pair draws its own heads


def test_the_controls_overlap_with_clue_counts_heads_by_category():
    """Counted by hand: the control's forget heads a0.h1 (CLUE: forget) and a1.h0 (CLUE: conflict),
    its conflict head a0.h2 (CLUE: neither); the MLP neuron m0 does not count."""
    from clue.masks import control_overlap

    clue = {"forget": ["a0.h1", "m0"], "conflict": ["a1.h0"], "retain": ["a0.h2"]}
    control = {"forget": ["a0.h1", "a1.h0", "m0"], "conflict": ["a0.h2"], "retain": ["a1.h3"]}
    assert control_overlap(clue, control) == {"forget": 0.5, "conflict": 0.0, "trained": 2 / 3}
    assert control_overlap(clue, {"forget": ["m0"], "conflict": []}) == {"forget": None, "conflict": None,
                                                                         "trained": None}


def test_the_masks_cli_draws_the_control_with_its_seed_and_names_a_missing_one(tmp_path, capsys):
    from clue.cli import main
    from clue.masks import random_control

    model = make_model("gqa", hidden_size=32, heads=4, kv_heads=2, layers=2)
    model.save_pretrained(tmp_path / "base")
    capsys.readouterr()
    neurons = {f"a{l}.h{h}": {"value": 1, "category": "safe"} for l in range(2) for h in range(4)}
    neurons.update({"m0": {"value": 0, "category": "forget"}, "m1": {"value": 1, "category": "retain"},
                    "a1.h3": {"value": None, "category": "conflict"}})
    (tmp_path / "assign.json").write_text(json.dumps({"forget": "f", "retain": "r", "status": "UNSAT",
                                                      "neurons": neurons}))
    argv = ["masks", "--assign", str(tmp_path / "assign.json"), "--model-dir", str(tmp_path / "base"),
            "--localizer", "random", "--model-name", "toy", "--out", str(tmp_path / "r.safetensors")]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == ("clue masks: error: --localizer random draws its heads with a seed: "
                                               "give --seed")
    assert not (tmp_path / "r.safetensors").exists()
    assert main(argv + ["--seed", "5"]) == 0
    with safe_open(str(tmp_path / "r.safetensors"), "pt") as f:
        meta = f.metadata()
    assert meta["localizer"] == "random" and meta["seed"] == "5" and meta["pair"] == "f__r"
    # CLUE has one conflict head (a1.h3) and no forget head: the control's one conflict head is
    # CLUE's only if the draw left it in place
    moved = random_control({"forget": ["m0"], "conflict": ["a1.h3"]}, model.config, 5, "f__r")
    stays = moved["conflict"] == ["a1.h3"]
    assert (meta["overlap_forget"], meta["overlap_conflict"], meta["overlap_trained"]) == (
        "none", f"{float(stays):.4f}", f"{float(stays):.4f}")
    assert "the control's heads that CLUE also puts there: forget -, conflict" in capsys.readouterr().err
    masks = load_masks(tmp_path / "r.safetensors", model)
    assert set(masks["forget"]) == {MLP.format(0, p) for p in ("gate", "up", "down")}
    assert masks["conflict"][ATTN.format(1, "q")].sum().item() == 8 * 32   # one head of 8 rows, somewhere


def test_the_masks_stage_warns_about_an_empty_forget_mask_with_the_setting_that_changes_it(tmp_path, capsys):
    """An assignment with a conflict neuron and no forget neuron: the forget mask is empty, and the
    stage's log says so with the setting that changes it (clue.caveats); with a forget neuron too,
    or for the random control (CLUE's sizes, warned about once), no warning."""
    from clue.cli import main

    model = make_model("gqa", hidden_size=32, heads=4, kv_heads=2, layers=2)
    model.save_pretrained(tmp_path / "base")
    neurons = {f"a{l}.h{h}": {"value": 1, "category": "safe"} for l in range(2) for h in range(4)}
    neurons["a1.h3"] = {"value": None, "category": "conflict"}
    assign = tmp_path / "assign.json"
    assign.write_text(json.dumps({"forget": "f", "retain": "r", "status": "UNSAT", "neurons": neurons}))
    argv = ["masks", "--assign", str(assign), "--model-dir", str(tmp_path / "base"), "--localizer", "clue",
            "--model-name", "toy", "--out", str(tmp_path / "clue.safetensors")]
    capsys.readouterr()
    assert main(argv) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == [
        "clue masks: warning: pair f__r: CLUE's forget mask is empty: the forget circuit cannot be switched off "
        "without neurons the retain circuit needs, which all went to the conflict mask, so CLUE forgets only in "
        "its conflict stage, under the retain loss (unlearn.epochs_conflict); logic.adder_retain: OR (the "
        "paper's AND makes the retain circuit need every input of an ADDER edge) frees neurons for the forget mask"]
    assert main(argv[:-2] + ["--localizer", "random", "--seed", "0", "--out", str(tmp_path / "r.safetensors")]) == 0
    assert "warning" not in capsys.readouterr().err
    neurons["m0"] = {"value": 0, "category": "forget"}
    assign.write_text(json.dumps({"forget": "f", "retain": "r", "status": "UNSAT", "neurons": neurons}))
    assert main(argv) == 0
    assert "warning" not in capsys.readouterr().err


def test_mask_sizes_count_what_each_category_sets_and_name_a_bad_file(tmp_path):
    """Rows a category's axis vectors set, per category (a head: 8 rows of q, k, v and 8 columns
    of o; the MLP of layer 0 its 64 gate and up rows and 64 down columns), read without torch."""
    from clue.masks import mask_sizes

    model = make_model("gqa", hidden_size=32, heads=4, kv_heads=2, layers=2)
    path = write(tmp_path, model, {"forget": ["a0.h0", "a0.h1"], "conflict": []})
    assert mask_sizes(path) == {"forget": 2 * 8 * 2 + 8 + 8, "conflict": 0}   # q rows, o cols x 2; k, v one group
    (tmp_path / "bad.safetensors").write_text("not a mask")
    with pytest.raises(ClueError, match="bad.safetensors: not a readable safetensors file"):
        mask_sizes(tmp_path / "bad.safetensors")
    with pytest.raises(ClueError, match="missing.safetensors: mask file not found$"):
        mask_sizes(tmp_path / "missing.safetensors")


def test_a_localizers_random_control_keeps_each_matrixs_sizes_and_moves_the_entries(tmp_path):
    """WAGLE-style dense entries and PCGU-style rows (and columns): every matrix keeps as many
    masked entries, rows and columns as the localizer's mask, and the union of rows and columns
    as many elements; the draw depends on the seed and the pair and repeats for the same ones."""
    from clue.masks import random_like

    torch.manual_seed(0)
    dense = torch.rand(6, 8) < 0.3
    masks = {"forget": {"w1": {"dense": dense.to(torch.uint8)},
                        "w2": {"rows": torch.tensor([1, 0, 0, 1, 0, 0], dtype=torch.uint8),
                               "cols": torch.tensor([0, 1, 0, 0, 0, 0, 0, 1], dtype=torch.uint8)}}}
    moved = random_like(masks, seed=3, key="f__r")
    again = random_like(masks, seed=3, key="f__r")
    assert all(torch.equal(moved["forget"][p][a], again["forget"][p][a]) for p in masks["forget"]
               for a in masks["forget"][p])
    for param, axes in masks["forget"].items():
        for axis, vec in axes.items():
            assert moved["forget"][param][axis].shape == vec.shape
            assert int(moved["forget"][param][axis].sum()) == int(vec.sum())
    rows, cols = moved["forget"]["w2"]["rows"].bool(), moved["forget"]["w2"]["cols"].bool()
    union = (rows[:, None] | cols[None, :]).sum()
    assert int(union) == 2 * 8 + 2 * 6 - 2 * 2   # as for the localizer's own rows and columns
    draws = {tuple(random_like(masks, seed=s, key="f__r")["forget"]["w1"]["dense"].flatten().tolist())
             for s in range(4)}
    assert len(draws) == 4 and tuple(dense.to(torch.uint8).flatten().tolist()) not in draws
    other_pair = random_like(masks, seed=3, key="f__s")["forget"]["w1"]["dense"]
    assert not torch.equal(other_pair, moved["forget"]["w1"]["dense"])


def test_the_masks_cli_writes_a_localizers_control_and_names_what_is_missing(tmp_path, capsys):
    from clue.cli import main
    from clue.masks import read_masks

    dense = torch.zeros(4, 4, dtype=torch.uint8)
    dense[0, :3] = 1
    write_masks(tmp_path / "wagle.safetensors", {"forget": {"w": {"dense": dense}}}, model="toy", localizer="wagle",
                categories=["forget"])
    argv = ["masks", "--like", str(tmp_path / "wagle.safetensors"), "--pair", "f__r", "--localizer", "random",
            "--model-name", "toy", "--out", str(tmp_path / "r.safetensors")]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == ("clue masks: error: --like writes a random-mask control: give "
                                               "--localizer random and --seed")
    assert main(argv + ["--seed", "1", "--assign", "a.json"]) == 2
    assert "give --assign (CLUE's masks or their control) or --like (a localizer's control), not both" in \
        capsys.readouterr().err
    assert not (tmp_path / "r.safetensors").exists()
    assert main(argv + ["--seed", "1"]) == 0
    meta, masks = read_masks(tmp_path / "r.safetensors")
    assert (meta["localizer"], meta["matched_localizer"], meta["seed"], meta["pair"]) == ("random", "wagle", "1", "f__r")
    assert int(masks["forget"]["w"]["dense"].sum()) == 3
