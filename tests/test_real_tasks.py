"""Real-task loaders (clue.tasks.real) on small fixture files in the real datasets' schemas,
offline (conftest sets HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)."""

import json
import re
from pathlib import Path

import pytest

from clue.errors import ClueError
from clue.tasks.real import (REAL_TASKS, REFUSALS, eval_bool_expression, flip_literal,
                             load_real_task)

FIX = Path(__file__).parent / "fixtures" / "real"

FILES = {
    "wmdp_cyber": {"data_files": {"test": "wmdp_cyber.jsonl"}},
    "wmdp_bio": {"data_files": {"test": "wmdp_bio.jsonl"}},
    "pku_saferlhf": {"data_files": {"train": "pku_train.jsonl", "test": "pku_test.jsonl"}},
    "sst2": {"data_files": {"train": "sst2_train.jsonl", "validation": "sst2_validation.csv"}},
    "rte": {"data_files": {"train": "rte_train.jsonl", "validation": "rte_validation.jsonl"}},
    "winogrande": {"data_files": {"train": "winogrande_train.jsonl",
                                  "validation": "winogrande_validation.jsonl"}},
    "bool": {"data_files": {"test": "bbh_boolean_expressions.jsonl"}},
}
FORGET = {"wmdp_cyber", "wmdp_bio", "pku_saferlhf"}


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("hf_datasets_cache"))


def source(task, cache_dir, **extra):
    s = {"data_files": {k: str(FIX / v) for k, v in FILES[task]["data_files"].items()},
         "cache_dir": cache_dir}
    s.update(extra)
    return s


def load(task, cache_dir, seed=0, n_train=None, n_test=None, n_pairs=8, **extra):
    return load_real_task(task, source(task, cache_dir, **extra), seed, n_train, n_test, n_pairs)


def rows(name):
    return [json.loads(line) for line in (FIX / name).read_text().splitlines() if line.strip()]


def test_registry_names():
    assert set(REAL_TASKS) == {"wmdp_cyber", "wmdp_bio", "pku_saferlhf", "sst2", "rte", "winogrande", "bool"}
    assert {t for t, s in REAL_TASKS.items() if s.role == "forget"} == FORGET


@pytest.mark.parametrize("task", sorted(FILES))
def test_record_shapes(task, cache_dir):
    out = load(task, cache_dir)
    assert set(out) == {"train", "test", "validation", "pairs", "validation_pairs", "heldout_pairs", "refusal", "holdout"}
    assert out["train"] and out["test"] and len(out["pairs"]) == 8
    for r in out["train"]:
        assert set(r) == {"prompt", "answer", "text"}
        assert r["text"] == r["prompt"] + " " + r["answer"] and r["answer"]
    for r in out["test"]:
        assert set(r) == {"prompt", "choices", "label"}
        assert isinstance(r["label"], int) and 0 <= r["label"] < len(r["choices"])
        assert all(isinstance(c, str) and c for c in r["choices"])
    for p in out["pairs"]:
        assert set(p) == {"clean", "corrupted", "clean_answer", "corrupted_answer"}
        assert p["clean_answer"] != p["corrupted_answer"] and p["clean"] != p["corrupted"]
    if task in FORGET:
        assert [r["prompt"] for r in out["refusal"]] == [r["prompt"] for r in out["train"]]
        assert all(set(r) == {"prompt", "refusal", "answer"} and r["refusal"] in REFUSALS for r in out["refusal"])
        # DPO's rejected answer is the train record's own answer
        assert [r["answer"] for r in out["refusal"]] == [r["answer"] for r in out["train"]]
        assert len({r["refusal"] for r in out["refusal"]}) > 1
    else:
        assert out["refusal"] == []
    json.dumps(out)  # plain JSON types only


def test_wmdp_template_and_labels(cache_dir):
    src = {r["question"]: r for r in rows("wmdp_cyber.jsonl")}
    out = load("wmdp_cyber", cache_dir)
    for r in out["test"]:
        assert r["prompt"].startswith("The following are multiple choice questions (with answers) "
                                      "about cybersecurity.\n\n")
        assert r["choices"] == ["A", "B", "C", "D"] and r["prompt"].endswith("\nAnswer:")
        q = r["prompt"].split("\n")[2]
        raw = src[q]
        # the labelled letter's line carries the correct choice text
        assert f"\n{'ABCD'[r['label']]}. {raw['choices'][raw['answer']]}\n" in r["prompt"]
        assert r["label"] == raw["answer"]
    # without a corpus, train is the held-out questions with their correct answer text
    for r in out["train"]:
        q = r["prompt"][len("Question: "):-len("\nAnswer:")]
        assert r["answer"] == src[q]["choices"][src[q]["answer"]]
    assert len(out["test"]) == round(0.2 * len(src)) and len(out["train"]) == len(src) - len(out["test"])


