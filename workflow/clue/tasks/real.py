"""Real tasks (WMDP Cyber/Bio, PKU-SafeRLHF, SST-2, RTE, Winogrande, BIG-bench
boolean_expressions), loaded with ``datasets.load_dataset`` from the hub or from local files and
mapped onto the records of docs/formats.md (``data`` stage).

Every source goes through ``datasets.load_dataset``, local files included (builder ``json``,
``csv``, ``parquet`` or ``text`` by extension), so a cluster run from the hub and an offline run
from fixture files share one code path.

Prompt templates (accuracy = argmax log-likelihood of ``" " + choice`` after the prompt, which is
lm-eval's ``target_delimiter``):

- wmdp_*: lm-eval's wmdp template: ``"The following are multiple choice questions (with answers)
  about {cybersecurity|biology}.\\n\\n{question}\\nA. {c0}\\nB. {c1}\\nC. {c2}\\nD. {c3}\\nAnswer:"``,
  choices ``["A", "B", "C", "D"]``. Training records (no corpus): ``"Question: {question}\\nAnswer:"``
  + the correct choice's text, so the model learns the fact rather than a letter.
- pku_saferlhf (no lm-eval task): ``"Question: {prompt}\\nAnswer:"``, choices
  ``[response_0, response_1]``, label = the unsafe one; training answer = the unsafe response.
- sst2 (lm-eval glue sst2): ``"{sentence}\\nQuestion: Is this sentence positive or negative?\\nAnswer:"``,
  choices ``["negative", "positive"]``.
- rte (lm-eval glue rte): ``"{sentence1}\\nQuestion: {sentence2} True or False?\\nAnswer:"``,
  choices ``["True", "False"]`` (GLUE label 0 = entailment = "True").
- winogrande: lm-eval scores winogrande by partial evaluation (a different context per option),
  which the single-prompt format cannot express, so the blank is asked about instead:
  ``"{sentence}\\nQuestion: In the sentence above, does _ refer to {option1} or {option2}?\\nAnswer:"``,
  choices ``[option1, option2]``, label ``int(answer) - 1``.
- bool (lm-eval bbh_zeroshot_boolean_expressions): ``"Q: {input}\\nA:"``, choices ``["False", "True"]``.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from clue.errors import ClueError

# Used when a task has one labelled split only (WMDP, BBH) and no ``n_test`` is given.
TEST_FRACTION = 0.2
# At most this many corpus lines are held out of training as the MIA's non-members.
HOLDOUT_MAX = 200

REFUSALS = (
    "I'm sorry, I can't help with that.",
    "I cannot assist with that request.",
    "Sorry, but I won't provide that information.",
    "I'm not able to help with this.",
)

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_WMDP_HEADER = "The following are multiple choice questions (with answers) about {}.\n\n"
_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text"}


@dataclass
class Example:
    """One labelled multiple-choice item; ``row`` keeps the raw fields for corruption, ``at`` where
    the row is ("f.jsonl line 18", or "hub-id (split train): row 18"; counted from 1)."""
    prompt: str
    choices: list
    label: int
    row: dict
    at: str = ""

    @property
    def answer(self):
        return self.choices[self.label]


@dataclass(frozen=True)
class RealTaskSpec:
    name: str
    role: str                # "forget" or "retain"
    path: str                # default hub id
    config: str | None       # default HF config name (used only with the default path)
    split_train: str
    split_test: str
    fields: tuple            # fields every dataset row must have
    to_example: Callable     # (row, at) -> Example | None (None: row skipped); at: "f.jsonl line 18"
    lm_eval_task: str | None  # the standard lm-eval task, where one exists


# --------------------------------------------------------------------------- value checks

def _int_field(row, field, at, allowed):
    v = row[field]
    iv = None
    if isinstance(v, int) and not isinstance(v, bool):
        iv = v
    elif isinstance(v, str) and v.strip().lstrip("-").isdigit():
        iv = int(v)  # Winogrande's answer is "1"/"2"
    if iv not in allowed:
        raise ClueError(f"{at}: field '{field}' is {v!r}, expected one of {sorted(allowed)}")
    return iv


def _bool_field(row, field, at):
    v = row[field]
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("true", "false"):
        return v.strip().lower() == "true"
    raise ClueError(f"{at}: field '{field}' is {v!r}, expected true or false")


def _str_field(row, field, at):
    v = row[field]
    if not isinstance(v, str) or not v.strip():
        raise ClueError(f"{at}: field '{field}' is {v!r}, expected a non-empty string")
    return v.strip()


# --------------------------------------------------------------------------- row -> Example

def _wmdp_prompt(subject, question, choices):
    lines = [question] + [f"{_LETTERS[k]}. {c}" for k, c in enumerate(choices)]
    return _WMDP_HEADER.format(subject) + "\n".join(lines) + "\nAnswer:"


def _wmdp(subject):
    def to_example(row, at):
        q = _str_field(row, "question", at)
        choices = row["choices"]
        if not isinstance(choices, list) or not 2 <= len(choices) <= len(_LETTERS):
            raise ClueError(f"{at}: field 'choices' is {choices!r}, expected a list of answers")
        choices = [str(c).strip() for c in choices]
        label = _int_field(row, "answer", at, set(range(len(choices))))
        return Example(_wmdp_prompt(subject, q, choices), list(_LETTERS[: len(choices)]), label,
                       {"subject": subject, "question": q, "choices": choices})
    return to_example


def _pku(row, at):
    p = _str_field(row, "prompt", at)
    responses = [_str_field(row, f"response_{k}", at) for k in (0, 1)]
    safe = [_bool_field(row, f"is_response_{k}_safe", at) for k in (0, 1)]
    if safe[0] == safe[1] or responses[0] == responses[1]:
        return None  # no single unsafe answer to forget
    return Example(f"Question: {p}\nAnswer:", responses, safe.index(False), {})


def _sst2(row, at):
    s = _str_field(row, "sentence", at)
    label = _int_field(row, "label", at, {0, 1})
    return Example(f"{s}\nQuestion: Is this sentence positive or negative?\nAnswer:",
                   ["negative", "positive"], label, {})


def _rte(row, at):
    s1 = _str_field(row, "sentence1", at)
    s2 = _str_field(row, "sentence2", at)
    label = _int_field(row, "label", at, {0, 1})
    return Example(f"{s1}\nQuestion: {s2} True or False?\nAnswer:", ["True", "False"], label, {})


def _winogrande(row, at):
    s = _str_field(row, "sentence", at)
    o1 = _str_field(row, "option1", at)
    o2 = _str_field(row, "option2", at)
    label = _int_field(row, "answer", at, {1, 2}) - 1
    if o1 == o2:
        return None
    prompt = f"{s}\nQuestion: In the sentence above, does _ refer to {o1} or {o2}?\nAnswer:"
    return Example(prompt, [o1, o2], label, {})


def _bool(row, at):
    expr = _str_field(row, "input", at)
    target = _str_field(row, "target", at)
    if target not in ("True", "False"):
        raise ClueError(f"{at}: field 'target' is {target!r}, expected 'True' or 'False'")
    try:
        value = eval_bool_expression(expr)
    except ValueError as e:
        raise ClueError(f"{at}: field 'input' is not a boolean expression ({e})") from None
    if str(value) != target:
        raise ClueError(f"{at}: field 'target' is {target} but {expr!r} evaluates to {value}")
    return Example(f"Q: {expr}\nA:", ["False", "True"], int(value), {"input": expr})


# --------------------------------------------------------------------------- boolean expressions

_BOOL_TOKEN = re.compile(r"\(|\)|[A-Za-z]+")


def _bool_tokens(expr):
    """Tokens of a BBH boolean expression; the trailing "is" of the BBH inputs is dropped."""
    rest = _BOOL_TOKEN.sub("", expr)
    if rest.strip():
        raise ValueError(f"unexpected characters {rest.strip()!r}")
    toks = [m for m in _BOOL_TOKEN.finditer(expr)]
    if toks and toks[-1].group() == "is":
        toks = toks[:-1]
    return toks


def eval_bool_expression(expr: str) -> bool:
    """Evaluate ``True``/``False``/``not``/``and``/``or``/parentheses with Python's precedence
    (not > and > or), by recursive descent: no ``eval`` on dataset text."""
    toks = [m.group() for m in _bool_tokens(expr)]
    pos = 0

    def peek():
        return toks[pos] if pos < len(toks) else None

    def take(expected=None):
        nonlocal pos
        t = peek()
        if t is None or (expected is not None and t != expected):
            raise ValueError(f"expected {expected or 'a term'} at token {pos}, got {t!r}")
        pos += 1
        return t

    def or_expr():
        v = and_expr()
        while peek() == "or":
            take()
            rhs = and_expr()  # evaluate both sides so every token is parsed
            v = v or rhs
        return v

    def and_expr():
        v = not_expr()
        while peek() == "and":
            take()
            rhs = not_expr()
            v = v and rhs
        return v

    def not_expr():
        if peek() == "not":
            take()
            return not not_expr()
        t = take()
        if t == "True":
            return True
        if t == "False":
            return False
        if t == "(":
            v = or_expr()
            take(")")
            return v
        raise ValueError(f"unexpected token {t!r} at {pos - 1}")

    value = or_expr()
    if pos != len(toks):
        raise ValueError(f"unexpected token {toks[pos]!r} at {pos}")
    return value


def flip_literal(expr: str, index: int) -> str:
    """``expr`` with its ``index``-th True/False literal negated, formatting kept."""
    lits = [m for m in _bool_tokens(expr) if m.group() in ("True", "False")]
    m = lits[index]
    new = "False" if m.group() == "True" else "True"
    return expr[: m.start()] + new + expr[m.end():]


def _bool_literal_count(expr):
    return sum(m.group() in ("True", "False") for m in _bool_tokens(expr))


# --------------------------------------------------------------------------- registry

REAL_TASKS: dict[str, RealTaskSpec] = {
    "wmdp_cyber": RealTaskSpec("wmdp_cyber", "forget", "cais/wmdp", "wmdp-cyber", "test", "test",
                               ("question", "choices", "answer"), _wmdp("cybersecurity"), "wmdp_cyber"),
    "wmdp_bio": RealTaskSpec("wmdp_bio", "forget", "cais/wmdp", "wmdp-bio", "test", "test",
                             ("question", "choices", "answer"), _wmdp("biology"), "wmdp_bio"),
    "pku_saferlhf": RealTaskSpec("pku_saferlhf", "forget", "PKU-Alignment/PKU-SafeRLHF", None, "train", "test",
                                 ("prompt", "response_0", "response_1", "is_response_0_safe",
                                  "is_response_1_safe"), _pku, None),
    "sst2": RealTaskSpec("sst2", "retain", "nyu-mll/glue", "sst2", "train", "validation",
                         ("sentence", "label"), _sst2, "sst2"),
    "rte": RealTaskSpec("rte", "retain", "nyu-mll/glue", "rte", "train", "validation",
                        ("sentence1", "sentence2", "label"), _rte, "rte"),
    "winogrande": RealTaskSpec("winogrande", "retain", "allenai/winogrande", "winogrande_xl", "train",
                               "validation", ("sentence", "option1", "option2", "answer"), _winogrande,
                               "winogrande"),
    "bool": RealTaskSpec("bool", "retain", "lukaemon/bbh", "boolean_expressions", "test", "test",
                         ("input", "target"), _bool, "bbh_zeroshot_boolean_expressions"),
}


# --------------------------------------------------------------------------- loading

def _files(value):
    return [str(value)] if isinstance(value, (str, Path)) else [str(v) for v in value]


def _checked_files(files, split, task):
    """The local files of a split as a list, and their one extension; ClueError naming the file."""
    files = _files(files)
    for f in files:
        if not Path(f).is_file():
            raise ClueError(f"{f}: file not found (data for task {task}, split {split})")
    exts = {Path(f).suffix.lower() for f in files}
    if len(exts) != 1 or next(iter(exts)) not in _BUILDERS:
        raise ClueError(f"{', '.join(files)}: unsupported file type for task {task}; use one of {sorted(_BUILDERS)}")
    return files, exts.pop()


def _load_rows(path, name, split, files, fields, task, cache_dir):
    """Rows of one split as dicts (only ``fields``), a description of where they came from, and
    where each row is (None: "{where}: row N", counted from 1)."""
    import datasets  # heavy; imported only when a real task is loaded

    if files is not None:
        files, ext = _checked_files(files, split, task)
        where = ", ".join(files)
        args = dict(path=_BUILDERS[ext], data_files={split: files})
    else:
        where = f"{path} (config {name}, split {split})" if name else f"{path} (split {split})"
        args = dict(path=path, name=name)
    try:
        ds = datasets.load_dataset(**args, split=split, cache_dir=cache_dir)
    except Exception as e:  # hub/offline/parse failures become one user-facing message
        raise ClueError(f"{where}: could not load data for task {task}: {type(e).__name__}: {e}") from None
    for field in fields:
        if field not in ds.column_names:
            raise ClueError(f"{where}: missing field '{field}' required by task {task} "
                            f"(fields present: {', '.join(ds.column_names)})")
    return ds.select_columns(list(fields)).to_list(), where, None


class NotLocal(Exception):
    """A split that comes from the hub: the check before any job (read_local_rows) cannot read it."""


def _records(path, ext):
    """(where, record) of one local file, read as the data stage's ``datasets`` builder reads it
    (json: JSON lines, or one array of records; csv: a header line, values as pandas reads them;
    txt: a ``text`` per line; parquet: rows), ``where`` being "path line N" (or "row N" in a
    parquet file), counted from 1."""
    if ext == ".parquet":
        import pyarrow.parquet as pq   # installed with datasets

        for n, row in enumerate(pq.read_table(path).to_pylist(), 1):
            yield f"{path} row {n}", row
        return
    if ext == ".csv":
        yield from _csv_records(path)
        return
    with open(path, encoding="utf-8") as f:
        if ext == ".txt":
            for n, line in enumerate(f, 1):
                yield f"{path} line {n}", {"text": line.rstrip("\n")}
            return
        text = f.read()
    try:
        whole = json.loads(text)
    except ValueError:
        whole = None
    if isinstance(whole, list):     # one JSON array: each element's line is where it starts
        decoder, pos, line = json.JSONDecoder(), text.index("[") + 1, 1
        counted = 0
        while True:
            while pos < len(text) and text[pos] in " \t\r\n,":
                pos += 1
            if text[pos] == "]":
                return
            line += text.count("\n", counted, pos)
            counted = pos
            record, pos = decoder.raw_decode(text, pos)
            yield f"{path} line {line}", record
    if isinstance(whole, dict) and whole and all(isinstance(v, list) for v in whole.values()):
        # datasets' json builder reads one object as one row, its columns as lists
        raise ClueError(f"{path}: one JSON object of columns ({', '.join(whole)}), which the data stage "
                        "reads as a single row; write one record per line (JSON lines) or an array of records")
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                record = json.loads(line)
            except ValueError as e:
                raise ClueError(f"{path} line {n}: not a JSON record ({e})") from None
            yield f"{path} line {n}", record


def _csv_records(path):
    """A CSV file's rows with the values pandas gives them (datasets' csv builder reads through
    pandas: "0" is the number 0, an empty field null), each at the line where it starts (a quoted
    field may span lines; blank lines are no row)."""
    import csv
    import math

    import pandas

    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        next(reader, None)
        starts, last = [], reader.line_num
        for row in reader:
            start, last = last + 1, reader.line_num
            if row:
                starts.append(start)
    records = pandas.read_csv(path).to_dict("records")
    for n, record in enumerate(records):
        record = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in record.items()}
        yield (f"{path} line {starts[n]}" if len(starts) == len(records) else f"{path} row {n + 1}"), record


def _read_records(path, ext, task):
    """_records, any failure to read the file (not UTF-8, a broken CSV quote, not parquet) as one
    ClueError naming it, as ``_load_rows`` names what ``datasets`` could not load."""
    try:
        yield from _records(path, ext)
    except ClueError:
        raise
    except Exception as e:
        raise ClueError(f"{path}: could not read data for task {task}: {type(e).__name__}: {e}") from None


def read_local_rows(path, name, split, files, fields, task, cache_dir=None):
    """``_load_rows`` for local files without ``datasets``, each row with its file and line: the
    check before any job (clue.config.check_data_files) reads a task's files with it and names a
    row without a required field by its line. NotLocal for a split that comes from the hub."""
    if files is None:
        raise NotLocal(f"{path} (split {split})")
    files, ext = _checked_files(files, split, task)
    rows, ats = [], []
    for f in files:
        for at, record in _read_records(f, ext, task):
            if not isinstance(record, dict):
                raise ClueError(f"{at}: expected a record with the fields {', '.join(fields)}, got {record!r:.80}")
            missing = [k for k in fields if k not in record]
            if missing:
                raise ClueError(f"{at}: no field '{missing[0]}' (task {task} needs {', '.join(fields)}; "
                                f"the record has {', '.join(record) or 'none'})")
            rows.append({k: record[k] for k in fields})
            ats.append(at)
    return rows, ", ".join(files), ats


def _warn(message):
    print(f"warning: {message}", file=sys.stderr)


def _short(at, first):
    """``first`` without its file when ``at`` is in the same file: "line 5"."""
    file, _, pos = first.rpartition(" ")
    file, _, kind = file.rpartition(" ")
    return f"{kind} {pos}" if at.startswith(f"{file} {kind} ") else first


def unique_examples(task, examples, what, warn):
    """The first of each prompt: a repeated row would give two circuit pairs with one clean prompt,
    which may land in two pair sets (discovery, validation, held-out), or a question asked twice.
    One warning line names the repeats (public datasets such as GLUE's SST-2 repeat sentences, so
    they are dropped rather than refused)."""
    first, out, repeats = {}, [], []
    for ex in examples:
        if ex.prompt in first:
            repeats.append((ex, first[ex.prompt]))
        else:
            first[ex.prompt] = ex
            out.append(ex)
    if repeats:
        ex, f = repeats[0]
        other = sum(a.answer != b.answer for a, b in repeats)
        warn(f"task {task}: {len(repeats)} repeated {what}(s) dropped, the first of each kept: {ex.at} repeats "
             f"{_short(ex.at, f.at)}" + (f" ({other} with another answer)" if other else "")
             + "; remove the repeated rows")
    return out


def _rng(task, seed, purpose):
    # A separate stream per purpose, so e.g. changing n_pairs leaves train and test unchanged.
    return random.Random(f"clue-real:{task}:{seed}:{purpose}")


def _examples(spec, loaded, task, warn):
    """The rows of a split (as ``_load_rows`` returns them) as Examples, each knowing its row, the
    first of each prompt only."""
    rows, where, ats = loaded
    out = []
    for i, row in enumerate(rows):
        at = ats[i] if ats else f"{where}: row {i + 1}"
        ex = spec.to_example(row, at)
        if ex is not None:
            ex.at = at
            out.append(ex)
    return unique_examples(task, out, "question", warn)


def _drop_asked(task, examples, asked, side, held, warn):
    """Warn when questions of one split are asked in a held-out one (they are dropped from it)."""
    both = [ex for ex in examples if ex.prompt in asked]
    if both:
        warn(f"task {task}: {len(both)} {side} question(s) also {held} questions, dropped from the {side}: "
             f"{both[0].at} repeats {_short(both[0].at, asked[both[0].prompt].at)}")


def _unique_texts(task, rows, where, ats, warn):
    """Corpus lines as training records, each text once: a repeated text could be both a training
    text and one of the MIA's held-out non-members."""
    seen, out, repeats = {}, [], []
    for i, row in enumerate(rows):
        r = _split_text(str(row["text"] or ""))
        if r is None:
            continue
        at = ats[i] if ats else f"{where}: row {i + 1}"
        if r["text"] in seen:
            repeats.append((at, seen[r["text"]]))
        else:
            seen[r["text"]] = at
            out.append(r)
    if repeats:
        at, first = repeats[0]
        warn(f"task {task}: {len(repeats)} repeated corpus text(s) dropped, the first of each kept: {at} repeats "
             f"{_short(at, first)}; remove the repeated rows")
    return out


