"""Evaluation on a tiny checkpoint: every metric of the eval JSON (accuracy, probability of the
correct choice, MIA, Rouge-L) must equal an independent, unbatched computation with the same model,
and the metrics follow DESIGN.md section 8 and the paper's appendix G."""

import json
import random
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import make_model, make_tokenizer  # noqa: E402

from clue import evaluate, io  # noqa: E402
from clue.base_model import load_base, multiple_choice_accuracy  # noqa: E402
from clue.cli import main  # noqa: E402
from clue.data import write_task  # noqa: E402
from clue.errors import ClueError  # noqa: E402
from clue.evaluate import auc, min_k_prob, pair_metrics, rouge_l_recall  # noqa: E402

TASKS = ["toy_cyber", "toy_sst2", "toy_ioi", "toy_arithmetic"]
EVAL = dict(batch_size=32, device="cpu", dtype="float32", limit=None, seed=0, mia_samples=40)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from clue.base_model import build_tokenizer, task_texts

    root = tmp_path_factory.mktemp("world")
    texts = []
    for task in TASKS:
        write_task(task, dict(seed=1, n_train=50, n_test=25, n_pairs=4), root / "data" / task)
        texts += task_texts(root / "data" / task)
    # held-out forget texts (non-members): the same generator, another seed, none a training text
    write_task("toy_cyber", dict(seed=2, n_train=50, n_test=1, n_pairs=4), root / "other")
    members = {r["text"] for r in io.read_jsonl(root / "data/toy_cyber/train.jsonl")}
    holdout = [r["text"] for r in io.read_jsonl(root / "other/train.jsonl") if r["text"] not in members]
    io.write_jsonl(root / "data/toy_cyber/holdout.jsonl", [{"text": t} for t in holdout[:30]])
    tok = build_tokenizer(texts + holdout)
    model = make_model("gqa", vocab_size=len(tok), seed=3)
    model.save_pretrained(root / "ckpt")
    tok.save_pretrained(root / "ckpt")
    (root / "ckpt/clue_base.json").write_text(json.dumps({"source": "toy"}))
    return root


# ----------------------------------------------------------------------- independent computations

def token_logprobs_one(model, tok, text):
    """Log-probability of each token of ``text`` after the first, one text, no padding."""
    import torch

    ids = tok(text).input_ids
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
    return [logp[i - 1, ids[i]].item() for i in range(1, len(ids))]


def min_k_one(values, k=0.2):
    low = sorted(values)[:max(1, int(len(values) * k))]
    return sum(low) / len(low)


def pairwise_auc(pos, neg):
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg) / (len(pos) * len(neg))


def choice_lls(model, tok, rec):
    """The summed log-likelihood of " " + choice after the prompt, for each choice."""
    import torch

    p = tok(rec["prompt"]).input_ids
    lls = []
    for choice in rec["choices"]:
        c = tok(" " + choice).input_ids
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([p + c])).logits[0].double(), -1)
        lls.append(sum(logp[len(p) - 1 + j, c[j]].item() for j in range(len(c))))
    return lls


def choice_probability(model, tok, rec):
    """softmax over the summed log-likelihoods of " " + choice after the prompt, at the label."""
    import math

    lls = choice_lls(model, tok, rec)
    top = max(lls)
    return math.exp(lls[rec["label"]] - top) / sum(math.exp(x - top) for x in lls)


def greedy_one(model, tok, prompt, n):
    import torch

    ids = tok(prompt).input_ids
    start = len(ids)
    for _ in range(n):
        with torch.no_grad():
            nxt = int(model(torch.tensor([ids])).logits[0, -1].argmax())
        ids.append(nxt)
        if nxt == tok.eos_token_id:
            break
    return tok.decode(ids[start:], skip_special_tokens=True)


def lcs_recall(reference, generation):
    ref, gen = (re.findall(r"[a-z0-9]+", s.lower()) for s in (reference, generation))
    table = [[0] * (len(gen) + 1) for _ in range(len(ref) + 1)]
    for i, a in enumerate(ref):
        for j, b in enumerate(gen):
            table[i + 1][j + 1] = table[i][j] + 1 if a == b else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1] / len(ref) if ref else 0.0


