"""The tune stage's rule and its bad input: the selection by hand on small grids, the budget table,
the Pareto frontier and the FE intervals of `clue tune-select`, the per-question results `clue tune`
records, and every error of the `tune` section naming its key before any job runs."""

import csv
import json
import math
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from snakemake.utils import validate

sys.path.insert(0, str(Path(__file__).parent))
from conftest import make_model  # noqa: E402

from clue import io  # noqa: E402
from clue.cli import main  # noqa: E402
from clue.config import check_config  # noqa: E402
from clue.errors import ClueError  # noqa: E402
from clue.reports.table1 import _resamples  # noqa: E402
from clue.reports.tuning import NO_INTERVAL, budget_rows, fe_interval, pareto, select, tuning_rows  # noqa: E402
from clue.tune import DEFAULTS, check_budgets, check_grid, check_rule  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

SCHEMA = str(ROOT / "workflow/schemas/config.schema.yaml")
RULE = {"maximize": "FE", "at_least": {"RU": 0.95, "GU": 0.95}}
ORIGIN = {"FE": 0.1, "RU": 0.9, "GU": 0.8}


def point(lr, epochs, fe, ru, gu):
    return {"lr": lr, "epochs": epochs, "FE": fe, "RU": ru, "GU": gu}


def test_the_rule_takes_the_highest_fe_among_points_keeping_95_percent_of_origins_utility():
    # floors: RU >= 0.855, GU >= 0.76
    points = [point(1e-4, 2, 0.30, 0.90, 0.80),   # meets, FE 0.30
              point(1e-4, 4, 0.50, 0.86, 0.76),   # meets, FE 0.50 <- chosen
              point(1e-3, 2, 0.90, 0.50, 0.40),   # highest FE, but GU and RU below the floors
              point(1e-3, 4, 0.50, 0.89, 0.79)]   # ties at 0.50: the smaller lr wins
    chosen, meets = select(points, ORIGIN, RULE)
    assert chosen == 1 and meets == [True, True, False, True]
    # no point meets the floors: the one keeping most of Origin's utility (its smaller ratio)
    low = [point(1e-4, 2, 0.2, 0.80, 0.70), point(1e-3, 2, 0.9, 0.85, 0.50)]
    chosen, meets = select(low, ORIGIN, RULE)
    assert chosen == 0 and meets == [False, False]
    rows, selected = tuning_rows([{"method": "ga", "points": low}], {"points": [ORIGIN]}, RULE)
    assert selected == {"ga": {"lr": 1e-4, "epochs": 2, "met_rule": False}}
    assert rows[0]["method"] == "origin" and rows[1]["selected"] and "no point met the floors" in rows[1]["note"]


@pytest.mark.parametrize("grid, message", [
    ({}, "config key tune.grid: give a grid of settings"),
    ({"lr": [1e-3], "epochs": [2], "batch": [8]}, "config key tune.grid.batch: unknown setting"),
    ({"lrs": [1e-3], "epochs": [2]}, "config key tune.grid.lrs: unknown setting (did you mean lr?)"),
    ({"lr": [], "epochs": [2]}, "config key tune.grid.lr: an empty or missing list"),
    ({"lr": [1e-3]}, "config key tune.grid.epochs: an empty or missing list"),
    ({"lr": [-1], "epochs": [2]}, "config key tune.grid.lr: learning rates must be positive"),
    ({"lr": [1e-3], "epochs": [0]}, "config key tune.grid.epochs: epoch counts must be integers of at least"),
])
def test_a_bad_grid_names_the_key(grid, message):
    with pytest.raises(ClueError) as err:
        check_grid(grid, 1)
    assert str(err.value).startswith(message)


@pytest.mark.parametrize("rule, message", [
    ({"maximize": "ACC"}, "config key tune.rule.maximize: unknown metric 'ACC'"),
    ({"maximize": "FE", "at_least": {"MMLU": 0.9}}, "config key tune.rule.at_least.MMLU: unknown metric"),
    ({"maximize": "FE", "at_least": {"GUU": 0.9}}, "config key tune.rule.at_least.GUU: unknown metric (did you mean GU?)"),
    ({"maximize": "FE", "at_least": {"GU": -1}}, "config key tune.rule.at_least.GU: a non-negative fraction"),
    ({"best": "FE"}, "config key tune.rule: give maximize"),
])
def test_a_bad_rule_names_the_key(rule, message):
    with pytest.raises(ClueError) as err:
        check_rule(rule)
    assert str(err.value).startswith(message)