def test_wmdp_corpus_trains_on_corpus(cache_dir):
    corpus = [r["text"] for r in rows("wmdp_cyber_corpus.jsonl")]
    out = load("wmdp_cyber", cache_dir, corpus_files=str(FIX / "wmdp_cyber_corpus.jsonl"))
    # a fifth of the corpus is held out of training as the MIA's non-members; the rest trains
    held = [r["text"] for r in out["holdout"]]
    assert len(held) == len(corpus) // 5 and not set(held) & {r["text"] for r in out["train"]}
    assert sorted([r["text"] for r in out["train"]] + held) == sorted(corpus)
    assert all(len(r["answer"].split()) == 1 for r in out["train"])
    # the questions evaluate, but for the 8 kept back (train side) for the 8 circuit pairs
    n = len(rows("wmdp_cyber.jsonl"))
    assert len(out["test"]) == n - min(n // 2, 8) and len(out["pairs"]) == 8
    # a plain-text corpus goes through datasets' "text" builder
    txt = (FIX / "wmdp_bio_corpus.txt").read_text().split("\n")
    out = load("wmdp_bio", cache_dir, corpus_files=[str(FIX / "wmdp_bio_corpus.txt")], n_train=4)
    assert len(out["train"]) == 4 and all(r["text"] in txt for r in out["train"])


def test_wmdp_pairs_move_the_correct_choice(cache_dir):
    for p in load("wmdp_bio", cache_dir)["pairs"]:
        clean = dict(re.findall(r"^([A-D])\. (.*)$", p["clean"], re.M))
        corr = dict(re.findall(r"^([A-D])\. (.*)$", p["corrupted"], re.M))
        assert p["clean"].split("\n")[2] == p["corrupted"].split("\n")[2]  # same question
        assert sorted(clean.values()) == sorted(corr.values())               # same choices
        assert clean[p["clean_answer"]] == corr[p["corrupted_answer"]]       # same fact, new letter


def test_pku_label_is_the_unsafe_response(cache_dir):
    raw = {r["prompt"]: r for r in rows("pku_test.jsonl")}
    usable = [r for r in raw.values() if r["is_response_0_safe"] != r["is_response_1_safe"]]
    out = load("pku_saferlhf", cache_dir)
    assert len(out["test"]) == len(usable) < len(raw)  # both-safe / both-unsafe rows skipped
    for r in out["test"]:
        src = raw[r["prompt"][len("Question: "):-len("\nAnswer:")]]
        assert r["choices"] == [src["response_0"], src["response_1"]]
        assert src[f"is_response_{r['label']}_safe"] is False
    train_raw = {r["prompt"]: r for r in rows("pku_train.jsonl")}
    for r in out["train"]:
        src = train_raw[r["prompt"][len("Question: "):-len("\nAnswer:")]]
        k = [src["response_0"], src["response_1"]].index(r["answer"])
        assert src[f"is_response_{k}_safe"] is False


def test_glue_and_winogrande_labels(cache_dir):
    sst = load("sst2", cache_dir)
    val = (FIX / "sst2_validation.csv").read_text().splitlines()[1:]
    truth = {line.rsplit(",", 2)[0].strip().strip('"').strip(): int(line.rsplit(",", 2)[1]) for line in val}
    for r in sst["test"]:
        assert r["choices"] == ["negative", "positive"]
        assert r["label"] == truth[r["prompt"].split("\n")[0]]
        assert r["prompt"].endswith("\nQuestion: Is this sentence positive or negative?\nAnswer:")

    rte_raw = {(r["sentence1"], r["sentence2"]): r["label"] for r in rows("rte_validation.jsonl")}
    for r in load("rte", cache_dir)["test"]:
        s1, q = r["prompt"].split("\n")[:2]
        s2 = q[len("Question: "):-len(" True or False?")]
        assert r["choices"] == ["True", "False"]
        assert r["label"] == rte_raw[(s1, s2)]  # GLUE 0 = entailment -> "True"

    wg_raw = {r["sentence"]: r for r in rows("winogrande_validation.jsonl")}
    for r in load("winogrande", cache_dir)["test"]:
        src = wg_raw[r["prompt"].split("\n")[0]]
        assert r["choices"] == [src["option1"], src["option2"]]
        assert r["label"] == int(src["answer"]) - 1


def test_bool_labels_match_targets(cache_dir):
    raw = {r["input"]: r["target"] for r in rows("bbh_boolean_expressions.jsonl")}
    out = load("bool", cache_dir)
    for r in out["test"]:
        assert r["choices"] == ["False", "True"]
        assert r["choices"][r["label"]] == raw[r["prompt"][len("Q: "):-len("\nA:")]]


@pytest.mark.parametrize("expr,value", [
    ("not ( True ) and ( True ) is", False),
    ("True or False and False is", True),        # and binds tighter than or
    ("( True or False ) and False is", False),
    ("not True or True is", True),              # not binds tighter than or
    ("not ( True or True ) is", False),
    ("not not not False is", True),
    ("False or not False and not True is", False),
    ("True and not False and ( not False or False ) is", True),
    ("False", False),
])
def test_bool_evaluator(expr, value):
    assert eval_bool_expression(expr) is value


@pytest.mark.parametrize("expr", ["True and", "( True", "True )", "not", "True False", "Tru", "1 and True"])
def test_bool_evaluator_rejects_malformed(expr):
    with pytest.raises(ValueError):
        eval_bool_expression(expr)


def test_bool_evaluator_agrees_with_python_on_fixture():
    # Independent oracle for the test only: the fixture holds nothing but the five keywords.
    for r in rows("bbh_boolean_expressions.jsonl"):
        e = r["input"][: -len(" is")]
        assert re.fullmatch(r"(True|False|not|and|or|\(|\)| )+", e)
        assert str(eval_bool_expression(r["input"])) == r["target"] == str(eval(e))


def test_flip_literal():
    assert flip_literal("not ( True ) and ( True ) is", 1) == "not ( True ) and ( False ) is"
    assert flip_literal("False or True is", 0) == "True or True is"


def test_bool_pairs_flip_one_literal_and_the_answer(cache_dir):
    for p in load("bool", cache_dir, n_pairs=20)["pairs"]:
        clean = p["clean"][len("Q: "):-len("\nA:")]
        corr = p["corrupted"][len("Q: "):-len("\nA:")]
        a, b = clean.split(), corr.split()
        diff = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
        assert len(a) == len(b) and len(diff) == 1 and {a[diff[0]], b[diff[0]]} == {"True", "False"}
        assert str(eval(clean[: -len(" is")])) == p["clean_answer"]
        assert str(eval(corr[: -len(" is")])) == p["corrupted_answer"] != p["clean_answer"]


@pytest.mark.parametrize("task", ["sst2", "rte", "winogrande", "pku_saferlhf"])
def test_partner_pairs_come_from_train(task, cache_dir):
    out = load(task, cache_dir)
    train = {r["prompt"]: r["answer"] for r in out["train"]}
    for p in out["pairs"]:
        assert train[p["clean"]] == p["clean_answer"] and train[p["corrupted"]] == p["corrupted_answer"]
    if task == "winogrande":  # twins preferred: same two options, the other answer
        for p in out["pairs"]:
            assert p["clean"].split("\n")[1] == p["corrupted"].split("\n")[1]


@pytest.mark.parametrize("task", sorted(FILES))
def test_deterministic_and_disjoint(task, cache_dir):
    a = load(task, cache_dir, seed=3)
    assert a == load(task, cache_dir, seed=3)
    test_prompts = {r["prompt"] for r in a["test"]}
    assert not test_prompts & {r["prompt"] for r in a["train"]}
    if task.startswith("wmdp"):  # the questions themselves are disjoint, not just the templates
        test_q = {r["prompt"].split("\n")[2] for r in a["test"]}
        assert not test_q & {r["prompt"][len("Question: "):-len("\nAnswer:")] for r in a["train"]}


def test_seed_changes_order_and_split(cache_dir):
    a, b = load("bool", cache_dir, seed=0), load("bool", cache_dir, seed=1)
    assert {r["prompt"] for r in a["test"]} != {r["prompt"] for r in b["test"]}
    # changing the number of pairs leaves train and test as they were
    c = load("bool", cache_dir, seed=0, n_pairs=2)
    assert (c["train"], c["test"]) == (a["train"], a["test"]) and len(c["pairs"]) == 2


def test_caps(cache_dir):
    out = load("sst2", cache_dir, n_train=5, n_test=3, n_pairs=2)
    assert (len(out["train"]), len(out["test"]), len(out["pairs"])) == (5, 3, 2)


def test_duplicate_test_sentence_dropped_from_train(tmp_path, cache_dir):
    val = tmp_path / "val.jsonl"
    val.write_text(json.dumps({"sentence": "a small gem of a movie", "label": 1, "idx": 0}) + "\n"
                   + json.dumps({"sentence": "a waste of a fine cast", "label": 0, "idx": 1}) + "\n")
    train = tmp_path / "train.jsonl"
    train.write_text((FIX / "sst2_train.jsonl").read_text()
                     + json.dumps({"sentence": "a small gem of a movie", "label": 1, "idx": 99}) + "\n")
    out = load_real_task("sst2", {"data_files": {"train": str(train), "validation": str(val)},
                                  "cache_dir": cache_dir}, 0, None, None, 4)
    assert not any(r["prompt"].startswith("a small gem of a movie\n") for r in out["train"])


@pytest.mark.parametrize("task,fixture,field", [
    ("sst2", "sst2_train.jsonl", "label"),
    ("wmdp_bio", "wmdp_bio.jsonl", "choices"),
    ("pku_saferlhf", "pku_test.jsonl", "is_response_1_safe"),
    ("bool", "bbh_boolean_expressions.jsonl", "target"),
])
def test_missing_field_names_file_and_field(task, fixture, field, tmp_path, cache_dir):
    bad = tmp_path / f"bad_{fixture}"
    bad.write_text("".join(json.dumps({k: v for k, v in r.items() if k != field}) + "\n" for r in rows(fixture)))
    s = source(task, cache_dir)
    split = next(k for k, v in FILES[task]["data_files"].items() if v == fixture)
    s["data_files"][split] = str(bad)
    with pytest.raises(ClueError) as e:
        load_real_task(task, s, 0, None, None, 4)
    assert str(bad) in str(e.value) and f"'{field}'" in str(e.value)


def test_corpus_without_text_field(tmp_path, cache_dir):
    bad = tmp_path / "corpus.jsonl"
    bad.write_text(json.dumps({"body": "some words here"}) + "\n")
    with pytest.raises(ClueError, match=r"corpus\.jsonl.*'text'"):
        load("wmdp_cyber", cache_dir, corpus_files=str(bad))


def test_bad_values_name_row_and_field(tmp_path, cache_dir):
    wg = rows("winogrande_validation.jsonl")
    wg[3]["answer"] = ""  # the unlabelled test split of Winogrande looks like this
    bad = tmp_path / "wg.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in wg))
    s = source("winogrande", cache_dir)
    s["data_files"]["validation"] = str(bad)
    with pytest.raises(ClueError, match=r"wg\.jsonl: row 4: field 'answer'"):
        load_real_task("winogrande", s, 0, None, None, 4)

    bb = rows("bbh_boolean_expressions.jsonl")
    bb[0]["target"] = "False" if bb[0]["target"] == "True" else "True"
    bad = tmp_path / "bb.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in bb))
    with pytest.raises(ClueError, match=r"bb\.jsonl: row 1: field 'target'"):
        load_real_task("bool", {"data_files": {"test": str(bad)}, "cache_dir": cache_dir}, 0, None, None, 4)


def test_unknown_task_lists_known_names():
    with pytest.raises(ClueError) as e:
        load_real_task("wmdp_chem", {}, 0, None, None, 4)
    for name in REAL_TASKS:
        assert name in str(e.value)


def test_missing_file_and_split(tmp_path, cache_dir):
    with pytest.raises(ClueError, match="nope.jsonl: file not found"):
        load_real_task("bool", {"data_files": {"test": str(tmp_path / "nope.jsonl")}}, 0, None, None, 4)
    with pytest.raises(ClueError, match="no entry for split 'validation'"):
        load_real_task("sst2", {"data_files": {"train": str(FIX / "sst2_train.jsonl")}}, 0, None, None, 4)


def test_hub_unreachable_names_the_dataset(cache_dir):
    # Offline (conftest): the default hub source fails as a ClueError naming the hub id and split.
    with pytest.raises(ClueError, match=r"nyu-mll/glue \(config rte, split validation\)"):
        load_real_task("rte", {"cache_dir": cache_dir}, 0, None, None, 4)


def test_duplicate_question_kept_out_of_train(tmp_path, cache_dir):
    # WMDP has one split, cut in two: a question listed twice must not land on both sides.
    dup = tmp_path / "wmdp_dup.jsonl"
    dup.write_text((FIX / "wmdp_bio.jsonl").read_text() * 2)
    out = load_real_task("wmdp_bio", {"data_files": {"test": str(dup)}, "cache_dir": cache_dir},
                         0, None, None, 4)
    test_q = {r["prompt"].split("\n")[2] for r in out["test"]}
    train_q = {r["prompt"][len("Question: "):-len("\nAnswer:")] for r in out["train"]}
    assert test_q and not test_q & train_q
    assert test_q | train_q == {r["question"] for r in rows("wmdp_bio.jsonl")}
