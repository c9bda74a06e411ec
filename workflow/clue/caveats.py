"""Warnings for numbers that cannot mean anything (issue 43): each names what was found and the
setting that would change it. The stage that finds one prints it in its job log (`warning: ...`
on stderr) and Table 1's report collects them under its table (clue.reports.table1), both from
these functions, so the two say the same words.

- a forget set the base model (Origin) answers at or below chance: nothing to forget;
- a task whose choices the model cannot tell apart (evaluate's ``choices_tied``);
- a circuit below ``circuit.min_faithfulness`` on its held-out pairs;
- an empty forget or conflict mask of CLUE.

Light on purpose (no torch): Table 1's job imports it."""

from pathlib import Path

from clue.errors import ClueError

# A task is flagged when at least this fraction of its test questions got the same log-likelihood
# for every choice: on half of them the answer is then the tie-break, not the model's.
CHOICES_TIED_WARN = 0.5


def chance(test_path, n=None):
    """(chance accuracy, number of questions, choice counts) of a task's test file: the mean over
    its questions of 1 / len(choices), over the first ``n`` questions when given (an evaluation
    with evaluate.limit scores only those)."""
    import json

    path = Path(test_path)
    if not path.is_file():
        raise ClueError(f"{path}: test file not found (the data stage writes it)")
    counts = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            if n is not None and len(counts) >= n:
                break
            try:
                choices = json.loads(line).get("choices")
            except (ValueError, AttributeError):
                raise ClueError(f"{path}, line {number}: not a JSON object") from None
            if not isinstance(choices, list) or not choices:
                raise ClueError(f"{path}, line {number}: no 'choices' list")
            counts.append(len(choices))
    if not counts:
        raise ClueError(f"{path}: no test questions")
    return sum(1 / c for c in counts) / len(counts), len(counts), sorted(set(counts))


def below_chance(forget, accuracy, chance_accuracy, questions, choice_counts):
    """The warning for a forget set the base model answers at or below chance, else None."""
    if accuracy > chance_accuracy + 1e-9:
        return None
    of = (f"1 in {choice_counts[0]} choices" if len(choice_counts) == 1
          else f"1/choices averaged over the questions, {choice_counts[0]}-{choice_counts[-1]} choices")
    return (f"forget set {forget}: the base model (Origin) answers {accuracy:.3f} of its {questions} test "
            f"questions, at or below chance ({chance_accuracy:.3f}: {of}): there is nothing to forget, so "
            f"FE (Origin's already {1 - accuracy:.3f}) cannot show forgetting; choose a forget set the "
            "model knows")


def forget_set_at_chance(forget, accuracy, test_path, n=None):
    """below_chance for the base model's ``accuracy`` on the first ``n`` questions of the forget
    set's test file (chance from that file)."""
    return below_chance(forget, accuracy, *chance(test_path, n))


def choices_tied(task, role, fractions):
    """The warning for a task whose choices the model cannot tell apart, else None.
    ``fractions``: [(row label, choices_tied fraction)], one per evaluated checkpoint."""
    flagged = [(label, x) for label, x in fractions if x is not None and x >= CHOICES_TIED_WARN]
    if not flagged:
        return None
    labels = ", ".join(dict.fromkeys(label for label, _ in flagged))
    most = max(x for _, x in flagged)
    return (f"task {task} ({role}): every choice gets the same log-likelihood on up to {most:.0%} of its test "
            f"questions ({labels}; choices_tied >= {CHOICES_TIED_WARN:g}): the model cannot tell the choices "
            "apart (they may tokenize alike), so its accuracy and probability there mean nothing; give the "
            "task choices whose first tokens differ")


def circuit(record):
    """The warning for a circuit JSON (docs/formats.md) whose held-out faithfulness is below the
    floor it was found with (its ``config.min_faithfulness``), or undefined; else None."""
    task, mode = record.get("task"), record.get("mode")
    held = record.get("faithfulness") or {}
    if not held:
        return None   # found without held-out pairs: nothing was measured to warn about
    value = held.get("faithfulness")
    if value is None:
        return (f"circuit {task} {mode}: its held-out faithfulness is undefined: the corrupted prompts do not "
                "change the model's output at all (KL of the empty circuit 0), so the circuit says nothing "
                "about the task; its pairs' clean and corrupted prompts must lead to different answers")
    floor = (record.get("config") or {}).get("min_faithfulness")
    if floor is None or value >= floor:
        return None
    validation = (record.get("validation") or {}).get("faithfulness")
    seen = "" if validation is None else f"validation {validation:.3f}"
    if (record.get("selection") or {}).get("reached_min_faithfulness") is False:
        seen += ("; " if seen else "") + "no candidate reached the floor on validation, the most faithful kept"
    return (f"circuit {task} {mode}: held-out faithfulness {value:.3f} is below circuit.min_faithfulness {floor:g}"
            + (f" ({seen})" if seen else "")
            + ": the circuit does not do what the model does, so CLUE's neurons from it may be the wrong ones; "
              f"add lower candidates to circuit.target_sparsity (or circuit.target_sparsity_per_task.{task}), "
              "or lower circuit.min_faithfulness to accept it")


# What an empty mask of CLUE means and the setting that changes it; the unlearn stage's log
# repeats the second half where it skips the stage.
EMPTY_MASK_SETTING = {
    "forget": ("logic.adder_retain: OR (the paper's AND makes the retain circuit need every input of an "
               "ADDER edge) frees neurons for the forget mask"),
    "conflict": ("logic.adder_forget and logic.adder_retain decide which shared neurons must differ "
                 "(logic.adder_retain: AND, the paper's, gives conflict neurons where OR finds none)"),
    "both": ("lower circuit.target_sparsity (or circuit.target_sparsity_per_task.{forget}) keeps more of the "
             "forget circuit"),
}


def empty_masks(pair, forget, sizes):
    """The warning for CLUE's masks of ``pair`` when its forget or conflict mask is empty, else
    None. ``sizes``: {category: number of rows, columns or entries the mask sets}."""
    f, c = sizes.get("forget", 0), sizes.get("conflict", 0)
    if f and c:
        return None
    if not f and not c:
        return (f"pair {pair}: CLUE's forget and conflict masks are both empty: the forget circuit keeps no neuron on "
                "a path to its output, so CLUE leaves the model as it is (its row is the base model's); "
                + EMPTY_MASK_SETTING["both"].format(forget=forget))
    if not f:
        return (f"pair {pair}: CLUE's forget mask is empty: the forget circuit cannot be switched off without "
                "neurons the retain circuit needs, which all went to the conflict mask, so CLUE forgets only "
                "in its conflict stage, under the retain loss (unlearn.epochs_conflict); "
                + EMPTY_MASK_SETTING["forget"])
    return (f"pair {pair}: CLUE's conflict mask is empty: the forget circuit switches off without a neuron the "
            "retain circuit needs (Phi is satisfiable), so the conflict stage (unlearn.epochs_conflict) does "
            "not train and CLUE is its forget stage alone; " + EMPTY_MASK_SETTING["conflict"])