def load(extra):
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config.update(extra)
    validate(config, SCHEMA)
    return config


@pytest.mark.parametrize("tune, message", [
    ({"grid": {"lr": [1e-3], "epochs": [2]}, "methods": ["ga", "rmu"]},
     "config key tune.methods[1]: 'rmu' is not a trained method of the config"),
    ({"grid": {"lr": [1e-3], "epochs": [2]}, "methods": ["origin"]},
     "config key tune.methods[0]: 'origin' is not a trained method"),
    ({"grid": {"lr": [1e-3], "epochs": [2]}, "pairs": ["toy_cyber__toy_ioi"]},
     "config key tune.pairs[0]: 'toy_cyber__toy_ioi' is not forget__retain of the config's tasks"),
    # each forget set is tuned on one pair of its own
    ({"grid": {"lr": [1e-3], "epochs": [2]}, "pairs": ["toy_cyber__toy_cyber_neighbour",
                                                      "toy_cyber__toy_bio_neighbour"]},
     "config key tune.pairs[1]: a second pair for the forget set 'toy_cyber'"),
    ({"grid": {"lr": [1e-3], "epochs": [2]}, "pairs": ["toy_cyber__toy_cyber_neighbour"]},
     "config key tune.pairs: no pair for the forget set(s) toy_bio"),
    # the random-mask control trains with CLUE's choice
    ({"grid": {"lr": [1e-3], "epochs": [2]}, "methods": ["clue", "random"]},
     "config key tune.methods[1]: random trains with CLUE's tuned setting (only its neurons differ); it is not tuned"),
    ({"grid": {"lr": [1e-3], "epochs": [2]}, "rule": {"maximize": "GU", "at_least": {"FE": 2, "XX": 1}}},
     "config key tune.rule.at_least.XX: unknown metric"),
])
def test_the_tune_section_is_checked_with_the_config(tune, message):
    with pytest.raises(ClueError) as err:
        check_config(load({"tune": tune}))
    assert str(err.value).startswith(message)


def test_a_validation_split_that_is_the_test_split_is_refused():
    config = yaml.safe_load("""
model: {name: zephyr-7b-beta}
tasks: {forget: [wmdp_cyber], retain: [sst2], general: []}
data: {sources: {sst2: {split_validation: validation}}}
""")
    validate(config, SCHEMA)
    with pytest.raises(ClueError, match="config key data.sources.sst2.split_validation: 'validation' is the test split"):
        check_config(config)


# ------------------------------------------------------------------ frontier, budgets, intervals

def dominated(p, points):
    return any(q["GU"] >= p["GU"] and q["FE"] >= p["FE"] and (q["GU"] > p["GU"] or q["FE"] > p["FE"]) for q in points)


def test_the_pareto_frontier_is_every_point_no_other_dominates():
    rng = random.Random(0)
    for _ in range(300):
        # one decimal: many ties in GU, in FE and whole points repeated
        points = [{"GU": round(rng.random(), 1), "FE": round(rng.random(), 1)} for _ in range(rng.randint(1, 15))]
        expected = sorted((i for i, p in enumerate(points) if not dominated(p, points)),
                          key=lambda i: (points[i]["GU"], points[i]["FE"]))
        assert pareto(points) == expected
    # by hand: (0.5, 0.5) is dominated by (0.5, 0.6), (0.2, 0.6) by (0.5, 0.6); the rest trade off
    hand = [{"GU": 0.5, "FE": 0.5}, {"GU": 0.9, "FE": 0.1}, {"GU": 0.5, "FE": 0.6}, {"GU": 0.2, "FE": 0.6},
            {"GU": 0.1, "FE": 0.9}, {"GU": None, "FE": 1.0}]
    assert pareto(hand) == [4, 2, 1]