# ----------------------------------------------------------------------------------- end to end

def test_every_metric_matches_an_independent_computation(world, tmp_path):
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--checkpoint", str(world / "ckpt"), "--tasks", *TASKS, "--forget-sets", "toy_cyber",
                 "--data-root", str(world / "data"), "--params", json.dumps(EVAL), "--out", str(out)]) == 0
    rec = json.loads(out.read_text())
    model, tok = load_base(world / "ckpt")
    for task in TASKS:
        records = io.read_jsonl(world / "data" / task / "test.jsonl")
        expected = multiple_choice_accuracy(model, tok, records)
        assert rec["accuracy"][task] == pytest.approx(expected, abs=1e-9), task
        probs = [choice_probability(model, tok, r) for r in records]
        assert rec["prob_correct"][task] == pytest.approx(sum(probs) / len(probs), abs=1e-5), task
        # each question's correctness (what Table 1's intervals resample) and the length-normalised
        # accuracy (log-likelihood per character of the choice, as lm-eval's acc_norm)
        lls = [choice_lls(model, tok, r) for r in records]
        right = [int(max(range(len(x)), key=x.__getitem__) == r["label"]) for x, r in zip(lls, records)]
        assert rec["correct"][task] == right and sum(right) / len(right) == pytest.approx(rec["accuracy"][task])
        per_char = [[v / len(c) for v, c in zip(x, r["choices"])] for x, r in zip(lls, records)]
        norm = [int(max(range(len(x)), key=x.__getitem__) == r["label"]) for x, r in zip(per_char, records)]
        assert rec["accuracy_norm"][task] == pytest.approx(sum(norm) / len(norm)), task
    assert rec["lm_eval_version"].startswith("0.4")

    # MIA: brute-force Min-20% Prob of each sampled text, pairwise AUC, reported as 1 - AUC
    members = io.seeded_sample([r["text"] for r in io.read_jsonl(world / "data/toy_cyber/train.jsonl")],
                               EVAL["mia_samples"], random.Random(0), "train")
    nonmembers = [r["text"] for r in io.read_jsonl(world / "data/toy_cyber/holdout.jsonl")]
    assert len(members) == 40 and len(nonmembers) == 30
    score = lambda texts: [min_k_one(token_logprobs_one(model, tok, t)) for t in texts]  # noqa: E731
    forget = rec["forget_efficacy"]["toy_cyber"]
    assert forget["MIA"] == pytest.approx(1 - pairwise_auc(score(members), score(nonmembers)), abs=1e-9)
    assert forget["mia_note"] is None

    # Rouge-L: greedy decoding one prompt at a time, recall by a hand-written LCS
    tests = io.read_jsonl(world / "data/toy_cyber/test.jsonl")
    recalls = [lcs_recall(r["choices"][r["label"]], greedy_one(model, tok, r["prompt"], 8)) for r in tests]
    assert forget["RougeL"] == pytest.approx(sum(recalls) / len(recalls), abs=1e-12)

    pair = tmp_path / "pair.json"
    assert main(["evaluate", "--from-eval", str(out), "--forget", "toy_cyber", "--retain", "toy_sst2",
                 "--general", "toy_ioi", "toy_arithmetic", "--data-root", str(world / "data"),
                 "--params", json.dumps(EVAL), "--out", str(pair)]) == 0
    p = json.loads(pair.read_text())
    acc, prob = rec["accuracy"], rec["prob_correct"]
    assert p["FE"] == pytest.approx(1 - acc["toy_cyber"]) and p["RU"] == acc["toy_sst2"]
    assert p["GU"] == pytest.approx((acc["toy_ioi"] + acc["toy_arithmetic"]) / 2)
    assert p["RU_prob"] == prob["toy_sst2"]
    assert p["GU_prob"] == pytest.approx((prob["toy_ioi"] + prob["toy_arithmetic"]) / 2)
    assert (p["MIA"], p["mia_note"], p["RougeL"]) == (forget["MIA"], None, forget["RougeL"])
    assert p["method"] == "origin" and p["unlearned_param_pct"] is None
    assert p["correct"]["toy_sst2"] == rec["correct"]["toy_sst2"]
    assert p["FE_norm"] == pytest.approx(1 - rec["accuracy_norm"]["toy_cyber"])


