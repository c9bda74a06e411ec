"""The table1 stage: eval JSONs to results/table1.csv and the paper's layouts in table1.md, checked
cell by cell against values written down here."""

import csv
import json

import pandas as pd
import pytest

from clue import io
from clue.cli import main
from clue.errors import ClueError
from clue.reports.table1 import COLUMNS, markdown

ROWS = [
    # forget, retain, method, seed, pct, FE, RU, GU, MIA, RougeL, RU_prob, GU_prob
    ("f1", "r1", "origin", 0, None, 0.1, 0.9, 0.8, 0.42, 0.75, 0.85, 0.7),
    ("f1", "r2", "origin", 0, None, 0.1, 0.95, 0.8, 0.43, 0.75, 0.9, 0.7),
    ("f1", "r1", "clue", 0, 50.0, 0.6, 0.85, 0.75, 0.61, 0.25, 0.8, 0.65),
    ("f1", "r2", "clue", 0, 60.0, 0.7, 0.9, None, None, 0.5, None, None),
    ("f2", "r1", "ga", 0, 100.0, 0.9, 0.3, 0.2, 0.95, 0.0, 0.3, 0.25),
]


def frame():
    return pd.DataFrame(ROWS, columns=COLUMNS).astype({k: float for k in COLUMNS[4:]})


def table(md, title, forget):
    """The rows (lists of cells) of the table under '# title' / '## Forget set: forget'."""
    section = md.split(f"# {title}\n", 1)[1].split("\n# ", 1)[0]
    block = section.split(f"## Forget set: {forget}\n", 1)[1].split("\n## ", 1)[0]
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in block.splitlines()
            if line.startswith("|")]


def test_markdown_tables_cell_by_cell():
    md = markdown(frame(), ["f1", "f2"], ["r1", "r2"], ["origin", "ga", "clue"])

    t1 = table(md, "Table 1: performance overview of LLM unlearning", "f1")
    assert t1[0] == ["Method", "Unlearned parameter", "r1 FE", "r1 RU", "r1 GU", "r2 FE", "r2 RU", "r2 GU"]
    assert t1[1] == ["---"] * 8
    assert t1[2] == ["Origin", "-", "0.100", "0.900", "0.800", "0.100", "0.950", "0.800"]
    assert t1[3] == ["GA", "-", "-", "-", "-", "-", "-", "-"]  # no GA row for f1
    assert t1[4] == ["CLUE", "55.00%", "0.600", "0.850", "0.750", "0.700", "0.900", "-"]  # mean of 50 and 60 %
    assert len(t1) == 5
    t1 = table(md, "Table 1: performance overview of LLM unlearning", "f2")
    assert t1[2] == ["Origin", "-"] + ["-"] * 6
    assert t1[3] == ["GA", "100.00%", "0.900", "0.300", "0.200", "-", "-", "-"]
    assert t1[4] == ["CLUE", "-"] + ["-"] * 6

    t6 = table(md, "Table 6: forget efficacy with 1-accuracy, MIA, Rouge-L", "f1")
    assert t6[0] == ["Method", "Unlearned parameter", "r1 1-accuracy", "r1 MIA", "r1 1-Rouge-L",
                     "r2 1-accuracy", "r2 MIA", "r2 1-Rouge-L"]
    assert t6[2] == ["Origin", "-", "0.100", "0.420", "0.250", "0.100", "0.430", "0.250"]
    assert t6[4] == ["CLUE", "55.00%", "0.600", "0.610", "0.750", "0.700", "-", "0.500"]
    t6 = table(md, "Table 6: forget efficacy with 1-accuracy, MIA, Rouge-L", "f2")
    assert t6[3] == ["GA", "100.00%", "0.900", "0.950", "1.000", "-", "-", "-"]

    tp = table(md, "Utility as the probability of the correct choice", "f1")
    assert tp[0] == ["Method", "Unlearned parameter", "r1 RU_prob", "r1 GU_prob", "r2 RU_prob", "r2 GU_prob"]
    assert tp[1] == ["---"] * 6
    assert tp[2] == ["Origin", "-", "0.850", "0.700", "0.900", "0.700"]
    assert tp[4] == ["CLUE", "55.00%", "0.800", "0.650", "-", "-"]
    assert table(md, "Utility as the probability of the correct choice", "f2")[3] == [
        "GA", "100.00%", "0.300", "0.250", "-", "-"]


