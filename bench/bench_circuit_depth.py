"""Circuit discovery on a real model as it gets deeper: seconds per optimisation step and peak
memory, at several depths of one checkpoint (its first N decoder layers).

    python bench/bench_circuit_depth.py --model-dir results/smollm2-135m-instruct/base \
        [--layers 8 16 30] [--pairs 8] [--tokens 16] [--steps 3] [--threads 2] [--autocast bfloat16] \
        [--dtype bfloat16]

Each depth runs in a fresh subprocess: load the model, keep its first N layers, build ``--pairs``
IOI pairs of exactly ``--tokens`` tokens (the indirect object's name swapped for another name
of one token), compute the other input's writer outputs and the full model's logits (as
``_prepare_batches`` does), then time ``--steps`` optimisation steps of discovery (sample the
gates, gated forward, KL at the answer position, backward to log_alpha, Adam step) after one
warm-up step. Beside it, the yardstick: a plain forward and backward of the same batch through
the unmasked HF model, to its input embeddings (the weights are frozen, as in discovery), timed
the same way; the table gives the ratio. Memory is the process's peak resident set from the
moment the model was loaded to the end of the discovery steps, before the yardstick runs, minus
the resident set at that moment: what discovery adds (Linux: the peak is reset through
``/proc/self/clear_refs`` after loading, so a model loaded in bf16, whose loading peaks higher
than it then holds, does not hide the steps' peak).

``--workflow DIR`` imports ``clue`` from another checkout's ``workflow/`` directory, to measure an
older version of the masked forward on the same machine (``git worktree add /tmp/old <commit>``).
"""

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = "Then, {a} and {b} went to the {place}. {b} gave a {thing} to"
NAMES = ["Mary", "John", "Tom", "Anna", "James", "Sarah", "David", "Emma", "Paul", "Laura",
         "Mark", "Kate", "Peter", "Lisa", "Simon", "Alice"]
PLACES = ["store", "park", "school", "office", "garden", "station", "market", "beach"]
THINGS = ["drink", "book", "ring", "kiss", "bone", "basketball", "computer", "snack"]


def memory_mb(field):
    """VmRSS (resident now) or VmHWM (the peak since the last reset) of this process, in MB."""
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) / 1024


def reset_peak():
    Path("/proc/self/clear_refs").write_text("5")   # VmHWM := VmRSS