def test_autocast_evaluates_in_bf16_close_to_float32(world, tmp_path):
    """evaluate.autocast: bfloat16 runs lm-eval's forward passes (its mixed_precision_dtype), the
    MIA and the generations under bf16 autocast: the probabilities of the correct choice move by
    bf16 rounding (an option that did nothing would leave them bit-identical), and stay within
    0.01 of float32's."""
    recs = {}
    for name, autocast in (("fp32", None), ("bf16", "bfloat16")):
        out = tmp_path / f"{name}.json"
        assert main(["evaluate", "--checkpoint", str(world / "ckpt"), "--tasks", *TASKS, "--forget-sets",
                     "toy_cyber", "--data-root", str(world / "data"),
                     "--params", json.dumps({**EVAL, "autocast": autocast}), "--out", str(out)]) == 0
        recs[name] = json.loads(out.read_text())
    fp32, bf16 = recs["fp32"]["prob_correct"], recs["bf16"]["prob_correct"]
    assert fp32 != bf16
    assert all(bf16[t] == pytest.approx(fp32[t], abs=0.01) for t in TASKS)
    mia = [recs[n]["forget_efficacy"]["toy_cyber"]["MIA"] for n in ("fp32", "bf16")]
    assert mia[1] == pytest.approx(mia[0], abs=0.05)
    with pytest.raises(ClueError, match=re.escape("evaluate.autocast must be null, auto or one of bfloat16, float16, "
                                                  "not 'bf16'")):
        evaluate.mixed_precision({"autocast": "bf16"})


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
    # two different models, so the check above compares something
    assert a["accuracy"] != b["accuracy"] and a["prob_correct"] != b["prob_correct"] and a["MIA"] != b["MIA"]


def test_checkpoints_methods_and_outputs_must_match_in_number(world, tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(world / "ckpt"), str(world / "ckpt"), "--method", "ga",
                 "--out", str(tmp_path / "a.json"), "--data-root", str(world / "data"), "--tasks", "toy_ioi",
                 "--params", json.dumps(EVAL)]) == 2
    assert "give as many --method (1) and --out (1) as checkpoints (2)" in capsys.readouterr().err
    assert not (tmp_path / "a.json").exists()


def test_origin_rows_need_the_forget_sets_metrics_in_the_base_evaluation(tmp_path, capsys):
    base = tmp_path / "base.json"
    io.write_json(base, dict(checkpoint="b", lm_eval_version="0.4", accuracy={"f": 0.5, "r": 0.5},
                             prob_correct={}, forget_efficacy={}))
    assert main(["evaluate", "--from-eval", str(base), "--forget", "f", "--retain", "r", "--data-root",
                 str(tmp_path), "--params", "{}", "--out", str(tmp_path / "o.json")]) == 2
    assert (f"{base} has no MIA / Rouge-L for forget set(s) f (evaluate the base model with --forget-sets)"
            in capsys.readouterr().err)


# ------------------------------------------------------------------------------------ test files

GOOD = {"prompt": "a b", "choices": ["x", "y"], "label": 1}


@pytest.mark.parametrize("bad, problem", [
    ({"prompt": "a b", "choices": ["x", "y"]}, "missing field 'label'"),
    ({"choices": ["x", "y"], "label": 0}, "missing field 'prompt'"),
    ({**GOOD, "prompt": 3}, "field 'prompt' must be a string, not int"),
    ({**GOOD, "choices": ["x"]}, "field 'choices' must be a list of at least 2 strings"),
    ({**GOOD, "choices": "xy"}, "field 'choices' must be a list of at least 2 strings"),
    ({**GOOD, "choices": ["x", 2]}, "field 'choices' must be a list of at least 2 strings"),
    ({**GOOD, "label": 2}, "field 'label' must be an integer index into choices (0..1), not 2"),
    ({**GOOD, "label": "1"}, "field 'label' must be an integer index into choices (0..1), not '1'"),
    ({**GOOD, "label": True}, "field 'label' must be an integer index into choices (0..1), not True"),
    ({**GOOD, "label": -1}, "field 'label' must be an integer index into choices (0..1), not -1"),
])
def test_a_bad_test_file_fails_before_lm_eval_naming_file_line_and_field(tmp_path, monkeypatch, capsys, bad,
                                                                         problem):
    def never(*a, **k):
        raise AssertionError("a model was loaded or lm-eval ran on a bad test file")

    monkeypatch.setattr(evaluate, "load_checkpoint", never)
    monkeypatch.setattr(evaluate, "run_lm_eval", never)
    for task in ("toy_cyber", "toy_sst2"):
        (tmp_path / task).mkdir()
        io.write_jsonl(tmp_path / task / "test.jsonl", [GOOD, GOOD])
    path = tmp_path / "toy_sst2/test.jsonl"
    path.write_text(path.read_text() + "\n" + json.dumps(bad) + "\n")  # a blank line 3: the record is line 4
    assert main(["evaluate", "--checkpoint", "unused", "--tasks", "toy_cyber", "toy_sst2", "--data-root",
                 str(tmp_path), "--params", "{}", "--out", str(tmp_path / "e.json")]) == 2
    assert capsys.readouterr().err == f"clue evaluate: error: {path} line 4: {problem}\n"