def test_each_budget_takes_the_highest_fe_keeping_that_fraction_of_origins_ru_and_gu():
    # Origin RU 0.8, GU 0.6. Floors: 0.95 -> RU 0.76, GU 0.57; 0.9 -> 0.72, 0.54; 0.8 -> 0.64, 0.48
    ga = [point(1e-4, 2, 0.20, 0.79, 0.59),   # within 0.95
          point(1e-3, 2, 0.40, 0.75, 0.56),   # within 0.9: ties B on FE, larger lr
          point(1e-4, 4, 0.40, 0.74, 0.58),   # B: within 0.9
          point(1e-3, 4, 0.70, 0.70, 0.50),   # within 0.8 only
          point(1e-2, 2, 0.90, 0.30, 0.20)]   # within none
    npo = [point(1e-4, 6, 0.50, 0.70, 0.50),  # within 0.8; ties F on FE and lr, more epochs
           point(1e-4, 2, 0.50, 0.75, 0.59)]  # F: within 0.9 (RU 0.9375 of Origin's)
    origin = {"forget": "f", "retain": "r", "points": [{"lr": None, "epochs": 0, "FE": 0.1, "RU": 0.8, "GU": 0.6}]}
    rows, _ = tuning_rows([{"method": "ga", "points": ga}, {"method": "npo", "points": npo}], origin, RULE)
    got = [(r["budget"], r["method"], r["lr"], r["epochs"], r["FE"], r["RU"], r["GU"], r["note"])
           for r in budget_rows(rows, [0.95, 0.9, 0.8])]
    assert got == [
        (0.95, "ga", 1e-4, 2, 0.20, 0.79, 0.59, NO_INTERVAL),
        (0.95, "npo", None, None, None, None, None, "none: no grid point keeps RU and GU at least 0.95 x Origin's"),
        (0.9, "ga", 1e-4, 4, 0.40, 0.74, 0.58, NO_INTERVAL),
        (0.9, "npo", 1e-4, 2, 0.50, 0.75, 0.59, NO_INTERVAL),
        (0.8, "ga", 1e-3, 4, 0.70, 0.70, 0.50, NO_INTERVAL),
        (0.8, "npo", 1e-4, 2, 0.50, 0.75, 0.59, NO_INTERVAL),
    ]


def test_the_fe_interval_resamples_facts_with_table1s_bootstrap():
    # 12 facts asked in 3 forms each, every form of a fact right or every form wrong
    per_fact = [1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 0]
    correct = [v for v in per_fact for _ in range(3)]
    facts = [f"fact{i}" for i in range(12) for _ in range(3)]
    fe = 1 - sum(correct) / len(correct)
    lo, hi = fe_interval(correct, "F", "R", facts)
    # directly: the 12 facts resampled with the indices Table 1 draws for this pair and task
    idx = _resamples("F", "R", "F", 12)
    assert (lo, hi) == pytest.approx(tuple(np.percentile(1 - np.asarray(per_fact, float)[idx].mean(1), [2.5, 97.5])),
                                     abs=1e-12)
    # the same 36 questions taken as independent: a narrower interval; both contain the estimate
    qlo, qhi = fe_interval(correct, "F", "R")
    assert hi - lo > 1.5 * (qhi - qlo) and lo <= fe <= hi and qlo <= fe <= qhi
    # facts with different numbers of questions: a resample's FE is its wrong answers over its questions
    correct, facts = [1, 0, 0, 1, 1, 1], ["a", "b", "b", "c", "c", "c"]
    idx = _resamples("F", "R", "F", 3)
    wrong, asked = {"a": 0, "b": 2, "c": 0}, {"a": 1, "b": 2, "c": 3}
    direct = [sum(wrong["abc"[j]] for j in row) / sum(asked["abc"[j]] for j in row) for row in idx]
    assert fe_interval(correct, "F", "R", facts) == pytest.approx(tuple(np.percentile(direct, [2.5, 97.5])),
                                                                   abs=1e-12)
    # no per-question results (a record from before they were kept): no interval
    assert all(math.isnan(x) for x in fe_interval(None, "F", "R"))


