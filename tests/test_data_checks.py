"""A user's own data checked before any job (issue 43): a missing field, a bad label, too few rows
and repeated rows of a local data file are named by file and line (counted from 1) when the
Snakefile checks the config (clue.config.check_data_files); the answers of every task are checked
against the model's tokenizer before any circuit or training step (clue.data.check_choice_tokens,
check_pair_tokens); and ``clue-snakemake`` names a target written after --configfile in one line."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from clue.config import check_data_files, config_problem
from clue.data import build_task, check_context, check_pair_tokens
from clue.errors import ClueError

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = str(ROOT / "workflow/schemas/config.schema.yaml")
FIX = ROOT / "tests/fixtures/real"
COUNTS = dict(n_test=8, n_validation=2, n_pairs=4, n_validation_pairs=2, n_heldout_pairs=2)


def jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def fixture_rows(name):
    return [json.loads(line) for line in (FIX / name).read_text().splitlines() if line.strip()]


def make_config(sst2_train=None, sst2_validation=None, wmdp=None, **data):
    """The README's "Your own model and data" config on the fixture files (``None``: the fixture)."""
    config = {
        "model": {"name": "zephyr-7b-beta"},
        "tasks": {"forget": ["wmdp_cyber"], "retain": ["sst2"], "general": []},
        "data": {**COUNTS, **data, "sources": {
            "wmdp_cyber": {"data_files": {"test": str(wmdp or FIX / "wmdp_cyber.jsonl")},
                           "corpus_files": str(FIX / "wmdp_cyber_corpus.jsonl")},
            "sst2": {"data_files": {"train": str(sst2_train or FIX / "sst2_train.jsonl"),
                                    "validation": str(sst2_validation or FIX / "sst2_validation.csv")}}}},
    }
    validate(config, SCHEMA)
    return config


def test_the_fixture_config_passes():
    assert config_problem(make_config()) is None


def test_a_missing_field_names_file_and_line_counted_from_one(tmp_path):
    rows = fixture_rows("sst2_train.jsonl")
    del rows[17]["label"]          # the 18th record: line 18 of the file
    train = jsonl(tmp_path / "train.jsonl", rows)
    problem = config_problem(make_config(sst2_train=train))
    assert problem == (f"data.sources.sst2: {train} line 18: no field 'label' (task sst2 needs sentence, label; "
                       "the record has sentence, idx)")


def test_a_bad_label_in_a_csv_names_its_line_past_a_quoted_line_break(tmp_path):
    lines = (FIX / "sst2_validation.csv").read_text().splitlines()
    lines[2] = '"a film that, line\nafter line, bores",0,1'    # one record over two lines of the file
    lines[5] = '"a bad label on a record\nof two lines",pos,5'
    text = "\n".join(lines) + "\n"
    bad = tmp_path / "validation.csv"
    bad.write_text(text)
    line = text[:text.index('"a bad label')].count("\n") + 1     # where the bad record starts, by hand
    assert line == 7
    problem = config_problem(make_config(sst2_validation=bad))
    assert problem == f"data.sources.sst2: {bad} line {line}: field 'label' is 'pos', expected one of [0, 1]"


def test_a_bad_answer_in_a_json_array_names_the_line_its_record_starts_on(tmp_path):
    rows = fixture_rows("wmdp_cyber.jsonl")
    rows[3]["answer"] = 7
    text = json.dumps(rows, indent=2)
    bad = tmp_path / "wmdp.json"
    bad.write_text(text)
    start = text.index('"answer": 7')
    line = text[:text.rindex("{", 0, start)].count("\n") + 1
    problem = config_problem(make_config(wmdp=bad))
    assert problem == f"data.sources.wmdp_cyber: {bad} line {line}: field 'answer' is 7, expected one of [0, 1, 2, 3]"


def test_a_line_that_is_not_json_and_a_file_that_is_not_text_are_named(tmp_path):
    lines = (FIX / "sst2_train.jsonl").read_text().splitlines()
    lines[2] = lines[2][:-1]      # the closing brace lost
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(lines) + "\n")
    problem = config_problem(make_config(sst2_train=train))
    assert problem.startswith(f"data.sources.sst2: {train} line 3: not a JSON record (")
    train.write_bytes(b"\xff\xfe\x00binary")
    problem = config_problem(make_config(sst2_train=train))
    assert problem.startswith(f"data.sources.sst2: {train}: could not read data for task sst2: UnicodeDecodeError")