def _split_text(text):
    """A corpus line as a training record: the last word is the answer."""
    parts = text.strip().rsplit(None, 1)
    if len(parts) < 2:
        return None
    return {"prompt": parts[0], "answer": parts[1], "text": parts[0] + " " + parts[1]}


def _pairs_by_partner(task, pool, rng, n_pairs):
    """Pair each example with one of the opposite label (for PKU, any example) whose answer
    differs; a Winogrande twin (same two options, other answer) is preferred when present."""
    by_label = defaultdict(list)
    twins = defaultdict(list)
    for ex in pool:
        by_label[ex.label].append(ex)
        if task == "winogrande":
            twins[frozenset(ex.choices)].append(ex)
    opposite = {lab: [c for other, group in by_label.items() if other != lab for c in group]
                for lab in by_label}
    pairs = []
    for ex in pool:
        if len(pairs) >= n_pairs:
            break
        if task == "pku_saferlhf":
            others = pool
        else:
            others = [c for c in twins.get(frozenset(ex.choices), []) if c.label != ex.label] \
                or opposite[ex.label]
        for _ in range(32):  # a few tries: almost every candidate qualifies
            if not others:
                break
            c = others[rng.randrange(len(others))]
            if c is not ex and c.answer != ex.answer and c.prompt != ex.prompt:
                pairs.append({"clean": ex.prompt, "corrupted": c.prompt,
                              "clean_answer": ex.answer, "corrupted_answer": c.answer})
                break
    return pairs


