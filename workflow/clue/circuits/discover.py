"""Stage ``circuit``: Edge Pruning (Bhaskar et al. 2024) with a noising or denoising intervention.

Every edge of the computational graph (clue.circuits.masked_forward) gets a hard-concrete (L0)
gate (Louizos et al. 2018). The gates minimise KL(full model || circuit) at the answer position
(the last prompt token) while a Lagrangian (as in CoFi / Edge Pruning) drives the expected edge
sparsity to a target that ramps linearly up to ``target_sparsity``. The final circuit keeps the
top ``(1 - target_sparsity)`` fraction of edges by score (the gate's keep probability
P(z > 0)); its KL with hard 0/1 gates is measured on the pairs again and reported.

Modes (paper, appendix C):

- ``noising``: run on the clean prompt; edges outside the circuit carry the writers' outputs on the
  corrupted prompt; match the full model on the clean prompt.
- ``denoising``: clean and corrupted swapped: run on the corrupted prompt, edges outside the
  circuit carry clean outputs, match the full model on the corrupted prompt.

Tokenisation: prompts are tokenised as the model sees them (the tokenizer's special tokens
included) and right-padded; logits are read at each prompt's last real token. A pair whose clean
and corrupted prompts have different token lengths cannot be patched position by position and is
skipped (with a warning). Answers are expected to be single tokens (true for the toy world's
word-level tokenizer); a multi-token answer is represented by its first token.
"""

import math
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from clue.circuits.masked_forward import build_graph, check_supported, forward
from clue.errors import ClueError
from clue.io import json_params, read_jsonl, save_figure, write_json

MODES = ("noising", "denoising")
DEFAULTS = {
    "target_sparsity": 0.9,   # fraction of edges removed
    "steps": 300,
    "lr": 0.1,                # Adam on the gates' log_alpha
    "lagrangian_lr": 0.3,     # plain gradient ascent on lambda1, lambda2 (Adam overshoots)
    "sparsity_warmup": 0.5,   # fraction of the steps over which the target ramps up from 0
    "batch_size": 16,
    "max_pairs": 64,
    "seed": 0,
    "device": "cpu",
}

# Hard-concrete stretch: s in (0, 1) is stretched to (L, R) and clamped to [0, 1].
BETA, L, R = 2 / 3, -0.1, 1.1
LOG_ALPHA_INIT = 3.0   # every gate starts almost surely open: the circuit starts as the full model


# ---------------------------------------------------------------------------------------------
# Parameters and data

