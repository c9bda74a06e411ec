"""The toy base model: trains from the task mixture, saves a loadable checkpoint, is
bit-identical across runs with the same config, and a pretrained model is only recorded."""

import json

import pytest
import torch

from clue.base_model import base_model_path, load_base, multiple_choice_accuracy
from clue.cli import main
from clue.data import write_task
from clue.errors import ClueError

DATA = dict(seed=0, n_train=120, n_test=30, n_pairs=8)
MODEL = dict(name="toy", source="toy",
             toy=dict(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                      max_position_embeddings=64),
             train=dict(steps=30, batch_size=8, lr=0.003, warmup_steps=5, weight_decay=0.01, seed=0,
                        threads=1, min_accuracy=0.0, answer_weight=4.0))


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for task in ("toy_cyber", "toy_sst2"):
        write_task(task, DATA, root / task)
    return [str(root / t) for t in ("toy_cyber", "toy_sst2")]


def train(data_dirs, out):
    assert main(["base-model", "--data-dirs", *data_dirs, "--params", json.dumps(MODEL), "--out", str(out)]) == 0


def test_toy_model_is_deterministic_and_loadable(data_dirs, tmp_path):
    train(data_dirs, tmp_path / "a")
    train(data_dirs, tmp_path / "b")
    # same config, same bytes: every file of the checkpoint directory
    files = sorted(f.name for f in (tmp_path / "a").iterdir())
    assert files == sorted(f.name for f in (tmp_path / "b").iterdir()) and "clue_base.json" in files
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    model, tok = load_base(tmp_path / "a")
    assert model.config.model_type == "llama" and model.config.num_key_value_heads == 2
    meta = json.loads((tmp_path / "a/clue_base.json").read_text())
    assert set(meta["test_accuracy"]) == {"toy_cyber", "toy_sst2"}
    # the recorded accuracy is the checkpoint's own (recomputed after reloading)
    from clue import io

    recs = io.read_jsonl(f"{data_dirs[1]}/test.jsonl")
    assert multiple_choice_accuracy(model, tok, recs) == pytest.approx(meta["test_accuracy"]["toy_sst2"])


def test_pretrained_model_is_recorded_not_copied(tmp_path):
    params = dict(name="zephyr-7b-beta", source="pretrained", pretrained="HuggingFaceH4/zephyr-7b-beta")
    assert main(["base-model", "--params", json.dumps(params), "--out", str(tmp_path / "base")]) == 0
    assert sorted(p.name for p in (tmp_path / "base").iterdir()) == ["clue_base.json"]
    assert base_model_path(tmp_path / "base") == "HuggingFaceH4/zephyr-7b-beta"


def test_training_data_with_a_missing_field_names_file_and_field(data_dirs, tmp_path):
    bad = tmp_path / "toy_bad"
    bad.mkdir()
    (bad / "train.jsonl").write_text(json.dumps({"prompt": "a", "answer": "b"}) + "\n")
    (bad / "test.jsonl").write_text(json.dumps({"prompt": "a", "choices": ["b"], "label": 0}) + "\n")
    from clue.base_model import train_toy_model

    with pytest.raises(ClueError, match=r"toy_bad/train.jsonl:1: record is missing field\(s\) text"):
        train_toy_model([str(bad)], MODEL)


def test_non_llama_models_are_rejected_naming_the_class():
    from transformers import GPT2Config, GPT2LMHeadModel

    from clue.base_model import check_model_type

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=10))
    with pytest.raises(ClueError, match="GPT2LMHeadModel.*llama, mistral, qwen2"):
        check_model_type(model)
    torch.manual_seed(0)