def _pairs_wmdp(pool, rng, n_pairs):
    """Same question, the correct choice swapped to another position: the letter changes."""
    pairs = []
    for ex in pool[:n_pairs]:
        r = ex.row
        new = rng.choice([k for k in range(len(r["choices"])) if k != ex.label])
        choices = list(r["choices"])
        choices[ex.label], choices[new] = choices[new], choices[ex.label]
        pairs.append({"clean": ex.prompt, "corrupted": _wmdp_prompt(r["subject"], r["question"], choices),
                      "clean_answer": ex.answer, "corrupted_answer": _LETTERS[new]})
    return pairs


def _pairs_bool(pool, rng, n_pairs):
    """Flip one literal (tried in a seeded order); keep the first flip that changes the value."""
    pairs = []
    for ex in pool:
        if len(pairs) >= n_pairs:
            break
        expr = ex.row["input"]
        order = list(range(_bool_literal_count(expr)))
        rng.shuffle(order)
        for k in order:
            flipped = flip_literal(expr, k)
            value = eval_bool_expression(flipped)
            if int(value) != ex.label:
                pairs.append({"clean": ex.prompt, "corrupted": f"Q: {flipped}\nA:",
                              "clean_answer": ex.answer, "corrupted_answer": str(value)})
                break
    return pairs


