"""The robustness attacks: 4-bit round-to-nearest quantization against a quantizer written out
here, the relearning split, the attack record on a tiny model (invariants: an attack that cannot
change the model leaves FE as it was; one that trains does not), the robust-FE table's shares
and paired differences worked by hand, and the config errors."""

import json

import numpy as np
import pytest
import torch

from clue.cli import main as clue
from clue.errors import ClueError


def reference_quantize(w, bits, group):
    """Symmetric round-to-nearest, one scale per `group` consecutive inputs of a row, in numpy."""
    w = np.asarray(w, dtype=np.float64)
    out = np.empty_like(w)
    levels = 2 ** (bits - 1) - 1
    for r in range(w.shape[0]):
        for c0 in range(0, w.shape[1], group):
            g = w[r, c0:c0 + group]
            scale = np.abs(g).max() / levels
            out[r, c0:c0 + group] = 0 if scale == 0 else np.clip(np.round(g / scale), -levels, levels) * scale
    return out


@pytest.mark.parametrize("bits, group, cols", [(4, 8, 32), (4, 64, 20), (3, 5, 17), (8, 16, 16)])
def test_quantization_matches_a_reference_and_uses_at_most_2_to_the_bits_levels(bits, group, cols):
    from clue.attack import quantize_

    torch.manual_seed(0)
    w = torch.randn(6, cols)
    w[2] = 0.0   # a row of zeros stays zero
    want = reference_quantize(w.numpy(), bits, min(group, cols))
    quantize_(w, bits, group)
    assert np.allclose(w.numpy(), want, atol=1e-6)
    for r in range(6):
        for c0 in range(0, cols, min(group, cols)):
            assert len(set(np.round(w[r, c0:c0 + min(group, cols)].numpy(), 6))) <= 2 ** bits - 1
    again = w.clone()
    quantize_(again, bits, group)
    assert torch.allclose(again, w, atol=1e-6)   # already on the grid


def test_the_relearned_and_asked_facts_split_the_test_facts_in_two():
    from clue.attack import split_facts

    test = [{"fact": f"f{i}"} for i in range(11) for _ in range(3)]
    a, b = split_facts(test, 0)
    assert not a & b and a | b == {f"f{i}" for i in range(11)} and len(a) == 5
    assert split_facts(test, 0) == (a, b) and split_facts(test, 1) != (a, b)


@pytest.fixture(scope="module")
def toy_checkpoint(tmp_path_factory):
    """toy_cyber's data and a tiny random model over its words."""
    from clue.base_model import build_tokenizer, task_texts
    from clue.data import write_task
    from conftest import make_model

    root = tmp_path_factory.mktemp("attack")
    write_task("toy_cyber", dict(seed=0, n_train=100, n_test=40, n_pairs=8), root / "data" / "toy_cyber")
    tok = build_tokenizer(task_texts(root / "data" / "toy_cyber"))
    model = make_model("gqa", vocab_size=len(tok), hidden_size=32, heads=4, kv_heads=2, layers=2, seed=1)
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    return root


def run_attack(root, out, **params):
    p = {"relearn_steps": 5, "relearn_batch_size": 8, "group_size": 16, **params}
    assert clue(["attack", "--checkpoint", str(root / "model"), "--method", "ga", "--forget-dir",
                 str(root / "data" / "toy_cyber"), "--retain", "toy_sst2", "--params", json.dumps(p),
                 "--eval-params", json.dumps({"batch_size": 32, "device": "cpu"}), "--out", str(out)]) == 0
    return json.loads(out.read_text())


def test_an_attack_that_cannot_move_the_model_leaves_fe_and_one_that_trains_moves_it(toy_checkpoint, tmp_path):
    test = [json.loads(x) for x in (toy_checkpoint / "data/toy_cyber/test.jsonl").read_text().splitlines()]
    still = run_attack(toy_checkpoint, tmp_path / "still.json", relearn_lr=1e-30, bits=16)
    asked = {f for f in still["facts"]}
    assert still["questions"] == sum(r["fact"] in asked for r in test) == len(still["correct"]["trained"])
    assert still["relearned_facts"] + still["asked_facts"] == len({r["fact"] for r in test})
    assert still["FE"]["relearned"] == still["FE"]["trained"] == pytest.approx(1 - np.mean(still["correct"]["trained"]))
    assert still["FE"]["quantized"] == pytest.approx(still["FE"]["trained"], abs=1.5 / still["questions"])
    moved = run_attack(toy_checkpoint, tmp_path / "moved.json", relearn_lr=0.05, relearn_steps=30, bits=2)
    assert moved["FE"]["trained"] == still["FE"]["trained"]
    assert moved["correct"]["relearned"] != still["correct"]["relearned"]
    assert moved["correct"]["quantized"] != still["correct"]["quantized"]