def test_too_few_rows_for_n_test_names_the_value_that_fits(tmp_path):
    # the user: 20 questions (the fixture), data.n_test at its default of 200
    config = make_config(n_test=200)
    problem = config_problem(config)
    wmdp = FIX / "wmdp_cyber.jsonl"
    assert problem == (f"data.sources.wmdp_cyber: {wmdp}: 20 usable questions, of which data.n_test takes 20 "
                       "for test, leaving 0 for the train side; validation questions and circuit pairs need 5 at "
                       "least: set data.n_test to 15 or less, or add rows")
    # the advice holds: 15 passes, 16 does not
    assert config_problem(make_config(n_test=15)) is None
    assert "leaving 4 for the train side" in config_problem(make_config(n_test=16))


def test_too_few_train_rows_for_the_circuit_pairs(tmp_path):
    rows = fixture_rows("sst2_train.jsonl")
    four = [r for r in rows if r["label"] == 0][:2] + [r for r in rows if r["label"] == 1][:2]
    train = jsonl(tmp_path / "train.jsonl", four)
    # one of the four becomes the validation question; the other three (both labels) give a pair each
    problem = config_problem(make_config(sst2_train=train))
    assert problem == (f"data.sources.sst2: {train}: the train side gives 3 circuit pair(s); validation and "
                       "held-out pairs take a quarter of them each, so the circuit stage needs 4 at least: add "
                       "train-side rows (with both labels)")


def test_a_repeated_row_is_kept_once_with_a_warning_naming_the_lines(tmp_path, capsys):
    """The issue's crash: a repeated sentence gave two circuit pairs with one clean prompt, which
    landed in two pair sets ("1 clean prompt(s) in both pairs and validation_pairs", with these
    counts and without the deduplication)."""
    rows = fixture_rows("sst2_train.jsonl")
    train = jsonl(tmp_path / "train.jsonl", rows + [rows[7]])
    config = make_config(sst2_train=train, n_pairs=16, n_validation_pairs=4, n_heldout_pairs=4)
    assert config_problem(config) is None
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"warning: task sst2: 1 repeated question(s) dropped, the first of each kept: {train} line "
                   f"{len(rows) + 1} repeats line 8; remove the repeated rows"]
    from clue.config import data_params

    splits = build_task("sst2", data_params(config, "sst2"), warn=lambda m: None)
    train_prompts = [r["prompt"] for r in splits["train"]]
    assert len(train_prompts) == len(set(train_prompts)) == len(rows) - len(splits["validation"])
    sets = [{p["clean"] for p in splits[k]} for k in ("pairs", "validation_pairs", "heldout_pairs")]
    assert all(s for s in sets) and sum(map(len, sets)) == len(set.union(*sets))


def test_every_row_repeated_is_counted_once(tmp_path):
    rows = fixture_rows("sst2_train.jsonl")
    train = jsonl(tmp_path / "train.jsonl", rows + rows)
    warnings = []
    check_data_files(make_config(sst2_train=train), warn=warnings.append)
    assert warnings == [f"task sst2: {len(rows)} repeated question(s) dropped, the first of each kept: {train} "
                        f"line {len(rows) + 1} repeats line 1; remove the repeated rows"]


def test_a_repeat_with_another_label_is_counted_in_the_warning(tmp_path):
    rows = fixture_rows("sst2_train.jsonl")
    flipped = dict(rows[4], label=1 - rows[4]["label"])
    train = jsonl(tmp_path / "train.jsonl", rows + [flipped])
    warnings = []
    check_data_files(make_config(sst2_train=train), warn=warnings.append)
    assert warnings == [f"task sst2: 1 repeated question(s) dropped, the first of each kept: {train} line "
                        f"{len(rows) + 1} repeats line 5 (1 with another answer); remove the repeated rows"]


def test_the_data_stage_counts_hub_rows_from_one(tmp_path):
    """A source the check before any job cannot read (the hub) is named by row, counted from 1,
    by the data job: the rows come through ``datasets`` there."""
    rows = fixture_rows("sst2_train.jsonl")
    rows[17]["label"] = 5
    train = jsonl(tmp_path / "train.jsonl", rows)
    from clue.tasks.real import load_real_task

    with pytest.raises(ClueError) as e:
        load_real_task("sst2", {"data_files": {"train": str(train), "validation": str(FIX / "sst2_validation.csv")},
                                "cache_dir": str(tmp_path / "cache")}, 0, None, None, 4)
    assert str(e.value) == f"{train}: row 18: field 'label' is 5, expected one of [0, 1]"