def resolve_params(params):
    """The ``circuit`` config section with defaults filled in; ClueError on a bad key or value."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise ClueError(f"circuit config: unknown key(s) {', '.join(unknown)}; "
                        f"known: {', '.join(DEFAULTS)}")
    p = {**DEFAULTS, **params}
    if not (isinstance(p["target_sparsity"], (int, float)) and 0 < p["target_sparsity"] < 1):
        raise ClueError(f"circuit config: target_sparsity must be in (0, 1), got {p['target_sparsity']!r}")
    for key in ("steps", "batch_size", "max_pairs"):
        if not isinstance(p[key], int) or isinstance(p[key], bool) or p[key] < 1:
            raise ClueError(f"circuit config: {key} must be a positive integer, got {p[key]!r}")
    for key in ("lr", "lagrangian_lr"):
        if not isinstance(p[key], (int, float)) or p[key] <= 0:
            raise ClueError(f"circuit config: {key} must be a positive number, got {p[key]!r}")
    if not (isinstance(p["sparsity_warmup"], (int, float)) and 0 <= p["sparsity_warmup"] <= 1):
        raise ClueError(f"circuit config: sparsity_warmup must be in [0, 1], got {p['sparsity_warmup']!r}")
    return p


def answer_token(tokenizer, answer):
    """The token id of ``answer``: its first token if the tokenizer splits it."""
    ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ClueError(f"answer {answer!r} encodes to no tokens")
    return ids[0]


def load_pairs(data_dir, task, tokenizer, max_pairs):
    """Token ids of the task's pairs: dict with ``clean``, ``corrupted`` (right-padded [N, T]) and
    ``last`` (index of each prompt's last token, [N])."""
    path = Path(data_dir) / "pairs.jsonl"
    records = read_jsonl(path, required=["clean", "corrupted", "clean_answer", "corrupted_answer"])
    if not records:
        raise ClueError(f"task {task}: {path} has no pairs")
    for i, rec in enumerate(records, 1):
        if answer_token(tokenizer, rec["clean_answer"]) == answer_token(tokenizer, rec["corrupted_answer"]):
            raise ClueError(f"task {task}: pair {i} of {path} has the same clean and corrupted "
                            f"answer ({rec['clean_answer']!r}); a corruption must change the answer")
    clean, corrupted, skipped = [], [], 0
    for rec in records:
        c = tokenizer(rec["clean"])["input_ids"]
        x = tokenizer(rec["corrupted"])["input_ids"]
        if len(c) != len(x):
            skipped += 1
            continue
        clean.append(c)
        corrupted.append(x)
        if len(clean) == max_pairs:
            break
    if skipped:
        print(f"clue circuit: task {task}: skipped {skipped} pair(s) whose clean and corrupted "
              "prompts differ in token length", file=sys.stderr)
    if not clean:
        raise ClueError(f"task {task}: no pair has clean and corrupted prompts of equal token length")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    width = max(len(c) for c in clean)

    def padded(seqs):
        return torch.tensor([s + [pad] * (width - len(s)) for s in seqs])

    return {"clean": padded(clean), "corrupted": padded(corrupted),
            "last": torch.tensor([len(c) - 1 for c in clean])}


# ---------------------------------------------------------------------------------------------
# Gates

def keep_probability(log_alpha):
    """P(z > 0) of a hard-concrete gate: its expected L0 norm, and the edge's score."""
    return torch.sigmoid(log_alpha - BETA * math.log(-L / R))


def sample_gates(log_alpha):
    """One reparameterised sample of every gate (differentiable in log_alpha)."""
    u = torch.rand_like(log_alpha).clamp(1e-6, 1 - 1e-6)
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / BETA)
    return (s * (R - L) + L).clamp(0.0, 1.0)


def threshold(scores, target_sparsity):
    """Hard gates keeping the top (1 - target_sparsity) fraction of edges by score (ties: the
    earlier edge)."""
    n_keep = round((1 - target_sparsity) * scores.numel())
    order = torch.sort(-scores, stable=True).indices
    kept = torch.zeros_like(scores)
    kept[order[:n_keep]] = 1.0
    return kept


def kl_full_circuit(full_logits, circuit_logits):
    """Mean over the batch of KL(full || circuit) of the next-token distributions."""
    full = torch.log_softmax(full_logits.float(), -1)
    circ = torch.log_softmax(circuit_logits.float(), -1)
    return (full.exp() * (full - circ)).sum(-1).mean()


# ---------------------------------------------------------------------------------------------
# Discovery

def _roles(pairs, mode):
    """(input the circuit runs on, the other input) for ``mode``."""
    if mode == "noising":
        return pairs["clean"], pairs["corrupted"]
    if mode == "denoising":
        return pairs["corrupted"], pairs["clean"]
    raise ClueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")


def _prepare_batches(model, graph, pairs, mode, batch_size, device):
    """Per batch: the run input, answer positions, the other input's writer outputs and the full
    model's logits on the run input (all from unmasked runs, so computed once)."""
    run_ids, other_ids = _roles(pairs, mode)
    batches = []
    with torch.no_grad():
        for start in range(0, run_ids.shape[0], batch_size):
            sl = slice(start, start + batch_size)
            ids, last = run_ids[sl].to(device), pairs["last"][sl].to(device)
            _, other = forward(model, graph, other_ids[sl].to(device))
            full, _ = forward(model, graph, ids, positions=last)
            batches.append({"ids": ids, "last": last, "other": other, "full": full})
    return batches


def circuit_kl(model, graph, batches, gates):
    """KL(full || circuit) with fixed ``gates`` [E], averaged over all pairs of ``batches``."""
    total, count = 0.0, 0
    with torch.no_grad():
        for b in batches:
            logits, _ = forward(model, graph, b["ids"], gates, b["other"], b["last"])
            n = b["ids"].shape[0]
            total += kl_full_circuit(b["full"], logits).item() * n
            count += n
    return total / count


