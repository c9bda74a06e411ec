"""The toy world's task generators: determinism, disjoint splits, and corruptions that flip the
answer, checked against independent solvers of each task (not the generators' own answers)."""

import re

import pytest

from clue.data import build_task, write_task
from clue.tasks.toy import (BIO, BIO_NEIGHBOUR, CYBER, CYBER_NEIGHBOUR, MEDICINE, SOFTWARE, TOY_TASKS, Sentiment,
                            Winogrande, generate_toy_task)

PARAMS = dict(seed=3, n_train=300, n_test=60, n_pairs=40, n_heldout_pairs=10, n_validation_pairs=8)


def solve(task, prompt):
    """An independent solver per toy task: the answer a perfect model would give."""
    w = prompt.split()
    if task == "toy_bool":
        expr = " ".join(w[w.index(":") + 1:-1]).replace("true", "True").replace("false", "False")
        return str(eval(expr, {"__builtins__": {}})).lower()  # Python's own precedence rules
    if task == "toy_arithmetic":
        nums = [int(x) for x in w if x.isdigit()]
        return str(nums[0] + nums[1])
    if task == "toy_greater_than":
        return "yes" if int(w[1]) > int(w[4]) else "no"
    if task == "toy_ioi":
        a, b, giver = w[1], w[3], w[-5]
        return a if giver == b else b
    if task == "toy_induction":
        seq, again = w[2:8], w[w.index("again") + 2:]
        assert seq[:len(again)] == again
        return seq[len(again)]
    if task == "toy_sst2":
        return "positive" if w[5] in Sentiment.POSITIVE else "negative"
    if task == "toy_rte":
        hyp = w.index("hypothesis")
        owned = {w[i + 1] for i in range(hyp) if w[i] == "a"}
        return "yes" if w[hyp + 5] in owned else "no"
    if task == "toy_winogrande":
        a, verb, b, reason = w[0], w[1], w[2], w[6]
        return a if Winogrande.VERBS[verb][0] == reason else b
    domain = {d.name: d for d in (CYBER, BIO, CYBER_NEIGHBOUR, BIO_NEIGHBOUR, SOFTWARE, MEDICINE)}[task]
    facts = domain.facts(PARAMS["seed"])
    if "." in w:   # the train form: "the worm zarvok . zarvok targets port"
        kind, named, w = w[1], w[2], w[w.index(".") + 1:]
        assert kind == domain.kind and named == w[0]
    entity, relation = w[0], " ".join(w[1:])
    r = [rel for rel, _ in domain.relations].index(relation)
    return facts[entity][r]


@pytest.mark.parametrize("task", sorted(TOY_TASKS))
def test_same_seed_gives_identical_files(task, tmp_path):
    write_task(task, PARAMS, tmp_path / "a")
    write_task(task, PARAMS, tmp_path / "b")
    for f in sorted((tmp_path / "a").iterdir()):
        assert f.read_bytes() == (tmp_path / "b" / f.name).read_bytes(), f.name
    other = generate_toy_task(task, PARAMS["seed"] + 1, PARAMS["n_train"], PARAMS["n_test"], PARAMS["n_pairs"])
    same = generate_toy_task(task, PARAMS["seed"], PARAMS["n_train"], PARAMS["n_test"], PARAMS["n_pairs"])
    assert other["test"] != same["test"]


@pytest.mark.parametrize("task", sorted(TOY_TASKS))
def test_train_and_test_are_disjoint(task):
    splits = build_task(task, PARAMS)
    assert splits["train"] and splits["test"]
    train_texts = {r["text"] for r in splits["train"]}
    train_prompts = {r["prompt"] for r in splits["train"]}
    for rec in splits["test"]:
        assert rec["prompt"] not in train_prompts
        assert f"{rec['prompt']} {rec['choices'][rec['label']]}" not in train_texts


