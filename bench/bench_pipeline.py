"""Time the default run from a fresh clone: `snakemake --cores all results/table1.csv`, then the
same command again (which must have nothing to do), and the per-rule times from the
`benchmark:` files; with `--then results/audit.csv`, also the time that target adds on top (the
audit of every checkpoint). Usage:

    .venv/bin/python bench/bench_pipeline.py [--configfile CONFIG ...] [--keep DIR] [--then TARGET ...]

For the toy world's whole paper (README "The paper target"):

    .venv/bin/python bench/bench_pipeline.py --configfile config.yaml configs/toy-paper.yaml --then paper

Run it on an otherwise idle machine: the figures are wall-clock seconds.
"""

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(cmd, cwd):
    start = time.time()
    # the jobs import the clone's own `clue` package, not the one installed from this checkout
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(cwd) / "workflow"), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    return time.time() - start, out.stdout + out.stderr


def cpu():
    """The CPU model, its bf16 flags and torch's kernel level: the toy world's numbers are
    bit-identical on one kind of CPU, not across kinds (another kernel rounds differently, and
    2,000 base-model steps grow it)."""
    from clue.losses import machine

    return machine()


def tables(wd, configfiles):
    """Where the run writes its tables: results/ for the embedded config, else results/<run_name
    or the last config's stem>/ (clue.config.tables_dir, as the Snakefile decides)."""
    sys.path.insert(0, str(ROOT / "workflow"))
    import yaml

    from clue.config import tables_dir

    names = [yaml.safe_load(open(wd / f)).get("run_name") for f in configfiles or []]
    names = [n for n in names if n is not None]
    config = {"run_name": names[-1]} if names else {}
    return tables_dir(config, [wd / f for f in configfiles or []], wd / "config.yaml")[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configfile", nargs="+", help="configs other than the embedded default (merged in order)")
    ap.add_argument("--keep", help="clone into this directory and keep it")
    ap.add_argument("--then", nargs="*", default=[], help="targets built after Table 1, timed on their own")
    args = ap.parse_args()
    wd = Path(args.keep or tempfile.mkdtemp(prefix="clue-bench-"))
    subprocess.run(["git", "clone", "-q", str(ROOT), str(wd)], check=True)
    # targets before --configfile, which takes several files
    config = ["--configfile", *args.configfile] if args.configfile else []
    snakemake = [sys.executable, "-m", "snakemake", "--cores", "all"]
    table_dir = tables(wd, args.configfile)
    cmd = snakemake + [f"{table_dir}/table1.csv"] + config
    first, _ = run(cmd, wd)
    second, log = run(cmd, wd)
    then = run(snakemake + args.then + config, wd)[0] if args.then else None
    per_rule = defaultdict(float)
    for tsv in (wd / "benchmarks").rglob("*.tsv"):
        rule = tsv.relative_to(wd / "benchmarks").parts
        rule = rule[1] if len(rule) > 2 else Path(rule[-1]).stem
        with open(tsv) as f:
            per_rule[rule] += float(next(csv.DictReader(f, delimiter="\t"))["s"])
    print(f"machine: {cpu()}")
    print(f"fresh clone -> results/table1.csv: {first:.1f} s")
    print(f"second run: {second:.1f} s ({'nothing to do' if 'Nothing to be done' in log else 'RAN JOBS'})")
    if then is not None:
        print(f"then {' '.join(args.then)}: {then:.1f} s more ({first + then:.1f} s from the fresh clone)")
    print("per-rule seconds (sum over jobs, from benchmarks/):")
    for rule, s in sorted(per_rule.items(), key=lambda kv: -kv[1]):
        print(f"  {rule:<18} {s:8.1f}")
    print((wd / table_dir / "table1.md").read_text())


if __name__ == "__main__":
    main()