def discover(model, pairs, mode, params, progress=True):
    """Learn a circuit of ``model`` on ``pairs`` (see ``load_pairs``) with intervention ``mode``.

    Returns a dict: ``graph``, ``scores`` [E] (keep probabilities), ``kept`` [E] (0/1),
    ``achieved_sparsity``, ``kl`` (of the thresholded circuit) and ``history`` (per step:
    kl, expected sparsity, target).
    """
    check_supported(model)
    p = resolve_params(params)
    _roles(pairs, mode)
    torch.manual_seed(p["seed"])
    device = torch.device(p["device"])
    model = model.to(device).eval()
    for param in model.parameters():
        param.requires_grad_(False)
    graph = build_graph(model.config)
    batches = _prepare_batches(model, graph, pairs, mode, p["batch_size"], device)

    log_alpha = torch.full((graph.n_edges,), LOG_ALPHA_INIT, device=device, requires_grad=True)
    lambdas = torch.zeros(2, device=device, requires_grad=True)
    gate_opt = torch.optim.Adam([log_alpha], lr=p["lr"])
    lagrange_opt = torch.optim.SGD([lambdas], lr=p["lagrangian_lr"], maximize=True)
    warmup_steps = max(1, round(p["sparsity_warmup"] * p["steps"]))
    history = []

    for step in tqdm(range(p["steps"]), desc=f"circuit {mode}", disable=not progress, file=sys.stderr):
        b = batches[step % len(batches)]
        target = p["target_sparsity"] * min(1.0, (step + 1) / warmup_steps)
        logits, _ = forward(model, graph, b["ids"], sample_gates(log_alpha), b["other"], b["last"])
        kl = kl_full_circuit(b["full"], logits)
        expected_sparsity = 1 - keep_probability(log_alpha).mean()
        gap = expected_sparsity - target
        loss = kl + lambdas[0] * gap + lambdas[1] * gap ** 2
        gate_opt.zero_grad()
        lagrange_opt.zero_grad()
        loss.backward()
        gate_opt.step()
        lagrange_opt.step()
        history.append({"kl": kl.item(), "expected_sparsity": expected_sparsity.item(), "target": target})

    scores = keep_probability(log_alpha.detach())
    kept = threshold(scores, p["target_sparsity"])
    return {
        "graph": graph, "scores": scores.cpu(), "kept": kept.cpu(),
        "achieved_sparsity": 1 - kept.sum().item() / graph.n_edges,
        "kl": circuit_kl(model, graph, batches, kept),
        "history": history, "params": p,
    }


def circuit_record(result, model_name, task, mode):
    """The circuit JSON of docs/formats.md."""
    graph = result["graph"]
    edges = [{"writer": w, "reader": r, "score": round(float(s), 6), "kept": bool(k)}
             for (w, r), s, k in zip(graph.edge_names(), result["scores"].tolist(), result["kept"].tolist())]
    p = result["params"]
    return {
        "model": model_name, "task": task, "mode": mode,
        "writers": graph.writers, "readers": graph.readers, "edges": edges,
        "target_sparsity": p["target_sparsity"], "achieved_sparsity": result["achieved_sparsity"],
        "kl": result["kl"], "steps": p["steps"], "config": p,
    }


def gates_from_record(graph, record):
    """0/1 gates [E] in ``graph`` order from a circuit JSON's ``kept`` flags."""
    kept = {(e["writer"], e["reader"]): e["kept"] for e in record["edges"]}
    names = graph.edge_names()
    if set(kept) != set(names):
        raise ClueError("circuit JSON edges do not match the model's computational graph")
    return torch.tensor([1.0 if kept[n] else 0.0 for n in names])


# ---------------------------------------------------------------------------------------------
# Drawing

def _node_xy(name, graph):
    """Position of a node: x by head / MLP slot, y by layer (embed at the bottom, out on top)."""
    if name == "embed":
        return (graph.n_heads / 2, 0.0)
    if name == "out":
        return (graph.n_heads / 2, 2.0 * graph.n_layers + 1)
    parts = name.split(".")
    layer = int(parts[0][1:])
    if parts[0][0] == "m":
        return (graph.n_heads + 0.5, 2.0 * layer + 1.5)
    head = int(parts[1][1:])
    if len(parts) == 2:                       # head writer
        return (float(head), 2.0 * layer + 1.0)
    if parts[2] == "q":                       # q reader sits just below its head
        return (float(head) - 0.2, 2.0 * layer + 0.6)
    group = graph.n_heads // graph.n_kv       # k/v readers sit below their kv group
    return (head * group + (group - 1) / 2 + (0.0 if parts[2] == "k" else 0.2), 2.0 * layer + 0.6)


