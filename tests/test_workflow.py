"""Workflow tests: snakemake end to end on the tiny test config, caching (a second run has nothing
to do; a changed config section reruns only the rules that read it), resuming a killed run. The
dry runs, `snakemake --lint` and snakefmt are in test_plan.py."""

import contextlib
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ENV, SPARSITY_TOLERANCE, copy_workflow, planned_jobs, snakemake
CONFIGS = ["configs/test.yaml", "configs/test-clue.yaml"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    wd = copy_workflow(tmp_path_factory.mktemp("wf"))
    snakemake(wd, "results/test/table1.csv", "results/test/audit.csv", "results/test/circuits.csv", "--cores", "2",
              "--configfile", *CONFIGS)
    return wd


@pytest.mark.slow
def test_end_to_end_tiny_config(tiny_run):
    rows = list(csv.DictReader(open(tiny_run / "results/test/table1.csv")))
    assert [(r["forget"], r["retain"], r["method"]) for r in rows] == [
        ("toy_cyber", "toy_sst2", "origin"), ("toy_cyber", "toy_sst2", "clue")]
    assert list(rows[0]) == ["forget", "retain", "method", "seed", "unlearned_param_pct", "FE", "RU", "GU", "MIA",
                             "RougeL", "RU_prob", "GU_prob", "FE_lo", "FE_hi", "RU_lo", "RU_hi", "GU_lo", "GU_hi",
                             "FE_norm", "RU_norm", "GU_norm"]
    # the intervals hold the estimate (a 95% bootstrap interval over the test questions)
    for r in rows:
        for m in ("FE", "RU", "GU"):
            assert float(r[f"{m}_lo"]) <= float(r[m]) <= float(r[f"{m}_hi"]), (r["method"], m)
    assert [r["seed"] for r in rows] == ["0", "0"]
    ev = json.loads((tiny_run / "results/toy/eval/toy_cyber__toy_sst2/origin.json").read_text())
    clue = json.loads((tiny_run / "results/toy/eval/toy_cyber__toy_sst2/clue.json").read_text())
    assert rows[0]["unlearned_param_pct"] == ""          # null for Origin
    assert float(rows[1]["unlearned_param_pct"]) == pytest.approx(clue["unlearned_param_pct"], abs=1e-3)
    for artifact in ["circuits/toy_cyber/noising.json", "circuits/toy_sst2/denoising.svg", "gates/toy_cyber.json",
                     "cnf/toy_cyber__toy_sst2.cnf", "cnf/toy_cyber__toy_sst2.wcnf", "assign/toy_cyber__toy_sst2.json",
                     "masks/toy_cyber__toy_sst2/clue.safetensors", "unlearned/toy_cyber__toy_sst2/clue/config.json",
                     "data/toy_cyber/heldout_pairs.jsonl", "data/toy_cyber/holdout.jsonl"]:
        assert (tiny_run / "results/toy" / artifact).exists(), artifact
    # every circuit reached its target (the job fails otherwise) and is not empty
    for path in (tiny_run / "results/toy/circuits").glob("*/*.json"):
        rec = json.loads(path.read_text())
        assert abs(rec["expected_sparsity"] - rec["target_sparsity"]) <= SPARSITY_TOLERANCE, path
        assert any(e["kept"] for e in rec["edges"]), path
        assert rec["faithfulness"]["pairs"] > 0, path
    assert float(rows[0]["FE"]) == pytest.approx(1 - ev["accuracy"]["toy_cyber"], abs=1e-4)
    assert float(rows[0]["RU"]) == pytest.approx(ev["accuracy"]["toy_sst2"], abs=1e-4)
    assert float(rows[0]["GU"]) == pytest.approx(ev["accuracy"]["toy_ioi"], abs=1e-4)
    assert float(rows[0]["RU_prob"]) == pytest.approx(ev["prob_correct"]["toy_sst2"], abs=1e-4)
    assert float(rows[0]["GU_prob"]) == pytest.approx(ev["prob_correct"]["toy_ioi"], abs=1e-4)
    for row, rec in zip(rows, [ev, clue]):
        for key in ("FE", "RU", "GU", "MIA", "RougeL", "RU_prob", "GU_prob"):
            assert rec[key] is not None, key      # the toy forget set has held-out texts: MIA too
            assert float(row[key]) == pytest.approx(rec[key], abs=1e-4), (row["method"], key)
    md = (tiny_run / "results/test/table1.md").read_text()
    assert "| Origin |" in md and "toy_sst2 FE" in md
    assert "toy_sst2 MIA" in md and "toy_sst2 1-Rouge-L" in md and "toy_sst2 RU_prob" in md
    # every rule wrote its benchmark file
    assert (tiny_run / "benchmarks/toy/base_model.tsv").exists()
    assert (tiny_run / "benchmarks/test/table1.tsv").exists()   # run_name test: its own logs and benchmarks
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(tiny_run / "results/toy/base")


@pytest.mark.slow
def test_the_circuits_table_of_the_tiny_run(tiny_run):
    """One row per circuit the logic read, with the faithfulness its JSON records, and the gate
    counts of its task's gates JSON."""
    rows = list(csv.DictReader(open(tiny_run / "results/test/circuits.csv")))
    assert [(r["task"], r["mode"]) for r in rows] == [("toy_cyber", "noising"), ("toy_cyber", "denoising"),
                                                     ("toy_sst2", "noising"), ("toy_sst2", "denoising")]
    for r in rows:
        rec = json.loads((tiny_run / f"results/toy/circuits/{r['task']}/{r['mode']}.json").read_text())
        assert float(r["heldout_faithfulness"]) == pytest.approx(rec["faithfulness"]["faithfulness"], abs=1e-4)
        assert float(r["validation_faithfulness"]) == pytest.approx(rec["validation"]["faithfulness"], abs=1e-4)
        assert int(r["edges_kept"]) == sum(e["kept"] for e in rec["edges"])
        counts = json.loads((tiny_run / f"results/toy/gates/{r['task']}.json").read_text())["counts"]
        assert [int(r[k]) for k in ("AND", "OR", "ADDER")] == [counts[k] for k in ("AND", "OR", "ADDER")]
    assert (tiny_run / "benchmarks/test/circuits_table.tsv").exists()


@pytest.mark.slow
def test_audit_of_the_tiny_run(tiny_run):
    rows = list(csv.DictReader(open(tiny_run / "results/test/audit.csv")))
    clue = [r for r in rows if r["method"] == "clue"]
    # 2 layers, test-clue.yaml's window of 1: two windows, four restorations and three isolated ones
    krs = {(r["analysis"], r["kind"]) for r in clue if r["analysis"].startswith("krs")}
    assert krs == {("krs", k) for k in ("m", "W_V", "A", "m+A")} | {("krs_isolated", k) for k in ("m", "W_V", "A")}
    assert {(r["first_layer"], r["last_layer"]) for r in clue if r["analysis"] == "krs"} == {("0", "0"), ("1", "1")}
    relearn = {int(r["steps"]): float(r["value"]) for r in clue if r["analysis"] == "relearn"}
    table = {r["method"]: r for r in csv.DictReader(open(tiny_run / "results/test/table1.csv"))}
    # no relearning step: the FE of the checkpoint itself, as the evaluate stage measured it
    assert sorted(relearn) == [0, 5] and relearn[0] == pytest.approx(float(table["clue"]["FE"]), abs=1e-4)
    base = {int(r["steps"]): float(r["value"]) for r in rows if r["method"] == "origin" and r["analysis"] == "relearn"}
    assert base[0] == pytest.approx(float(table["origin"]["FE"]), abs=1e-4)
    # global effect: the starting model's answers against themselves, then one snapshot per epoch
    bleu = {int(r["steps"]): float(r["value"]) for r in clue if r["analysis"] == "forget_bleu"}
    assert bleu[0] == pytest.approx(1.0) and sorted(bleu) == list(range(len(bleu))) and len(bleu) >= 2
    for name in ("krs_toy_cyber__toy_sst2.svg", "relearn_toy_cyber__toy_sst2.svg", "global_toy_cyber__toy_sst2.svg"):
        assert "<svg" in (tiny_run / "results/test/figures" / name).read_text()[:3000], name
    assert (tiny_run / "benchmarks/toy/audit_pair/toy_cyber__toy_sst2.tsv").exists()


@pytest.mark.slow
def test_paper_target_with_repeats_and_ablations(tiny_run, tmp_path):
    """`paper` on a copy of the tiny run with two seeds and two ablations: the first seed's
    checkpoints are Table 1's and are not retrained; the second seed's live under seed1/; each
    ablation is its own checkpoint; every number of the tables comes from the eval JSONs."""
    import statistics

    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from clue.masks import load_masks

    wd = tmp_path / "wf"
    shutil.copytree(tiny_run, wd, symlinks=True)
    overlay = wd / "paper-test.yaml"
    overlay.write_text("seeds: [0, 1]\nmethods: [origin, wagle, clue]\npaper:\n  ablations: [no_forget_mask, ga+po, membership]\n"
                       "  sparsities: [0.6]\n  ratios: [0.3]\n")
    toy = wd / "results/toy"
    ckpt = toy / "unlearned/toy_cyber__toy_sst2/clue/model.safetensors"
    before = ckpt.stat().st_mtime_ns
    snakemake(wd, "paper", "--cores", "2", "--configfile", *CONFIGS, str(overlay))
    assert ckpt.stat().st_mtime_ns == before, "Table 1's CLUE checkpoint was retrained"

    # Table 1: a row per seed for CLUE, one for Origin; the markdown shows mean +- sample std
    rows = [r for r in csv.DictReader(open(wd / "results/test/table1.csv")) if r["method"] != "wagle"]
    assert [(r["method"], r["seed"]) for r in rows] == [("origin", "0"), ("clue", "0"), ("clue", "1")]
    seed1 = toy / "seed1/unlearned/toy_cyber__toy_sst2/clue"
    assert json.loads((seed1 / "clue_unlearn.json").read_text())["config"]["seed"] == 1
    assert not torch.equal(*(load_file(str(p / "model.safetensors"))["model.layers.1.mlp.down_proj.weight"]
                             for p in (seed1, ckpt.parent)))   # another seed: another order of examples
    evals = [json.loads((toy / f"{r}eval/toy_cyber__toy_sst2/clue.json").read_text()) for r in ("", "seed1/")]
    gu = [e["GU"] for e in evals]
    md = (wd / "results/test/table1.md").read_text()
    assert f"{statistics.mean(gu):.3f} ± {statistics.stdev(gu):.3f}" in md.split("| CLUE |")[1].split("\n")[0]

    # Table 2: each ablation's row is its eval minus CLUE's, from its own checkpoint
    clue = evals[0]
    table2 = {r["ablation"]: r for r in csv.DictReader(open(wd / "results/test/table2.csv"))}
    assert list(table2) == ["none", "no_forget_mask", "ga+po", "membership"]
    for ablation in ("no_forget_mask", "ga+po", "membership"):
        rec = json.loads((toy / f"eval/toy_cyber__toy_sst2/clue-{ablation}.json").read_text())
        for m in ("FE", "RU", "GU"):
            assert float(table2[ablation][f"d{m}"]) == pytest.approx(rec[m] - clue[m], abs=1e-4)
    runs = {a: json.loads((toy / f"unlearned/toy_cyber__toy_sst2/clue-{a}/clue_unlearn.json").read_text())
            for a in ("no_forget_mask", "ga+po")}
    assert [s["name"] for s in runs["no_forget_mask"]["stages"]] == ["conflict"]
    assert runs["ga+po"]["config"]["stage_losses"] == ["ga", "po"] and runs["ga+po"]["config"]["ablation"] == "none"
    # (the tiny model's forget mask may be empty: then only the conflict stage, with PO, runs)
    assert [s["loss"] for s in runs["ga+po"]["stages"]] in (["ga", "po"], ["po"])
    assert "| -M_f |" in (wd / "results/test/table2.md").read_text()
    # set membership: CLUE's training inside masks of the circuits' overlap, no solver
    from clue.logic.gates import load_gates
    from clue.logic.membership import categorize

    member = json.loads((toy / "assign-membership/toy_cyber__toy_sst2.json").read_text())
    assert {n: v["category"] for n, v in member["neurons"].items()} == {
        n: v["category"] for n, v in categorize(load_gates(toy / "gates/toy_cyber.json"),
                                                  [load_gates(toy / "gates/toy_sst2.json")]).items()}
    run = json.loads((toy / "unlearned/toy_cyber__toy_sst2/clue-membership/clue_unlearn.json").read_text())
    assert run["masks"].endswith("masks/toy_cyber__toy_sst2/clue-membership.safetensors")
    assert "| set membership |" in (wd / "results/test/table2.md").read_text()

    # Table 5: every general task's accuracy; Table 6: 1-accuracy, MIA, Rouge-L
    t5 = [r for r in csv.DictReader(open(wd / "results/test/table5.csv")) if r["method"] != "wagle"]
    assert {(r["method"], r["seed"], r["task"]) for r in t5} == {(m, s, "toy_ioi") for m, s in
                                                                 [("origin", "0"), ("clue", "0"), ("clue", "1")]}
    assert float(next(r for r in t5 if r["seed"] == "1")["accuracy"]) == pytest.approx(
        evals[1]["accuracy"]["toy_ioi"], abs=1e-4)
    t6 = {(r["method"], r["seed"]): r for r in csv.DictReader(open(wd / "results/test/table6.csv"))}
    assert float(t6[("clue", "1")]["1-Rouge-L"]) == pytest.approx(1 - evals[1]["RougeL"], abs=1e-4)

    # Figure 7: the counts are the elements of CLUE's masks, materialised on the model itself, per
    # retain set (here the one) and matrix type; the shares are the composition of each selection
    model = AutoModelForCausalLM.from_pretrained(toy / "base")
    masks = load_masks(toy / "masks/toy_cyber__toy_sst2/clue.safetensors", model)
    sites = list(csv.DictReader(open(wd / "results/test/figures/fig7_toy_cyber.csv")))
    assert {(r["pair"], r["retain"]) for r in sites} == {("toy_cyber__toy_sst2", "toy_sst2")}
    for category in ("forget", "conflict"):
        rows = [r for r in sites if r["selection"] == "clue" and r["category"] == category]
        for matrix in ("q", "k", "v", "o", "gate", "up", "down"):
            want = sum(int(m.sum()) for n, m in masks[category].items() if n.endswith(f".{matrix}_proj.weight"))
            assert sum(int(r["selected"]) for r in rows if r["matrix"] == matrix) == want, (category, matrix)
        if sum(int(r["selected"]) for r in rows):
            assert sum(float(r["share"]) for r in rows) == pytest.approx(1.0), category
        else:   # an empty selection has no composition
            assert {r["share"] for r in rows} == {""}, category
    assert "<svg" in (wd / "results/test/figures/fig7_toy_cyber.svg").read_text()[:3000]
    assert {r["selection"] for r in sites} == {"clue", "wagle"}

    # Table 3: before, Table 1's assignment; after, circuits found again on the CLUE checkpoint
    t3 = {r["status"]: r for r in csv.DictReader(open(wd / "results/test/table3.csv"))}
    for status, run in (("before", ""), ("after", "after-toy_cyber__toy_sst2/")):
        assign = json.loads((toy / f"{run}assign/toy_cyber__toy_sst2.json").read_text())
        for c in ("forget", "conflict"):
            assert float(t3[status][f"{c}_neuron_pct"]) == pytest.approx(assign["percentages"][c], abs=1e-4)
    after = json.loads((toy / "after-toy_cyber__toy_sst2/circuits/toy_cyber/noising.json").read_text())
    before = json.loads((toy / "circuits/toy_cyber/noising.json").read_text())
    assert after["edges"] != before["edges"]   # another model: other gate scores
    # found again at the candidate chosen before, stopped by Table 1's rule (its floor), not re-chosen
    assert [t["target_sparsity"] for t in after["selection"]["tried"]] == [before["selection"]["chosen"]]
    assert after["config"]["min_faithfulness"] == before["config"]["min_faithfulness"] == 0.5

    # Figure 4: the circuits at sparsity 0.6 and CLUE from their masks
    fig4 = list(csv.DictReader(open(wd / "results/test/figures/fig4_toy_cyber__toy_sst2.csv")))
    circuit = json.loads((toy / "sparsity0.6/circuits/toy_cyber/denoising.json").read_text())
    assert circuit["target_sparsity"] == 0.6 and [t["target_sparsity"] for t in circuit["selection"]["tried"]] == [0.6]
    assert circuit["config"]["min_faithfulness"] == 0.5   # Table 1's stopping rule, its one candidate kept
    row = next(r for r in fig4 if r["task"] == "toy_cyber" and r["mode"] == "denoising")
    assert float(row["kl"]) == pytest.approx(circuit["faithfulness"]["kl_circuit"], abs=1e-4)
    sweep = json.loads((toy / "sparsity0.6/eval/toy_cyber__toy_sst2/clue.json").read_text())
    origin = json.loads((toy / "eval/toy_cyber__toy_sst2/origin.json").read_text())
    assert float(next(r for r in fig4 if r["kind"] == "clue")["dFE"]) == pytest.approx(sweep["FE"] - origin["FE"], abs=1e-4)
    run = json.loads((toy / "sparsity0.6/unlearned/toy_cyber__toy_sst2/clue/clue_unlearn.json").read_text())
    assert run["masks"] == "results/toy/sparsity0.6/masks/toy_cyber__toy_sst2/clue.safetensors"

    # Figure 6: WAGLE at forget ratio 0.3 modifies less than Table 1's WAGLE (its default 0.9), and
    # its own mask file holds the ratio; CLUE at its sweep's fraction
    fig6 = list(csv.DictReader(open(wd / "results/test/figures/fig6_toy_cyber__toy_sst2.csv")))
    wagle = {float(r["requested_ratio"]): float(r["unlearned_fraction"]) for r in fig6 if r["method"] == "wagle"}
    table1 = json.loads((toy / "eval/toy_cyber__toy_sst2/wagle.json").read_text())
    assert list(wagle) == [0.3] and wagle[0.3] < table1["unlearned_param_pct"] / 100
    assert (toy / "masks/toy_cyber__toy_sst2/wagle-r0.3.safetensors").exists()
    assert [float(r["unlearned_fraction"]) for r in fig6 if r["method"] == "clue"] == [
        pytest.approx(sweep["unlearned_param_pct"] / 100, abs=1e-4)]


@pytest.mark.slow
def test_tune_chooses_on_validation_questions_and_table1_trains_with_the_choice(tiny_run, tmp_path):
    """`tune` on the tiny run: GA's grid (2 learning rates x epochs 1, 2) scored on validation
    questions; the selected point is the rule's (checked here from the CSV by hand: the highest
    FE among points with RU and GU at least 95% of Origin's), and Table 1's GA checkpoint is then
    trained with it."""
    wd = tmp_path / "wf"
    shutil.copytree(tiny_run, wd, symlinks=True)
    (wd / "tune.yaml").write_text("methods: [origin, ga]\ntune:\n  grid: {lr: [0.001, 0.01], epochs: [1, 2]}\n")
    snakemake(wd, "tune", "results/test/table1.csv", "--cores", "2", "--configfile", *CONFIGS, "tune.yaml")
    rows = list(csv.DictReader(open(wd / "results/test/tuning.csv")))
    origin = next(r for r in rows if r["method"] == "origin")
    ga = [r for r in rows if r["method"] == "ga"]
    assert sorted((float(r["lr"]), int(r["epochs"])) for r in ga) == [(0.001, 1), (0.001, 2), (0.01, 1), (0.01, 2)]
    ok = [r for r in ga if float(r["RU"]) >= 0.95 * float(origin["RU"]) and float(r["GU"]) >= 0.95 * float(origin["GU"])]
    best = max(ok, key=lambda r: (float(r["FE"]), -float(r["lr"]), -int(r["epochs"])))
    assert [r for r in ga if r["selected"] == "True"] == [best]
    ckpt = json.loads((wd / "results/toy/unlearned/toy_cyber__toy_sst2/ga/clue_unlearn.json").read_text())
    assert ckpt["config"]["lr"] == float(best["lr"])
    assert ckpt["config"]["epochs_forget"] + ckpt["config"]["epochs_conflict"] == int(best["epochs"])
    # the validation questions are none of the test questions
    data = wd / "results/toy/data/toy_cyber"
    val = {json.loads(line)["prompt"] for line in (data / "validation.jsonl").read_text().splitlines()}
    test = {json.loads(line)["prompt"] for line in (data / "test.jsonl").read_text().splitlines()}
    assert val and not val & test
    assert "<svg" in (wd / "results/test/figures/tuning_toy_cyber__toy_sst2.svg").read_text()[:3000]


@pytest.mark.slow
def test_second_run_has_nothing_to_do(tiny_run):
    out = snakemake(tiny_run, "results/test/table1.csv", "results/test/audit.csv", "results/test/circuits.csv",
                    "--cores", "2", "--configfile", *CONFIGS)
    assert "Nothing to be done" in out.stdout + out.stderr


def visible_files(results):
    """{path relative to the workflow dir: file} under results/, without hidden files (snakemake's
    .snakemake_timestamp, leftovers of clue.io's atomic writes)."""
    return {f.relative_to(results.parent): f for f in results.rglob("*")
            if f.is_file() and not any(part.startswith(".") for part in f.relative_to(results).parts)}


@pytest.mark.slow
def test_a_run_killed_mid_way_resumes_to_a_byte_identical_table(tiny_run, tmp_path):
    """SIGKILL snakemake and all its jobs right after the first circuit job has written its JSON
    (its SVG is still being drawn), then resume as a user would: `snakemake --unlock` (a killed
    run leaves its lock) and the same command again. Nothing half-written may be taken for
    finished: the interrupted job's JSON must be marked incomplete and redone, every other file
    left by the kill must already be final, the finished base model must not be retrained, and
    the table must come out byte-identical to the uninterrupted run's.

    The plain rerun relies on `rerun-incomplete: true` in profiles/default/config.yaml: without
    that line snakemake stops with IncompleteFilesException on the circuit JSON, and this test
    fails there."""
    wd = copy_workflow(tmp_path / "killed")
    cmd = [sys.executable, "-m", "snakemake", "results/test/table1.csv", "results/test/audit.csv",
           "results/test/circuits.csv", "--cores", "2", "--configfile", *CONFIGS]
    first_log = tmp_path / "first.log"
    circuits = wd / "results/toy/circuits"
    with open(first_log, "w") as log:
        run = subprocess.Popen(cmd, cwd=wd, stdout=log, stderr=subprocess.STDOUT, env=ENV, start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while not (interrupted := sorted(circuits.glob("*/*.json"))):
                if run.poll() is not None or time.monotonic() > deadline:
                    why = "exited" if run.poll() is not None else "timed out"
                    pytest.fail(f"no circuit JSON before snakemake {why}:\n{first_log.read_text()[-3000:]}")
                time.sleep(0.05)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.pid, signal.SIGKILL)   # snakemake and every job it started
            run.wait()
    assert run.returncode == -signal.SIGKILL
    assert not (wd / "results/test/table1.csv").exists()
    interrupted = interrupted[0].relative_to(wd)
    finished = {"base_model", "data"}
    assert finished <= set(re.findall(r"^Finished jobid: \d+ \(Rule: (\w+)\)", first_log.read_text(), re.M))

    snakemake(wd, "--unlock", "--configfile", *CONFIGS)
    # what snakemake marks incomplete: a dry run without the profile's rerun-incomplete lists it
    out = snakemake(wd, "-n", "results/test/table1.csv", "--workflow-profile", "none", "--configfile", *CONFIGS,
                    check=False)
    text = out.stdout + out.stderr
    # The kill almost always lands while the circuit job draws its SVG after writing its JSON; if
    # that job had just finished, nothing is incomplete and the checks below still hold.
    incomplete = set()
    if out.returncode != 0:
        assert "IncompleteFilesException" in text, text[-3000:]
        incomplete = {Path(f) for f in re.findall(r"^(results/\S+)$", text.split("Incomplete files:")[1], re.M)}
    assert not any(p.parts[2] in ("base", "data") for p in incomplete), incomplete   # finished jobs are not
    # nothing half-written: every other file the kill left is the finished run's, byte for byte, and
    # every directory output (base model, data) has all its files
    left = visible_files(wd / "results")
    complete = visible_files(tiny_run / "results")
    for rel, f in left.items():
        if not any(p == rel or p in rel.parents for p in incomplete):
            assert rel in complete and f.read_bytes() == complete[rel].read_bytes(), f"{rel}: half-written or not final"
    for marker in (tiny_run / "results").rglob(".snakemake_timestamp"):
        out_dir = marker.parent.relative_to(tiny_run)
        if (wd / out_dir).exists() and out_dir not in incomplete:
            assert {r for r in left if out_dir in r.parents} == {r for r in complete if out_dir in r.parents}, out_dir
    stray = [f for f in (wd / "results").rglob(".*") if f.name != ".snakemake_timestamp"]
    assert all(f.name.endswith(".tmp") for f in stray), stray   # only clue.io's temporary names
    base_files = {f: f.stat().st_mtime_ns for f in (wd / "results/toy/base").iterdir()}

    out = snakemake(wd, *cmd[3:])
    text = out.stdout + out.stderr
    rerun = set(re.findall(r"^(?:local)?rule (\w+):", text, re.M))
    assert not finished & rerun, f"the resumed run redid {finished & rerun}"
    assert {f: f.stat().st_mtime_ns for f in (wd / "results/toy/base").iterdir()} == base_files
    if interrupted in incomplete:
        assert f"output: {interrupted}," in text   # the interrupted circuit job ran again
    for name in ("results/test/table1.csv", "results/test/table1.md"):
        assert (wd / name).read_bytes() == (tiny_run / name).read_bytes(), name
    assert {r: f.read_bytes() for r, f in visible_files(wd / "results").items()} == \
        {r: f.read_bytes() for r, f in complete.items()}


@pytest.mark.slow
def test_a_second_clone_gives_byte_identical_artifacts_with_per_pair_jobs(tiny_run, tmp_path):
    """Determinism end to end: the tiny config run again in another directory, this time with
    evaluate.jobs, localize.jobs and unlearn.jobs per_pair, circuit.jobs per_task (and a PCGU row, so
    localize_pair has work), must
    reproduce every artifact of the first run byte for byte."""
    wd = copy_workflow(tmp_path / "again")
    (wd / "per_pair.yaml").write_text("methods: [origin, clue, pcgu]\n"
                                      "evaluate: {jobs: per_pair}\nlocalize: {jobs: per_pair}\n"
                                      "unlearn: {jobs: per_pair}\ncircuit: {jobs: per_task}\n")
    snakemake(wd, "results/test/table1.csv", "results/test/audit.csv", "--cores", "2", "--configfile", *CONFIGS,
              "per_pair.yaml")
    assert (wd / "benchmarks/toy/evaluate_pair/toy_cyber__toy_sst2.tsv").exists()
    assert (wd / "benchmarks/toy/localize_pair/toy_cyber__toy_sst2.tsv").exists()
    assert (wd / "benchmarks/toy/unlearn_pair/toy_cyber__toy_sst2.tsv").exists()
    assert (wd / "benchmarks/toy/circuit_task/toy_cyber.tsv").exists()
    first = sorted(f.relative_to(tiny_run) for f in (tiny_run / "results/toy").rglob("*") if f.is_file())
    assert len(first) > 40
    for rel in first:
        assert (wd / rel).read_bytes() == (tiny_run / rel).read_bytes(), rel
    rows = {r["method"]: r for r in csv.DictReader(open(wd / "results/test/table1.csv"))}
    assert set(rows) == {"origin", "clue", "pcgu"}


@pytest.mark.slow
def test_a_changed_section_reruns_only_the_rules_that_read_it(tiny_run):
    changed = tiny_run / "configs/changed.yaml"

    def plan(section):
        changed.write_text(section)
        return planned_jobs(snakemake(tiny_run, "-n", "results/test/table1.csv", "--configfile", *CONFIGS, str(changed)))

    jobs = plan("evaluate: {batch_size: 8}\n")
    assert jobs.get("evaluate_base") == 1 and jobs.get("evaluate") == 1
    assert not {"base_model", "data", "circuit", "unlearn"} & set(jobs)
    # a later section (unlearning, solving) never reruns circuit discovery
    jobs = plan("unlearn: {lr: 0.002}\n")
    assert jobs.get("unlearn") == 1 and not {"circuit", "gates", "cnf", "solve", "evaluate_base"} & set(jobs)
    jobs = plan("solve: {maxsat: rc2-stratified}\n")
    assert jobs.get("solve") == 1 and not {"circuit", "gates", "cnf"} & set(jobs)
    jobs = plan("circuit: {steps: 21}\n")
    assert jobs.get("circuit") == 4 and "base_model" not in jobs
    jobs = plan("model: {train: {steps: 41}}\n")
    assert jobs.get("base_model") == 1 and "data" not in jobs
    # a jobs knob only groups work into jobs: the rule it regroups reruns (Snakemake sees another
    # rule's code), but no rule that merely reads its section, such as the base model's evaluation
    jobs = plan("evaluate: {jobs: per_pair}\n")
    assert jobs.get("evaluate_pair") == 1 and not {"evaluate_base", "evaluate_origin", "unlearn", "circuit"} & set(jobs)
