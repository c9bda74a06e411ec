"""Splits are sacred (DESIGN.md section 8): for every registered task, toy and real, no prompt of
the test split (FE, RU, GU) is a prompt that any training, refusal, circuit or localizer step
sees. Which files each stage reads:

- base model: ``train.jsonl`` (toy world); unlearning: ``train.jsonl`` (GA/NPO corpus, retain
  loss) and ``refusal.jsonl`` (PO); circuits: ``pairs.jsonl``, ``validation_pairs.jsonl`` (the
  choice of sparsity) and, for faithfulness, ``heldout_pairs.jsonl``; localizers: ``train.jsonl``
  and ``pairs.jsonl`` (prompts).

The check here is written independently of ``clue.data.check_disjoint``: it reads the files the
data stage wrote.
"""

import json
from pathlib import Path

import pytest

from clue.data import write_task
from clue.tasks.real import REAL_TASKS
from clue.tasks import GENERATED_TASKS
from clue.tasks.toy import TOY_TASKS, KnowledgeDomain
from clue.tasks.world import WORLD_TASKS

FIX = Path(__file__).parent / "fixtures" / "real"
REAL_FILES = {
    "wmdp_cyber": {"data_files": {"test": "wmdp_cyber.jsonl"}, "corpus_files": "wmdp_cyber_corpus.jsonl"},
    "wmdp_bio": {"data_files": {"test": "wmdp_bio.jsonl"}, "corpus_files": "wmdp_bio_corpus.txt"},
    "pku_saferlhf": {"data_files": {"train": "pku_train.jsonl", "test": "pku_test.jsonl"}},
    "sst2": {"data_files": {"train": "sst2_train.jsonl", "validation": "sst2_validation.csv"}},
    "rte": {"data_files": {"train": "rte_train.jsonl", "validation": "rte_validation.jsonl"}},
    "winogrande": {"data_files": {"train": "winogrande_train.jsonl", "validation": "winogrande_validation.jsonl"}},
    "bool": {"data_files": {"test": "bbh_boolean_expressions.jsonl"}},
}
TOY = dict(seed=0, n_train=2000, n_test=200, n_pairs=64, n_heldout_pairs=32, n_validation_pairs=32,
           n_validation=40)   # the default config's


def read(directory, split):
    path = directory / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def real_params(task, tmp_path):
    spec = REAL_FILES[task]
    source = {"data_files": {k: str(FIX / v) for k, v in spec["data_files"].items()},
              "cache_dir": str(tmp_path / "cache")}
    if "corpus_files" in spec:
        source["corpus_files"] = str(FIX / spec["corpus_files"])
    return dict(seed=0, n_train=None, n_test=None, n_pairs=4, n_heldout_pairs=2, n_validation_pairs=2, n_validation=2,
                source=source)


def test_every_registered_task_is_covered():
    assert set(REAL_FILES) == set(REAL_TASKS)


@pytest.mark.parametrize("task", sorted(TOY_TASKS) + sorted(WORLD_TASKS) + sorted(REAL_TASKS))
def test_no_test_prompt_is_seen_by_training_refusals_circuits_or_localizers(task, tmp_path):
    params = TOY if task in GENERATED_TASKS else real_params(task, tmp_path)
    d = tmp_path / task
    write_task(task, params, d)
    test = read(d, "test")
    assert test
    seen = {
        "train prompt": {r["prompt"] for r in read(d, "train")},
        "refusal": {r["prompt"] for r in read(d, "refusal")},
        "circuit pair": {p[k] for p in read(d, "pairs") for k in ("clean", "corrupted")},
        "validation pair": {p[k] for p in read(d, "validation_pairs") for k in ("clean", "corrupted")},
        "held-out pair": {p[k] for p in read(d, "heldout_pairs") for k in ("clean", "corrupted")},
    }
    train_texts = {r["text"] for r in read(d, "train")}
    validation = read(d, "validation")
    assert validation, f"{task}: no validation questions"
    for name, records in (("test", test), ("validation", validation)):
        for rec in records:
            for where, prompts in seen.items():
                assert rec["prompt"] not in prompts, f"{task}: {name} prompt {rec['prompt']!r} is a {where}"
            # nor is a held-out question trained on with its answer as a question-answer line
            assert f"{rec['prompt']} {rec['choices'][rec['label']]}" not in train_texts
    # validation questions (which choose settings) are not test questions either
    assert not {r["prompt"] for r in test} & {r["prompt"] for r in validation}
    # the sparsity is chosen on pairs discovery never trains on, and faithfulness is reported on
    # pairs neither step saw
    pairs = {p["clean"] for p in read(d, "pairs")}
    validation = {p["clean"] for p in read(d, "validation_pairs")}
    held = {p["clean"] for p in read(d, "heldout_pairs")}
    role = (GENERATED_TASKS[task] if task in GENERATED_TASKS else REAL_TASKS[task]).role
    if task.startswith("world_country_"):   # general knowledge, only measured: no circuit pairs
        assert role == "general" and not (pairs or validation or held)
    else:
        assert held and pairs and validation
    assert not pairs & held and not pairs & validation and not validation & held
    assert bool(read(d, "refusal")) == (role == "forget"), f"{task}: refusal targets for forget sets only"


@pytest.mark.parametrize("domain", [t for t in TOY_TASKS.values() if isinstance(t, KnowledgeDomain)],
                         ids=lambda t: t.name)
def test_forget_questions_ask_facts_the_corpus_states_and_the_mia_holdout_is_unseen(domain, tmp_path):
    d = tmp_path / domain.name
    write_task(domain.name, TOY, d)
    corpus = " ".join(r["text"] for r in read(d, "train"))
    test = read(d, "test")
    assert len(test) >= 40
    for rec in test:   # FE asks about facts of the forget set, through prompts nothing trains on
        assert f"{rec['prompt']} {rec['choices'][rec['label']]} ." in corpus
    holdout = read(d, "holdout")
    if domain.role == "forget":
        assert len(holdout) >= 50
        held_entities = {t["text"].split()[2] for t in holdout}
        trained_entities = {t["text"].split()[2] for t in read(d, "train")}
        assert held_entities and not held_entities & trained_entities
        assert not held_entities & {w for r in test for w in r["prompt"].split()}
    else:
        assert holdout == []