def draw(record, graph, path):
    """An svg/png of the kept edges: writers as circles, readers as squares, layers bottom-up."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"q": "tab:blue", "k": "tab:orange", "v": "tab:green", "m": "tab:red", "out": "black"}
    fig, ax = plt.subplots(figsize=(2 + 1.2 * graph.n_heads, 2 + 1.3 * graph.n_layers))
    for e in record["edges"]:
        if not e["kept"]:
            continue
        (x0, y0), (x1, y1) = _node_xy(e["writer"], graph), _node_xy(e["reader"], graph)
        kind = e["reader"].split(".")[-1] if e["reader"].startswith("a") else (
            "out" if e["reader"] == "out" else "m")
        ax.annotate("", (x1, y1), (x0, y0), arrowprops=dict(
            arrowstyle="->", color=colors[kind], alpha=0.4 + 0.6 * e["score"], lw=1.0,
            connectionstyle="arc3,rad=0.15"))
    for name in graph.writers:
        x, y = _node_xy(name, graph)
        ax.plot(x, y, "o", color="0.3", ms=9)
        ax.text(x, y + 0.15, name, ha="center", fontsize=7)
    for name in graph.readers:
        x, y = _node_xy(name, graph)
        ax.plot(x, y, "s", color=colors.get(name.split(".")[-1], "black" if name == "out" else "tab:red"), ms=4)
    ax.set_title(f"{record['task']} {record['mode']}: {sum(e['kept'] for e in record['edges'])} of "
                 f"{len(record['edges'])} edges, KL {record['kl']:.3g}", fontsize=9)
    ax.axis("off")
    save_figure(fig, path, Path(path).suffix.lstrip(".") or "svg")
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# CLI

def add_arguments(parser):
    parser.add_argument("--model-dir", required=True, help="HF checkpoint dir with tokenizer")
    parser.add_argument("--data-dir", required=True, help="task dir containing pairs.jsonl")
    parser.add_argument("--task", required=True, help="task name (recorded, and named in errors)")
    parser.add_argument("--model-name", required=True, help="model name (recorded)")
    parser.add_argument("--mode", required=True, choices=MODES)
    parser.add_argument("--params", default="{}", help="the `circuit` config section as JSON")
    parser.add_argument("--out", required=True, help="circuit JSON to write")
    parser.add_argument("--drawing", default=None, help="drawing of the kept edges (.svg or .png)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args):
    params = json_params(args.params, "circuit")
    p = resolve_params(params)
    torch.manual_seed(p["seed"])

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from clue.base_model import base_model_path

    if not Path(args.model_dir).is_dir():
        raise ClueError(f"{args.model_dir}: model directory not found")
    # A base directory of a pretrained model records where the weights live (clue_base.json).
    path = base_model_path(args.model_dir) if (Path(args.model_dir) / "clue_base.json").exists() else args.model_dir
    # One CPU thread: the rule declares one, and a fixed count keeps CPU runs bit-identical.
    if p["device"] == "cpu":
        torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    check_supported(model)
    pairs = load_pairs(args.data_dir, args.task, tokenizer, p["max_pairs"])

    start = time.perf_counter()
    result = discover(model, pairs, args.mode, p, progress=not args.quiet)
    seconds = time.perf_counter() - start  # in the log, not the artifact: same config, same bytes
    record = circuit_record(result, args.model_name, args.task, args.mode)
    write_json(args.out, record)
    if args.drawing:
        draw(record, result["graph"], args.drawing)
    kept = sum(e["kept"] for e in record["edges"])
    print(f"clue circuit: {args.task} {args.mode}: kept {kept} of {len(record['edges'])} edges, "
          f"sparsity {record['achieved_sparsity']:.3f}, KL {record['kl']:.4g}, "
          f"{seconds:.1f} s", file=sys.stderr)
    return 0