@pytest.mark.parametrize("params, message", [
    ({"relearn_steps": 0}, "config key attack.relearn_steps: a positive integer, not 0"),
    ({"bits": 0}, "config key attack.bits: a positive integer, not 0"),
    ({"relearn_lr": 0}, "config key attack.relearn_lr: a positive number, not 0"),
    # one bit of symmetric rounding has no level but zero
    ({"bits": 1}, "config key attack.bits: 2 to 16 bits, not 1"),
])
def test_an_attack_with_zero_steps_or_bits_is_refused(params, message):
    from clue.attack import resolve_params

    with pytest.raises(ClueError) as err:
        resolve_params(params)
    assert str(err.value) == message


@pytest.mark.parametrize("key, value, minimum", [("relearn_steps", 0, 1), ("bits", 1, 2)])
def test_the_config_refuses_them_before_any_job(key, value, minimum):
    import yaml

    from clue.config import config_problem
    from conftest import ROOT

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["attack"] = {key: value}
    problem = config_problem(config, str(ROOT / "workflow/schemas/config.schema.yaml"))
    assert problem == f"config key attack.{key}: {value} is less than the minimum of {minimum}"


def record(method, trained, relearned, quantized, n=20):
    """An attack record whose questions (one a fact) give these FEs."""
    def correct(fe):
        wrong = round(fe * n)
        return [0] * wrong + [1] * (n - wrong)
    return {"method": method, "forget": "f", "retain": "r", "questions": n, "facts": [f"x{i}" for i in range(n)],
            "FE": {"trained": trained, "relearned": relearned, "quantized": quantized},
            "correct": {"trained": correct(trained), "relearned": correct(relearned), "quantized": correct(quantized)}}


def test_the_robust_table_shares_and_paired_differences_by_hand(tmp_path):
    """Origin FE 0.1. CLUE 0.6 as trained, 0.35 relearned, 0.5 quantized: it removed 0.5 and the
    attacks bring back 0.25 / 0.5 = 0.5 and 0.1 / 0.5 = 0.2. PO 0.1 as trained: nothing removed,
    no share, a note. CLUE and PO differ on 10 of the 20 questions, all one way, so CLUE minus PO
    (+0.5) is above 0 on every paired resample; CLUE minus random (the same answers) is 0, inside."""
    from clue.reports.robust import rows

    records = [record("origin", 0.1, 0.1, 0.1), record("clue", 0.6, 0.35, 0.5), record("po", 0.1, 0.1, 0.1),
               record("random", 0.6, 0.35, 0.5)]
    audit = {"krs": {"windows": [{"krs": {"m": 0.2, "A": 0.9}}, {"krs": {"m": 0.7, "W_V": None}}]}}
    table, diffs = rows(records, {"clue": audit})
    by = {r["method"]: r for r in table}
    assert by["clue"]["KRS_max"] == 0.9 and by["po"]["KRS_max"] is None
    assert by["clue"]["recovered_relearned"] == pytest.approx(0.5)
    assert by["clue"]["recovered_quantized"] == pytest.approx(0.2)
    assert by["po"]["recovered_relearned"] is None and "nothing was removed" in by["po"]["note"]
    assert by["origin"]["recovered_relearned"] is None and by["origin"]["note"] == ""
    d = {(x["method"], x["FE"]): x for x in diffs}
    assert d[("po", "trained")]["clue_minus_method"] == pytest.approx(0.5) and d[("po", "trained")]["outside"]
    assert d[("random", "trained")]["clue_minus_method"] == 0 and not d[("random", "trained")]["outside"]
    assert by["clue"]["FE_trained_lo"] < 0.6 < by["clue"]["FE_trained_hi"]
    with pytest.raises(ClueError, match="no attack record of Origin"):
        rows(records[1:])


def test_a_removal_inside_its_interval_gets_no_recovered_share(tmp_path):
    """Origin FE 0.1 (2 of 20 wrong). MEMIT 0.15: one more question wrong, a removal of 0.05
    whose paired interval over the 20 facts holds 0 (a resample without that fact gives 0);
    relearning to 0.2 would read as a share of -2. It gets none, and the table says why. CLUE
    0.6 (10 more wrong, a removal outside its interval) keeps its share (0.5)."""
    from clue.reports.robust import markdown, rows

    records = [record("origin", 0.1, 0.1, 0.1), record("memit", 0.15, 0.2, 0.2), record("clue", 0.6, 0.35, 0.5)]
    table, diffs = rows(records)
    by = {r["method"]: r for r in table}
    assert by["memit"]["recovered_relearned"] is None and by["memit"]["recovered_quantized"] is None
    assert by["memit"]["note"].startswith("FE as trained is Origin's +0.050 [+0.00, +0.15], inside the interval")
    assert by["clue"]["recovered_relearned"] == pytest.approx(0.5) and by["clue"]["note"] == ""
    text = markdown(table, diffs, {"memit": "MEMIT"})
    assert "Recovered '-': MEMIT: FE as trained is Origin's +0.050" in text
