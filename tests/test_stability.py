"""The stability check: circuit seeds that change only the gates' noise and initialisation and
the order of the discovery pairs, and the Jaccard table of CLUE's categories across them
(expected overlaps worked out by hand from small sets)."""

import json

import pytest
import torch

from clue.cli import main as clue
from clue.errors import ClueError


def assignment(path, forget, retain, cats):
    neurons = {n: {"value": None, "category": c} for c, names in cats.items() for n in names}
    path.write_text(json.dumps({"forget": forget, "retain": retain, "status": "UNSAT", "neurons": neurons}))
    return str(path)


def test_jaccard_of_every_two_seeds_by_hand(tmp_path, capsys):
    """Seeds 0, 1, 2 of one pair. forget {a, b} / {a, b} / {a}: 1.0, 0.5, 0.5 (mean 0.667);
    conflict {c} / {c, d} / {} : 0.5, 0.0, 0.0; retain empty everywhere: 1.0, flagged."""
    paths = [assignment(tmp_path / f"s{s}.json", "f", "r", cats) for s, cats in enumerate([
        {"forget": ["a0.h0", "a0.h1"], "conflict": ["m0"], "safe": ["m1"]},
        {"forget": ["a0.h0", "a0.h1"], "conflict": ["m0", "m1"]},
        {"forget": ["a0.h0"], "safe": ["a0.h1", "m0", "m1"]}])]
    csv, md = tmp_path / "s.csv", tmp_path / "s.md"
    assert clue(["stability", "--pairs", "f__r", "--seeds", "0", "1", "2", "--assignments", *paths,
                 "--csv", str(csv), "--md", str(md)]) == 0
    import pandas as pd

    table = pd.read_csv(csv)
    got = {(r.category, r.seed_a, r.seed_b): round(r.jaccard, 4) for r in table.itertuples()}
    assert got == {("forget", 0, 1): 1.0, ("forget", 0, 2): 0.5, ("forget", 1, 2): 0.5,
                   ("conflict", 0, 1): 0.5, ("conflict", 0, 2): 0.0, ("conflict", 1, 2): 0.0,
                   ("retain", 0, 1): 1.0, ("retain", 0, 2): 1.0, ("retain", 1, 2): 1.0}
    assert set(table[table.category == "retain"].note) == {"both empty"}
    text = md.read_text()
    assert "| f x r | 0.50* / 0.67 (n 2, 2, 1) | 0.00* / 0.17 (n 1, 2, 0) | 1.00 / 1.00 (all empty) (n 0, 0, 0) |" in text
    assert "Below the goal: f x r (conflict), f x r (forget)." in text


@pytest.mark.parametrize("seeds, message", [
    (["0"], "config key --seeds: give at least two circuit seeds to compare, not [0]"),
    (["1", "1"], "config key --seeds: a seed repeats ([1, 1])"),
])
def test_the_cli_refuses_fewer_than_two_seeds(tmp_path, capsys, seeds, message):
    a = assignment(tmp_path / "a.json", "f", "r", {"forget": ["m0"]})
    assert clue(["stability", "--pairs", "f__r", "--seeds", *seeds, "--assignments", *[a] * len(seeds),
                 "--csv", str(tmp_path / "x.csv"), "--md", str(tmp_path / "x.md")]) == 2
    assert capsys.readouterr().err.strip() == f"clue stability: error: {message}"
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize("seeds, message", [
    ([0], "config key stability.seeds: give at least two circuit seeds to compare, not [0]"),
    ([], "config key stability.seeds: give at least two circuit seeds to compare, not []"),
    ([0, 2, 2], "config key stability.seeds: a seed repeats ([0, 2, 2])"),
])
def test_a_config_with_fewer_than_two_seeds_fails_naming_the_key(seeds, message):
    import yaml
    from snakemake.utils import validate

    from clue.config import check_config
    from conftest import ROOT

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["stability"] = {"seeds": seeds}
    validate(config, str(ROOT / "workflow/schemas/config.schema.yaml"))
    with pytest.raises(ClueError) as err:
        check_config(config)
    assert str(err.value) == message


def test_an_assignment_of_another_pair_is_named(tmp_path, capsys):
    a = assignment(tmp_path / "a.json", "f", "r", {"forget": ["m0"]})
    b = assignment(tmp_path / "b.json", "f", "other", {"forget": ["m0"]})
    assert clue(["stability", "--pairs", "f__r", "--seeds", "0", "1", "--assignments", a, b,
                 "--csv", str(tmp_path / "x.csv"), "--md", str(tmp_path / "x.md")]) == 2
    assert f"{b}: an assignment of f x other, not f__r" in capsys.readouterr().err


def test_a_circuit_seed_reorders_the_same_discovery_pairs_and_seed_zero_keeps_the_file_order():
    from clue.circuits.discover import discovery_order

    pairs = {"clean": torch.arange(20).view(10, 2), "corrupted": torch.arange(20).view(10, 2) + 100,
             "last": torch.arange(10)}
    assert discovery_order(pairs, 0) is pairs
    one, two = discovery_order(pairs, 1), discovery_order(pairs, 2)
    for got in (one, two):
        assert sorted(got["last"].tolist()) == list(range(10)) and got["last"].tolist() != list(range(10))
        # each row moves whole: clean, corrupted and last stay together
        assert torch.equal(got["clean"][:, 0], 2 * got["last"]) and torch.equal(got["corrupted"], got["clean"] + 100)
    assert one["last"].tolist() != two["last"].tolist()
    assert discovery_order(pairs, 1)["last"].tolist() == one["last"].tolist()
