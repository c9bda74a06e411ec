"""Seconds per unlearning step (a forget batch and a retain batch, forward, backward and AdamW),
under each combination of `unlearn.autocast` and `unlearn.fused_optimizer`, on one checkpoint and
one pair's data, with the process's torch threads fixed:

    python bench/bench_train_step.py --base-dir results/smollm2-135m-instruct/base \
        --data-root results/smollm2-135m-instruct/data --forget world_cities --retain world_sentiment \
        [--method po] [--masks results/.../masks/world_cities__world_sentiment/clue.safetensors] \
        [--examples 32] [--epochs 3] [--threads 1]

Each setting trains ``--epochs`` epochs of ``--examples`` forget examples through `clue.unlearn`
(the code Table 1 and the tune stage run, nothing written) and times every epoch from the
`after_each_epoch` hook; the first epoch is a warm-up and is left out. Beside the time, the last
step's loss, so that a reader sees the settings train the same thing (the losses agree to bf16
rounding, not bit for bit). The forget training covers every fact of its files (a fact left out
would be tested and never trained), so the bench trains on a copy of the forget set's directory
whose files keep their first ``--examples`` records; ``--settings`` times some of the four.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = [(None, False), (None, True), ("bfloat16", False), ("bfloat16", True)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-dir", required=True)
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--forget", required=True)
    ap.add_argument("--retain", required=True)
    ap.add_argument("--method", default="po", help="a forget loss or clue (clue needs --masks)")
    ap.add_argument("--masks", help="a mask file: the method trains inside it")
    ap.add_argument("--examples", type=int, default=32, help="forget examples an epoch (steps = examples / 8)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs a setting; the first is a warm-up")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--settings", type=int, nargs="+", default=list(range(len(SETTINGS))),
                    help="which of the four settings (0-3: off/plain, off/fused, bf16/plain, bf16/fused)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(ROOT / "workflow"))
    import torch

    from clue.unlearn import resolve_params, unlearn

    torch.set_num_threads(args.threads)
    forget = Path(tempfile.mkdtemp()) / args.forget
    shutil.copytree(Path(args.data_root) / args.forget, forget)
    for f in forget.glob("*.jsonl"):     # the first --examples records of each file
        f.write_text("".join(f.read_text().splitlines(keepends=True)[:args.examples]))
    rows = []
    for autocast, fused in [SETTINGS[i] for i in args.settings]:
        # clue: its forget stage is the warm-up epoch, the conflict stage (with the retain loss) is timed
        first = 1 if args.method == "clue" else args.epochs
        params = resolve_params({"lr": 1e-5, "epochs_forget": first, "epochs_conflict": args.epochs - first,
                                 "max_forget_examples": args.examples, "autocast": autocast,
                                 "fused_optimizer": fused, "trajectory_forget_questions": 0,
                                 "trajectory_unrelated_questions": 0})
        stamps = []
        record = unlearn(args.base_dir, forget, [Path(args.data_root) / args.retain],
                         args.method, None, params, masks_path=args.masks, progress=False,
                         after_each_epoch=lambda model, tokenizer, epochs: stamps.append(time.perf_counter()))
        steps = sum(st["steps"] for st in record["stages"]) // args.epochs
        per_step = (stamps[-1] - stamps[0]) / (steps * (len(stamps) - 1))
        rows.append((autocast or "off", fused, per_step, record["losses"][-1]["loss"]))
        print(f"autocast {autocast or 'off'}, fused AdamW {fused}: {per_step:.3f} s a step", file=sys.stderr)
    from clue.losses import machine

    print(f"{args.method} on {args.forget} x {args.retain}, {args.threads} thread(s), {steps} steps an epoch, "
          f"{machine()}")
    shutil.rmtree(forget.parent)
    print("| autocast | fused AdamW | s a step | x faster | last loss |")
    print("|---|---|---|---|---|")
    for autocast, fused, per_step, loss in rows:
        print(f"| {autocast} | {fused} | {per_step:.3f} | {rows[0][2] / per_step:.2f} | {loss:.4f} |")


if __name__ == "__main__":
    main()
