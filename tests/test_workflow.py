"""Workflow tests: snakemake end to end on the tiny test config, caching (a second run has nothing
to do; a changed config section reruns only the rules that read it), dry runs of the paper
configs and the SLURM profile, and `snakemake --lint`."""

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ["configs/test.yaml", "configs/test-clue.yaml"]
COPY = ["Snakefile", "config.yaml", "rules", "workflow", "configs", "profiles", "envs"]


def snakemake(cwd, *args, check=True):
    out = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, capture_output=True, text=True,
                         env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    if check and out.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}")
    return out


def planned_jobs(out):
    """{rule: count} from a dry run's job stats table."""
    text = out.stdout + out.stderr
    stats = text.split("Job stats:")[1].split("Reasons:")[0] if "Job stats:" in text else ""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M) if m.group(1) != "total"}


def copy_workflow(dest):
    dest.mkdir(parents=True, exist_ok=True)
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(src, dest / name)
    return dest


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    wd = copy_workflow(tmp_path_factory.mktemp("wf"))
    snakemake(wd, "results/table1.csv", "--cores", "2", "--configfile", *CONFIGS)
    return wd


@pytest.mark.slow
def test_end_to_end_tiny_config(tiny_run):
    rows = list(csv.DictReader(open(tiny_run / "results/table1.csv")))
    assert [(r["forget"], r["retain"], r["method"]) for r in rows] == [
        ("toy_cyber", "toy_sst2", "origin"), ("toy_cyber", "toy_sst2", "clue")]
    assert list(rows[0]) == ["forget", "retain", "method", "unlearned_param_pct", "FE", "RU", "GU"]
    ev = json.loads((tiny_run / "results/toy/eval/toy_cyber__toy_sst2/origin.json").read_text())
    clue = json.loads((tiny_run / "results/toy/eval/toy_cyber__toy_sst2/clue.json").read_text())
    assert float(rows[1]["unlearned_param_pct"]) == pytest.approx(clue["unlearned_param_pct"], abs=1e-3)
    for artifact in ["circuits/toy_cyber/noising.json", "circuits/toy_sst2/denoising.svg", "gates/toy_cyber.json",
                     "cnf/toy_cyber__toy_sst2.cnf", "cnf/toy_cyber__toy_sst2.wcnf", "assign/toy_cyber__toy_sst2.json",
                     "masks/toy_cyber__toy_sst2/clue.safetensors", "unlearned/toy_cyber__toy_sst2/clue/config.json"]:
        assert (tiny_run / "results/toy" / artifact).exists(), artifact
    assert float(rows[0]["FE"]) == pytest.approx(1 - ev["accuracy"]["toy_cyber"], abs=1e-4)
    assert float(rows[0]["RU"]) == pytest.approx(ev["accuracy"]["toy_sst2"], abs=1e-4)
    assert float(rows[0]["GU"]) == pytest.approx(ev["accuracy"]["toy_ioi"], abs=1e-4)
    md = (tiny_run / "results/table1.md").read_text()
    assert "| Origin |" in md and "toy_sst2 FE" in md
    # every rule wrote its benchmark file
    assert (tiny_run / "benchmarks/toy/base_model.tsv").exists()
    assert (tiny_run / "benchmarks/table1.tsv").exists()
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(tiny_run / "results/toy/base")


@pytest.mark.slow
def test_second_run_has_nothing_to_do(tiny_run):
    out = snakemake(tiny_run, "results/table1.csv", "--cores", "2", "--configfile", *CONFIGS)
    assert "Nothing to be done" in out.stdout + out.stderr


