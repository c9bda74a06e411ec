"""lm-eval on one checkpoint's test questions in float32 and with `evaluate.autocast: bfloat16`:
seconds for each, and how many answers and how much P(correct) the bf16 products change.

    python bench/bench_eval_precision.py --checkpoint results/smollm2-135m-instruct/base \
        --data-root results/smollm2-135m-instruct/data --tasks world_cities world_people \
        world_sentiment world_antonyms world_ioi world_induction world_cities_neighbour \
        world_people_neighbour [--batch-size 16] [--threads 2]

The model is loaded once (float32) and evaluated through `clue.evaluate.run_lm_eval`, the call
Table 1 and the tune stage make, once per setting.
"""

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--tasks", nargs="+", required=True)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    sys.path.insert(0, str(ROOT / "workflow"))
    import torch

    from clue.evaluate import DEFAULTS, load_checkpoint, local_test_files, run_lm_eval

    torch.set_num_threads(args.threads)
    files = local_test_files(args.tasks, args.data_root)
    params = dict(DEFAULTS, batch_size=args.batch_size)
    model, tokenizer = load_checkpoint(args.checkpoint, params)
    runs = {}
    for autocast in (None, "bfloat16"):
        start = time.perf_counter()
        runs[autocast] = run_lm_eval(model, tokenizer, args.tasks, files, dict(params, autocast=autocast))
        runs[autocast].seconds = time.perf_counter() - start
    fp32, bf16 = runs[None], runs["bfloat16"]
    from clue.losses import machine

    print(f"{args.checkpoint}, {args.threads} thread(s), batch {args.batch_size}, {machine()}")
    print(f"float32 {fp32.seconds:.1f} s, bf16 autocast {bf16.seconds:.1f} s ({fp32.seconds / bf16.seconds:.2f}x)")
    print("| task | questions | answers changed | accuracy fp32 / bf16 | P(correct) fp32 / bf16 |")
    print("|---|---|---|---|---|")
    total = changed = 0
    for task in args.tasks:
        a, b = fp32.correct[task], bf16.correct[task]
        flips = sum(x != y for x, y in zip(a, b))
        total, changed = total + len(a), changed + flips
        print(f"| {task} | {len(a)} | {flips} | {fp32.acc[task]:.4f} / {bf16.acc[task]:.4f} | "
              f"{fp32.prob.get(task, float('nan')):.4f} / {bf16.prob.get(task, float('nan')):.4f} |")
    print(f"answers changed: {changed} of {total}")


if __name__ == "__main__":
    main()
