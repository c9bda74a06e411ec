"""Where an evaluate job's time goes on a CPU: importing torch, transformers and lm-eval, versus
evaluating one checkpoint. The figures behind `evaluate.jobs: per_pair` (README "Configuration").
Usage, on the artifacts of a default run (e.g. one kept by `bench_pipeline.py --keep DIR`):

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_evaluate.py --results DIR/results/toy \\
        --forget toy_cyber --retain toy_sst2 --methods ga npo po

Prints (1) the import time in a fresh interpreter, (2) the wall time of one `clue evaluate` process
per checkpoint (rule `evaluate`), and (3) the time per checkpoint when one process evaluates them
one after the other (rule `evaluate_pair`): load, lm-eval, then MIA and Rouge-L on the forget set,
as `clue evaluate` does. Run it on an otherwise idle machine.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMPORTS = "import lm_eval, lm_eval.evaluator, lm_eval.models.huggingface, lm_eval.tasks, torch, transformers"
EVALUATE = dict(batch_size=64, device="cpu", dtype="float32", limit=None, seed=0)   # the rest: defaults
GENERAL = ["toy_arithmetic", "toy_induction", "toy_ioi", "toy_greater_than", "toy_software", "toy_medicine"]


def timed(cmd):
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", required=True, help="results/{model} of a finished run")
    ap.add_argument("--forget", required=True)
    ap.add_argument("--retain", required=True)
    ap.add_argument("--methods", nargs="+", required=True, help="unlearned checkpoints of the pair")
    ap.add_argument("--general", nargs="*", default=GENERAL)
    args = ap.parse_args()
    root = Path(args.results)
    ckpts = [root / "unlearned" / f"{args.forget}__{args.retain}" / m for m in args.methods]
    tasks = [args.forget, args.retain, *args.general]

    imports = [timed([sys.executable, "-c", IMPORTS]) for _ in range(3)]
    print(f"imports in a fresh interpreter: {min(imports):.2f} s (best of 3)")

    clue = str(Path(sys.executable).parent / "clue")
    with tempfile.TemporaryDirectory() as tmp:
        alone = [timed([clue, "evaluate", "--checkpoint", str(c), "--forget", args.forget, "--retain", args.retain,
                        "--general", *args.general, "--method", m, "--data-root", str(root / "data"),
                        "--params", json.dumps(EVALUATE), "--out", f"{tmp}/{m}.json"])
                 for c, m in zip(ckpts, args.methods)]
    print(f"one `clue evaluate` process per checkpoint: {sum(alone) / len(alone):.2f} s each "
          f"({', '.join(f'{t:.2f}' for t in alone)})")

    # the same imports here, so the loop below times evaluation (its first round still pays
    # lm-eval's and datasets' first-call setup)
    import lm_eval.evaluator  # noqa: F401
    import lm_eval.models.huggingface  # noqa: F401
    import lm_eval.tasks  # noqa: F401

    from clue import io
    from clue.evaluate import DEFAULTS, forget_efficacy, load_checkpoint, local_test_files, run_lm_eval

    params = io.with_defaults(EVALUATE, DEFAULTS, "evaluate", strict=True)
    each = []
    for c in ckpts:
        start = time.perf_counter()
        model, tokenizer = load_checkpoint(c, params)
        run_lm_eval(model, tokenizer, tasks, local_test_files(tasks, root / "data"), params)
        forget_efficacy(model, tokenizer, root / "data" / args.forget, params)
        each.append(time.perf_counter() - start)
    print(f"one process, checkpoints in turn (after the imports): {sum(each) / len(each):.2f} s each "
          f"({', '.join(f'{t:.2f}' for t in each)})")


if __name__ == "__main__":
    main()