def test_table1_stage_writes_every_column_and_sorts_methods_as_configured(tmp_path):
    paths = []
    for i, row in enumerate(ROWS):
        rec = dict(zip(COLUMNS, row), accuracy={}, mia_note=None if row[7] is not None else "no holdout")
        paths.append(tmp_path / f"{i}.json")
        io.write_json(paths[-1], rec)
    csv_path, md_path = tmp_path / "t.csv", tmp_path / "t.md"
    assert main(["table1", "--evals", *map(str, paths), "--forget", "f1", "f2", "--retain", "r1", "r2",
                 "--methods", "origin", "ga", "clue", "--csv", str(csv_path), "--md", str(md_path)]) == 0
    rows = list(csv.DictReader(open(csv_path)))
    assert COLUMNS == ["forget", "retain", "method", "seed", "unlearned_param_pct", "FE", "RU", "GU", "MIA",
                       "RougeL", "RU_prob", "GU_prob"]
    assert list(rows[0]) == COLUMNS + ["FE_lo", "FE_hi", "RU_lo", "RU_hi", "GU_lo", "GU_hi",
                                       "FE_norm", "RU_norm", "GU_norm"]
    assert [(r["forget"], r["retain"], r["method"]) for r in rows] == [
        ("f1", "r1", "origin"), ("f1", "r1", "clue"), ("f1", "r2", "origin"), ("f1", "r2", "clue"), ("f2", "r1", "ga")]
    # no per-question results in these eval JSONs: no intervals
    assert rows[3] == dict(forget="f1", retain="r2", method="clue", seed="0", unlearned_param_pct="60.0000", FE="0.7000",
                           RU="0.9000", GU="", MIA="", RougeL="0.5000", RU_prob="", GU_prob="", FE_lo="", FE_hi="",
                           RU_lo="", RU_hi="", GU_lo="", GU_hi="", FE_norm="", RU_norm="", GU_norm="")
    md = md_path.read_text()
    tables = markdown(frame(), ["f1", "f2"], ["r1", "r2"], ["origin", "ga", "clue"])
    assert md.startswith(tables)
    # CLUE minus Origin on f1, by hand: FE 0.6 - 0.1, 0.7 - 0.1; RU 0.85 - 0.9, 0.9 - 0.95; GU 0.75 - 0.8
    diffs = table(md, "CLUE minus each method, with paired 95% intervals", "f1")
    assert diffs[0] == ["Method", "r1 ΔFE", "r1 ΔRU", "r1 ΔGU", "r2 ΔFE", "r2 ΔRU", "r2 ΔGU"]
    assert diffs[2] == ["Origin", "+0.500", "-0.050", "-0.050", "+0.600", "-0.050", "-"]


def test_an_eval_json_without_the_new_metrics_is_named(tmp_path, capsys):
    old = tmp_path / "old.json"
    old.write_text(json.dumps(dict(zip(COLUMNS[:8], ROWS[0][:8]))))
    assert main(["table1", "--evals", str(old), "--forget", "f1", "--retain", "r1", "--methods", "origin",
                 "--csv", str(tmp_path / "t.csv"), "--md", str(tmp_path / "t.md")]) == 2
    assert capsys.readouterr().err == (f"clue table1: error: {old}: eval JSON is missing MIA, RougeL, "
                                       "RU_prob, GU_prob\n")
    assert not (tmp_path / "t.csv").exists()


@pytest.mark.parametrize("value, cell", [(0.12345, "0.123"), (float("nan"), "-")])
def test_a_lone_cell_is_formatted_to_three_decimals_or_a_dash(value, cell):
    df = pd.DataFrame([("f", "r", "origin", 0, None, value, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5)], columns=COLUMNS)
    assert table(markdown(df, ["f"], ["r"], ["origin"]), "Table 1: performance overview of LLM unlearning",
                 "f")[2][2] == cell