def test_snakemake_stops_before_any_job_in_one_line(tmp_path):
    from conftest import copy_workflow

    wd = copy_workflow(tmp_path / "wf")
    rows = fixture_rows("sst2_train.jsonl")
    del rows[17]["label"]
    train = jsonl(tmp_path / "train.jsonl", rows)
    config = make_config(sst2_train=train)
    (wd / "my.yaml").write_text(yaml.safe_dump({"model": config["model"], "tasks": config["tasks"],
                                                "data": {**COUNTS, "sources": config["data"]["sources"]}}))
    out = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", "my.yaml"],
                         cwd=wd, capture_output=True, text=True)
    lines = [line for line in (out.stdout + out.stderr).splitlines()
             if line.strip() and not line.startswith("Using workflow specific profile")]
    assert out.returncode != 0
    assert lines == [f"config error: data.sources.sst2: {train} line 18: no field 'label' (task sst2 needs "
                     "sentence, label; the record has sentence, idx)"]
    assert not (wd / "results").exists() and not (wd / "logs").exists()


# ---------------------------------------------------------------------------------------------
# Answers against the model's tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    """A word-level tokenizer that knows A and C but not B and D (the issue's: B and D were <unk>)."""
    from clue.base_model import build_tokenizer

    return build_tokenizer(["Question : A C Paris New York Delhi"])


def test_a_choice_that_starts_with_unk_names_the_task_line_choices_and_tokens(tokenizer, tmp_path):
    jsonl(tmp_path / "test.jsonl", [{"prompt": "Question :", "choices": ["A", "C"], "label": 0},
                                    {"prompt": "Question :", "choices": ["A", "B", "C", "D"], "label": 3}])
    with pytest.raises(ClueError) as e:
        check_context(tokenizer, 512, tmp_path, "wmdp_cyber", "results/m/base")
    assert str(e.value) == (
        f"task wmdp_cyber: {tmp_path / 'test.jsonl'} line 2: 'B' starts with the unknown token '<unk>' with the "
        "tokenizer of results/m/base ('A' -> ['A'], 'B' -> ['<unk>'], 'C' -> ['C'], 'D' -> ['<unk>']); the model "
        "cannot score this question: use a model whose tokenizer has the task's answers, or other choices")


def test_choices_that_encode_alike_are_refused(tokenizer, tmp_path):
    jsonl(tmp_path / "validation.jsonl", [{"prompt": "Question :", "choices": ["Paris Lyon", "Paris Nice"],
                                          "label": 0}])
    with pytest.raises(ClueError) as e:
        check_context(tokenizer, 512, tmp_path, "world_capitals", "results/m/base")
    assert str(e.value).startswith(
        f"task world_capitals: {tmp_path / 'validation.jsonl'} line 1: 'Paris Lyon' and 'Paris Nice' encode to the "
        "same tokens with the tokenizer of results/m/base ('Paris Lyon' -> ['Paris', '<unk>'], 'Paris Nice' -> "
        "['Paris', '<unk>'])")


def test_choices_the_tokenizer_knows_pass(tokenizer, tmp_path):
    jsonl(tmp_path / "test.jsonl", [{"prompt": "Question :", "choices": ["A", "C", "New York"], "label": 0}])
    check_context(tokenizer, 512, tmp_path, "ok", "results/m/base")


@pytest.mark.parametrize("clean, corrupted, problem, shown", [
    ("D", "B", "an answer starts with the unknown token '<unk>'", "'D' -> ['<unk>'], 'B' -> ['<unk>']"),
    ("New York", "New Delhi", "the clean and corrupted answers start with the same token",
     "'New York' -> ['New', 'York'], 'New Delhi' -> ['New', 'Delhi']"),
])
def test_the_circuit_stage_names_pair_answers_and_tokens(tokenizer, tmp_path, clean, corrupted, problem, shown):
    """The issue's pair: 'D' and 'B', both <unk>, used to read "the same clean and corrupted answer ('D')"."""
    from clue.circuits.discover import load_pairs

    path = jsonl(tmp_path / "pairs.jsonl", [
        {"clean": "Question : A", "corrupted": "Question : C", "clean_answer": "A", "corrupted_answer": "C"},
        {"clean": "Question : A", "corrupted": "Question : C", "clean_answer": clean, "corrupted_answer": corrupted}])
    with pytest.raises(ClueError) as e:
        load_pairs(tmp_path, "wmdp_cyber", tokenizer, 64)
    assert str(e.value) == (f"task wmdp_cyber: {path} line 2: {problem} with the tokenizer of "
                            f"{tokenizer.name_or_path} ({shown}); a corruption must change the answer's first "
                            "token: use a model whose tokenizer has the task's answers")


def test_pairs_with_distinct_first_tokens_pass(tokenizer, tmp_path):
    records = [{"clean_answer": "New York", "corrupted_answer": "Paris"},
               {"clean_answer": "A", "corrupted_answer": "C"}]
    check_pair_tokens(tokenizer, tmp_path / "pairs.jsonl", "t", records)