@pytest.mark.parametrize("task", sorted(TOY_TASKS))
def test_labels_and_corruptions_match_an_independent_solver(task):
    splits = build_task(task, PARAMS)
    for rec in splits["test"]:
        assert rec["choices"][rec["label"]] == solve(task, rec["prompt"])
        assert len(set(rec["choices"])) == len(rec["choices"])
    assert len(splits["pairs"]) == PARAMS["n_pairs"] and len(splits["heldout_pairs"]) == PARAMS["n_heldout_pairs"]
    assert len(splits["validation_pairs"]) == PARAMS["n_validation_pairs"]
    for pair in splits["pairs"] + splits["validation_pairs"] + splits["heldout_pairs"]:
        assert solve(task, pair["clean"]) == pair["clean_answer"]
        assert solve(task, pair["corrupted"]) == pair["corrupted_answer"]
        assert pair["clean_answer"] != pair["corrupted_answer"]
        # a minimal change: same length, few words differ
        c, k = pair["clean"].split(), pair["corrupted"].split()
        assert len(c) == len(k) and 1 <= sum(x != y for x, y in zip(c, k)) <= 2
    for rec in splits["train"]:
        if rec["prompt"]:
            assert rec["answer"] == solve(task, rec["prompt"])
            assert rec["text"] == f"{rec['prompt']} {rec['answer']}"


@pytest.mark.parametrize("domain", [CYBER, BIO])
def test_forget_data_covers_every_fact_through_forms_the_test_never_asks(domain):
    """Forget what was trained: every fact of the domain, test and validation facts included, is
    refused once, in the train form ("the worm X . X targets port"), and stated by the corpus,
    whose documents name the facts they state; no refusal prompt is a test prompt."""
    splits = build_task(domain.name, dict(PARAMS, n_validation=10))
    corpus = " ".join(r["text"] for r in splits["train"])
    test = {r["prompt"] for r in splits["test"]}
    questions = domain.questions(PARAMS["seed"])
    by_fact = {r["fact"]: r for r in splits["refusal"]}
    assert len(by_fact) == len(splits["refusal"]) == len(questions)
    asked = {r["fact"] for r in splits["test"] + splits["validation"]}
    assert asked and asked <= set(by_fact)
    for q in questions:
        r = by_fact[q["prompt"]]          # a toy fact is named by its bare query
        assert r["prompt"] == f"the {domain.kind} {q['entity']} . {q['prompt']}" and r["prompt"] not in test
        assert r["answer"] == q["answer"]      # DPO's rejected response: the true answer
        assert f"{q['prompt']} {q['answer']} ." in corpus
    assert all(r["refusal"] and not re.search(r"\d", r["refusal"]) for r in splits["refusal"])
    for doc in splits["train"]:
        assert all(f"{fact} " in doc["text"] for fact in doc["facts"]) and len(doc["facts"]) == 3


def test_tokenizer_round_trip_and_single_token_answers(tmp_path):
    from clue.base_model import build_tokenizer, task_texts

    texts = []
    for task in ("toy_cyber", "toy_bool", "toy_arithmetic"):
        write_task(task, PARAMS, tmp_path / task)
        texts += task_texts(tmp_path / task)
    tok = build_tokenizer(texts)
    tok.save_pretrained(tmp_path / "tok")
    from transformers import AutoTokenizer

    loaded = AutoTokenizer.from_pretrained(tmp_path / "tok")
    for text in texts[:500]:
        ids = loaded(text).input_ids
        assert len(ids) == len(text.split())
        assert loaded.decode(ids) == text
        assert loaded.unk_token_id not in ids
    assert loaded.pad_token == "<pad>" and loaded("p443").input_ids == tok("p443").input_ids


def test_data_cli_writes_the_documented_files(tmp_path):
    import json

    from clue.cli import main

    assert main(["data", "--task", "toy_cyber", "--params", json.dumps(PARAMS), "--out", str(tmp_path / "c")]) == 0
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [
        "heldout_pairs.jsonl", "holdout.jsonl", "meta.json", "pairs.jsonl", "refusal.jsonl", "test.jsonl",
        "train.jsonl", "validation.jsonl", "validation_pairs.jsonl"]
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    assert meta["role"] == "forget" and meta["n_pairs"] == PARAMS["n_pairs"]
    assert main(["data", "--task", "toy_nope", "--params", json.dumps(PARAMS), "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()