@pytest.mark.slow
def test_a_second_clone_gives_byte_identical_artifacts_with_per_pair_jobs(tiny_run, tmp_path):
    """Determinism end to end: the tiny config run again in another directory, this time with
    evaluate.jobs and localize.jobs per_pair (and a PCGU row, so localize_pair has work), must
    reproduce every artifact of the first run byte for byte."""
    wd = copy_workflow(tmp_path / "again")
    (wd / "per_pair.yaml").write_text("methods: [origin, clue, pcgu]\n"
                                      "evaluate: {jobs: per_pair}\nlocalize: {jobs: per_pair}\n")
    snakemake(wd, "results/table1.csv", "--cores", "2", "--configfile", *CONFIGS, "per_pair.yaml")
    assert (wd / "benchmarks/toy/evaluate_pair/toy_cyber__toy_sst2.tsv").exists()
    assert (wd / "benchmarks/toy/localize_pair/toy_cyber__toy_sst2.tsv").exists()
    first = sorted(f.relative_to(tiny_run) for f in (tiny_run / "results/toy").rglob("*") if f.is_file())
    assert len(first) > 40
    for rel in first:
        assert (wd / rel).read_bytes() == (tiny_run / rel).read_bytes(), rel
    rows = {r["method"]: r for r in csv.DictReader(open(wd / "results/table1.csv"))}
    assert set(rows) == {"origin", "clue", "pcgu"}


@pytest.mark.slow
def test_a_changed_section_reruns_only_the_rules_that_read_it(tiny_run):
    changed = tiny_run / "configs/changed.yaml"

    def plan(section):
        changed.write_text(section)
        return planned_jobs(snakemake(tiny_run, "-n", "results/table1.csv", "--configfile", *CONFIGS, str(changed)))

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


@pytest.mark.parametrize("configfile", ["configs/paper-wmdp.yaml", "configs/paper-pku.yaml"])
def test_paper_configs_dry_run(configfile):
    out = snakemake(ROOT, "-n", "results/table1.csv", "--configfile", configfile)
    jobs = planned_jobs(out)
    assert jobs["table1"] == 1 and jobs["base_model"] == 1
    n_forget = 2 if "wmdp" in configfile else 1
    assert jobs["evaluate_origin"] == n_forget * 4


def test_jobs_knobs_plan_one_job_per_pair_or_per_checkpoint(tmp_path):
    """evaluate.jobs / localize.jobs: the default config (8 pairs, 8 trained methods, 4 of them
    localizers) plans one job per pair, or one per checkpoint / localizer."""
    jobs = planned_jobs(snakemake(ROOT, "-n", "results/table1.csv"))
    assert jobs["evaluate_pair"] == 8 and jobs["localize_pair"] == 8
    assert "evaluate" not in jobs and "localize" not in jobs and jobs["unlearn"] == 64
    overlay = tmp_path / "per_checkpoint.yaml"
    overlay.write_text("evaluate: {jobs: per_checkpoint}\nlocalize: {jobs: per_localizer}\n")
    jobs = planned_jobs(snakemake(ROOT, "-n", "results/table1.csv", "--configfile", "config.yaml", str(overlay)))
    assert jobs["evaluate"] == 64 and jobs["localize"] == 32
    assert "evaluate_pair" not in jobs and "localize_pair" not in jobs


def test_slurm_profile_dry_run():
    pytest.importorskip("snakemake_executor_plugin_slurm")
    out = snakemake(ROOT, "-n", "results/table1.csv", "--workflow-profile", "profiles/slurm",
                    "--configfile", "configs/test.yaml")
    assert planned_jobs(out)["table1"] == 1


def test_lint_is_clean():
    out = snakemake(ROOT, "--lint", check=False)
    assert out.returncode == 0, out.stdout + out.stderr


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
    out = subprocess.run([sys.executable, "-m", "snakemake", "results/table1.csv", "--cores", "2",
                          "--configfile", "configs/test.yaml", "methods.yaml"], cwd=wd, capture_output=True,
                         text=True, env={**__import__("os").environ, **env, "HF_HUB_OFFLINE": "1",
                                         "HF_DATASETS_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-5000:]
    rows = {r["method"]: r for r in csv.DictReader(open(wd / "results/table1.csv"))}
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
    assert "| First rows |" in (wd / "results/table1.md").read_text()
