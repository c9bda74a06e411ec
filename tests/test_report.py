"""The table1 stage: eval JSONs to results/table1.csv and the paper's layouts in table1.md, checked
cell by cell against values written down here."""

import csv
import json

import pandas as pd
import pytest

from clue import io
from clue.cli import main
from clue.report import COLUMNS, markdown

ROWS = [
    # forget, retain, method, pct, FE, RU, GU, MIA, RougeL, RU_prob, GU_prob
    ("f1", "r1", "origin", None, 0.1, 0.9, 0.8, 0.42, 0.75, 0.85, 0.7),
    ("f1", "r2", "origin", None, 0.1, 0.95, 0.8, 0.43, 0.75, 0.9, 0.7),
    ("f1", "r1", "clue", 50.0, 0.6, 0.85, 0.75, 0.61, 0.25, 0.8, 0.65),
    ("f1", "r2", "clue", 60.0, 0.7, 0.9, None, None, 0.5, None, None),
    ("f2", "r1", "ga", 100.0, 0.9, 0.3, 0.2, 0.95, 0.0, 0.3, 0.25),
]


def frame():
    return pd.DataFrame(ROWS, columns=COLUMNS).astype({k: float for k in COLUMNS[3:]})


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
    assert list(rows[0]) == COLUMNS == ["forget", "retain", "method", "unlearned_param_pct", "FE", "RU", "GU",
                                        "MIA", "RougeL", "RU_prob", "GU_prob"]
    assert [(r["forget"], r["retain"], r["method"]) for r in rows] == [
        ("f1", "r1", "origin"), ("f1", "r1", "clue"), ("f1", "r2", "origin"), ("f1", "r2", "clue"), ("f2", "r1", "ga")]
    assert rows[3] == dict(forget="f1", retain="r2", method="clue", unlearned_param_pct="60.0000", FE="0.7000",
                           RU="0.9000", GU="", MIA="", RougeL="0.5000", RU_prob="", GU_prob="")
    assert md_path.read_text() == markdown(frame(), ["f1", "f2"], ["r1", "r2"], ["origin", "ga", "clue"]) + "\n"


def test_an_eval_json_without_the_new_metrics_is_named(tmp_path, capsys):
    old = tmp_path / "old.json"
    old.write_text(json.dumps(dict(zip(COLUMNS[:7], ROWS[0][:7]))))
    assert main(["table1", "--evals", str(old), "--forget", "f1", "--retain", "r1", "--methods", "origin",
                 "--csv", str(tmp_path / "t.csv"), "--md", str(tmp_path / "t.md")]) == 2
    assert capsys.readouterr().err == (f"clue table1: error: {old}: eval JSON is missing MIA, RougeL, "
                                       "RU_prob, GU_prob\n")
    assert not (tmp_path / "t.csv").exists()


@pytest.mark.parametrize("value, cell", [(0.12345, "0.123"), (float("nan"), "-")])
def test_a_lone_cell_is_formatted_to_three_decimals_or_a_dash(value, cell):
    df = pd.DataFrame([("f", "r", "origin", None, value, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5)], columns=COLUMNS)
    assert table(markdown(df, ["f"], ["r"], ["origin"]), "Table 1: performance overview of LLM unlearning",
                 "f")[2][2] == cell
