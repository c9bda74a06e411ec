"""Edited inputs rerun: the local model directory (or GGUF file) and the data and corpus files a
config names are inputs of the rules that read them, so that after an edit `snakemake -n` plans
the jobs built from the edited file and nothing else (issue 43). Dry runs only: every output is
made to exist, dated after its inputs, as a finished run leaves it; no job runs."""

import os
import re
import shutil
from contextlib import contextmanager

import pytest
from conftest import ROOT, copy_workflow, make_model, make_tokenizer, snakemake

FIX = ROOT / "tests/fixtures/real"
DATA = ["wmdp_cyber.jsonl", "wmdp_cyber_corpus.jsonl", "sst2_train.jsonl", "sst2_validation.csv"]
CONFIG = """\
model:
  name: my-model
  {model}
tasks:
  forget: [wmdp_cyber]
  retain: [sst2]
  general: []
methods: [origin, ga, clue]
data:
  n_test: 10  # the fixtures' 20 WMDP questions: the rest are the train side
  sources:
    wmdp_cyber:
      data_files: {{test: own/data/wmdp_cyber.jsonl}}
      corpus_files: own/data/wmdp_cyber_corpus.jsonl
    sst2:
      data_files: {{train: [own/data/sst2_train.jsonl], validation: own/data/sst2_validation.csv}}
audit:
  relearn_steps: []
"""
FINISHED = 1_700_000_000  # when the outputs were written; every input is older


def planned(wd, *args):
    """The jobs a dry run plans, as {(rule, outputs)}, or an empty set for "Nothing to be done"."""
    text = snakemake(wd, "-n", *args, "--configfile", "own/config.yaml").stdout
    jobs = set()
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", text):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        if rule:
            outputs = re.search(r"^\s+output: (.*)$", block, re.M)
            jobs.add((rule.group(1), outputs.group(1) if outputs else ""))
    return jobs


def finished_run(wd, model):
    """A workflow copy at ``wd`` whose config names a local model (``model``: a save_pretrained
    directory or a GGUF file) and local data, with every output of Table 1 and the audit present
    and newer than every input."""
    copy_workflow(wd)
    own = wd / "own"
    (own / "data").mkdir(parents=True)
    for name in DATA:
        shutil.copy(FIX / name, own / "data" / name)
    if model == "directory":
        make_model().save_pretrained(own / "model")
        make_tokenizer(["a", "b"]).save_pretrained(own / "model")
        # a download's bookkeeping (huggingface-cli download --local-dir), not part of the model
        (own / "model/.cache/huggingface").mkdir(parents=True)
        (own / "model/.cache/huggingface/model.safetensors.metadata").write_text("etag\n")
        line = "pretrained: own/model"
    else:
        (own / "model.gguf").write_bytes(b"GGUF")  # the base stage would convert it; nothing reads it here
        line = "gguf: {path: own/model.gguf}"
    (own / "config.yaml").write_text(CONFIG.format(model=line))
    outputs = [path for _, out in planned(wd) for path in out.split(", ") if path]
    for path in map(wd.joinpath, outputs):
        if path.suffix:  # a file; the outputs without a suffix are directory() outputs
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        else:
            path.mkdir(parents=True, exist_ok=True)
    for root, dirs, files in os.walk(wd / "own"):
        for name in files:
            os.utime(os.path.join(root, name), (FINISHED - 60, FINISHED - 60))
    for path in map(wd.joinpath, outputs):
        os.utime(path, (FINISHED, FINISHED))
    assert planned(wd) == set()  # Nothing to be done: the outputs are up to date
    return wd


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """finished(model): the module's one finished run with that kind of model, made on first use."""
    runs = {}

    def get(model):
        if model not in runs:
            runs[model] = finished_run(tmp_path_factory.mktemp(model), model)
        return runs[model]

    return get


@contextmanager
def edited_file(path, text):
    """``path`` with ``text`` appended, dated after the run finished; dated back on leaving (the
    dry runs have no metadata, so only dates decide), so the run is finished again."""
    with open(path, "a") as f:
        f.write(text)
    os.utime(path, (FINISHED + 60, FINISHED + 60))
    try:
        yield
    finally:
        os.utime(path, (FINISHED - 60, FINISHED - 60))


@pytest.mark.parametrize(
    "edited,task,other",
    [
        ("sst2_validation.csv", "sst2", "wmdp_cyber"),  # a data file of a retain task
        ("sst2_train.jsonl", "sst2", "wmdp_cyber"),  # a file of a split given as a list
        ("wmdp_cyber_corpus.jsonl", "wmdp_cyber", "sst2"),  # a forget set's corpus
    ],
)
def test_an_edited_data_file_reruns_its_task_and_what_is_built_from_it(finished, edited, task, other):
    wd = finished("directory")
    with edited_file(wd / "own/data" / edited, "\n"):
        jobs = planned(wd)
    # exactly the jobs downstream of the task's data directory, as Snakemake's own --forcerun of
    # that directory plans them on the unedited run
    assert jobs == planned(wd, "--forcerun", f"results/my-model/data/{task}")
    rules = {rule for rule, _ in jobs}
    assert ("data", f"results/my-model/data/{task}") in jobs
    assert ("data", f"results/my-model/data/{other}") not in jobs and "base_model" not in rules
    # the edited task's circuits (both interventions) are found again, the other task's are not
    circuits = {out for rule, out in jobs if rule == "circuit"}
    assert len(circuits) == 2 and all(f"/circuits/{task}/" in out for out in circuits)
    assert {"unlearn", "evaluate", "table1"} <= rules


@pytest.mark.parametrize(
    "model,edited",
    [("directory", "model/model.safetensors"), ("directory", "model/tokenizer.json"), ("gguf", "model.gguf")],
)
def test_an_edited_model_file_reruns_the_base_stage_and_everything_after_it(finished, model, edited):
    wd = finished(model)
    with edited_file(wd / "own" / edited, " "):
        jobs = planned(wd)
    assert jobs == planned(wd, "--forcerun", "results/my-model/base")
    rules = {rule for rule, _ in jobs}
    assert ("base_model", "results/my-model/base") in jobs and "data" not in rules
    assert len({out for rule, out in jobs if rule == "circuit"}) == 4  # both tasks' circuits again
    assert {"unlearn", "evaluate", "evaluate_base", "table1"} <= rules


def test_a_model_download_bookkeeping_edit_reruns_nothing(finished):
    """The hidden .cache of a `--local-dir` download changes when the download is repeated; the
    model does not, and hours of circuits and training must not rerun for it."""
    wd = finished("directory")
    with edited_file(wd / "own/model/.cache/huggingface/model.safetensors.metadata", "etag2\n"):
        assert planned(wd) == set()
