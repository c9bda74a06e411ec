"""Figure 7 (stage fig7): the composition of each selection by matrix type, per retain set. Masks
with known selections on a tiny Llama; the expected element counts are worked out by hand from
the shapes (hidden 32, 4 heads of head_dim 8, intermediate 64, 2 layers)."""

import csv
import math

import pytest
import torch

from clue.cli import main as clue
from clue.masks import write_masks
from conftest import make_model

ATTN = "model.layers.{}.self_attn.{}_proj.weight"
MLP = "model.layers.{}.mlp.{}_proj.weight"
PAIRS = ["toy_cyber__toy_sst2", "toy_cyber__toy_rte"]
# all attention + MLP weight elements: 2 layers x (q,k,v,o 32x32 + gate,up 64x32 + down 32x64)
ALL = 2 * (4 * 32 * 32 + 3 * 64 * 32)


def rows(n, *idx):
    v = torch.zeros(n, dtype=torch.uint8)
    v[list(idx)] = 1
    return v


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("base")
    make_model("llama", hidden_size=32, heads=4, layers=2, intermediate_size=64).save_pretrained(d)
    return d


def write_pairs(d):
    """Per pair a CLUE mask (forget, conflict) and a WAGLE mask (forget); returns the mask paths
    pair by pair, clue then wagle."""
    # sst2: CLUE forget = head 1's q rows in layer 0 (8 rows x 32 = 256) and MLP unit 5 of layer 1:
    # its gate row (32), up row (32) and down column (32 rows x 1 = 32): 352 elements in all.
    # CLUE conflict: empty. WAGLE: 30 dense elements of k in layer 0, 10 of down in layer 1.
    # rte: CLUE forget = q rows 0..15 of layer 1 (512) + o columns 0..7 of layer 1 (256);
    # conflict = a whole MLP of layer 0 (gate 2048, up 2048, down 2048). WAGLE: empty.
    k, down = torch.zeros(32, 32, dtype=torch.bool), torch.zeros(32, 64, dtype=torch.bool)
    k.view(-1)[:30] = True
    down[3, :10] = True
    masks = {
        "toy_cyber__toy_sst2": (
            {"forget": {ATTN.format(0, "q"): {"rows": rows(32, *range(8, 16))},
                        MLP.format(1, "gate"): {"rows": rows(64, 5)}, MLP.format(1, "up"): {"rows": rows(64, 5)},
                        MLP.format(1, "down"): {"cols": rows(64, 5)}},
             "conflict": {}},
            {"forget": {ATTN.format(0, "k"): {"dense": k}, MLP.format(1, "down"): {"dense": down}}}),
        "toy_cyber__toy_rte": (
            {"forget": {ATTN.format(1, "q"): {"rows": rows(32, *range(16))},
                        ATTN.format(1, "o"): {"cols": rows(32, *range(8))}},
             "conflict": {MLP.format(0, "gate"): {"rows": torch.ones(64)}, MLP.format(0, "up"): {"rows": torch.ones(64)},
                          MLP.format(0, "down"): {"cols": torch.ones(64)}}},
            {"forget": {}}),
    }
    paths = []
    for pair, (clue_masks, wagle_masks) in masks.items():
        (d / pair).mkdir(exist_ok=True)
        write_masks(d / pair / "clue.safetensors", clue_masks, model="toy", localizer="clue",
                    categories=["forget", "conflict"])
        write_masks(d / pair / "wagle.safetensors", wagle_masks, model="toy", localizer="wagle", categories=["forget"])
        paths += [str(d / pair / "clue.safetensors"), str(d / pair / "wagle.safetensors")]
    return paths


EXPECTED = {  # (pair, selection, category) -> elements selected per matrix type
    ("toy_cyber__toy_sst2", "clue", "forget"): {"q": 256, "gate": 32, "up": 32, "down": 32},
    ("toy_cyber__toy_sst2", "clue", "conflict"): {},
    ("toy_cyber__toy_sst2", "wagle", "forget"): {"k": 30, "down": 10},
    ("toy_cyber__toy_rte", "clue", "forget"): {"q": 512, "o": 256},
    ("toy_cyber__toy_rte", "clue", "conflict"): {"gate": 2048, "up": 2048, "down": 2048},
    ("toy_cyber__toy_rte", "wagle", "forget"): {},
}


