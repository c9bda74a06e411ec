"""Faithfulness of node-level circuits: every edge between ``embed`` and the top fraction of
writers by EAP-IG attribution (as ``circuit.candidate_nodes`` chooses them), all open, no Edge
Pruning. It shows what the candidates allow before Edge Pruning removes any of their edges.
With ``--sparsities``, also EAP-IG's circuit at each target sparsity (``circuit.attribution_fallback``:
the candidate edges of the largest |attribution|, cut and cleared of dead ends, no training).

    python bench/node_circuit_faithfulness.py --results results/smollm2-135m-instruct \\
        --tasks world_cities world_people [--fractions 0.4 0.5] [--sparsities 0.9 0.85] [--threads 2]

Attribution on the discovery pairs (``pairs.jsonl``), faithfulness on the validation and the
held-out pairs, as the circuit stage measures it. Nothing is written.
"""

import argparse
import time

import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", required=True, help="results/{model}: holds base/ and data/{task}/")
    ap.add_argument("--tasks", nargs="+", required=True)
    ap.add_argument("--modes", nargs="+", default=["noising", "denoising"])
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.4, 0.5])
    ap.add_argument("--sparsities", type=float, nargs="*", default=[],
                    help="target sparsities of EAP-IG's circuit from each fraction's candidates")
    ap.add_argument("--attribution-steps", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-pairs", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from clue.base_model import base_model_path
    from clue.circuits import discover as D
    from clue.circuits.masked_forward import build_graph, candidate_edges

    torch.set_num_threads(args.threads)
    path = base_model_path(f"{args.results}/base")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval().requires_grad_(False)
    graph = build_graph(model.config)
    params = {"batch_size": args.batch_size}
    print("| task | mode | candidate writers | circuit | edges | validation faithfulness | held-out faithfulness | s |")
    print("|---|---|---|---|---|---|---|---|")
    for task in args.tasks:
        data = f"{args.results}/data/{task}"
        pairs = D.load_pairs(data, task, tok, args.max_pairs)
        validation = D.load_pairs(data, task, tok, args.max_pairs, "validation_pairs.jsonl")
        heldout = D.load_pairs(data, task, tok, args.max_pairs, "heldout_pairs.jsonl")
        for mode in args.modes:
            start = time.perf_counter()
            batches = D._prepare_batches(model, graph, pairs, mode, args.batch_size, torch.device("cpu"))
            attribution = D.attribute(model, graph, batches, args.attribution_steps)
            for fraction in args.fractions:
                circuits = [("node-level", candidate_edges(graph, D.candidate_writers(graph, attribution[1], fraction)))]
                for sparsity in args.sparsities:
                    p = D.resolve_params({**params, "candidate_nodes": fraction, "target_sparsity": sparsity,
                                          "attribution_steps": args.attribution_steps})
                    r = D.attribution_circuit(model, pairs, mode, p, attribution=attribution, batches=batches)
                    circuits.append((f"EAP-IG {sparsity}", r["kept"]))
                for name, gates in circuits:
                    v = D.faithfulness(model, graph, validation, mode, gates, params, "cpu")["faithfulness"]
                    h = D.faithfulness(model, graph, heldout, mode, gates, params, "cpu")["faithfulness"]
                    print(f"| `{task}` | {mode} | {fraction} | {name} | {int(gates.sum()):,} | {v:.3f} | {h:.3f} | "
                          f"{time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
