"""Plan tests: dry runs of the embedded config, the benchmark and paper configs and the SLURM
profile (which jobs, how many, with which priorities and threads), `snakemake --lint` and
snakefmt. Nothing here runs a job, so this file can go to its own pytest-xdist worker beside the
end-to-end runs of test_workflow.py."""

import re
import subprocess
import sys

import pytest
from conftest import ROOT, planned_jobs, planned_priorities, snakemake


def test_smollm2_config_dry_run():
    out = snakemake(ROOT, "-n", "--configfile", "configs/smollm2.yaml")   # the default target
    jobs = planned_jobs(out)
    # the benchmark: two forget sets x their two retain sets, all nine methods; circuits per task (4
    # tasks); every trained method tuned on each forget set's pair with its conflicting retain set,
    # each of Table 1's trainings reading its forget set's choice
    assert jobs["base_model"] == 1 and jobs["circuit_task"] == 4 and jobs["evaluate_origin"] == 4
    # one job a checkpoint (a part of the benchmark trains only its own rows)
    assert jobs["unlearn"] == 4 * 8 and jobs["evaluate"] == 4 * 8 and jobs["table1"] == 1
    assert jobs["tune_method"] == 2 * 8 and jobs["tune_origin"] == 2 and jobs["tune_select"] == 1
    assert jobs["tune_choose"] == 2 * 8
    # DEPN and MEMIT once a forget set, not once a pair
    assert jobs["localize_pair"] == 4 and jobs["localize_forget"] == 2 * 2 and jobs["pair_mask"] == 2 * 4
    tuned = {(re.search(r"--forget-dir \S+/data/(\w+) ", line)[1], re.search(r"--rows (\S+)", line)[1]):
             re.search(r"--tuned (\S+) --params", line)[1]
             for line in out.stdout.splitlines() if " clue unlearn " in line}
    assert len(tuned) == 2 * 8
    # each training reads its own method's choice on its forget set's pair
    assert tuned == {(f, m): f"results/smollm2-135m-instruct/tune/{f}__{f}_neighbour/selected/{m}.json"
                     for f in ("world_cities", "world_people")
                     for m in ("ga", "npo", "po", "memit", "pcgu", "depn", "wagle", "clue")}


def test_a_part_of_the_benchmark_plans_only_its_own_rows():
    """results/smollm2/parts/{forget}/{method}.csv: that method's tuning on that forget set's pair,
    its trainings and evaluations on the forget set's two pairs, Origin's evaluations, nothing of
    another method or forget set."""
    out = snakemake(ROOT, "-n", "-p", "results/smollm2/parts/world_cities/po.csv", "--configfile",
                    "configs/smollm2.yaml")
    jobs = planned_jobs(out)
    assert jobs["tune_method"] == jobs["tune_origin"] == jobs["tune_choose"] == jobs["table1_part"] == 1
    assert jobs["unlearn"] == jobs["evaluate"] == jobs["evaluate_origin"] == 2
    assert "circuit_task" not in jobs and "localize_pair" not in jobs and "tune_select" not in jobs
    unlearned = sorted(re.search(r"--out (\S+)", line)[1] for line in out.stdout.splitlines()
                       if " clue unlearn " in line)
    assert unlearned == [f"results/smollm2-135m-instruct/unlearned/world_cities__{r}/po"
                         for r in ("world_cities_neighbour", "world_people_neighbour")]