def test_repeats_give_mean_and_sample_std_and_tables_5_and_6(tmp_path):
    """Three seeds of one checkpoint: Table 1's cell is the mean +- sample std (by hand: FE 0.5,
    0.6, 0.7 -> 0.600 +- 0.100); Origin, evaluated once, has no std. Tables 5 and 6 list every
    checkpoint's general-task accuracies and 1-accuracy, MIA, Rouge-L."""
    evals = [dict(forget="f", retain="r", method="origin", seed=None, unlearned_param_pct=None, FE=0.1, RU=0.9,
                  GU=0.8, MIA=0.4, RougeL=0.75, RU_prob=0.9, GU_prob=0.7, general=["g1", "g2"],
                  accuracy={"f": 0.9, "r": 0.9, "g1": 0.7, "g2": 0.9})]
    for seed, fe in [(3, 0.5), (4, 0.6), (5, 0.7)]:
        evals.append(dict(evals[0], method="clue", seed=seed, unlearned_param_pct=50.0, FE=fe, RougeL=0.2,
                          accuracy={"f": 1 - fe, "r": 0.9, "g1": 0.6, "g2": 1.0}))
    paths = []
    for i, rec in enumerate(evals):
        paths.append(tmp_path / f"{i}.json")
        io.write_json(paths[-1], rec)
    out = {k: tmp_path / f"{k}.csv" for k in ("csv", "table5", "table6")}
    assert main(["table1", "--evals", *map(str, paths), "--forget", "f", "--retain", "r", "--methods", "origin",
                 "clue", "--first-seed", "3", "--md", str(tmp_path / "t.md"),
                 *[a for k, p in out.items() for a in (f"--{k}", str(p))]]) == 0
    rows = list(csv.DictReader(open(out["csv"])))
    assert [(r["method"], r["seed"]) for r in rows] == [("origin", "3"), ("clue", "3"), ("clue", "4"), ("clue", "5")]
    t1 = table((tmp_path / "t.md").read_text(), "Table 1: performance overview of LLM unlearning", "f")
    assert t1[2] == ["Origin", "-", "0.100", "0.900", "0.800"]
    assert t1[3] == ["CLUE", "50.00%", "0.600 ± 0.100", "0.900 ± 0.000", "0.800 ± 0.000"]
    t5 = list(csv.DictReader(open(out["table5"])))
    assert len(t5) == 8 and {(r["method"], r["seed"], r["task"]): r["accuracy"] for r in t5}[("clue", "4", "g1")] == "0.6000"
    t6 = list(csv.DictReader(open(out["table6"])))
    assert list(t6[0]) == ["forget", "retain", "method", "seed", "1-accuracy", "MIA", "Rouge-L", "1-Rouge-L"]
    assert t6[2]["1-accuracy"] == "0.6000" and t6[2]["1-Rouge-L"] == "0.8000"


def test_table2_rows_are_changes_from_clues_row(tmp_path, capsys):
    """The paper's first Table 2 row by hand: CLUE 0.733 / 0.91 / 0.388, -M_f 0.688 / 0.903 /
    0.377 -> down 0.045, 0.007, 0.011; a rise gets an up arrow; a wrong eval file is named."""
    base = dict(method="clue", forget="f", retain="r", FE=0.733, RU=0.91, GU=0.388)
    paths = {"clue": base, "clue-no_forget_mask": dict(base, method="clue-no_forget_mask", FE=0.688, RU=0.903, GU=0.377),
             "clue-ga+ga": dict(base, method="clue-ga+ga", FE=0.754, RU=0.381, GU=0.388)}
    for name, rec in paths.items():
        io.write_json(tmp_path / f"{name}.json", rec)
    args = ["table2", "--clue", str(tmp_path / "clue.json"), "--ablation-evals", str(tmp_path / "clue-no_forget_mask.json"),
            str(tmp_path / "clue-ga+ga.json"), "--ablations", "no_forget_mask", "ga+ga",
            "--csv", str(tmp_path / "t2.csv"), "--md", str(tmp_path / "t2.md")]
    assert main(args) == 0
    md = (tmp_path / "t2.md").read_text()
    assert "| CLUE | 0.733 | 0.910 | 0.388 |" in md
    assert "| -M_f | ↓ 0.045 | ↓ 0.007 | ↓ 0.011 |" in md
    assert "| GA+GA | ↑ 0.021 | ↓ 0.529 | 0.000 |" in md
    rows = list(csv.DictReader(open(tmp_path / "t2.csv")))
    assert [r["ablation"] for r in rows] == ["none", "no_forget_mask", "ga+ga"] and rows[1]["dFE"] == "-0.0450"
    args[args.index("ga+ga")] = "po+npo"
    assert main(args) == 2
    assert "expected the eval of clue-po+npo, found 'clue-ga+ga'" in capsys.readouterr().err


