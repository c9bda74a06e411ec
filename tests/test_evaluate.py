"""Evaluation through lm-eval's simple_evaluate on a tiny checkpoint: the accuracies must equal an
independent log-likelihood computation, and the metrics follow DESIGN.md section 8."""

import json

import pytest

from clue.base_model import load_base, multiple_choice_accuracy
from clue.cli import main
from clue.data import write_task
from clue.evaluate import pair_metrics
from clue.errors import ClueError

TASKS = ["toy_cyber", "toy_sst2", "toy_ioi", "toy_arithmetic"]
EVAL = dict(batch_size=32, device="cpu", dtype="float32", limit=None, seed=0)


@pytest.fixture(scope="module")
def world(tmp_path_factory, ):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import make_model

    from clue.base_model import build_tokenizer, task_texts

    root = tmp_path_factory.mktemp("world")
    texts = []
    for task in TASKS:
        write_task(task, dict(seed=1, n_train=50, n_test=25, n_pairs=4), root / "data" / task)
        texts += task_texts(root / "data" / task)
    tok = build_tokenizer(texts)
    model = make_model("gqa", vocab_size=len(tok), seed=3)
    model.save_pretrained(root / "ckpt")
    tok.save_pretrained(root / "ckpt")
    (root / "ckpt/clue_base.json").write_text(json.dumps({"source": "toy"}))
    return root


def test_lm_eval_accuracy_matches_an_independent_loglikelihood(world, tmp_path):
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--checkpoint", str(world / "ckpt"), "--tasks", *TASKS, "--data-root",
                 str(world / "data"), "--params", json.dumps(EVAL), "--out", str(out)]) == 0
    rec = json.loads(out.read_text())
    model, tok = load_base(world / "ckpt")
    from clue import io

    for task in TASKS:
        expected = multiple_choice_accuracy(model, tok, io.read_jsonl(world / "data" / task / "test.jsonl"))
        assert rec["accuracy"][task] == pytest.approx(expected, abs=1e-9), task
    assert rec["lm_eval_version"].startswith("0.4")

    pair = tmp_path / "pair.json"
    assert main(["evaluate", "--from-eval", str(out), "--forget", "toy_cyber", "--retain", "toy_sst2",
                 "--general", "toy_ioi", "toy_arithmetic", "--data-root", str(world / "data"),
                 "--params", json.dumps(EVAL), "--out", str(pair)]) == 0
    p = json.loads(pair.read_text())
    acc = rec["accuracy"]
    assert p["FE"] == pytest.approx(1 - acc["toy_cyber"]) and p["RU"] == acc["toy_sst2"]
    assert p["GU"] == pytest.approx((acc["toy_ioi"] + acc["toy_arithmetic"]) / 2)
    assert p["method"] == "origin" and p["unlearned_param_pct"] is None


def test_metrics_need_every_task():
    with pytest.raises(ClueError, match="toy_ioi"):
        pair_metrics({"a": 0.5, "b": 0.5}, "a", "b", ["toy_ioi"])
    assert pair_metrics({"a": 0.25, "b": 0.75, "g": 0.5}, "a", "b", ["g"]) == dict(FE=0.75, RU=0.75, GU=0.5)


def test_several_checkpoints_in_one_process_give_the_same_eval_jsons(world, tmp_path):
    """evaluate.jobs: per_pair evaluates a pair's checkpoints in one process; each eval JSON must
    equal the one a separate process (per_checkpoint) writes for the same checkpoint."""
    import torch

    model, tok = load_base(world / "ckpt")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(7)))
    model.save_pretrained(tmp_path / "other")
    tok.save_pretrained(tmp_path / "other")
    ckpts = [world / "ckpt", tmp_path / "other"]
    common = ["--forget", "toy_cyber", "--retain", "toy_sst2", "--general", "toy_ioi", "toy_arithmetic",
              "--base-dir", str(world / "ckpt"), "--data-root", str(world / "data"), "--params", json.dumps(EVAL)]
    together = [tmp_path / "a.json", tmp_path / "b.json"]
    assert main(["evaluate", "--checkpoint", *map(str, ckpts), "--method", "ga", "po",
                 "--out", *map(str, together), *common]) == 0
    for ckpt, method, out in zip(ckpts, ["ga", "po"], together):
        alone = tmp_path / f"alone-{method}.json"
        assert main(["evaluate", "--checkpoint", str(ckpt), "--method", method, "--out", str(alone), *common]) == 0
        assert json.loads(out.read_text()) == json.loads(alone.read_text())
    a, b = (json.loads(p.read_text()) for p in together)
    assert a["unlearned_param_pct"] == 0.0 and b["unlearned_param_pct"] == 100.0
    assert a["accuracy"] != b["accuracy"]  # two different models, so the check above compares something


def test_checkpoints_methods_and_outputs_must_match_in_number(world, tmp_path):
    assert main(["evaluate", "--checkpoint", str(world / "ckpt"), str(world / "ckpt"), "--method", "ga",
                 "--out", str(tmp_path / "a.json"), "--data-root", str(world / "data"), "--tasks", "toy_ioi",
                 "--params", json.dumps(EVAL)]) == 2
    assert not (tmp_path / "a.json").exists()
