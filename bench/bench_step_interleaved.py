"""Versions of the masked forward side by side in one process, their discovery steps interleaved.

    git show 70d4d0d:workflow/clue/circuits/masked_forward.py > /tmp/mf_old.py
    python bench/bench_step_interleaved.py --model-dir results/smollm2-135m-instruct/base \
        --forward /tmp/mf_old.py workflow/clue/circuits/masked_forward.py [--rounds 20]

Timing separate processes one after another (``bench_circuit_depth.py --workflow``) compares
versions across minutes in which a shared machine's speed drifts by 10-15%. Here every version
trains its own gates on the same model, pairs and candidate writers, and the steps alternate
version by version, so a drift slows all of them alike; the table gives each version's median,
mean and fastest step and the ratio of its median to the first version's.

A step is the one ``bench_circuit_depth.py`` times (sample the gates, gated forward, KL at the
answer position, backward to log_alpha, Adam step), on ``--pairs`` IOI pairs of ``--tokens``
tokens. Only the masked forward module differs between versions: each ``--forward`` file is
loaded on its own (it imports nothing from ``clue`` but ``clue.errors``), the attribution, the
gate sampling and the loss come from this checkout, the bf16 weight copies from the version's
module where it defines ``LowPrecisionWeights`` (which weights it copies is its own). Each version draws
its gates from its own copy of the random state, so its steps are those it would take alone;
the last column says whether its gates after the last step equal the first version's bit for bit.
"""

import argparse
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))
sys.path.insert(0, str(ROOT / "bench"))


def load_forward(path, i):
    spec = importlib.util.spec_from_file_location(f"masked_forward_{i}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True, help="an HF checkpoint (e.g. the converted SmolLM2 base)")
    ap.add_argument("--forward", nargs="+", required=True, help="masked_forward.py files, the first the reference")
    ap.add_argument("--rounds", type=int, default=20, help="timed steps of each version (after two untimed)")
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--candidate-nodes", type=float, default=0.5, help="circuit.candidate_nodes")
    ap.add_argument("--attribution-steps", type=int, default=4, help="circuit.attribution_steps")
    ap.add_argument("--autocast", choices=["bfloat16", "float16", "none"], default="bfloat16",
                    help="circuit.autocast (none: float32 steps)")
    args = ap.parse_args()
    for path in args.forward:
        if not Path(path).is_file():
            sys.exit(f"--forward: no such file: {path}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bench_circuit_depth import ioi_pairs
    from clue.circuits import discover as D
    from clue.circuits.masked_forward import build_graph, candidate_edges, forward

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(args.model_dir)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32).eval().requires_grad_(False)
    clean, corrupted = (torch.tensor(x) for x in ioi_pairs(tok, args.pairs, args.tokens))
    last = torch.full((clean.shape[0],), args.tokens - 1)
    graph = build_graph(model.config)
    with torch.no_grad():
        _, other = forward(model, graph, corrupted)
        full, _ = forward(model, graph, clean, positions=last)
    batch = [{"ids": clean, "last": last, "other": other, "full": full}]
    _, writer_scores = D.attribute(model, graph, batch, args.attribution_steps)
    live = D.candidate_writers(graph, writer_scores, args.candidate_nodes)
    gate_index = candidate_edges(graph, live).nonzero().flatten()
    precision = None if args.autocast == "none" else getattr(torch, args.autocast)
    def version(module):
        plan = module.live_nodes(graph, live)
        # the version's own bf16 copies, where it has them (which weights it copies is its own)
        weights = getattr(module, "LowPrecisionWeights", D.LowPrecisionWeights)(model, precision)
        log_alpha = torch.full((len(gate_index),), D.LOG_ALPHA_INIT, requires_grad=True)
        opt = torch.optim.Adam([log_alpha], lr=0.1)
        rng = torch.get_rng_state()               # this version's own random stream

        def step():
            nonlocal rng
            torch.set_rng_state(rng)
            start = time.perf_counter()
            gates = torch.zeros(graph.n_edges).index_put((gate_index,), D.sample_gates(log_alpha))
            with torch.autocast("cpu", dtype=precision, enabled=precision is not None), weights.in_place():
                logits, _ = module.forward(model, graph, clean, gates, other, last, plan)
                loss = D.kl_full_circuit(full, logits)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seconds = time.perf_counter() - start
            rng = torch.get_rng_state()
            return seconds

        return step, log_alpha

    versions = [version(load_forward(path, i)) for i, path in enumerate(args.forward)]
    seconds = [[] for _ in versions]
    for r in range(args.rounds + 2):
        for (step, _), times in zip(versions, seconds):
            t = step()
            if r >= 2:
                times.append(t)
    from clue.losses import machine

    print(f"{args.pairs} IOI pairs x {args.tokens} tokens, {args.threads} threads, candidate nodes "
          f"{args.candidate_nodes} ({len(gate_index):,} edges), step precision {args.autocast}, "
          f"{args.rounds} interleaved steps each; {machine()}")
    print("| masked forward | median s / step | mean | fastest | median / first's | gates equal to the first's |")
    print("|---|---|---|---|---|---|")
    reference = statistics.median(seconds[0])
    for path, (_, log_alpha), times in zip(args.forward, versions, seconds):
        median = statistics.median(times)
        print(f"| {path} | {median:.3f} | {statistics.mean(times):.3f} | {min(times):.3f} | "
              f"{median / reference:.3f} | {torch.equal(log_alpha, versions[0][1])} |")


if __name__ == "__main__":
    main()