def test_fig3_measures_every_point_on_the_general_corpus(tmp_path, capsys):
    """Figure 3: every retain set and every reference run on the same yardstick (the general
    corpus's accuracy, g1 and g2 here), general utility over the other general tasks (g3), RU over
    the set's own tasks kept aside; values worked out by hand from the eval JSONs."""
    def ev(name, method, retain, fe, acc):
        path = tmp_path / f"{name}.json"
        io.write_json(path, {"method": method, "retain": retain, "FE": fe, "RU": 0.5, "GU": 0.0,
                             "unlearned_param_pct": 10.0, "accuracy": acc})
        return str(path)

    sets = [ev("a", "clue", "r1", 0.6, {"g1": 0.8, "g2": 0.6, "g3": 0.5, "r1": 0.9}),
            ev("b", "clue", "r1+r2", 0.4, {"g1": 0.9, "g2": 0.9, "g3": 0.7, "r1": 1.0, "r2": 1.0})]
    refs = [ev("c", "clue", "g1+g2", 0.5, {"g1": 1.0, "g2": 0.8, "g3": 0.4}),
            ev("w", "wagle", "g1+g2", 0.3, {"g1": 0.7, "g2": 0.7, "g3": 0.6})]
    csv_path, svg = tmp_path / "fig3.csv", tmp_path / "fig3.svg"
    base = ["sweep-figure", "--figure", "fig3", "--pair", "f__retain-sets", "--clue-evals", *sets,
            "--csv", str(csv_path), "--out", str(svg)]
    assert main(base + ["--references", *refs, "--yardstick", "g1", "g2", "--general", "g1", "g2", "g3"]) == 0
    rows = list(csv.DictReader(open(csv_path)))
    got = [(r["kind"], r["method"], r["retain_set"], r["n_tasks"], float(r["FE"]), float(r["corpus_utility"]),
            float(r["GU_other"])) for r in rows]
    assert got == [("retain set", "clue", "r1", "1", 0.6, 0.7, 0.5), ("retain set", "clue", "r1+r2", "2", 0.4, 0.9, 0.7),
                   ("general corpus", "clue", "g1+g2", "2", 0.5, 0.9, 0.4),
                   ("general corpus", "wagle", "g1+g2", "2", 0.3, 0.7, 0.6)]
    text = svg.read_text()
    assert "utility on the general corpus" in text and "WAGLE, general corpus as retain set" in text
    # without a general corpus: forget efficacy and general utility only
    assert main(base + ["--general", "g1", "g2", "g3"]) == 0
    assert "utility on the general corpus" not in svg.read_text()
    assert {r["corpus_utility"] for r in csv.DictReader(open(csv_path))} == {""}
    capsys.readouterr()
    assert main(base + ["--references", *refs, "--general", "g1", "g2", "g3"]) == 2
    assert "fig3: --references need --yardstick" in capsys.readouterr().err
    assert main(base + ["--yardstick", "g1", "--general", "g1"]) == 2
    assert "every --general task is in --yardstick" in capsys.readouterr().err


def write_eval(path, method, correct, forget="f", retain="r", general=("g",), seed=0):
    acc = {t: sum(v) / len(v) for t, v in correct.items()}
    rec = {"method": method, "forget": forget, "retain": retain, "general": list(general), "seed": seed,
           "unlearned_param_pct": None, "FE": 1 - acc[forget], "RU": acc[retain],
           "GU": sum(acc[g] for g in general) / len(general), "MIA": None, "RougeL": 0.0, "RU_prob": None,
           "GU_prob": None, "accuracy": acc, "correct": correct}
    io.write_json(path, rec)
    return str(path)