@pytest.mark.parametrize("budgets, start, end", [
    ([0], "config key tune.budgets: 0 (item 0) is not a fraction in (0, 1]", ""),
    ([0.9, 1.5], "config key tune.budgets: 1.5 (item 1) is not a fraction in (0, 1]", ""),
    ([-0.5], "config key tune.budgets: -0.5 (item 0) is not a fraction in (0, 1]", ""),
    ([0.9, True], "config key tune.budgets: True (item 1) is not a fraction", ""),
    ([0.9, "0.8"], "config key tune.budgets: '0.8' (item 1) is not a fraction", ""),
    ([0.9, 0.8, 0.9], "config key tune.budgets: 0.9 (item 2) is given twice", ""),
    ([], "config key tune.budgets: give a non-empty list of fractions", "not []"),
    ("x", "config key tune.budgets: give a non-empty list of fractions", "not 'x'"),
    (None, "config key tune.budgets: give a non-empty list of fractions", "not None"),
])
def test_bad_budgets_name_the_key_and_the_value(budgets, start, end):
    with pytest.raises(ClueError) as err:
        check_budgets(budgets)
    assert str(err.value).startswith(start) and str(err.value).endswith(end)


def test_budgets_default_to_95_90_80_percent_in_the_schema_and_the_stage():
    assert check_budgets([1, 0.5]) == [1.0, 0.5]
    assert load({})["tune"]["budgets"] == DEFAULTS["budgets"] == [0.95, 0.90, 0.80]


# ------------------------------------------------------------------------ clue tune-select

def graded(lr, epochs, right, ru, gu):
    """A grid point with its per-question results: ``right`` 0/1 per forget validation question."""
    return {**point(lr, epochs, 1 - sum(right) / len(right), ru, gu), "forget_correct": right}