# ---------------------------------------------------------------------------------------------
# clue-snakemake: a target written after --configfile


def test_a_target_after_configfile_is_named_in_one_line(capsys):
    from clue.launch import main

    called = []
    assert main(["--cores", "all", "--configfile", "my.yaml", "results/x/table1.csv"], run=called.append) == 2
    assert not called
    assert capsys.readouterr().err.splitlines() == [
        "clue-snakemake: results/x/table1.csv was read as a config file; put the target before --configfile: "
        "clue-snakemake --cores all results/x/table1.csv --configfile my.yaml"]


@pytest.mark.parametrize("argv", [
    ["--cores", "all", "results/x/table1.csv", "--configfile", "my.yaml"],
    ["--configfile", "my.yaml", "more.yaml", "-n"],            # two config files merge
    ["--configfile=my.yaml", "results/x/table1.csv"],          # '=' takes one file: the rest are targets
    ["-n", "--configfile", "my.yaml", "--report", "report.html"],
])
def test_every_other_command_line_goes_to_snakemake_unchanged(argv, capsys):
    from clue.launch import main

    called = []
    main(argv, run=called.append)
    assert called == [argv] and capsys.readouterr().err == ""


def test_the_wrapper_is_a_console_script():
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, func = scripts["clue-snakemake"].partition(":")
    import importlib

    assert getattr(importlib.import_module(module), func).__module__ == "clue.launch"


def test_plain_snakemake_reads_a_target_after_configfile_as_a_config_file(tmp_path):
    """Why a wrapper: snakemake loads config files before the Snakefile runs, so no check in the
    Snakefile sees the mistake (if a snakemake release stops doing so, this test says the wrapper
    can go)."""
    (tmp_path / "my.yaml").write_text("run_name: x\n")
    out = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-s", str(ROOT / "Snakefile"), "--directory",
                          str(tmp_path), "--configfile", "my.yaml", "results/x/table1.csv"], cwd=tmp_path,
                         capture_output=True, text=True)
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "FileNotFoundError" in text and "results/x/table1.csv" in text
    assert "config error" not in text   # the Snakefile never ran


def test_the_check_reads_every_file_type_as_the_data_stage_does(tmp_path):
    """The check before any job reads local files without ``datasets`` (read_local_rows); the data
    stage reads them with it (_load_rows). Both must see the same rows with the same values, or the
    check passes data the stage refuses (or the reverse): a CSV's "0" is the number 0 for both, an
    empty CSV field null, a quoted line break stays in its field. A JSON object of columns, which
    datasets reads as one row, is refused with the fix."""
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    from clue.tasks.real import _load_rows, read_local_rows

    rows = [{"sentence": 'a "quoted", comma', "label": 0, "note": "x"},
            {"sentence": "a line\nbreak", "label": 1, "note": None},
            {"sentence": "ünïcödé", "label": 1, "note": "y"}]
    fields = ["sentence", "label", "note"]
    files = {"rows.jsonl": lambda p: jsonl(p, rows), "rows.json": lambda p: p.write_text(json.dumps(rows, indent=2)),
             "rows.parquet": lambda p: pq.write_table(pa.Table.from_pylist(rows), p)}

    def write_csv(p):
        with open(p, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            for r in rows:
                w.writerow({k: "" if v is None else v for k, v in r.items()})
            f.write("\n")      # a blank line at the end is no row for either
    files["rows.csv"] = write_csv
    for name, write in files.items():
        path = tmp_path / name
        write(path)
        checked = read_local_rows(None, None, "train", str(path), fields, "t")[0]
        loaded = _load_rows(None, None, "train", str(path), fields, "t", str(tmp_path / "cache"))[0]
        assert checked == loaded == rows, name
    text = tmp_path / "rows.txt"
    text.write_text("first line\nsecond, line\n")
    assert (read_local_rows(None, None, "train", str(text), ["text"], "t")[0]
            == _load_rows(None, None, "train", str(text), ["text"], "t", str(tmp_path / "cache"))[0]
            == [{"text": "first line"}, {"text": "second, line"}])
    columns = tmp_path / "columns.json"
    columns.write_text(json.dumps({k: [r[k] for r in rows] for k in fields}))
    assert len(_load_rows(None, None, "train", str(columns), fields, "t", str(tmp_path / "cache"))[0]) == 1
    with pytest.raises(ClueError) as e:
        read_local_rows(None, None, "train", str(columns), fields, "t")
    assert str(e.value) == (f"{columns}: one JSON object of columns (sentence, label, note), which the data stage "
                            "reads as a single row; write one record per line (JSON lines) or an array of records")