def test_test_file_syntax_and_emptiness_errors_name_the_file(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_text(json.dumps(GOOD) + "\n{not json\n")
    with pytest.raises(ClueError, match=re.escape(f"{path} line 2: not valid JSON")):
        evaluate.check_test_file(path)
    path.write_text("[1, 2]\n")
    with pytest.raises(ClueError) as e:
        evaluate.check_test_file(path)
    assert str(e.value) == f"{path} line 1: not a JSON object"
    path.write_text("\n")
    with pytest.raises(ClueError) as e:
        evaluate.check_test_file(path)
    assert str(e.value) == f"{path}: no test records"
    # a task with a data directory but no test.jsonl is not taken for an lm-eval task name
    (tmp_path / "t").mkdir()
    with pytest.raises(ClueError) as e:
        evaluate.local_test_files(["t"], tmp_path)
    assert str(e.value) == f"{tmp_path / 't' / 'test.jsonl'}: file not found"


# --------------------------------------------------------------------------------- metric pieces

def test_min_k_prob_equals_brute_force_on_padded_batches():
    words = [f"w{i}" for i in range(30)]
    tok = make_tokenizer(words)
    model = make_model("llama", vocab_size=len(tok), seed=5)
    rng = random.Random(0)
    # lengths 2..16 tokens: int(0.2 * n) is 0 (the one lowest token is kept), 1, 2 and 3
    texts = [" ".join(rng.choice(words) for _ in range(n)) for n in (2, 5, 16, 3, 11, 7, 12)]
    expected = [min_k_one(token_logprobs_one(model, tok, t)) for t in texts]
    assert min_k_prob(model, tok, texts, batch_size=3, max_length=64) == pytest.approx(expected, abs=1e-5)
    # cut to 4 tokens: the brute force on the first 4 words
    cut = [min_k_one(token_logprobs_one(model, tok, " ".join(t.split()[:4]))) for t in texts]
    assert min_k_prob(model, tok, texts, batch_size=4, max_length=4) == pytest.approx(cut, abs=1e-5)
    # k = 20% of 15 scored tokens is 3: the mean of the three lowest
    lp = sorted(token_logprobs_one(model, tok, texts[2]))
    assert min_k_prob(model, tok, texts[2:3], 1, 64)[0] == pytest.approx(sum(lp[:3]) / 3, abs=1e-5)


def test_batched_greedy_generations_equal_one_prompt_at_a_time(world):
    model, tok = load_base(world / "ckpt")
    prompts = [r["prompt"] for t in ("toy_cyber", "toy_sst2", "toy_arithmetic")
               for r in io.read_jsonl(world / "data" / t / "test.jsonl")[:6]]
    assert len({len(p.split()) for p in prompts}) > 3  # prompts of several lengths: left padding matters
    expected = [greedy_one(model, tok, p, 8) for p in prompts]
    assert evaluate.greedy_generations(model, tok, prompts, 8, batch_size=5) == expected


def test_auc_by_hand_with_ties():
    # pairs (pos, neg): (.9,.5) 1, (.9,.1) 1, (.5,.5) 1/2, (.5,.1) 1, (.3,.5) 0, (.3,.1) 1 -> 4.5 / 6
    assert auc([0.9, 0.5, 0.3], [0.5, 0.1]) == pytest.approx(0.75)
    assert auc([1.0, 2.0], [0.0]) == 1.0 and auc([0.0], [1.0, 2.0]) == 0.0
    assert auc([0.7, 0.7], [0.7, 0.7, 0.7]) == 0.5


def test_mia_is_null_with_a_note_without_held_out_text(tmp_path):
    io.write_jsonl(tmp_path / "train.jsonl", [{"prompt": "", "answer": "", "text": "a b c"}])
    value, note = evaluate.mia(None, None, tmp_path, evaluate.DEFAULTS)
    assert value is None and note == f"no {tmp_path / 'holdout.jsonl'}: no held-out text to tell the forget set from"
    (tmp_path / "holdout.jsonl").write_text("")
    value, note = evaluate.mia(None, None, tmp_path, evaluate.DEFAULTS)
    assert value is None and note == f"{tmp_path / 'holdout.jsonl'} is empty: no held-out text to tell the forget set from"


def test_rouge_l_recall_by_hand():
    # reference "the cat sat on the mat" (6 words); LCS with "the cat lay on a mat": the cat on mat
    assert rouge_l_recall(["the cat sat on the mat"], ["the cat lay on a mat"]) == pytest.approx(4 / 6)
    # case and punctuation do not count; a word absent from the generation scores 0
    assert rouge_l_recall(["Port P445."], ["port p445 is open"]) == 1.0
    assert rouge_l_recall(["perl", "perl"], ["written in perl", "written in c"]) == 0.5
    # recall, not precision: order matters only through the longest common subsequence
    assert rouge_l_recall(["a b c"], ["c b a"]) == pytest.approx(1 / 3)


def test_prob_correct_from_lm_eval_samples_by_hand():
    import math

    samples = [{"target": 0, "filtered_resps": [(0.0, True), (math.log(3), False)]},   # 1 / (1 + 3)
               {"target": 2, "filtered_resps": [(-1.0, False), (-1.0, False), (-1.0, True)]}]  # 1 / 3
    assert evaluate.prob_correct(samples) == pytest.approx((0.25 + 1 / 3) / 2)
    # winogrande-style gold (a string) or several golds: no probability
    assert evaluate.prob_correct([{"target": "x", "filtered_resps": [(0.0, True), (0.0, False)]}]) is None
    assert evaluate.prob_correct([{"target": [0, 1], "filtered_resps": [(0.0, True), (0.0, False)]}]) is None


def test_pair_metrics_by_hand():
    with pytest.raises(ClueError) as e:
        pair_metrics({"a": 0.5, "b": 0.5}, {}, "a", "b", ["toy_ioi"])
    assert str(e.value) == "no accuracy for task(s) toy_ioi"
    acc = {"a": 0.25, "b": 0.75, "g": 0.5, "h": 1.0}
    assert pair_metrics(acc, {"b": 0.6, "g": 0.4, "h": 0.9}, "a", "b", ["g", "h"]) == dict(
        FE=0.75, RU=0.75, GU=0.75, RU_prob=0.6, GU_prob=pytest.approx(0.65))
    # a retain task without a probability; GU_prob over the general tasks that have one; no general
    assert pair_metrics(acc, {"h": 0.9}, "a", "b", ["g", "h"]) == dict(
        FE=0.75, RU=0.75, GU=0.75, RU_prob=None, GU_prob=0.9)
    assert pair_metrics(acc, {"b": 0.6}, "a", "b", []) == dict(FE=0.75, RU=0.75, GU=None, RU_prob=0.6, GU_prob=None)
    # a retain set of several tasks (Figure 3): RU and RU_prob are the means over its tasks
    assert pair_metrics(acc, {"b": 0.6, "g": 0.4}, "a", "b+g", ["h"]) == dict(
        FE=0.75, RU=pytest.approx(0.625), GU=1.0, RU_prob=pytest.approx(0.5), GU_prob=None)
    assert pair_metrics(acc, {"b": 0.6}, "a", "b+g", [])["RU_prob"] is None   # g has no probability


def test_fe_by_form_by_hand():
    from clue.evaluate import fe_by_form

    correct = [1, 0, 1, 1, 1, 0]
    forms = ["question", "cloze", "paraphrase", "question", "cloze", "paraphrase"]
    assert fe_by_form(correct, forms) == {"question": 0.0, "cloze": 0.5, "paraphrase": 0.5}
    with pytest.raises(ClueError, match="5 answers for 6 forget questions"):
        fe_by_form(correct[:5], forms)


def test_a_job_log_holds_each_warning_once_and_no_progress_bars(world, tmp_path):
    """Two checkpoints in one `clue evaluate` process, its stderr a file as in a Snakemake job:
    lm-eval warns about the same things for every checkpoint; the log says each once and has no
    progress-bar frames."""
    import subprocess
    import sys

    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    log = tmp_path / "evaluate.log"
    with open(log, "w") as f:
        done = subprocess.run([sys.executable, "-m", "clue.cli", "evaluate", "--checkpoint", str(world / "ckpt"),
                               str(world / "ckpt"), "--method", "ga", "po", "--forget", "toy_cyber", "--retain",
                               "toy_sst2", "--general", "toy_ioi", "--data-root", str(world / "data"),
                               "--params", json.dumps(EVAL), "--out", *map(str, outs)], stdout=f, stderr=f)
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert done.returncode == 0, lines[-20:]
    assert any(line.startswith("lm-eval WARNING:") for line in lines)
    repeated = {line for line in lines if lines.count(line) > 1 and not line.startswith("{")}
    assert not repeated, repeated
    assert not any("it/s]" in line or "%|" in line for line in lines), lines


def test_choices_the_model_cannot_tell_apart_are_counted_as_tied(tmp_path):
    """Choices that all tokenize to the unknown token get one log-likelihood: the question is
    counted as tied (and lm-eval answers it with the first choice, numpy's argmax)."""
    tokenizer = make_tokenizer(["the", "answer", "is", "red", "blue"])
    records = [{"prompt": "the answer is", "choices": ["A", "B", "C"], "label": 1},   # all <unk>
               {"prompt": "the answer is", "choices": ["red", "blue"], "label": 0},
               {"prompt": "the answer is", "choices": ["X", "Y"], "label": 0}]        # all <unk>
    (tmp_path / "qa").mkdir()
    io.write_jsonl(tmp_path / "qa" / "test.jsonl", records)
    model = make_model(vocab_size=len(tokenizer), seed=2)
    files = evaluate.local_test_files(["qa"], tmp_path)
    r = evaluate.run_lm_eval(model, tokenizer, ["qa"], files, dict(evaluate.DEFAULTS, batch_size=4))
    assert r.tied["qa"] == pytest.approx(2 / 3)
    assert [len(set(ll)) for ll in r.loglikelihoods["qa"]] == [1, 2, 1]
    assert r.correct["qa"][0] == 0 and r.correct["qa"][2] == 1   # the first choice is taken


def test_lm_eval_prints_no_git_lookup_outside_a_checkout(tmp_path, monkeypatch, capfd):
    """lm-eval runs `git describe` for a hash the eval JSON does not keep; outside a git checkout
    git printed "fatal: not a git repository" into every evaluation's log."""
    import subprocess

    outside = tmp_path / "run"
    outside.mkdir()
    probe = subprocess.run(["git", "rev-parse", "--git-dir"], cwd=outside, capture_output=True, text=True)
    assert probe.returncode != 0 and "not a git repository" in probe.stderr   # the setting of the issue
    monkeypatch.chdir(outside)
    tokenizer = make_tokenizer(["the", "answer", "is", "red", "blue"])
    (tmp_path / "qa").mkdir()
    io.write_jsonl(tmp_path / "qa" / "test.jsonl", [{"prompt": "the answer is", "choices": ["red", "blue"], "label": 0}])
    model = make_model(vocab_size=len(tokenizer), seed=2)
    capfd.readouterr()
    evaluate.run_lm_eval(model, tokenizer, ["qa"], evaluate.local_test_files(["qa"], tmp_path),
                         dict(evaluate.DEFAULTS, batch_size=4))
    out, err = capfd.readouterr()
    assert "not a git repository" not in out + err