def test_intervals_and_paired_differences(tmp_path):
    """Bootstrap intervals over the questions: a task answered half right on 400 questions gets
    the normal approximation's half-width 1.96 sqrt(.25 / 400) = 0.049; a method that answers as
    Origin does has a difference of exactly 0 (the paired resamples cancel it); a method right
    where Origin is wrong on 40 of 400 forget questions differs by -0.1 in FE with an interval
    that excludes 0; all-correct tasks have a zero-width interval."""
    half = [1, 0] * 200
    origin = {"f": half, "r": [1] * 50, "g": half}
    better = {"f": [1] * 40 + half[40:], "r": [1] * 50, "g": half}          # 20 more right: FE -0.05
    paths = [write_eval(tmp_path / "o.json", "origin", origin), write_eval(tmp_path / "c.json", "clue", origin),
             write_eval(tmp_path / "g.json", "ga", better)]
    out = tmp_path / "d.csv"
    assert main(["table1", "--evals", *paths, "--forget", "f", "--retain", "r", "--methods", "origin", "ga", "clue",
                 "--csv", str(tmp_path / "t.csv"), "--differences", str(out)]) == 0
    rows = {r["method"]: r for r in csv.DictReader(open(tmp_path / "t.csv"))}
    lo, hi = float(rows["origin"]["FE_lo"]), float(rows["origin"]["FE_hi"])
    assert (hi - lo) / 2 == pytest.approx(1.96 * (0.25 / 400) ** 0.5, abs=0.006) and lo < 0.5 < hi
    assert float(rows["origin"]["RU_lo"]) == float(rows["origin"]["RU_hi"]) == 1.0
    diffs = {(r["method"], r["metric"]): r for r in csv.DictReader(open(out))}
    same = diffs[("origin", "FE")]
    assert float(same["clue_minus_method"]) == float(same["lo"]) == float(same["hi"]) == 0 and same["outside"] == "False"
    # GA answers 20 more forget questions right than CLUE (= Origin): CLUE's FE is 0.05 higher
    d = diffs[("ga", "FE")]
    assert float(d["clue_minus_method"]) == pytest.approx(0.05) and d["outside"] == "True"
    assert 0 < float(d["lo"]) < 0.05 < float(d["hi"])
    assert diffs[("ga", "GU")]["outside"] == "False"
    # the Markdown marks the difference outside its interval, and only that one
    assert main(["table1", "--evals", *paths, "--forget", "f", "--retain", "r", "--methods", "origin", "ga", "clue",
                 "--md", str(tmp_path / "t.md")]) == 0
    rows = table((tmp_path / "t.md").read_text(), "CLUE minus each method, with paired 95% intervals", "f")
    ga = next(r for r in rows if r[0] == "GA")
    assert ga[1].startswith("+0.050 [") and ga[1].endswith("]*") and not ga[3].endswith("*")


