"""Benchmark of circuit discovery: time one circuit, and peak memory of the masked forward.

    OMP_NUM_THREADS=1 python bench/bench_circuit.py --model-dir results/toy/base \
        --data-dir results/toy/data/toy_cyber [--mode noising] [--params '{"steps": 300}']

Memory: each measurement runs in a fresh subprocess that loads the model and one batch of
pairs, reads its peak resident set size (``resource.getrusage(...).ru_maxrss``), runs the
measured step once and reads the peak again; the difference is that step's peak extra memory.
``unmasked`` is a plain HF forward without autograd (inference); ``masked`` is one training step
of discovery: the corrupted writer outputs, the gated forward and the backward to the gates.
RSS covers every allocation (torch's CPU allocator included, which tracemalloc would miss) but
has page granularity and allocator slack, so tiny models give noisy figures.

Also prints the arithmetic for the README's GPU-memory estimate for a 7B model.
"""

import argparse
import json
import resource
import subprocess
import sys
import time

import torch


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(args):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from clue.circuits import discover as D
    from clue.circuits.masked_forward import build_graph, forward

    tok = AutoTokenizer.from_pretrained(args.model_dir)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir).eval().requires_grad_(False)
    pairs = D.load_pairs(args.data_dir, "bench", tok, args.batch_size)
    graph = build_graph(model.config)
    # Tile the pairs up to the batch size: the step's memory must stand out of the RSS that
    # loading the model already reached.
    reps = -(-args.batch_size // pairs["clean"].shape[0])
    run_ids, other_ids, last = (pairs[k].repeat_interleave(reps, 0)[:args.batch_size]
                                for k in ("clean", "corrupted", "last"))
    before = peak_mb()
    if args.measure == "unmasked":
        with torch.no_grad():
            model(run_ids)
    else:
        with torch.no_grad():
            _, other = forward(model, graph, other_ids)
        log_alpha = torch.full((graph.n_edges,), 3.0, requires_grad=args.measure == "masked_train")
        with torch.set_grad_enabled(args.measure == "masked_train"):
            logits, _ = forward(model, graph, run_ids, D.sample_gates(log_alpha), other, last)
            if args.measure == "masked_train":
                logits.logsumexp(-1).sum().backward()
    print(json.dumps({"extra_mb": peak_mb() - before, "tokens": list(run_ids.shape)}))


def estimate_7b(batch=8, seq=512, layers=32, heads=32, kv=8, hidden=4096, inter=14336, vocab=32000,
                candidate_nodes=0.5):
    """GPU memory estimate for discovery on zephyr-7b-beta in bf16 (2 bytes), for the masked
    forward as it is (clue.circuits.masked_forward: each writer's difference stored once) and as
    it was (every reader group concatenating all its upstream writers, a copy kept for backward)."""
    b = 2
    hd = hidden // heads
    params = (2 * vocab * hidden                                  # embed + lm_head (untied)
              + layers * (hidden * hd * (heads + 2 * kv) + hidden * hidden   # q, k, v, o
                          + 3 * hidden * inter + 2 * hidden) + hidden)       # MLP, norms
    writers = 1 + layers * (heads + 1)
    attn_readers = heads + 2 * kv
    edges = sum(attn_readers * (1 + l * (heads + 1)) + 1 + l * (heads + 1) + heads
                for l in range(layers)) + writers
    tok = batch * seq
    slice_bytes = tok * hidden * b                                # one writer's output
    gib = 2 ** 30
    lines = [f"7B estimate (batch {batch} x {seq} tokens, bf16 = {b} bytes):"]
    w = params * b
    lines.append(f"  weights: {params / 1e9:.2f} B params x {b} B = {w / gib:.1f} GiB")
    # the q/k/v rows times the layer's input norm weight (LowPrecisionWeights), which the gated
    # run projects with and its backward keeps
    folded = layers * hidden * hd * (heads + 2 * kv) * b
    lines.append(f"  q/k/v rows times the norm weight: {layers} x {hidden} x {hd} x ({heads} + 2 x {kv}) x {b} B "
                 f"= {folded / gib:.1f} GiB")
    w += folded
    corr = writers * slice_bytes
    lines.append(f"  other input's writer outputs: {writers:,} writers x {tok} tokens x {hidden} x {b} B "
                 f"= {corr / gib:.1f} GiB")
    lines.append(f"  this run's writer differences (stored once): same = {corr / gib:.1f} GiB")
    lines.append(f"  their gradients, accumulated in the backward: same = {corr / gib:.1f} GiB")
    # each reader's mixed input, kept once for its norm's backward (no normed copy is kept: the
    # q/k/v readers' norm is folded into their projection, the MLP's products keep no input): the
    # q/k/v readers' inputs and the MLP reader's sum over the upstream writers (one product's
    # output), the MLP reader's input, and the q/k/v readers' projected heads
    per_layer_in = (attn_readers + 2) * slice_bytes
    mixed = layers * (per_layer_in + attn_readers * tok * hd * b)
    lines.append(f"  reader inputs kept for backward: {layers} layers x ({attn_readers} + 2) x {tok} x {hidden} x {b} B "
                 f"+ the projected heads {layers} x {attn_readers} x {tok} x {hd} x {b} B = {mixed / gib:.1f} GiB")
    attn = layers * (batch * heads * seq * seq * 4 * 2 + 3 * tok * hd * (heads + 2 * kv) * b
                     + tok * inter * 3 * b)
    lines.append(f"  attention probs (fp32 scores+probs), q/k/v, MLP hidden kept for backward: "
                 f"{attn / gib:.1f} GiB")
    gates = edges * 4 * 4   # log_alpha, its grad, two Adam moments, fp32
    lines.append(f"  gates: {edges:,} edges x 16 B (fp32 log_alpha, grad, 2 Adam moments) = "
                 f"{gates / 2 ** 20:.1f} MiB")
    total = w + 3 * corr + mixed + attn + gates
    lines.append(f"  total ~ {total / gib:.0f} GiB (+ allocator slack and transient products)")
    per_sample = (total - w - gates) / batch
    fits = max(0, int((80e9 - w - gates) // per_sample))
    lines.append(f"  one 80 GB GPU: batch {fits} x {seq} ({(w + gates + fits * per_sample) / gib:.0f} GiB)")
    # circuit.candidate_nodes f: only the live writers' differences (and their gradients) are
    # stored, and only the readers of live writers are computed (counted here as a fraction f)
    f = candidate_nodes
    live_total = w + corr + 2 * f * corr + f * mixed + attn + gates
    live_per_sample = (live_total - w - gates) / batch
    # the EAP-IG pass that ranks the writers gates every edge (a step of `total`), on half a batch
    # at a time (clue.circuits.discover.attribute)
    half = (batch + 1) // 2
    attribution = w + gates + half * per_sample
    live_fits = max(b for b in range(batch * 8 + 1)
                    if b == 0 or (w + gates + b * live_per_sample <= 80e9
                                  and w + gates + (b + 1) // 2 * per_sample <= 80e9))
    lines.append(f"  with circuit.candidate_nodes {f}: other input's outputs {corr / gib:.1f} GiB (all writers) + "
                 f"differences and gradients {2 * f * corr / gib:.1f} GiB + reader inputs {f * mixed / gib:.1f} GiB + "
                 f"attention and MLPs as above (attribution kept every MLP of SmolLM2) = about "
                 f"{live_total / gib:.0f} GiB; the attribution pass before it (every edge gated, "
                 f"{half} of the {batch} pairs at a time) about {attribution / gib:.0f} GiB; one 80 GB GPU: batch "
                 f"{live_fits} x {seq}")
    n_up = [1 + l * (heads + 1) for l in range(layers)]
    copies = sum(2 * n + heads for n in n_up)   # attention group: n_up writers, MLP group: n_up + heads
    lines.append(f"  before (a concatenation of every upstream writer per reader group, kept for backward): "
                 f"{copies:,} writer slices + the other input's {writers:,} = {(copies + writers) * slice_bytes / gib:,.0f} GiB "
                 f"for the writers alone, growing with the square of the depth")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--mode", default="noising", choices=["noising", "denoising"])
    ap.add_argument("--params", default="{}", help="the circuit config section as JSON")
    ap.add_argument("--batch-size", type=int, default=512, help="batch of the memory measurement "
                    "(the task's pairs, repeated)")
    ap.add_argument("--measure", choices=["masked", "unmasked", "masked_train"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        return measure(args)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from clue.circuits import discover as D

    params = D.resolve_params(json.loads(args.params))
    tok = AutoTokenizer.from_pretrained(args.model_dir)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir)
    pairs = D.load_pairs(args.data_dir, "bench", tok, params["max_pairs"])
    start = time.perf_counter()
    result = D.discover(model, pairs, args.mode, params, progress=False)
    seconds = time.perf_counter() - start
    print(f"circuit ({args.mode}): {result['graph'].n_edges} edges, {pairs['clean'].shape[0]} pairs x "
          f"{pairs['clean'].shape[1]} tokens, {params['steps']} steps: {seconds:.1f} s, "
          f"KL {result['kl']:.4g}, sparsity {result['achieved_sparsity']:.3f}, "
          f"torch threads {torch.get_num_threads()}")

    mem = {}
    for kind in ("unmasked", "masked", "masked_train"):
        out = subprocess.run([sys.executable, __file__, "--model-dir", args.model_dir, "--data-dir",
                              args.data_dir, "--batch-size", str(args.batch_size), "--measure", kind],
                             check=True, capture_output=True, text=True).stdout
        mem[kind] = json.loads(out.strip().splitlines()[-1])
    u, m, t = (mem[k]["extra_mb"] for k in ("unmasked", "masked", "masked_train"))
    print(f"peak extra RSS, batch {mem['masked']['tokens']}: unmasked forward {u:.1f} MB, masked "
          f"forward {m:.1f} MB (ratio {m / max(u, 1e-3):.1f}), masked forward+backward to the gates "
          f"{t:.1f} MB (ratio {t / max(u, 1e-3):.1f})")
    print(estimate_7b())


if __name__ == "__main__":
    main()
