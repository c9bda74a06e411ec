"""Which candidate edges a fact circuit can lose: from the node-level circuit (every edge between
``embed`` and the top ``--candidate-nodes`` writers by EAP-IG attribution), remove k edges at
random (three draws) or those of the smallest |attribution|, and measure faithfulness on the
validation pairs. It separates "the task needs most edges" from "Edge Pruning's gates remove the
wrong ones" (docs/real-model.md, "Fact circuits: Edge Pruning against EAP-IG").

    OMP_NUM_THREADS=1 python bench/edge_removal.py --results results/smollm2-135m-instruct \\
        --task world_cities --mode noising --counts 938 3000 6000 10169

Nothing is written.
"""

import argparse

import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", required=True, help="results/{model}: holds base/ and data/{task}/")
    ap.add_argument("--task", required=True)
    ap.add_argument("--mode", default="noising", choices=["noising", "denoising"])
    ap.add_argument("--counts", type=int, nargs="+", required=True, help="how many candidate edges to remove")
    ap.add_argument("--candidate-nodes", type=float, default=0.5)
    ap.add_argument("--draws", type=int, default=3)
    args = ap.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from clue.base_model import base_model_path
    from clue.circuits import discover as D
    from clue.losses import machine

    print(machine())
    path = base_model_path(f"{args.results}/base")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    p = D.resolve_params({"candidate_nodes": args.candidate_nodes, "batch_size": 8, "max_pairs": 32})
    data = f"{args.results}/data/{args.task}"
    pairs = D.load_pairs(data, args.task, tok, p["max_pairs"])
    validation = D.load_pairs(data, args.task, tok, p["max_pairs"], "validation_pairs.jsonl")
    model, graph, batches, device = D._setup(model, pairs, args.mode, p)
    attribution = D.attribute(model, graph, batches, p["attribution_steps"])
    kept = D.node_circuit(model, pairs, args.mode, p, attribution=attribution, batches=batches)["kept"]
    cache = {}

    def faithful(gates):
        return D.faithfulness(model, graph, validation, args.mode, D.remove_dead_ends(graph, gates), p, device,
                              cache)["faithfulness"]

    print(f"node-level circuit: {int(kept.sum())} edges, validation faithfulness {faithful(kept):.3f}")
    print(f"| edges removed | at random ({args.draws} draws) | smallest \\|attribution\\| |")
    print("|---|---|---|")
    edges = kept.nonzero().flatten()
    by_attribution = edges[attribution[0][edges].abs().argsort()]
    for k in args.counts:
        drawn = []
        for seed in range(args.draws):
            order = torch.randperm(len(edges), generator=torch.Generator().manual_seed(seed))
            gates = kept.clone()
            gates[edges[order[:k]]] = 0
            drawn.append(f"{faithful(gates):.3f}")
        gates = kept.clone()
        gates[by_attribution[:k]] = 0
        print(f"| {k:,} | {', '.join(drawn)} | {faithful(gates):.3f} |", flush=True)


if __name__ == "__main__":
    main()