def run(tmp_path, base, masks, pairs=PAIRS, labels=("clue", "wagle"), figure="fig7.svg"):
    return clue(["fig7", "--pairs", *pairs, "--labels", *labels, "--masks", *masks, "--model-dir", str(base),
                 "--csv", str(tmp_path / "fig7.csv"), "--figure", str(tmp_path / figure)])


def test_composition_per_retain_set(tmp_path, base):
    assert run(tmp_path, base, write_pairs(tmp_path)) == 0
    table = list(csv.DictReader(open(tmp_path / "fig7.csv")))
    keys = {(r["pair"], r["selection"], r["category"]) for r in table}
    assert keys == set(EXPECTED)
    assert {r["retain"] for r in table} == {"toy_sst2", "toy_rte"} and {r["forget"] for r in table} == {"toy_cyber"}
    for key, want in EXPECTED.items():
        sel = [r for r in table if (r["pair"], r["selection"], r["category"]) == key]
        assert len(sel) == 2 * 7   # a row per layer and matrix type, selected or not
        # the raw counts: per matrix type, and each row's total is its matrix's size
        got = {m: sum(int(r["selected"]) for r in sel if r["matrix"] == m) for m in "q k v o gate up down".split()}
        assert got == {m: want.get(m, 0) for m in got}, key
        assert sum(int(r["total"]) for r in sel) == ALL
        assert {r["group"] for r in sel if r["matrix"] in "qkvo"} == {"attention"}
        n = sum(want.values())
        shares = {m: sum(float(r["share"]) for r in sel if r["matrix"] == m) for m in got} if n else {}
        if n:   # the composition: the share of the *selection* in each type, summing to 1
            assert shares == pytest.approx({m: want.get(m, 0) / n for m in got}), key
            assert sum(shares.values()) == pytest.approx(1.0)
        else:   # an empty selection has no composition (not a share of 0 everywhere)
            assert all(r["share"] == "" for r in sel), key
    forget = [r for r in table if (r["pair"], r["selection"], r["category"]) == ("toy_cyber__toy_sst2", "clue", "forget")]
    # by hand: q 256/352, gate, up and down 32/352 each (not 256/1024 of the q matrix)
    assert sum(float(r["share"]) for r in forget if r["matrix"] == "q") == pytest.approx(256 / 352)
    assert sum(int(r["selected"]) for r in forget) / sum(int(r["total"]) for r in forget) == pytest.approx(352 / ALL)
    svg = (tmp_path / "fig7.svg").read_text()
    assert "<svg" in svg[:3000] and "empty" in svg and "CLUE conflict" in svg and "retain: toy_rte" in svg


def test_composition_helper_matches_counts(tmp_path, base):
    import pandas as pd

    from clue.reports.fig7 import composition, display_names, sites, with_share

    paths = write_pairs(tmp_path)
    df = with_share(pd.DataFrame(sites(paths, ["clue", "wagle"] * 2, [p for p in PAIRS for _ in range(2)], base)))
    df["name"] = display_names(df)
    comp = composition(df)
    rec = comp[("toy_cyber__toy_rte", "CLUE conflict")]
    assert [rec[m] for m in ("gate", "up", "down")] == pytest.approx([1 / 3] * 3) and rec["q"] == 0
    assert rec["selected"] == 6144 and rec["coverage"] == pytest.approx(6144 / ALL)
    assert all(math.isnan(v) for m, v in comp[("toy_cyber__toy_rte", "WAGLE")].items() if m in "q k v o gate up down".split())
    assert comp[("toy_cyber__toy_sst2", "WAGLE")]["k"] == pytest.approx(0.75)


def test_mismatched_arguments_are_errors(tmp_path, base, capsys):
    masks = write_pairs(tmp_path)
    assert run(tmp_path, base, masks[:3]) == 2
    assert "2 --pairs x 2 --labels = 4 files, but 3 --masks" in capsys.readouterr().err
    assert run(tmp_path, base, masks, labels=("wagle", "clue")) == 2   # files in another order than the labels
    assert "written by localizer 'clue', but its label is 'wagle'" in capsys.readouterr().err
    assert run(tmp_path, base, masks[:2], pairs=["toy_cyber"]) == 2
    assert "not forget__retain" in capsys.readouterr().err
