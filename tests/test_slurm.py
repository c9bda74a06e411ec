"""The workflow on a real SLURM cluster (issue 7): a one-node SLURM on localhost
(tests/slurm/start_slurm.sh) runs the tiny test config through the SLURM workflow profile;
the artifacts must match a local run, a failed job must name its logs, and a rerun after the
failure must resume without redoing finished jobs.

Needs root (the daemons run as root) and the slurm extra (pip install -e '.[slurm]'). It
skips otherwise, or fails when CLUE_REQUIRE_SLURM=1 (CI, where skipping would hide a break).

What the test cluster cannot prove: it has no GPUs, so the test runs a copy of
profiles/slurm/config.yaml with the GPU requests (gpu, gpu_model, cpus_per_gpu) removed and
memory capped to the node. test_profile_sbatch_lines checks, without a cluster, the sbatch
options that the real profile gives the GPU rules.
"""

import copy
import filecmp
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SLURM_DIR = REPO / "tests" / "slurm"
PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
TARGET = "results/test/table1.csv"   # configs/test.yaml sets run_name: test
PAPER = "paper"
GPU_RULES = ["circuit", "circuit_task", "unlearn", "unlearn_pair", "evaluate", "evaluate_pair", "evaluate_base",
             "localize", "localize_pair", "localize_ratio", "audit_pair"]
# Generous per-run limits; a stuck status check gets SIGINT (snakemake then scancels its jobs).
RUN_TIMEOUT = 420


def unavailable(reason):
    if os.environ.get("CLUE_REQUIRE_SLURM") == "1":
        pytest.fail(f"CLUE_REQUIRE_SLURM=1 but {reason}")
    pytest.skip(reason)


def copy_workflow(dst):
    """The working tree's workflow, without results/, logs or the venv."""
    dst.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".snakemake")
    for name in ["Snakefile", "config.yaml"]:
        shutil.copy2(REPO / name, dst / name)
    for name in ["rules", "workflow", "configs", "profiles", "envs"]:
        if (REPO / name).exists():
            shutil.copytree(REPO / name, dst / name, ignore=ignore)
    return dst


def run_snakemake(args, cwd, env, timeout=RUN_TIMEOUT):
    """snakemake under `timeout -s INT`: on SIGINT snakemake cancels its SLURM jobs; if even
    that hangs, SIGKILL 30 s later."""
    cmd = ["timeout", "--signal=INT", "--kill-after=30", str(timeout), *SNAKEMAKE, *args]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    (Path(cwd) / f"snakemake-{time.monotonic_ns()}.out").write_text(out)
    assert proc.returncode not in (124, 137), f"snakemake timed out after {timeout} s:\n{out[-6000:]}"
    return proc.returncode, out