def tune_records(root):
    """Two tuning pairs in the layout `clue tune` writes. toy_cyber x toy_sst2: 10 questions
    asking 5 facts twice each; toy_cyber x toy_ioi: 8 questions without facts, and GA's record from
    before per-question results were kept."""
    one, two = root / "toy_cyber__toy_sst2", root / "toy_cyber__toy_ioi"
    facts = [f for f in "abcde" for _ in range(2)]
    common = {"forget": "toy_cyber", "retain": "toy_sst2", "general": ["toy_arithmetic"], "forget_facts": facts}
    io.write_json(one / "origin.json", {"method": "origin", **common, "points": [
        graded(None, 0, [1, 1, 1, 1, 0, 0, 1, 1, 1, 1], 0.8, 0.6)]})
    io.write_json(one / "ga.json", {"method": "ga", "trains": "ga", **common, "points": [
        graded(1e-4, 1, [1, 1, 1, 1, 1, 1, 1, 1, 1, 0], 0.79, 0.59),   # rule, 0.95
        graded(1e-4, 2, [1, 0, 1, 0, 1, 0, 1, 0, 1, 0], 0.74, 0.58),   # 0.9, 0.8
        graded(1e-3, 1, [0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 0.30, 0.20)]})  # none
    io.write_json(one / "clue.json", {"method": "clue", "trains": "clue", **common, "points": [
        graded(1e-4, 1, [0] * 10, 0.79, 0.60),                          # rule, every budget
        graded(1e-4, 2, [0] * 10, 0.50, 0.30)]})
    common = {"forget": "toy_cyber", "retain": "toy_ioi", "general": ["toy_arithmetic"]}
    io.write_json(two / "origin.json", {"method": "origin", **common, "forget_facts": None, "points": [
        graded(None, 0, [1, 1, 1, 1, 1, 1, 0, 0], 0.8, 0.6)]})
    io.write_json(two / "ga.json", {"method": "ga", "trains": "ga", **common, "points": [
        point(1e-4, 1, 0.3, 0.70, 0.55),    # none met the rule: the most of Origin's utility; 0.8
        point(1e-3, 1, 0.6, 0.50, 0.50)]})
    io.write_json(two / "clue.json", {"method": "clue", "trains": "clue", **common, "forget_facts": None, "points": [
        graded(1e-4, 1, [1, 1, 1, 1, 0, 0, 0, 0], 0.78, 0.59)]})
    return one, two


def test_tune_select_over_two_pairs_writes_each_choice_the_points_and_the_budget_table(tmp_path):
    one, two = tune_records(tmp_path / "tune")
    out = tmp_path / "tables"
    figures = [out / "figures/tuning_toy_cyber__toy_sst2.svg", out / "figures/tuning_toy_cyber__toy_ioi.svg"]
    assert main(["tune-select", "--pair-dirs", str(one), str(two), "--methods", "ga", "clue", "--tune-params", "{}",
                 "--csv", str(out / "tuning.csv"), "--budgets-csv", str(out / "tuning_budgets.csv"),
                 "--budgets-md", str(out / "tuning_budgets.md"), "--figures", *map(str, figures)]) == 0
    assert sorted(p.name for p in one.iterdir()) == ["clue.json", "ga.json", "origin.json"]   # the report only

    with open(out / "tuning.csv") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["forget", "retain", "method", "lr", "epochs", "FE", "FE_lo", "FE_hi",
                                     "n_validation", "RU", "GU", "meets_rule", "selected", "note"]
        rows = list(reader)
    assert [(r["retain"], r["method"]) for r in rows] == [("toy_sst2", m) for m in ("origin", "ga", "ga", "ga", "clue",
                                                                                    "clue")] + [
        ("toy_ioi", m) for m in ("origin", "ga", "ga", "clue")]
    ga = rows[1]
    lo, hi = fe_interval([1] * 9 + [0], "toy_cyber", "toy_sst2", [f for f in "abcde" for _ in range(2)])
    assert (float(ga["FE"]), float(ga["FE_lo"]), float(ga["FE_hi"]), ga["n_validation"]) == (
        pytest.approx(0.1), pytest.approx(lo, rel=1e-3), pytest.approx(hi, rel=1e-3), "10")
    assert lo <= 0.1 <= hi <= 0.5   # one wrong answer, in a fact of two questions
    old = rows[7]   # GA of the second pair: no per-question results
    assert (old["FE_lo"], old["FE_hi"], old["n_validation"], old["selected"]) == ("", "", "", "True")
    assert NO_INTERVAL in old["note"] and "no point met the floors" in old["note"]
    assert rows[6]["n_validation"] == "8" and float(rows[6]["FE_lo"]) <= 0.25 <= float(rows[6]["FE_hi"])

    with open(out / "tuning_budgets.csv") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["forget", "retain", "budget", "method", "lr", "epochs", "FE", "FE_lo", "FE_hi",
                                     "RU", "GU", "note"]
        budgets = list(reader)

    def num(v):
        return None if v == "" else float(v)

    assert [(r["retain"], num(r["budget"]), r["method"], num(r["lr"]), num(r["epochs"]), num(r["FE"]))
            for r in budgets] == [
        ("toy_sst2", 0.95, "ga", 1e-4, 1, 0.1), ("toy_sst2", 0.95, "clue", 1e-4, 1, 1.0),
        ("toy_sst2", 0.9, "ga", 1e-4, 2, 0.5), ("toy_sst2", 0.9, "clue", 1e-4, 1, 1.0),
        ("toy_sst2", 0.8, "ga", 1e-4, 2, 0.5), ("toy_sst2", 0.8, "clue", 1e-4, 1, 1.0),
        ("toy_ioi", 0.95, "ga", None, None, None), ("toy_ioi", 0.95, "clue", 1e-4, 1, 0.5),
        ("toy_ioi", 0.9, "ga", None, None, None), ("toy_ioi", 0.9, "clue", 1e-4, 1, 0.5),
        ("toy_ioi", 0.8, "ga", 1e-4, 1, 0.3), ("toy_ioi", 0.8, "clue", 1e-4, 1, 0.5)]
    assert budgets[6]["note"] == "none: no grid point keeps RU and GU at least 0.95 x Origin's"
    assert budgets[6]["FE_lo"] == budgets[6]["RU"] == "" and budgets[10]["note"] == NO_INTERVAL
    assert (num(budgets[1]["FE_lo"]), num(budgets[1]["FE_hi"])) == (1.0, 1.0)

    md = (out / "tuning_budgets.md").read_text()
    header = "| Method | RU, GU ≥ 0.95 x Origin | RU, GU ≥ 0.9 x Origin | RU, GU ≥ 0.8 x Origin |"
    first, second = md.split("## toy_cyber x toy_sst2")[1].split("## toy_cyber x toy_ioi")
    assert header in first and header in second
    lo2, hi2 = fe_interval([1, 0] * 5, "toy_cyber", "toy_sst2", [f for f in "abcde" for _ in range(2)])
    assert (f"| GA | 0.100 [{lo:.2f}, {hi:.2f}] (0.0001, 1) | 0.500 [{lo2:.2f}, {hi2:.2f}] (0.0001, 2) | "
            f"0.500 [{lo2:.2f}, {hi2:.2f}] (0.0001, 2) |") in first
    assert "| CLUE | " + " | ".join(["1.000 [1.00, 1.00] (0.0001, 1)"] * 3) + " |" in first
    assert "2,000 resamples of the 10 validation questions of toy_cyber, by fact (5 facts" in first
    assert ("At the 0.95 budget, CLUE's 95% FE interval is [1.00, 1.00]. Intervals that do not overlap it: GA."
            in first)
    assert "| GA | none | none | 0.300 [no interval] (0.0001, 1) |" in second
    assert "2,000 resamples of the 8 validation questions of toy_cyber." in second
    assert "Intervals that do not overlap it: none. No point or no interval at this budget: GA." in second

    for figure, pair in zip(figures, ("toy_cyber x toy_sst2", "toy_cyber x toy_ioi")):
        svg = figure.read_text()
        assert svg.startswith("<?xml") and pair in svg and "Pareto frontier" in svg


def test_tune_select_refuses_unmatched_figures_bad_budgets_and_mixed_records(tmp_path, capsys):
    one, two = tune_records(tmp_path / "tune")

    def run(*extra, figures=("a.svg", "b.svg"), tune="{}"):
        return main(["tune-select", "--pair-dirs", str(one), str(two), "--methods", "ga", "clue", "--tune-params",
                     tune, "--csv", str(tmp_path / "t.csv"), "--budgets-csv", str(tmp_path / "b.csv"),
                     "--budgets-md", str(tmp_path / "b.md"), "--figures", *[str(tmp_path / f) for f in figures]])

    assert run(figures=["a.svg"]) == 2
    assert "give as many --figures (1) as --pair-dirs (2)" in capsys.readouterr().err
    assert run(tune='{"budgets": [0.9, 1.5]}') == 2
    assert "config key tune.budgets: 1.5 (item 1) is not a fraction in (0, 1]" in capsys.readouterr().err
    rec = io.read_json(two / "clue.json")
    io.write_json(two / "clue.json", {**rec, "retain": "toy_sst2"})
    assert run() == 2
    assert "clue.json: tuned on toy_cyber x toy_sst2, but" in capsys.readouterr().err
    assert not (tmp_path / "t.csv").exists()


def test_each_methods_choice_is_a_file_of_its_own(tmp_path, capsys):
    """`--selected` writes the rule's choice of each method into its own file (a method tuned again
    retrains only its own rows), the same choice the report marks as selected."""
    one, two = tune_records(tmp_path / "tune")
    rule = {"maximize": "FE", "at_least": {"RU": 0.95, "GU": 0.95}}
    for pair_dir, name, ga_met in ((one, "toy_cyber__toy_sst2", True), (two, "toy_cyber__toy_ioi", False)):
        files = [pair_dir / "selected" / f"{m}.json" for m in ("ga", "clue")]
        assert main(["tune-select", "--pair-dirs", str(pair_dir), "--methods", "ga", "clue",
                     "--selected", *map(str, files)]) == 0
        assert json.loads(files[0].read_text()) == {"rule": rule, "pair": name, "methods": {
            "ga": {"lr": 1e-4, "epochs": 1, "met_rule": ga_met}}}
        assert json.loads(files[1].read_text()) == {"rule": rule, "pair": name, "methods": {
            "clue": {"lr": 1e-4, "epochs": 1, "met_rule": True}}}
    assert not (tmp_path / "tune" / "tuning.csv").exists()
    # unlearn reads several choice files into one {row: choice}
    from clue.unlearn import read_tuned, tuned_params

    tuned = read_tuned([one / "selected" / "ga.json", one / "selected" / "clue.json"])
    assert tuned == {"ga": {"lr": 1e-4, "epochs": 1, "met_rule": True}, "clue": {"lr": 1e-4, "epochs": 1, "met_rule": True}}
    assert tuned_params({"lr": 5e-5, "epochs_forget": 1}, "random", tuned)["lr"] == 1e-4   # CLUE's, for the control
    assert main(["tune-select", "--pair-dirs", str(one), str(two), "--methods", "ga", "clue",
                 "--selected", "a.json", "b.json"]) == 2
    assert "--selected takes one file per method (2) of one --pair-dirs (2 given, 2 files)" in capsys.readouterr().err
    assert main(["tune-select", "--pair-dirs", str(one), "--methods", "ga", "clue"]) == 2
    assert "give --selected (the choice of each method), the tuning report" in capsys.readouterr().err
    assert main(["tune-select", "--pair-dirs", str(one), "--methods", "ga", "--csv", "x.csv"]) == 2
    assert "give --csv, --budgets-csv, --budgets-md and --figures together" in capsys.readouterr().err


# ------------------------------------------------------------------------------- clue tune

def test_clue_tune_keeps_each_forget_questions_answer_and_fact(tmp_path):
    """Origin's and a GA grid's records on a world whose forget questions ask facts in several
    forms: each point's per-question answers equal an independent scoring of the validation file
    one question at a time, and the record keeps the fact of each question."""
    from clue.base_model import build_tokenizer, load_base, multiple_choice_accuracy, task_texts
    from clue.data import write_task

    data, texts = tmp_path / "data", []
    for task in ("world_cities", "world_sentiment", "world_ioi"):
        write_task(task, dict(seed=1, n_train=20, n_test=6, n_pairs=2, n_validation=6), data / task)
        texts += task_texts(data / task)
    tok = build_tokenizer(texts)
    make_model("llama", vocab_size=len(tok), seed=3).save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    (tmp_path / "base/clue_base.json").write_text(json.dumps({"source": "toy"}))
    records = io.read_jsonl(data / "world_cities/validation.jsonl")
    assert len(records) > len({r["fact"] for r in records}) > 1   # facts asked in several forms

    def tune(out, *extra, evaluate=None):
        assert main(["tune", "--base-dir", str(tmp_path / "base"), "--data-root", str(data), "--forget",
                     "world_cities", "--retain", "world_sentiment", "--general", "world_ioi",
                     "--tune-params", json.dumps({"grid": {"lr": [1e-2], "epochs": [1]}}),
                     "--eval-params", json.dumps(evaluate or {"batch_size": 16}), "--out", str(out), *extra]) == 0
        return io.read_json(out)

    origin = tune(tmp_path / "origin.json")
    model, tok = load_base(tmp_path / "base")
    right = [int(multiple_choice_accuracy(model, tok, [r]) == 1.0) for r in records]
    (p,) = origin["points"]
    assert p["forget_correct"] == right and p["FE"] == pytest.approx(1 - sum(right) / len(right))
    assert origin["forget_facts"] == [r["fact"] for r in records]
    # evaluate.limit: lm-eval scores the first questions, and the facts kept are theirs
    limited = tune(tmp_path / "limited.json", evaluate={"batch_size": 16, "limit": 4})
    assert limited["points"][0]["forget_correct"] == right[:4]
    assert limited["forget_facts"] == [r["fact"] for r in records[:4]]

    ga = tune(tmp_path / "ga.json", "--method", "ga", "--row", "ga", "--unlearn-params",
              json.dumps({"max_forget_examples": 406, "batch_size": 64, "device": "cpu", "epochs_forget": 1}))
    assert [(q["lr"], q["epochs"]) for q in ga["points"]] == [(1e-2, 1)]
    assert ga["forget_facts"] == origin["forget_facts"]
    for q in ga["points"]:
        assert len(q["forget_correct"]) == len(records) and q["FE"] == pytest.approx(
            1 - sum(q["forget_correct"]) / len(records))