def ioi_pairs(tokenizer, n, tokens):
    """n (clean, corrupted) prompts of ``tokens`` tokens: corrupted swaps the indirect object."""
    single = [w for w in NAMES if len(tokenizer(" " + w, add_special_tokens=False).input_ids) == 1]
    clean, corrupted = [], []
    i = 0
    while len(clean) < n and i < 10_000:
        a, b = single[i % len(single)], single[(i * 7 + 3) % len(single)]
        c = single[(i * 5 + 1) % len(single)]
        place, thing = PLACES[i % len(PLACES)], THINGS[(i // 3) % len(THINGS)]
        i += 1
        if len({a, b, c}) < 3:
            continue
        x = tokenizer(TEMPLATE.format(a=a, b=b, place=place, thing=thing)).input_ids
        y = tokenizer(TEMPLATE.format(a=c, b=b, place=place, thing=thing)).input_ids
        if len(x) == len(y):
            clean.append(x)
            corrupted.append(y)
    width = max(len(x) for x in clean)
    if width > tokens:
        sys.exit(f"the IOI prompts take {width} tokens; ask for --tokens >= {width}")
    pad = tokenizer.pad_token_id or 0
    # left-fill with a neutral prefix so every prompt is exactly `tokens` long
    prefix = tokenizer(" In the morning,", add_special_tokens=False).input_ids

    def fit(ids):
        ids = (prefix * tokens)[:tokens - len(ids)] + ids
        return ids + [pad] * (tokens - len(ids))

    return [fit(x) for x in clean], [fit(y) for y in corrupted]


def measure(args):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from clue.circuits import discover as D
    from clue.circuits.masked_forward import build_graph, forward

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(args.model_dir)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=getattr(torch, args.dtype))
    model = model.eval().requires_grad_(False)
    model.model.layers = model.model.layers[:args.depth]
    model.config.num_hidden_layers = args.depth
    clean, corrupted = ioi_pairs(tok, args.pairs, args.tokens)
    clean, corrupted = torch.tensor(clean), torch.tensor(corrupted)
    last = torch.full((clean.shape[0],), args.tokens - 1)
    graph = build_graph(model.config)
    loaded = memory_mb("VmRSS")
    reset_peak()
    with torch.no_grad():
        _, other = forward(model, graph, corrupted)
        full, _ = forward(model, graph, clean, positions=last)
    live, gate_index, attribution_s = None, torch.arange(graph.n_edges), 0.0
    if args.candidate_nodes < 1:
        # as discovery does it: EAP-IG on this batch, Edge Pruning on the edges between the top writers
        from clue.circuits.masked_forward import candidate_edges, live_nodes
        start = time.perf_counter()
        batch = [{"ids": clean, "last": last, "other": other, "full": full}]
        _, writer_scores = D.attribute(model, graph, batch, args.attribution_steps)
        live = live_nodes(graph, D.candidate_writers(graph, writer_scores, args.candidate_nodes))
        gate_index = candidate_edges(graph, live.live).nonzero().flatten()
        attribution_s = time.perf_counter() - start
    log_alpha = torch.full((len(gate_index),), D.LOG_ALPHA_INIT, requires_grad=True)
    opt = torch.optim.Adam([log_alpha], lr=0.1)
    times = []
    precision = getattr(torch, args.autocast) if args.autocast else None
    # the copies count in the peak: made after the resident set was read
    weights = D.LowPrecisionWeights(model, precision) if hasattr(D, "LowPrecisionWeights") else None
    for _ in range(args.steps + 1):
        start = time.perf_counter()
        gates = torch.zeros(graph.n_edges).index_put((gate_index,), D.sample_gates(log_alpha))
        # as circuit.autocast (and its weight copies, where the imported clue has them)
        with torch.autocast("cpu", dtype=precision, enabled=precision is not None), \
                (weights.in_place() if weights else contextlib.nullcontext()):
            logits, _ = forward(model, graph, clean, gates, other, last, *([live] if live else []))
            loss = D.kl_full_circuit(full, logits)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    peak_extra = memory_mb("VmHWM") - loaded     # discovery's peak, before the yardstick runs
    del weights

    def plain_pass(dtype):
        # the yardstick, in float32 (None) or under autocast at ``dtype``
        seconds = []
        for _ in range(args.steps + 1):
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
                embeds = model.model.embed_tokens(clean).detach().requires_grad_(True)
                # logits at the answer position only, as the masked forward computes them (every
                # prompt is --tokens long, so that is the last position)
                out = model(inputs_embeds=embeds, logits_to_keep=1).logits[:, -1]
                loss_plain = D.kl_full_circuit(full, out)
            loss_plain.backward()
            seconds.append(time.perf_counter() - start)
        return sum(seconds[1:]) / args.steps

    plain = plain_pass(None)
    plain_autocast = plain_pass(precision) if precision is not None else None
    step = sum(times[1:]) / args.steps
    print(json.dumps({"layers": args.depth, "edges": graph.n_edges, "writers": len(graph.writers),
                      "s_per_step": step, "first_step_s": times[0], "plain_s": plain,
                      "plain_autocast_s": plain_autocast,
                      "peak_extra_mb": peak_extra, "loss": loss.item(),
                      "candidate_edges": len(gate_index), "attribution_s": attribution_s}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True, help="an HF checkpoint (e.g. the converted SmolLM2 base)")
    ap.add_argument("--layers", type=int, nargs="+", default=[8, 16, 30])
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--candidate-nodes", type=float, default=1.0,
                    help="circuit.candidate_nodes: Edge Pruning on the edges between this fraction of the writers "
                         "(EAP-IG on the batch); 1: every writer")
    ap.add_argument("--attribution-steps", type=int, default=4, help="circuit.attribution_steps")
    ap.add_argument("--autocast", choices=["bfloat16", "float16"],
                    help="circuit.autocast: the gated step under torch.autocast; the plain pass is then timed "
                         "both in float32 (the ratio's yardstick) and under autocast")
    ap.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                    help="circuit.dtype: the dtype the model is loaded in (the plain pass runs in it too)")
    ap.add_argument("--workflow", default=str(ROOT / "workflow"), help="where `clue` is imported from")
    ap.add_argument("--depth", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.depth:
        return measure(args)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([args.workflow, os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
    from clue.losses import machine

    print(f"{args.pairs} IOI pairs x {args.tokens} tokens, {args.threads} threads, candidate nodes "
          f"{args.candidate_nodes}, model in {args.dtype}, step precision {args.autocast or args.dtype}, "
          f"clue from {args.workflow}; {machine()}")
    print("| layers | writers | edges | candidate edges | attribution (s, once) | s / step "
          "| plain forward + backward (s) | ratio | plain pass under autocast (s) | peak extra RSS (MB) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for depth in args.layers:
        cmd = [sys.executable, __file__, "--model-dir", args.model_dir, "--depth", str(depth)]
        for key in ("pairs", "tokens", "steps", "threads", "candidate_nodes", "attribution_steps", "autocast", "dtype"):
            if getattr(args, key) is not None:
                cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if out.returncode:
            sys.exit(out.stderr[-3000:])
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {r['layers']} | {r['writers']} | {r['edges']:,} | {r.get('candidate_edges', r['edges']):,} | "
              f"{r.get('attribution_s', 0):.1f} | {r['s_per_step']:.2f} | {r['plain_s']:.2f} | "
              f"{r['s_per_step'] / r['plain_s']:.1f} | "
              f"{'-' if r.get('plain_autocast_s') is None else format(r['plain_autocast_s'], '.2f')} | "
              f"{r['peak_extra_mb']:.0f} |")


if __name__ == "__main__":
    main()