def job_stats(out):
    """{rule: count} from snakemake's 'Job stats' table (the jobs it is about to run)."""
    m = re.search(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\ntotal\s+\d+", out, re.S)
    assert m, f"no job stats in snakemake output:\n{out[-3000:]}"
    return {rule: int(n) for rule, n in (line.split() for line in m.group(1).splitlines())}


def slurm_jobs(env):
    """(rule, state) of every job the test cluster has seen (MinJobAge keeps finished ones);
    the plugin puts `rule_<name>_...` in each job's comment."""
    out = subprocess.run(["squeue", "--states=all", "--noheader", "--format=%k|%T"],
                         env=env, capture_output=True, text=True, check=True, timeout=30).stdout
    jobs = []
    for line in out.splitlines():
        comment, state = line.rsplit("|", 1)
        m = re.match(r"rule_(.+?)(_wildcards_.*)?$", comment.strip())
        assert m, f"unexpected SLURM job comment {comment!r}"
        jobs.append((m.group(1), state.strip()))
    return sorted(jobs)


def check_profile(profile):
    """The profile's executor and resources; what both tests rely on."""
    assert profile["executor"] == "slurm"
    for rule in GPU_RULES:
        res = profile["set-resources"][rule]
        assert res["gpu"] >= 1 and res["cpus_per_gpu"] >= 1, rule
        assert "cpus_per_task" not in res, f"{rule}: cpus_per_task would override cpus_per_gpu"
    # a default cpus_per_task takes precedence over cpus_per_gpu in the plugin
    assert "cpus_per_task" not in profile.get("default-resources", {})
    # a pretrained base model is only recorded (or downloaded, or a GGUF converted): no GPU
    assert "gpu" not in profile["set-resources"]["base_model"]


def test_profile_sbatch_lines():
    """The sbatch options the real profile gives the GPU rules, rendered by the installed
    plugin (no cluster needed): --gpus and --cpus-per-gpu, memory and time limits."""
    plugin = pytest.importorskip("snakemake_executor_plugin_slurm.submit_string")
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    profile = yaml.safe_load(PROFILE.read_text())
    check_profile(profile)

    class Resources(dict):
        __getattr__ = dict.__getitem__

    for rule in GPU_RULES:
        res = Resources({**profile.get("default-resources", {}), **profile["set-resources"][rule]})
        job = SimpleNamespace(resources=res, threads=1, name=rule)
        params = dict(run_uuid="u", slurm_logfile="l", comment_str=f"rule_{rule}",
                      account="", partition="", workdir=".")
        line = plugin.get_submit_command(job, params) + set_gres_string(job)
        assert f"--cpus-per-gpu={res['cpus_per_gpu']}" in line, line
        assert "--cpus-per-task" not in line, line
        assert f"--mem {res['mem_mb']}" in line and f"-t {res['runtime']}" in line, line
        gpus = f"{res['gpu_model']}:{res['gpu']}" if res.get("gpu_model") else str(res["gpu"])
        assert f"--gpus={gpus}" in line, line


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if os.geteuid() != 0:
        unavailable("the test SLURM cluster needs root (daemons run with SlurmUser=root)")
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        unavailable("snakemake-executor-plugin-slurm is not installed (pip install -e '.[slurm]')")
    missing = [b for b in ("munged", "slurmctld", "slurmd", "sbatch", "squeue") if not shutil.which(b)]
    if missing and os.environ.get("CLUE_REQUIRE_SLURM") != "1":
        # start_slurm.sh would apt-get install them: only when asked to (CI)
        pytest.skip(f"SLURM is not installed ({', '.join(missing)} missing); "
                    "CLUE_REQUIRE_SLURM=1 installs it")
    state = tmp_path_factory.mktemp("slurm-state")
    t0 = time.monotonic()
    try:
        proc = subprocess.run([SLURM_DIR / "start_slurm.sh", state], capture_output=True,
                              text=True, timeout=600)
    except subprocess.TimeoutExpired:
        unavailable("start_slurm.sh took over 600 s")
    if proc.returncode != 0:
        unavailable(f"SLURM could not be started:\n{proc.stderr[-3000:]}")
    info = dict(line.split("=", 1) for line in proc.stdout.split() if "=" in line)
    env = {**os.environ, "SLURM_CONF": info["SLURM_CONF"], "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           # the srun shim (see start_slurm.sh), then the venv's bin: snakemake's jobs and
           # the rules' `clue` come from there
           "PATH": os.pathsep.join([info["CLUE_SLURM_BIN"], os.path.dirname(sys.executable),
                                    os.environ["PATH"]])}
    print(f"SLURM up in {time.monotonic() - t0:.1f} s")
    yield SimpleNamespace(env=env, mem_mb=int(info["CLUE_SLURM_MEM_MB"]), state=state)
    subprocess.run([SLURM_DIR / "stop_slurm.sh", state, "--keep"], timeout=120)


def adapted_profile(cluster, path):
    """profiles/slurm/config.yaml, adapted to the GPU-less test node: the GPU requests are
    dropped (each rule's threads become --cpus-per-task) and memory is capped to the node.
    The status query uses squeue (no accounting database) from 2 s after submission."""
    profile = yaml.safe_load(PROFILE.read_text())
    check_profile(profile)
    adapted = copy.deepcopy(profile)
    for res in adapted["set-resources"].values():
        for key in ("gpu", "gpu_model", "cpus_per_gpu", "slurm_partition", "slurm_account"):
            res.pop(key, None)
    for res in [adapted.get("default-resources", {}), *adapted["set-resources"].values()]:
        if "mem_mb" in res:
            res["mem_mb"] = min(res["mem_mb"], cluster.mem_mb // 2)
    adapted.update({
        "slurm-status-command": "squeue",
        "slurm-init-seconds-before-status-checks": 2,
        "latency-wait": 5,          # one local filesystem
        "local-cores": 2,
    })
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(adapted, sort_keys=False))
    return path


@pytest.mark.slurm
@pytest.mark.slow
def test_slurm_matches_local_and_resumes(cluster, tmp_path):
    t0 = time.monotonic()
    env = cluster.env
    local = copy_workflow(tmp_path / "local")
    remote = copy_workflow(tmp_path / "slurm")
    profile = adapted_profile(cluster, remote / "profiles" / "slurm-test")
    assert not slurm_jobs(env), "the test cluster is not fresh"

    # The local reference run, concurrently (the SLURM run spends most of its time waiting).
    local_proc = subprocess.Popen(
        ["timeout", "--signal=INT", "--kill-after=30", str(RUN_TIMEOUT), *SNAKEMAKE, PAPER,
         "--cores", "2", "--configfile", "configs/test.yaml"],
        cwd=local, env={k: v for k, v in env.items() if k != "SLURM_CONF"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        check_slurm_run(env, remote, profile, tmp_path, t0)
        local_out, _ = local_proc.communicate(timeout=RUN_TIMEOUT + 60)
    finally:
        if local_proc.poll() is None:   # a failed assertion above: stop the local run
            local_proc.send_signal(signal.SIGINT)
            local_proc.wait(timeout=60)
    assert local_proc.returncode == 0, local_out[-6000:]
    compare_results(local / "results", remote / "results")
    print(f"SLURM test: {time.monotonic() - t0:.1f} s after SLURM was up")


def check_slurm_run(env, remote, profile, tmp_path, t0):
    """The SLURM runs: a failure, then a resume."""
    # 1. A job that fails on the cluster: evaluation asks for CUDA, and the node has none.
    overlay = tmp_path / "cuda.yaml"
    overlay.write_text(yaml.safe_dump({"evaluate": {"device": "cuda"}}))
    args = ["--workflow-profile", str(profile), "--configfile", "configs/test.yaml"]
    rc, out = run_snakemake([TARGET, *args, str(overlay)], remote, env)  # --configfile takes 1+
    assert rc != 0, f"the CUDA job did not fail:\n{out[-4000:]}"
    assert "Error in rule evaluate_base" in out, out[-4000:]
    # Snakemake names both the rule's log and SLURM's log of the failed job, which hold the error.
    rule_log = "logs/toy/evaluate_base.log"
    assert rule_log in out, out[-4000:]
    assert "CUDA" in (remote / rule_log).read_text()
    slurm_logs = re.findall(r"(\S*\.snakemake/slurm_logs/rule_evaluate_base/\S+\.log)", out)
    assert slurm_logs, f"no SLURM log path in the output:\n{out[-4000:]}"
    assert all((remote / p).is_file() or Path(p).is_file() for p in slurm_logs), slurm_logs
    assert slurm_jobs(env) == [("base_model", "COMPLETED"), ("evaluate_base", "FAILED")], \
        "wrong SLURM jobs: is rules/cluster.smk (localrules) included from the Snakefile?"
    finished = {p: p.stat().st_mtime_ns for p in (remote / "results").rglob("*") if p.is_file()}
    assert any("base" in p.parts for p in finished) and not (remote / TARGET).exists()

    # 2. Fixed and rerun, now the `paper` target (reduced: test.yaml has only the Origin row, so
    # Tables 1, 5 and 6): only the failed job and what depends on it run; the tables locally.
    rc, out = run_snakemake([PAPER, *args], remote, env)
    assert rc == 0, out[-6000:]
    assert job_stats(out) == {"evaluate_base": 1, "evaluate_origin": 1, "table1": 1, "tables_5_6": 1,
                              "paper": 1}, out[-4000:]
    assert {p: p.stat().st_mtime_ns for p in finished} == finished, "a finished job was redone"
    # Only the heavy rules went to SLURM, base_model once over both runs.
    assert slurm_jobs(env) == [("base_model", "COMPLETED"), ("evaluate_base", "COMPLETED"),
                               ("evaluate_base", "FAILED")]
    print(f"SLURM runs (failure, resume): {time.monotonic() - t0:.1f} s")


def compare_results(rl, rs):
    """The same artifacts as the local run."""
    files = sorted(p.relative_to(rl) for p in rl.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(rs) for p in rs.rglob("*") if p.is_file())
    data = [f for f in files if f.parts[1:2] == ("data",)]
    assert data and all(filecmp.cmp(rl / f, rs / f, shallow=False) for f in data)
    weights = rl / "toy" / "base" / "model.safetensors"
    assert filecmp.cmp(weights, rs / weights.relative_to(rl), shallow=False), "base weights differ"

    def without_paths(obj):
        if isinstance(obj, dict):
            return {k: without_paths(v) for k, v in obj.items()
                    if not (isinstance(v, str) and ("/" in v or os.sep in v))}
        if isinstance(obj, list):
            return [without_paths(v) for v in obj]
        return obj

    evals = [f for f in files if f.suffix == ".json" and "eval" in f.parts]
    assert evals
    for f in evals:
        assert without_paths(json.loads((rl / f).read_text())) == \
            without_paths(json.loads((rs / f).read_text())), f
    tables = Path(TARGET).parent.relative_to("results")   # the config's tables directory
    for table in ("table1.csv", "table5.csv", "table6.csv"):
        assert (rl / tables / table).read_bytes() == (rs / tables / table).read_bytes(), table