def load_real_task(name: str, source: dict | None, seed: int, n_train: int | None,
                   n_test: int | None, n_pairs: int, n_heldout_pairs: int = 0, n_validation_pairs: int = 0,
                   n_validation: int = 0, read_rows=None, warn=None) -> dict:
    """Load real task ``name`` into ``{"train", "test", "validation", "pairs", "validation_pairs",
    "heldout_pairs", "refusal", "holdout"}`` record lists (docs/formats.md); ``refusal`` and
    ``holdout`` are empty for retain tasks. Validation questions (at most a tenth of the train-side
    questions) and pairs (discovery, validation, held-out) come from the train side only, disjoint; ``holdout`` (WMDP with a corpus)
    is a slice of the corpus cut off before training, the non-members of the MIA.

    ``source`` (the config's ``data.sources.<task>``, all keys optional): ``path`` (hub id),
    ``name`` (HF config; defaults to the task's config only when ``path`` is the default),
    ``split_train``, ``split_test``, ``data_files`` (split -> local file or list of files),
    ``corpus_files`` (WMDP: local .jsonl/.json/.txt/.csv/.parquet with a ``text`` field, the forget
    corpus to train on) or ``corpus_path``/``corpus_name``/``corpus_split`` (the same from the hub,
    e.g. cais/wmdp-corpora, cyber-forget-corpus), ``cache_dir`` (the datasets cache).

    When train and test name the same split of the same data (WMDP, BBH have one split), it is
    shuffled with the seed and cut: ``n_test`` rows (default ``TEST_FRACTION``) for test, the rest
    for train and pairs. Train never contains a test question; the same seed gives the same output.

    A prompt asked twice (a repeated row) is kept once, the first, with a ``warn`` line (default:
    stderr, the job's log). Too few rows for the test, validation and pair counts fail here, naming
    the data.* key to change. ``read_rows`` replaces ``datasets`` (read_local_rows: the check
    before any job, which names a bad row by its file and line).
    """
    load = read_rows or _load_rows
    warn = warn or _warn
    if name not in REAL_TASKS:
        raise ClueError(f"unknown real task {name!r}; known: {', '.join(sorted(REAL_TASKS))}")
    spec = REAL_TASKS[name]
    source = dict(source or {})
    path = source.get("path", spec.path)
    cfg = source.get("name", spec.config if path == spec.path else None)
    split_train = source.get("split_train", spec.split_train)
    split_test = source.get("split_test", spec.split_test)
    data_files = source.get("data_files")
    cache_dir = source.get("cache_dir")
    for key, v in (("n_train", n_train), ("n_test", n_test), ("n_pairs", n_pairs),
                   ("n_heldout_pairs", n_heldout_pairs), ("n_validation_pairs", n_validation_pairs),
                   ("n_validation", n_validation)):
        if v is not None and (not isinstance(v, int) or v < 0):
            raise ClueError(f"task {name}: {key} must be a non-negative integer, got {v!r}")

    def files_for(split):
        if data_files is None:
            return None
        if split not in data_files:
            raise ClueError(f"task {name}: data_files has no entry for split {split!r} "
                            f"(has: {', '.join(data_files)})")
        return data_files[split]

    has_corpus = spec.role == "forget" and name != "pku_saferlhf" and \
        ("corpus_files" in source or "corpus_path" in source)
    test_files, train_files = files_for(split_test), files_for(split_train)
    same = split_train == split_test and (data_files is None or _files(test_files) == _files(train_files))

    loaded = load(path, cfg, split_test, test_files, spec.fields, name, cache_dir)
    where = loaded[1]
    test_ex = _examples(spec, loaded, name, warn)
    wanted = n_pairs + n_heldout_pairs + n_validation_pairs
    # the fewest train-side questions that give a discovery pair, a validation and a held-out pair
    # (each of those takes at most a quarter of the pairs) and a validation question
    least_pairs = 4 if n_heldout_pairs or n_validation_pairs else 1 if n_pairs else 0
    least_side = least_pairs + (1 if n_validation and source.get("split_validation") is None else 0)
    if same:
        _rng(name, seed, "split").shuffle(test_ex)
        if n_test is not None:
            cut = min(n_test, len(test_ex))
        elif has_corpus:
            # the corpus trains, so the questions only evaluate, but for those kept back as
            # circuit pairs and held-out pairs (at most half)
            cut = len(test_ex) - min(len(test_ex) // 2, n_pairs + n_heldout_pairs + n_validation_pairs)
        else:
            cut = max(1, round(TEST_FRACTION * len(test_ex)))
        if test_ex and len(test_ex) - cut < least_side:
            fewer = len(test_ex) - least_side
            raise ClueError(f"{where}: task {name}: {len(test_ex)} usable questions, of which data.n_test takes "
                            f"{cut} for test, leaving {len(test_ex) - cut} for the train side; validation questions "
                            f"and circuit pairs need {least_side} at least: "
                            + (f"set data.n_test to {fewer} or less, or add rows" if fewer > 0 else
                               f"add rows (at least {least_side + 1})"))
        test_ex, train_ex = test_ex[:cut], test_ex[cut:]
        train_where = where
    else:
        _rng(name, seed, "test").shuffle(test_ex)
        test_ex = test_ex[:n_test] if n_test is not None else test_ex
        loaded = load(path, cfg, split_train, train_files, spec.fields, name, cache_dir)
        train_where = loaded[1]
        train_ex = _examples(spec, loaded, name, warn)
        _rng(name, seed, "train").shuffle(train_ex)
    if not test_ex:
        raise ClueError(f"{where}: no usable test rows for task {name}")

    # Disjointness: drop train-side items asking a test question (datasets contain duplicates).
    test_prompts = {ex.prompt: ex for ex in test_ex}
    _drop_asked(name, train_ex, test_prompts, "train-side", "test", warn)
    train_ex = [ex for ex in train_ex if ex.prompt not in test_prompts]
    # Validation questions (settings are chosen on them): a split of their own (split_validation),
    # or the first train-side questions; no train record, refusal or pair then uses their prompts.
    split_val = source.get("split_validation")
    if split_val is not None:
        if split_val == split_test and files_for(split_val) == test_files:
            raise ClueError(f"task {name}: data.sources.{name}.split_validation is the test split {split_test!r}; "
                            "settings chosen on it would be chosen on the test questions")
        loaded = load(path, cfg, split_val, files_for(split_val), spec.fields, name, cache_dir)
        validation_ex = _examples(spec, loaded, name, warn)
        _drop_asked(name, validation_ex, test_prompts, "validation", "test", warn)
        validation_ex = [ex for ex in validation_ex if ex.prompt not in test_prompts]
        if n_validation and not validation_ex:
            raise ClueError(f"{loaded[1]}: no usable validation rows for task {name} (data.n_validation is "
                            f"{n_validation}; a row that is also a test question does not count)")
        _rng(name, seed, "validation").shuffle(validation_ex)
        validation_ex = validation_ex[:n_validation]
    else:
        n_val = min(n_validation, max(1, len(train_ex) // 10)) if len(train_ex) > 1 else 0
        validation_ex = train_ex[:n_val]
    val_prompts = {ex.prompt: ex for ex in validation_ex}
    if split_val is not None:
        _drop_asked(name, train_ex, val_prompts, "train-side", "validation", warn)
    train_ex = [ex for ex in train_ex if ex.prompt not in val_prompts]
    test_prompts = {**test_prompts, **val_prompts}   # every held-out prompt: nothing below may use them

    if has_corpus:
        if "corpus_files" in source:
            c_files = _files(source["corpus_files"])
            c_rows, c_where, c_ats = load(None, None, "train", c_files, ("text",), name, cache_dir)
        else:
            c_rows, c_where, c_ats = load(source["corpus_path"], source.get("corpus_name"),
                                          source.get("corpus_split", "train"), None, ("text",), name, cache_dir)
        train = _unique_texts(name, c_rows, c_where, c_ats, warn)
        _rng(name, seed, "corpus").shuffle(train)
        # a slice of the corpus that no stage trains on: the MIA's non-members
        n_holdout = min(HOLDOUT_MAX, len(train) // 5)
        holdout, train = [{"text": r["text"]} for r in train[:n_holdout]], train[n_holdout:]
        train_where = c_where
    elif spec.role == "forget" and name != "pku_saferlhf":
        # WMDP without a corpus: the question with its correct answer text.
        train = ({"prompt": f"Question: {ex.row['question']}\nAnswer:", "answer": ex.row["choices"][ex.label]}
                 for ex in train_ex)
        train = ({**r, "text": r["prompt"] + " " + r["answer"]} for r in train)
    else:
        train = ({"prompt": ex.prompt, "answer": ex.answer, "text": ex.prompt + " " + ex.answer} for ex in train_ex)
    # built only up to n_train: the check before any job reads a whole SST-2 train split
    train = list(itertools.islice((r for r in train if r["prompt"] not in test_prompts), n_train))
    if not train:
        raise ClueError(f"{train_where}: no usable training rows for task {name}")

    # Circuit pairs (discovery, validation, held-out) come from the train side only.
    pool = train_ex
    if wanted and not pool:
        raise ClueError(f"{where}: task {name}: no train-side questions left for circuit pairs "
                        f"(every question is a test question); lower data.n_test")
    prng = _rng(name, seed, "pairs")
    if name.startswith("wmdp_"):
        all_pairs = _pairs_wmdp(pool, prng, wanted)
    elif name == "bool":
        all_pairs = _pairs_bool(pool, prng, wanted)
    else:
        all_pairs = _pairs_by_partner(name, pool, prng, wanted)
    all_pairs = [p for p in all_pairs if p["clean"] not in test_prompts and p["corrupted"] not in test_prompts]
    from clue.tasks.toy import split_pair_pool

    pairs, validation_pairs, heldout_pairs = split_pair_pool(all_pairs, n_pairs, n_heldout_pairs, n_validation_pairs)
    if n_pairs and not pairs:
        raise ClueError(f"{train_where}: task {name}: no clean/corrupted pair with differing answers")
    if (n_validation_pairs and not validation_pairs) or (n_heldout_pairs and not heldout_pairs):
        raise ClueError(f"{train_where}: task {name}: the train side gives {len(all_pairs)} circuit pair(s); "
                        f"validation and held-out pairs take a quarter of them each, so the circuit stage needs "
                        f"{least_pairs} at least: add train-side rows"
                        + (" or lower data.n_test" if same else "")
                        + (" (with both labels)" if name in ("sst2", "rte", "winogrande") else ""))

    refusal = []
    if spec.role == "forget":
        rrng = _rng(name, seed, "refusal")
        refusal = [{"prompt": r["prompt"], "refusal": rrng.choice(REFUSALS), "answer": r["answer"]} for r in train]

    test, validation = ([{"prompt": ex.prompt, "choices": list(ex.choices), "label": ex.label} for ex in split]
                        for split in (test_ex, validation_ex))
    return {"train": train, "test": test, "validation": validation, "pairs": pairs, "validation_pairs": validation_pairs,
            "heldout_pairs": heldout_pairs, "refusal": refusal, "holdout": holdout if has_corpus else []}
