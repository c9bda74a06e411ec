"""Circuit sparsity vs faithfulness on validation pairs, beside the held-out figure: what the
``circuit.target_sparsity`` candidates of a config choose from (README "Circuits").

    OMP_NUM_THREADS=1 python bench/sweep_sparsity.py --results results/toy \
        --tasks toy_cyber toy_bio --sparsities 0.95 0.9 0.8 [--params '{"steps": 400}']

For every task, mode and target sparsity it trains a circuit exactly as the ``circuit`` stage
does (discovery pairs, the threshold cut) and prints one row: the expected sparsity reached, the
kept and dead-end edges, the neurons the circuit touches, KL on the discovery pairs, the
normalized faithfulness on ``validation_pairs.jsonl`` (which is what chooses a sparsity) and on
``heldout_pairs.jsonl`` (KL of the circuit, of the empty circuit, faithfulness: report only, never
a reason to pick a setting), the steps trained, and with ``early_stop_every`` in ``--params`` the
validation faithfulness at each check (``step:faithfulness``). A ``min_faithfulness`` of 1 in
``--params`` never stops, so the checks trace faithfulness against steps in one run:

    python bench/sweep_sparsity.py --results results/smollm2-135m-instruct --tasks world_cities \
        --modes noising --sparsities 0.85 --params '{"steps": 2400, "early_stop_every": 200,
        "min_faithfulness": 1.0, "candidate_nodes": 0.5, "autocast": "auto", ...}'

Nothing is written.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", required=True, help="results/{model} of a run (base/ and data/)")
    ap.add_argument("--tasks", nargs="+", required=True)
    ap.add_argument("--sparsities", nargs="+", type=float, required=True)
    ap.add_argument("--modes", nargs="+", default=["noising", "denoising"])
    ap.add_argument("--params", default="{}", help="the `circuit` config section as JSON")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from clue.circuits import discover as D
    from clue.logic.gates import collapse

    torch.set_num_threads(1)
    base = Path(args.results) / "base"
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    print("task\tmode\ttarget\texpected\tkept\tdead_ends\tneurons\tkl_train\tfaithful_validation\t"
          "kl_heldout\tkl_empty_heldout\tfaithful_heldout\tsteps_run\tseconds\tchecks")
    for task in args.tasks:
        data = Path(args.results) / "data" / task
        for sparsity in args.sparsities:
            p = D.resolve_params({**json.loads(args.params), "target_sparsity": sparsity})
            pairs = D.load_pairs(data, task, tok, p["max_pairs"])
            validation = D.load_pairs(data, task, tok, p["max_pairs"], "validation_pairs.jsonl")
            heldout = D.load_pairs(data, task, tok, p["max_pairs"], "heldout_pairs.jsonl")
            for mode in args.modes:
                start = time.perf_counter()
                r = D.discover(model, pairs, mode, p, progress=False, heldout=heldout, validation=validation)
                record = D.circuit_record(r, "sweep", task, mode)
                neurons = {n for edge in collapse(record) for n in edge} - {"out"}
                f, v = r["faithfulness"], r["validation"]
                print(f"{task}\t{mode}\t{sparsity}\t{r['expected_sparsity']:.4f}\t{int(r['kept'].sum())}\t"
                      f"{r['dead_end_edges_removed']}\t{len(neurons)}\t{r['kl']:.3f}\t{v['faithfulness']:.3f}\t"
                      f"{f['kl_circuit']:.3f}\t"
                      f"{f['kl_empty']:.3f}\t{f['faithfulness']:.3f}\t{r['steps_run']}\t"
                      f"{time.perf_counter() - start:.1f}\t{checks(r['checks'])}", flush=True)


def checks(record):
    """The early-stop checks that measured a circuit, as ``step:faithfulness`` words."""
    return " ".join(f"{c['step']}:{c['validation_faithfulness']:.3f}" for c in record
                    if c["validation_faithfulness"] is not None) or "-"


if __name__ == "__main__":
    main()
