"""The tune stage's rule and its bad input: the selection by hand on small grids, and every error
of the `tune` section naming its key before any job runs."""

import pytest
import yaml
from snakemake.utils import validate

from clue.config import check_config
from clue.errors import ClueError
from clue.reports.tuning import select, tuning_rows
from clue.tune import check_grid, check_rule
from pathlib import Path

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
    ({"grid": {"lr": [1e-3], "epochs": [2]}, "pair": "toy_cyber__toy_ioi"},
     "config key tune.pair: 'toy_cyber__toy_ioi' is not forget__retain of the config's tasks"),
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