def test_facts_asked_in_several_forms_are_resampled_as_facts(tmp_path):
    """400 facts, each asked in three forms with the same answer: 1,200 questions, but only 400
    independent draws. The interval is the facts' (half-width 1.96 sqrt(.25 / 400) = 0.049), not
    the questions' (0.028); the CSV keeps FE per form."""
    facts = [f"s{i}" for i in range(400) for _ in range(3)]
    forget = [(i // 3) % 2 for i in range(1200)]
    path = write_eval(tmp_path / "o.json", "origin", {"f": forget, "r": [1] * 10, "g": [1] * 10})
    rec = io.read_json(path)
    rec["facts"] = {"f": facts}
    rec["FE_forms"] = {"question": 0.5, "cloze": 0.4, "paraphrase": 0.6}
    io.write_json(path, rec)
    assert main(["table1", "--evals", path, "--forget", "f", "--retain", "r", "--methods", "origin",
                 "--csv", str(tmp_path / "t.csv")]) == 0
    row = next(csv.DictReader(open(tmp_path / "t.csv")))
    half = (float(row["FE_hi"]) - float(row["FE_lo"])) / 2
    assert half == pytest.approx(1.96 * (0.25 / 400) ** 0.5, abs=0.006)
    assert (row["FE_question"], row["FE_cloze"], row["FE_paraphrase"]) == ("0.5000", "0.4000", "0.6000")


def test_intervals_over_several_seeds_resample_the_seeds_too(tmp_path):
    """Two seeds of CLUE, one answering every forget question right and one none: averaged per
    question every score is 0.5, so resampling questions alone gives a zero-width interval; drawing
    the seeds too gives (A, A) FE 0, (B, B) FE 1, each a quarter of the draws, so the 95% interval is
    [0, 1]. Three identical seeds give the one seed's interval (seeds add no spread), and the
    Markdown says what the intervals resample."""
    n = 200
    half = [1, 0] * (n // 2)
    paths = [write_eval(tmp_path / "o.json", "origin", {"f": half, "r": half, "g": half})]
    for seed, right in ((1, [1] * n), (2, [0] * n)):
        paths.append(write_eval(tmp_path / f"c{seed}.json", "clue", {"f": right, "r": half, "g": half}, seed=seed))
    for seed in (1, 2, 3):
        paths.append(write_eval(tmp_path / f"p{seed}.json", "po", {"f": half, "r": half, "g": half}, seed=seed))
    assert main(["table1", "--evals", *paths, "--forget", "f", "--retain", "r", "--methods", "origin", "po", "clue",
                 "--md", str(tmp_path / "t.md"), "--differences", str(tmp_path / "d.csv")]) == 0
    md = (tmp_path / "t.md").read_text()
    t1 = table(md, "Table 1: performance overview of LLM unlearning", "f")
    clue = next(r for r in t1 if r[0] == "CLUE")
    assert clue[2] == "0.500 ± 0.707 [0.00, 1.00]"
    origin, po = next(r for r in t1 if r[0] == "Origin"), next(r for r in t1 if r[0] == "PO")
    assert po[2].split(" [")[1] == origin[2].split(" [")[1]   # identical seeds: the questions' interval
    assert "resample the seeds and the test questions together (a two-level bootstrap)" in md
    d = {(r["method"], r["metric"]): r for r in csv.DictReader(open(tmp_path / "d.csv"))}
    assert d[("po", "FE")]["outside"] == "False" and float(d[("po", "FE")]["lo"]) <= -0.45


# --------------------------------------------------------------------------- warnings (issue 43)

def write_test_file(data_dir, n_choices):
    """A forget set's test.jsonl: one question per entry of ``n_choices``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "test.jsonl").write_text("".join(
        json.dumps({"prompt": f"q{i}", "choices": [f"c{j}" for j in range(n)], "label": 0}) + "\n"
        for i, n in enumerate(n_choices)))
    return str(data_dir)


def write_circuit(path, task, heldout, floor, validation=0.9, reached=True):
    io.write_json(path, {"task": task, "mode": "noising", "config": {"min_faithfulness": floor},
                         "validation": {"pairs": 4, "faithfulness": validation},
                         "faithfulness": {"pairs": 4, "kl_circuit": 1.0, "kl_empty": 2.0, "faithfulness": heldout},
                         "selection": {"reached_min_faithfulness": reached}})
    return str(path)


def write_clue_masks(path, forget, conflict):
    """CLUE's mask file with a forget and a conflict category, each one head's 4 rows or empty."""
    import torch

    from clue.masks import write_masks

    rows = {"model.layers.0.self_attn.q_proj.weight": {"rows": torch.tensor([1, 1, 1, 1, 0, 0, 0, 0])}}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_masks(path, {"forget": rows if forget else {}, "conflict": rows if conflict else {}}, model="toy",
                localizer="clue", categories=["forget", "conflict"])
    return str(path)


CHANCE_LINE = ("forget set f: the base model (Origin) answers 0.250 of its 4 test questions, at or below chance "
               "(0.250: 1 in 4 choices): there is nothing to forget, so FE (Origin's already 0.750) cannot show "
               "forgetting; choose a forget set the model knows")
TIED_LINE = ("task g (general task): every choice gets the same log-likelihood on up to 100% of its test questions "
             "(Origin, CLUE; choices_tied >= 0.5): the model cannot tell the choices apart (they may tokenize "
             "alike), so its accuracy and probability there mean nothing; give the task choices whose first "
             "tokens differ")
CIRCUIT_LINE = ("circuit f noising: held-out faithfulness 0.400 is below circuit.min_faithfulness 0.85 (validation "
                "0.900): the circuit does not do what the model does, so CLUE's neurons from it may be the wrong "
                "ones; add lower candidates to circuit.target_sparsity (or circuit.target_sparsity_per_task.f), or "
                "lower circuit.min_faithfulness to accept it")
MASK_LINE = ("pair f__r: CLUE's forget mask is empty: the forget circuit cannot be switched off without neurons "
             "the retain circuit needs, which all went to the conflict mask, so CLUE forgets only in its conflict "
             "stage, under the retain loss (unlearn.epochs_conflict); logic.adder_retain: OR (the paper's AND "
             "makes the retain circuit need every input of an ADDER edge) frees neurons for the forget mask")


def test_warnings_stand_in_the_log_and_under_table_1(tmp_path, capsys):
    """A base model at chance on its forget set (1 of 4 right, four choices each), a general task
    whose choices tie for Origin and CLUE, a circuit at 0.40 held-out under a 0.85 floor and an
    empty forget mask: each one warning line, in the job's stderr and under Table 1, in that order."""
    correct = {"f": [1, 0, 0, 0], "r": [1, 1], "g": [1, 0]}
    paths = [write_eval(tmp_path / "o.json", "origin", correct), write_eval(tmp_path / "c.json", "clue", correct)]
    for path, tied in zip(paths, (1.0, 0.75)):
        rec = io.read_json(path)
        rec["choices_tied"] = {"f": 0.0, "r": 0.49, "g": tied}   # r: just under the threshold
        io.write_json(path, rec)
    args = ["table1", "--evals", *paths, "--forget", "f", "--retain", "r", "--methods", "origin", "clue",
            "--md", str(tmp_path / "t.md"), "--data", write_test_file(tmp_path / "data" / "f", [4, 4, 4, 4]),
            "--circuits", write_circuit(tmp_path / "c1.json", "f", 0.4, 0.85),
            write_circuit(tmp_path / "c2.json", "r", 0.86, 0.85),
            "--masks", write_clue_masks(tmp_path / "masks" / "f__r" / "clue.safetensors", False, True)]
    capsys.readouterr()
    assert main(args) == 0
    lines = [CHANCE_LINE, TIED_LINE, CIRCUIT_LINE, MASK_LINE]
    assert [w for w in capsys.readouterr().err.splitlines() if "warning" in w] == [
        f"clue table1: warning: {w}" for w in lines]
    md = (tmp_path / "t.md").read_text()
    section = "# Warnings: numbers that may mean nothing\n\n" + "".join(f"- {w}\n" for w in lines) + "\n"
    # under Table 1, before Table 6
    assert md.index("# Table 1:") < md.index(section) < md.index("# Table 6:")


def test_no_warning_where_the_numbers_can_mean_something(tmp_path, capsys):
    """Origin above chance (2 of 4 against 1/4), ties under the threshold, a circuit above its floor
    and both masks set: no warning line and no section. Eval JSONs from before choices_tied
    (without the field) give no tie warning either."""
    correct = {"f": [1, 1, 0, 0], "r": [1, 1], "g": [1, 0]}
    paths = [write_eval(tmp_path / "o.json", "origin", correct), write_eval(tmp_path / "c.json", "clue", correct)]
    rec = io.read_json(paths[0])
    rec["choices_tied"] = {"g": 0.2}
    io.write_json(paths[0], rec)
    capsys.readouterr()
    assert main(["table1", "--evals", *paths, "--forget", "f", "--retain", "r", "--methods", "origin", "clue",
                 "--md", str(tmp_path / "t.md"), "--data", write_test_file(tmp_path / "data" / "f", [4, 4, 4, 4]),
                 "--circuits", write_circuit(tmp_path / "circuit.json", "f", 0.85, 0.85),
                 "--masks", write_clue_masks(tmp_path / "masks" / "f__r" / "clue.safetensors", True, True)]) == 0
    assert "warning" not in capsys.readouterr().err
    assert "Warnings" not in (tmp_path / "t.md").read_text()


def test_chance_is_the_mean_of_one_over_the_choices_of_the_questions_evaluated(tmp_path):
    """Two-choice and four-choice questions: chance (1/2 + 1/2 + 1/4 + 1/4) / 4 = 0.375 over all
    four, 1/2 over the first two (an evaluation limited to two questions)."""
    from clue import caveats

    test = tmp_path / "test.jsonl"
    write_test_file(tmp_path, [2, 2, 4, 4])
    assert caveats.chance(test) == (0.375, 4, [2, 4])
    assert caveats.chance(test, 2) == (0.5, 2, [2])
    assert caveats.below_chance("f", 0.375, 0.375, 4, [2, 4]) == (
        "forget set f: the base model (Origin) answers 0.375 of its 4 test questions, at or below chance (0.375: "
        "1/choices averaged over the questions, 2-4 choices): there is nothing to forget, so FE (Origin's already "
        "0.625) cannot show forgetting; choose a forget set the model knows")
    assert caveats.below_chance("f", 0.376, 0.375, 4, [2, 4]) is None
    test.write_text(json.dumps({"prompt": "q", "choices": ["a", "b"]}) + "\n" + json.dumps({"prompt": "q2"}) + "\n")
    with pytest.raises(ClueError, match=r"test.jsonl, line 2: no 'choices' list$"):
        caveats.chance(test)


@pytest.mark.parametrize("forget, conflict, line", [
    (False, False, "pair f__r: CLUE's forget and conflict masks are both empty: the forget circuit keeps no neuron "
                   "on a path to its output, so CLUE leaves the model as it is (its row is the base model's); lower "
                   "circuit.target_sparsity (or circuit.target_sparsity_per_task.f) keeps more of the forget circuit"),
    (True, False, "pair f__r: CLUE's conflict mask is empty: the forget circuit switches off without a neuron the "
                  "retain circuit needs (Phi is satisfiable), so the conflict stage (unlearn.epochs_conflict) does "
                  "not train and CLUE is its forget stage alone; logic.adder_forget and logic.adder_retain decide "
                  "which shared neurons must differ (logic.adder_retain: AND, the paper's, gives conflict neurons "
                  "where OR finds none)"),
    (False, True, MASK_LINE),
    (True, True, None),
])
def test_an_empty_mask_is_read_from_the_mask_file(tmp_path, forget, conflict, line):
    from clue import caveats
    from clue.masks import mask_sizes

    sizes = mask_sizes(write_clue_masks(tmp_path / "clue.safetensors", forget, conflict))
    assert sizes == {"forget": 4 if forget else 0, "conflict": 4 if conflict else 0}
    assert caveats.empty_masks("f__r", "f", sizes) == line


def test_a_circuit_without_a_defined_or_a_reached_faithfulness_is_named(tmp_path):
    """Held-out KL of the empty circuit 0: faithfulness undefined. A circuit kept by if_unfaithful:
    most_faithful says so beside its validation figure. A lowered floor silences the warning."""
    from clue import caveats

    rec = io.read_json(write_circuit(tmp_path / "c.json", "t", None, 0.85))
    assert caveats.circuit(rec) == (
        "circuit t noising: its held-out faithfulness is undefined: the corrupted prompts do not change the "
        "model's output at all (KL of the empty circuit 0), so the circuit says nothing about the task; its "
        "pairs' clean and corrupted prompts must lead to different answers")
    rec = io.read_json(write_circuit(tmp_path / "c.json", "t", 0.5, 0.85, validation=0.6, reached=False))
    assert caveats.circuit(rec).startswith(
        "circuit t noising: held-out faithfulness 0.500 is below circuit.min_faithfulness 0.85 (validation 0.600; "
        "no candidate reached the floor on validation, the most faithful kept): ")
    rec["config"]["min_faithfulness"] = 0.5
    assert caveats.circuit(rec) is None