@pytest.mark.parametrize("configfile,pairs", [("configs/paper-wmdp.yaml", 8), ("configs/paper-pku.yaml", 4)])
def test_paper_configs_dry_run(configfile, pairs):
    """`snakemake -n paper` on the paper configs plans every table and figure with all nine methods
    and the paper's settings. A config named on the command line stands alone: the paper configs
    must not inherit config.yaml's toy settings (its unlearn.lr 1e-3, its per-task sparsities)."""
    out = snakemake(ROOT, "-n", "-p", "paper", "--configfile", configfile)
    jobs = planned_jobs(out)
    assert jobs["table1"] == jobs["table2"] == jobs["tables_5_6"] == jobs["fig7"] == jobs["paper"] == 1
    assert jobs["table3"] == jobs["fig3"] == jobs["fig4"] == jobs["fig6"] == 1
    # four retain tasks: Figure 3's sets of 2, 3 and 4 tasks (3 + 3 + 1); Figure 4's 4 sparsities
    sets, sparsities = 7, 4
    # WAGLE and PCGU score each pair's retain set; DEPN and MEMIT the forget set alone, once a forget
    # set (four retain tasks a forget set), their pairs' masks copies
    assert jobs["evaluate_origin"] == pairs and jobs["localize"] == 2 * pairs and jobs["localize_ratio"] == 4 * 5
    assert jobs["localize_forget"] == 2 * (pairs // 4) and jobs["pair_mask"] == 2 * pairs
    # a retain set of several tasks keeps each task's gate graph (no merged graph); no general corpus
    assert jobs["masks"] == pairs + sparsities + sets and "gates_union" not in jobs
    # eight trained methods per pair; Table 2's ten CLUE ablations (set membership with masks of
    # its own), the sparsity runs, the four localizers at five ratios and CLUE on each retain set,
    # on the paper pair
    assert jobs["unlearn"] == jobs["evaluate"] == 8 * pairs + 10 + sparsities + 20 + sets
    assert jobs["membership"] == jobs["membership_masks"] == 1
    unlearn = next(line for line in out.stdout.splitlines() if " clue unlearn " in line)
    for setting in ('"lr": 1e-05', '"epochs_forget": 1', '"epochs_conflict": 5', '"lambda": 1.0',
                    '"dtype": "bfloat16"'):
        assert setting in unlearn
    plain = [line for line in out.stdout.splitlines() if " clue unlearn " in line and "--method clue " in line
             and "/clue --no-progress" in line]
    assert plain and all('"stage_losses": ["po", "po"]' in line and '"ablation": "none"' in line for line in plain)
    circuit = next(line for line in out.stdout.splitlines()
                   if " clue circuit " in line and "/sparsity" not in line and "/after-" not in line)
    for setting in ('"steps": 3000', '"lr": 0.8', '"lagrangian_lr": 0.8', '"max_pairs": 100',
                    '"target_sparsity": 0.9', '"target_sparsity_per_task": {}'):
        assert setting in circuit


def test_paper_target_plan_on_the_default_config():
    """`paper` on config.yaml: Figure 3's retain set of both retain tasks runs CLUE alone (no pair
    rule trains the other methods on it), its CNF reads every task's own gate graph; the size-1
    sets are Table 1's pairs. The general corpus (toy_software + toy_medicine) gets its two circuits and
    the reference runs: CLUE, and WAGLE through its own localize job."""
    from clue.config import retain_sets
    import yaml
    from snakemake.utils import validate

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    validate(config, str(ROOT / "workflow/schemas/config.schema.yaml"))
    sets = retain_sets(config)
    assert [len(s.split("+")) for s in sets] == [1, 1, 2]
    assert sets[-1] == "toy_cyber_neighbour+toy_bio_neighbour" and retain_sets(config) == sets
    jobs = planned_jobs(snakemake(ROOT, "-n", "paper"))
    multi = sum(len(s.split("+")) > 1 for s in sets)
    assert "gates_union" not in jobs and jobs["unlearn_pair"] == jobs["evaluate_pair"] == 4
    assert jobs["cnf"] == jobs["solve"] == 4 + 4 + 4 + multi + 1   # Table 1, 3, Figure 4, 3 and the corpus
    # 10 ablations, 4 sparsity runs, 4 localizers x 5 ratios, CLUE on each new retain set, and CLUE
    # and WAGLE with the general corpus as the retain set
    assert jobs["unlearn"] == jobs["evaluate"] == 10 + 4 + 20 + multi + 2 and jobs["localize"] == 1
    # Table 1 (2 forget + 2 retain tasks), Table 3's after-runs, Figure 4, the general corpus's two tasks
    assert jobs["circuit_task"] == 4 + 2 * 4 + 2 * 4 + 2


def test_jobs_knobs_plan_one_job_per_pair_or_per_checkpoint(tmp_path):
    """unlearn.jobs / evaluate.jobs / localize.jobs: the default config (4 pairs, 8 trained methods,
    4 of them localizers) plans one job per pair, or one per checkpoint / localizer."""
    jobs = planned_jobs(snakemake(ROOT, "-n", "results/table1.csv"))
    assert jobs["unlearn_pair"] == 4 and jobs["evaluate_pair"] == 4 and jobs["localize_pair"] == 4
    assert not {"unlearn", "evaluate", "localize"} & set(jobs)
    overlay = tmp_path / "per_checkpoint.yaml"
    overlay.write_text("unlearn: {jobs: per_checkpoint}\nevaluate: {jobs: per_checkpoint}\n"
                       "localize: {jobs: per_localizer}\n")
    # a config named on the command line keeps its tables apart: results/<stem of its last file>/
    jobs = planned_jobs(snakemake(ROOT, "-n", "results/per_checkpoint/table1.csv", "--configfile", "config.yaml",
                                  str(overlay)))
    # WAGLE and PCGU a pair; DEPN and MEMIT a forget set (two forget sets)
    assert jobs["unlearn"] == 32 and jobs["evaluate"] == 32 and jobs["localize"] == 8
    assert jobs["localize_forget"] == 2 * 2 and jobs["pair_mask"] == 2 * 4
    assert not {"unlearn_pair", "evaluate_pair", "localize_pair"} & set(jobs)


def test_jobs_at_the_head_of_long_chains_are_scheduled_first(tmp_path):
    """Priorities follow the chain each job heads (rules/common.smk PRIORITY): circuits, then the
    gate/CNF/solve/mask chain, localizers, trainings, evaluations; both job layouts (per pair,
    per checkpoint) and tuning get them. A rule left without its priority would run late and
    leave a core idle at the end of the run (docs/performance.md)."""
    p = planned_priorities(snakemake(ROOT, "-n", "results/table1.csv"))
    assert p["circuit_task"] > p["gates"] == p["cnf"] == p["solve"] == p["masks"] > p["localize_pair"] \
        > p["unlearn_pair"] > p["evaluate_pair"] > p["evaluate_base"] == p["table1"] == 0
    overlay = tmp_path / "layout.yaml"
    overlay.write_text("unlearn: {jobs: per_checkpoint}\nevaluate: {jobs: per_checkpoint}\n"
                       "localize: {jobs: per_localizer}\ncircuit: {jobs: per_mode}\n"
                       "tune: {grid: {lr: [0.001], epochs: [1]}}\n")
    p = planned_priorities(snakemake(ROOT, "-n", "results/layout/table1.csv", "--configfile", "config.yaml",
                                     str(overlay)))
    # a method's tuning choice (a second's work) goes before the trainings that wait for it
    assert p["tune_method"] == p["tune_origin"] == p["tune_choose"] > p["circuit"] > p["masks"] > p["localize"] \
        > p["unlearn"] > p["evaluate"] > 0


def test_circuit_jobs_declare_circuit_threads(tmp_path):
    """circuit.threads is what a circuit job declares to the scheduler (and hands to torch in its
    parameters), for either circuit.jobs (the default config: 4 tasks)."""
    for jobs in ("per_task", "per_mode"):
        overlay = tmp_path / "threads.yaml"
        overlay.write_text(f"circuit: {{threads: 2, jobs: {jobs}}}\n")
        # a config named on the command line keeps its tables apart: results/<stem of its last file>/
        out = snakemake(ROOT, "-n", "results/threads/table1.csv", "--configfile", "config.yaml", str(overlay))
        blocks = [b for b in out.stdout.split("\n\n") if re.search(r"^rule circuit(_task)?:", b, re.M)]
        assert len(blocks) == (4 if jobs == "per_task" else 8)
        assert all("threads: 2\n" in b and '"threads": 2' in b for b in blocks)


def test_slurm_profile_dry_run():
    pytest.importorskip("snakemake_executor_plugin_slurm")
    out = snakemake(ROOT, "-n", "results/test/table1.csv", "--workflow-profile", "profiles/slurm",
                    "--configfile", "configs/test.yaml")
    assert planned_jobs(out)["table1"] == 1


def test_lint_is_clean():
    out = snakemake(ROOT, "--lint", check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_rules_are_snakefmt_formatted():
    """The workflow catalog's convention: the Snakefile and rules as snakefmt writes them
    (pyproject.toml [tool.snakefmt]); `snakefmt Snakefile rules/` fixes a failure."""
    out = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "Snakefile", "rules/"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_random_control_draws_one_mask_a_seed_and_trains_with_clues_choice(tmp_path):
    """methods with `random` and three seeds: one random mask per pair and seed, each repeat
    training inside its own seed's mask with CLUE's two stages; with a tune grid the control is not
    tuned (it reads CLUE's choice)."""
    overlay = tmp_path / "rand.yaml"
    overlay.write_text("methods: [origin, po, clue, random]\nseeds: [0, 1, 2]\n"
                       "tune: {grid: {lr: [0.001], epochs: [2]}}\n")
    out = snakemake(ROOT, "-n", "-p", "results/rand/table1.csv", "--configfile", "config.yaml", str(overlay))
    jobs = planned_jobs(out)
    assert jobs["random_masks"] == 4 * 3 and jobs["tune_method"] == 2   # po and clue, on the paper pair
    for run, seed in (("", 0), ("seed1/", 1), ("seed2/", 2)):
        line = next(x for x in out.stdout.splitlines() if " clue unlearn " in x
                    and f"results/toy/{run}unlearned/toy_cyber__toy_cyber_neighbour/random" in x)
        assert "--method po clue clue" in line and "--rows po clue random" in line
        assert f"masks/toy_cyber__toy_cyber_neighbour/random-s{seed}.safetensors" in line


def test_a_localizers_random_control_trains_po_in_its_random_mask_with_its_tuned_setting():
    """Table 1's random-wagle: WAGLE's mask moved at random inside each matrix (one mask a seed),
    trained with PO as WAGLE's row is, at WAGLE's tuned learning rate and epochs."""
    out = snakemake(ROOT, "-n", "-p", "results/smollm2/parts/world_cities/random-wagle.csv", "--configfile",
                    "configs/smollm2.yaml", "--config", "methods=[origin,po,wagle,random-wagle]")
    jobs = planned_jobs(out)
    assert jobs["random_localizer_masks"] == 2 and jobs["unlearn"] == 2 and jobs["tune_method"] == 1
    lines = [line for line in out.stdout.splitlines() if " clue unlearn " in line]
    for line in lines:
        assert "--method po " in line and "--rows random-wagle " in line
        assert re.search(r"--masks results/smollm2-135m-instruct/masks/world_cities__\w+/random-wagle-s0.safetensors ",
                         line)
        assert "--tuned results/smollm2-135m-instruct/tune/world_cities__world_cities_neighbour/selected/wagle.json " \
            in line
    assert "clue masks --like results/smollm2-135m-instruct/masks/world_cities__world_cities_neighbour/wagle." \
        "safetensors" in out.stdout
    # the control is never tuned itself: the tune target tunes PO and WAGLE on each tuning pair
    out = snakemake(ROOT, "-n", "-p", "tune", "--configfile", "configs/smollm2.yaml", "--config",
                    "methods=[origin,po,wagle,random-wagle]")
    assert planned_jobs(out)["tune_method"] == 2 * 2 and "random-wagle.json" not in out.stdout
