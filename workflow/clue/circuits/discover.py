"""Stage ``circuit``: Edge Pruning (Bhaskar et al. 2024) with a noising or denoising intervention.

Every edge of the computational graph (clue.circuits.masked_forward) gets a hard-concrete (L0)
gate (Louizos et al. 2018). The gates minimise KL(full model || circuit) at the answer position
(the last prompt token) while a Lagrangian (as in CoFi / Edge Pruning) drives the expected edge
sparsity to a target that ramps linearly up to ``target_sparsity`` over ``sparsity_warmup`` of the
steps and then holds. Training must reach the target: a final expected sparsity more than
``SPARSITY_TOLERANCE`` away from it fails the job, naming the task, the mode and the value
reached (a top-k cut through gates that never polarised would pick edges nearly at random).

The circuit is cut from the learned gates as Edge Pruning cuts it: a threshold on the keep
probabilities, found by binary search, so that the kept edges number (1 - target) x edges (as
close as ties allow; a fixed 0.5 would keep only the gates that ended above it, while the
expected sparsity is met by thousands of gates left slightly open). Kept edges on no live
input-to-output path are then removed: an edge from a writer that no kept path reaches from
``embed`` carries the same value as the corrupted run whether kept or not, and an edge into a
reader that reaches ``out`` by no kept path cannot change the logits, so removing them leaves the
circuit's outputs as they are but keeps such neurons out of the logic (they would be forced to 0
and become forget neurons).

Node-level pruning first (``candidate_nodes`` below 1): before Edge Pruning, EAP-IG (the
gradient of the KL with respect to every gate, integrated along the straight path from the empty
circuit to the full model over ``attribution_steps`` points, on the discovery pairs) scores
every edge; a writer's score is the sum over its out-edges, the attribution of one gate on its
whole output. Edge Pruning then learns gates only on the edges between ``embed`` and the
``candidate_nodes`` fraction of writers of the largest |score|; every other edge stays closed and
its writer is not computed (clue.circuits.masked_forward.LiveNodes), which makes a step cheaper.
The sparsity target still counts every edge of the graph, and the circuit is evaluated on the
whole graph as before.

Three disjoint sets of pairs (the data stage writes them): discovery trains the gates on
``pairs.jsonl``; ``target_sparsity`` may list candidates, and the circuit is the sparsest
candidate whose normalized faithfulness on ``validation_pairs.jsonl`` reaches ``min_faithfulness``
(default 0.85; candidates tried from the sparsest down; none reaching it fails the job, or with
``if_unfaithful: most_faithful`` keeps the most faithful); faithfulness is then reported on
``heldout_pairs.jsonl``, which no choice ever looked at: KL of the circuit, KL of the empty
circuit (every edge corrupted: the run on the other input) and the normalized faithfulness
``1 - KL_circuit / KL_empty`` (1: the circuit matches the full model; 0: no better than
corrupting everything). A circuit whose held-out faithfulness is below the floor is kept (the
held-out pairs choose nothing) with a warning in the job log, repeated under Table 1.

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

import json
import math
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import torch
from tqdm import tqdm

from clue import caveats
from clue.circuits.masked_forward import (LowPrecisionWeights, build_graph, candidate_edges, check_supported,
                                         forward, live_nodes, reader_owners)
from clue.data import check_context, check_pair_tokens
from clue.errors import ClueError
from clue.losses import autocast, autocast_dtype
from clue.io import json_params, read_jsonl, write_json

MODES = ("noising", "denoising")
MODEL_DTYPES = ("float32", "bfloat16", "float16")
DEFAULTS = {
    # fraction of edges removed, or candidates: the sparsest one faithful enough on validation pairs
    "target_sparsity": 0.9,
    "target_sparsity_per_task": {},  # task -> its own target or candidates
    # on validation pairs: chooses among candidates; a circuit below it on its held-out pairs is
    # warned about (clue.caveats) in the job log and under Table 1
    "min_faithfulness": 0.85,
    "if_unfaithful": "fail",  # no candidate reaches min_faithfulness: fail, or keep the most faithful
    # fraction of the writers (heads, MLPs) Edge Pruning starts from, the highest by attribution
    # (EAP-IG on the discovery pairs); 1: every writer
    "candidate_nodes": 1.0,
    "attribution_steps": 4,   # integration steps of that attribution
    # when no target_sparsity candidate reaches min_faithfulness on validation, try the node-level
    # circuit too (every candidate edge kept, no Edge Pruning), the least sparse candidate
    "node_level_fallback": False,
    # when Edge Pruning misses min_faithfulness at a target sparsity, try EAP-IG's circuit there
    # too (the edges of the largest |attribution|, no training) before the next candidate
    "attribution_fallback": False,
    "steps": 300,
    # 0: train every step. N: after the sparsity warmup, every N steps cut the circuit and stop
    # once its validation faithfulness reaches min_faithfulness at the target sparsity
    "early_stop_every": 0,
    "lr": 0.1,                # Adam on the gates' log_alpha
    # null, bfloat16 or float16: the gated forward and backward of each training step run under
    # torch.autocast; the gates, the cut and every faithfulness and KL figure stay float32
    "autocast": None,
    # the dtype the model is loaded in: float32, or bfloat16 / float16 for a 7B model (half the
    # memory of its weights, of the other input's stored writer outputs and of every activation)
    "dtype": "float32",
    # every batch's other-input writer outputs (and full-model logits) computed once and kept;
    # false: recomputed at each use, one batch's in memory at a time (a 7B model on one GPU)
    "keep_other_runs": True,
    "lagrangian_lr": 1.0,     # plain gradient ascent on lambda1, lambda2 (Adam overshoots)
    "sparsity_penalty": 16.0,  # c of a fixed c * n_edges * gap^2 beside the multipliers (see below)
    "sparsity_warmup": 0.5,   # fraction of the steps over which the target ramps up from 0
    "batch_size": 16,
    "max_pairs": 64,
    "seed": 0,
    "device": "cpu",
    "threads": 1,             # CPU threads of one job (a fixed count keeps CPU runs bit-identical)
    "jobs": "per_mode",       # read by the workflow only: one job per task and mode, or per task
}

# Hard-concrete stretch: s in (0, 1) is stretched to (L, R) and clamped to [0, 1].
BETA, L, R = 2 / 3, -0.1, 1.1
LOG_ALPHA_INIT = 3.0   # every gate starts almost surely open: the circuit starts as the full model
# circuit.seed other than 0 (the stability check, `clue stability`): the discovery pairs in a
# seeded order and each gate's log alpha drawn around LOG_ALPHA_INIT with this spread; seed 0
# keeps the file order and the constant start, so Table 1's circuits do not move
INIT_SPREAD = 0.01
SPARSITY_TOLERANCE = 0.01  # how close the final expected sparsity must come to the target


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
    candidates(p["target_sparsity"], "target_sparsity")
    if not isinstance(p["target_sparsity_per_task"], dict):
        raise ClueError("circuit config: target_sparsity_per_task must map task names to sparsities")
    for task, value in p["target_sparsity_per_task"].items():
        candidates(value, f"target_sparsity_per_task.{task}")
    if not (isinstance(p["candidate_nodes"], (int, float)) and not isinstance(p["candidate_nodes"], bool)
            and 0 < p["candidate_nodes"] <= 1):
        raise ClueError(f"circuit config: candidate_nodes must be in (0, 1], got {p['candidate_nodes']!r}")
    for key in ("steps", "batch_size", "max_pairs", "attribution_steps", "threads"):
        if not isinstance(p[key], int) or isinstance(p[key], bool) or p[key] < 1:
            raise ClueError(f"circuit config: {key} must be a positive integer, got {p[key]!r}")
    if not isinstance(p["early_stop_every"], int) or isinstance(p["early_stop_every"], bool) or p["early_stop_every"] < 0:
        raise ClueError(f"circuit config: early_stop_every must be 0 (off) or a positive integer, "
                        f"got {p['early_stop_every']!r}")
    if not isinstance(p["sparsity_penalty"], (int, float)) or p["sparsity_penalty"] < 0:
        raise ClueError(f"circuit config: sparsity_penalty must be a non-negative number, got {p['sparsity_penalty']!r}")
    for key in ("lr", "lagrangian_lr"):
        if not isinstance(p[key], (int, float)) or p[key] <= 0:
            raise ClueError(f"circuit config: {key} must be a positive number, got {p[key]!r}")
    if not (isinstance(p["min_faithfulness"], (int, float)) and p["min_faithfulness"] <= 1):
        raise ClueError(f"circuit config: min_faithfulness must be a number <= 1, got {p['min_faithfulness']!r}")
    if not isinstance(p["node_level_fallback"], bool):
        raise ClueError(f"circuit config: node_level_fallback must be true or false, got {p['node_level_fallback']!r}")
    if not isinstance(p["attribution_fallback"], bool):
        raise ClueError(f"circuit config: attribution_fallback must be true or false, got {p['attribution_fallback']!r}")
    if p["node_level_fallback"] and p["candidate_nodes"] == 1:
        raise ClueError("circuit config: node_level_fallback needs candidate_nodes below 1 (with every writer the "
                        "node-level circuit is the whole model)")
    autocast_dtype(p["autocast"], "circuit.autocast")
    if p["dtype"] not in MODEL_DTYPES:
        raise ClueError(f"circuit config: dtype must be one of {', '.join(MODEL_DTYPES)}, got {p['dtype']!r}")
    if not isinstance(p["keep_other_runs"], bool):
        raise ClueError(f"circuit config: keep_other_runs must be true or false, got {p['keep_other_runs']!r}")
    if p["if_unfaithful"] not in ("fail", "most_faithful"):
        raise ClueError(f"circuit config: if_unfaithful must be fail or most_faithful, got {p['if_unfaithful']!r}")
    if not (isinstance(p["sparsity_warmup"], (int, float)) and 0 <= p["sparsity_warmup"] <= 1):
        raise ClueError(f"circuit config: sparsity_warmup must be in [0, 1], got {p['sparsity_warmup']!r}")
    return p


def candidates(value, key="target_sparsity"):
    """A target sparsity or a list of candidates, as a list from the sparsest down; ClueError
    naming the key when a value is not in (0, 1) or the list is empty."""
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ClueError(f"circuit config: {key} is an empty list; give a sparsity in (0, 1) or candidates")
    for v in values:
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1):
            raise ClueError(f"circuit config: {key} must be in (0, 1) (or a list of such), got {v!r}")
    return sorted(set(values), reverse=True)


def load_pairs(data_dir, task, tokenizer, max_pairs, filename="pairs.jsonl"):
    """Token ids of the task's pairs (``filename``: the discovery pairs, or ``heldout_pairs.jsonl``
    for faithfulness): dict with ``clean``, ``corrupted`` (right-padded [N, T]) and ``last`` (index
    of each prompt's last token, [N])."""
    path = Path(data_dir) / filename
    if not path.is_file():
        raise ClueError(f"task {task}: {path} not found (the data stage writes it)")
    records = read_jsonl(path, required=["clean", "corrupted", "clean_answer", "corrupted_answer"])
    if not records:
        raise ClueError(f"task {task}: {path} has no pairs")
    check_pair_tokens(tokenizer, path, task, records)   # distinct first answer tokens, none <unk>
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


def threshold_cut(scores, target_sparsity, iterations=60):
    """Edge Pruning's final cut: 0/1 gates ``scores > t`` with the threshold ``t`` found by binary
    search so that the kept edges number round((1 - target) x edges), or the largest count not
    above it that ties allow. Returns (gates, t)."""
    want = round((1 - target_sparsity) * scores.numel())
    lo, hi = 0.0, 1.0          # keep probabilities lie in (0, 1): above hi, at most `want` are kept
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if int((scores > mid).sum()) > want:
            lo = mid
        else:
            hi = mid
    return (scores > hi).float(), hi


def remove_dead_ends(graph, kept):
    """``kept`` [E] without the edges on no live input-to-output path (see the module docstring).

    A writer is *reached* when it is ``embed`` or one of its readers has a kept edge from a
    reached writer; a reader is *live* when it is ``out`` or feeds a writer that has a kept edge
    to a live reader. A k/v reader belongs to every query head of its key/value group."""
    owners = reader_owners(graph)            # reader index -> writer indices it feeds
    edges = [(w, r) for (w, r), k in zip(graph.edges, kept.tolist()) if k]
    reached = {0}                             # writer 0 is embed
    changed = True
    while changed:
        changed = False
        for w, r in edges:
            new = [o for o in owners[r] if w in reached and o not in reached]
            if new:
                reached.update(new)
                changed = True
    out = graph.readers.index("out")
    live_readers, live_writers = {out}, set()
    changed = True
    while changed:
        changed = False
        for w, r in edges:
            if r in live_readers and w not in live_writers:
                live_writers.add(w)
                changed = True
        for r, ws in owners.items():
            if r not in live_readers and any(o in live_writers for o in ws):
                live_readers.add(r)
                changed = True
    return torch.tensor([1.0 if k and w in reached and r in live_readers else 0.0
                         for (w, r), k in zip(graph.edges, kept.tolist())])


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


def _prepare_batches(model, graph, pairs, mode, batch_size, device, keep=True):
    """Per batch: the run input, answer positions, the other input's writer outputs and the full
    model's logits on the run input (from unmasked runs). ``keep`` (circuit.keep_other_runs):
    computed once and kept for every batch; False: recomputed at each use (``_Recomputed``)."""
    run_ids, other_ids = _roles(pairs, mode)
    batches = []
    for start in range(0, run_ids.shape[0], batch_size):
        sl = slice(start, start + batch_size)
        batch = _Recomputed(model, graph, run_ids[sl].to(device), pairs["last"][sl].to(device),
                            other_ids[sl].to(device))
        batches.append({key: batch[key] for key in batch} if keep else batch)
    return batches


class _Recomputed(Mapping):
    """A batch whose ``other`` (the other input's writer outputs, [n_writers, B, T, D]) and
    ``full`` (the full model's logits at the answer positions) are computed at each access, the
    same numbers every time: for a 7B model on one GPU, where every batch's writer outputs kept
    at once would not fit (8.3 GiB a batch of 16 x 64 tokens in bf16, docs/performance.md)."""

    def __init__(self, model, graph, ids, last, other_ids):
        self.model, self.graph, self.other_ids = model, graph, other_ids
        self.fixed = {"ids": ids, "last": last}

    def __getitem__(self, key):
        if key in self.fixed:
            return self.fixed[key]
        # as _prepare_batches computes a kept batch: in the model's dtype, whatever the caller's context
        with torch.no_grad(), torch.autocast(self.fixed["ids"].device.type, enabled=False):
            if key == "other":
                # only the writer outputs are used: logits at one position a pair (the fewest the
                # forward computes), not at every position (the unembedding of every token)
                return forward(self.model, self.graph, self.other_ids, positions=self.fixed["last"])[1]
            if key == "full":
                return forward(self.model, self.graph, self.fixed["ids"], positions=self.fixed["last"])[0]
        raise KeyError(key)

    def __iter__(self):
        return iter(("ids", "last", "other", "full"))

    def __len__(self):
        return 4


def circuit_kl(model, graph, batches, gates):
    """KL(full || circuit) with fixed ``gates`` [E], averaged over all pairs of ``batches``."""
    return circuit_kls(model, graph, batches, [gates])[0]


def circuit_kls(model, graph, batches, gate_vectors):
    """circuit_kl of each of ``gate_vectors``, fetching each batch once for all of them (a
    recomputed batch runs its unmasked forwards once)."""
    totals, count = [0.0] * len(gate_vectors), 0
    with torch.no_grad():
        for b in batches:
            other, full, n = b["other"], b["full"], b["ids"].shape[0]
            for i, gates in enumerate(gate_vectors):
                logits, _ = forward(model, graph, b["ids"], gates, other, b["last"])
                totals[i] += kl_full_circuit(full, logits).item() * n
            count += n
    return [total / count for total in totals]


def attribute(model, graph, batches, steps):
    """EAP-IG on the gates: every edge's attribution ``-mean dKL/dz_e`` along the straight path
    from the empty circuit (every gate 0) to the full model (every gate 1), midpoint rule with
    ``steps`` points, averaged over the pairs of ``batches``. The attributions sum to about
    KL(empty) - KL(full) = KL(empty) (completeness). Returns (edge scores [E], writer scores
    [n_writers]: the sum over each writer's out-edges, the attribution of one gate on the
    writer's whole output).

    Each batch runs in two halves: this pass gates every edge of the model, and a whole batch of
    it would need more memory than the discovery steps that follow, which gate only the edges
    between the candidate writers (the sum of the halves' gradients, each weighted by its pairs,
    is the batch's)."""
    total, count = torch.zeros(graph.n_edges), 0
    for b in batches:
        n = b["ids"].shape[0]
        half = (n + 1) // 2
        batch_other, batch_full = b["other"], b["full"]   # once a batch, also where they are recomputed
        for start in range(0, n, half):   # slices are views: no copy of the stored writer outputs
            part = slice(start, start + half)
            ids, last, other, full = b["ids"][part], b["last"][part], batch_other[:, part], batch_full[part]
            for k in range(steps):
                # at least float32 (a bf16 model's gates are cast in the masked forward, its
                # gradients reach them in float32)
                z = torch.full((graph.n_edges,), (k + 0.5) / steps, device=ids.device, requires_grad=True,
                               dtype=torch.promote_types(other.dtype, torch.float32))
                logits, _ = forward(model, graph, ids, z, other, last)
                grad, = torch.autograd.grad(kl_full_circuit(full, logits), z)
                total -= grad.cpu() * ids.shape[0]
        count += n
    edges = total / (steps * count)
    writers = torch.zeros(len(graph.writers)).index_add_(0, torch.tensor([w for w, _ in graph.edges]), edges)
    return edges, writers


def candidate_writers(graph, writer_scores, fraction):
    """[n_writers] bool: ``embed`` and the round(fraction x others) writers of the largest
    |attribution| (ties: the earlier writer)."""
    live = torch.zeros(len(graph.writers), dtype=torch.bool)
    live[0] = True
    k = round(fraction * (len(graph.writers) - 1))
    live[torch.argsort(writer_scores[1:].abs(), descending=True, stable=True)[:k] + 1] = True
    return live


def _candidate_nodes(model, graph, batches, p, attribution):
    """Node-level pruning: (LiveNodes of the candidate writers, [E] bool of the edges between
    them). Every writer when ``candidate_nodes`` is 1; else ``embed`` and the writers of the
    largest attribution (``attribution``, or computed here on ``batches``)."""
    if p["candidate_nodes"] < 1:
        if attribution is None:
            attribution = attribute(model, graph, batches, p["attribution_steps"])
        live = live_nodes(graph, candidate_writers(graph, attribution[1], p["candidate_nodes"]))
    else:
        live = live_nodes(graph)
    return live, candidate_edges(graph, live.live).bool()


def _candidates_record(live, candidate, p):
    return {"writers": live.n_live - 1, "edges": int(candidate.sum()),
            "rule": ("every writer" if p["candidate_nodes"] == 1 else
                     f"the {p['candidate_nodes']} of writers of the largest |EAP-IG attribution| on the "
                     f"discovery pairs ({p['attribution_steps']} integration steps)")}


def _setup(model, pairs, mode, p, batches=None):
    """The model on the device, frozen, in eval mode; its graph; the discovery batches
    (``batches``: those a caller prepared from the same pairs and parameters)."""
    check_supported(model)
    _roles(pairs, mode)
    device = torch.device(p["device"])
    model = model.to(device).eval().requires_grad_(False)
    graph = build_graph(model.config)
    if batches is None:
        batches = _prepare_batches(model, graph, pairs, mode, p["batch_size"], device, p["keep_other_runs"])
    return model, graph, batches, device


def _check_enough_candidates(p, available, graph, what="candidate edges"):
    """ClueError when the candidate edges are fewer than the target sparsity keeps."""
    want = round((1 - p["target_sparsity"]) * graph.n_edges)
    if available < want:
        raise ClueError(f"circuit config: candidate_nodes {p['candidate_nodes']} leaves {available} {what}, fewer "
                        f"than the {want} that target sparsity {p['target_sparsity']} keeps; raise "
                        "circuit.candidate_nodes")


def _untrained_circuit(kind, model, graph, batches, device, mode, p, scores, learned, threshold, live, candidate,
                       validation, validation_cache):
    """discover's dict for a circuit cut without training (node-level, EAP-IG's): ``learned`` the
    0/1 cut of ``scores``, its dead ends removed here."""
    kept = remove_dead_ends(graph, learned)
    result = {
        "graph": graph, "scores": scores, "kept": kept, "threshold": threshold,
        "expected_sparsity": 1 - learned.mean().item(), "achieved_sparsity": 1 - kept.sum().item() / graph.n_edges,
        "dead_end_edges_removed": int(learned.sum().item() - kept.sum().item()),
        "kl": circuit_kl(model, graph, batches, kept.to(device)), "history": [],
        "params": {**p, "steps": 0}, "steps_run": 0,
        "candidates": _candidates_record(live, candidate, p), "node_level": kind == "node_level", "circuit": kind,
    }
    if validation is not None:
        result["validation"] = faithfulness(model, graph, validation, mode, kept.to(device), p, device,
                                            validation_cache)
    return result


def node_circuit(model, pairs, mode, params, validation=None, attribution=None, batches=None,
                 validation_cache=None):
    """The node-level circuit (``node_level_fallback``): every edge between the candidate writers
    kept, no Edge Pruning; its sparsity is the candidates' own. Returns discover's dict (no
    history, no threshold, ``node_level`` true). ``batches`` and ``validation_cache``: as for
    discover."""
    p = resolve_params(params)
    model, graph, batches, device = _setup(model, pairs, mode, p, batches)
    live, candidate = _candidate_nodes(model, graph, batches, p, attribution)
    scores = candidate.float()
    p = {**p, "target_sparsity": 1 - scores.mean().item()}
    return _untrained_circuit("node_level", model, graph, batches, device, mode, p, scores, scores, None, live,
                              candidate, validation, validation_cache)


def attribution_circuit(model, pairs, mode, params, validation=None, attribution=None, batches=None,
                        validation_cache=None):
    """EAP-IG's circuit at ``params["target_sparsity"]`` (``attribution_fallback``): of the
    candidate edges, the round((1 - target) x edges) of the largest |attribution| on the discovery
    pairs, cut as Edge Pruning cuts its gates (threshold_cut, then remove_dead_ends), no training.
    ``score`` is |attribution| over its largest candidate value. Returns discover's dict (no
    history, ``circuit`` "attribution"). ``batches`` and ``validation_cache``: as for discover."""
    p = resolve_params(params)
    model, graph, batches, device = _setup(model, pairs, mode, p, batches)
    if attribution is None:
        attribution = attribute(model, graph, batches, p["attribution_steps"])
    live, candidate = _candidate_nodes(model, graph, batches, p, attribution)
    magnitude = attribution[0].abs().cpu() * candidate.float()
    _check_enough_candidates(p, int((magnitude > 0).sum()), graph, "candidate edges with an attribution")
    scores = magnitude / magnitude.max()
    learned, threshold = threshold_cut(scores, p["target_sparsity"])
    return _untrained_circuit("attribution", model, graph, batches, device, mode, p, scores, learned, threshold, live,
                              candidate, validation, validation_cache)


def discover(model, pairs, mode, params, progress=True, heldout=None, validation=None, attribution=None,
             batches=None, validation_cache=None):
    """Learn a circuit of ``model`` on ``pairs`` (see ``load_pairs``) with intervention ``mode``,
    at ``params["target_sparsity"]`` (one value).

    Returns a dict: ``graph``, ``scores`` [E] (keep probabilities), ``kept`` [E] (0/1, the cut
    circuit without dead ends), ``threshold`` (of the cut), ``expected_sparsity`` (at the end of
    training), ``achieved_sparsity`` (of ``kept``), ``dead_end_edges_removed``, ``kl`` (of
    ``kept`` on the training pairs), ``validation`` and ``faithfulness`` (on the ``validation``
    and ``heldout`` pairs, when given), ``candidates`` (the nodes Edge Pruning started from) and
    ``history`` (per step run: kl, expected sparsity, target). ``attribution``: ``attribute``'s result on
    these pairs, when the caller has it (select_circuit computes it once for all candidates), and
    likewise ``batches`` (``_prepare_batches``'s on these pairs with these parameters) and
    ``validation_cache`` (``faithfulness``'s cache of the validation pairs, shared by every
    circuit measured on them).

    With ``early_stop_every`` N and ``validation`` pairs, training stops at the first multiple of N
    steps, once the sparsity warmup is over, at which the expected sparsity is within
    ``SPARSITY_TOLERANCE`` of the target and the circuit cut there reaches ``min_faithfulness`` on
    the validation pairs: the number of steps is chosen on validation pairs, by a rule fixed in
    advance. The checks draw no random numbers, so the steps before the stop are those of a run
    without checks.
    """
    p = resolve_params(params)
    if isinstance(p["target_sparsity"], list):
        raise ClueError("discover trains at one target sparsity; choose among candidates with select_circuit")
    torch.manual_seed(p["seed"])
    model, graph, batches, device = _setup(model, pairs, mode, p, batches)

    live, candidate = _candidate_nodes(model, graph, batches, p, attribution)
    gate_index = candidate.nonzero().flatten().to(device)
    _check_enough_candidates(p, len(gate_index), graph)

    def gates_of(values):
        # [E]: ``values`` on the candidate edges, 0 elsewhere
        return torch.zeros(graph.n_edges, device=device).index_put((gate_index,), values)

    log_alpha = torch.full((len(gate_index),), LOG_ALPHA_INIT, device=device)
    if p["seed"]:
        log_alpha += INIT_SPREAD * torch.randn(len(gate_index), generator=torch.Generator().manual_seed(p["seed"])).to(device)
    log_alpha.requires_grad_(True)
    lambdas = torch.zeros(2, device=device, requires_grad=True)
    gate_opt = torch.optim.Adam([log_alpha], lr=p["lr"])
    lagrange_opt = torch.optim.SGD([lambdas], lr=p["lagrangian_lr"], maximize=True)
    warmup_steps = max(1, round(p["sparsity_warmup"] * p["steps"]))
    penalty = p["sparsity_penalty"] * graph.n_edges
    # the ramp starts from the sparsity the candidate edges already imply (0 with every writer): a
    # target below it would wind the multiplier up and push the gates open until they saturate
    start = 1 - len(gate_index) / graph.n_edges
    history = []
    weights = LowPrecisionWeights(model, autocast_dtype(p["autocast"], "circuit.autocast", device.type))
    every = p["early_stop_every"] if validation is not None else 0
    stop = None   # (cut, validation figures) of the check an early stop ends on
    checks = []   # every early-stop check: its step, expected sparsity and validation faithfulness
    # every check measures on the same validation pairs: their batches and the empty circuit's KL once
    validation_cache = {} if validation_cache is None else validation_cache

    def cut():
        scores = gates_of(keep_probability(log_alpha.detach())).cpu()
        learned, threshold = threshold_cut(scores, p["target_sparsity"])
        return scores, learned, threshold, remove_dead_ends(graph, learned)

    for step in tqdm(range(p["steps"]), desc=f"circuit {mode}", disable=None if progress else True,
                     file=sys.stderr):
        # dict(): a recomputed batch runs the model here, outside autocast and the bf16 weight
        # copies, once the previous step's batch has gone (one batch's writer outputs at a time)
        b = None
        b = dict(batches[step % len(batches)])
        target = start + (p["target_sparsity"] - start) * min(1.0, (step + 1) / warmup_steps)
        with autocast(p["autocast"], "circuit.autocast", device.type), weights.in_place():
            logits, _ = forward(model, graph, b["ids"], gates_of(sample_gates(log_alpha)), b["other"], b["last"], live)
            kl = kl_full_circuit(b["full"], logits)
        expected_sparsity = 1 - keep_probability(log_alpha).sum() / graph.n_edges
        gap = expected_sparsity - target
        # The multipliers integrate the gap, so alone they overshoot and oscillate around the
        # target; the fixed quadratic penalty adds a restoring force proportional to the gap (a
        # PI controller on the sparsity), so training settles on the target within the budget.
        # It is scaled by the edge count, because each gate feels d(sparsity)/d(gate) = 1/n_edges
        # of it: the same c then pulls each gate as hard in a small graph as in a large one.
        loss = kl + lambdas[0] * gap + (lambdas[1] + penalty) * gap ** 2
        gate_opt.zero_grad()
        lagrange_opt.zero_grad()
        loss.backward()
        gate_opt.step()
        lagrange_opt.step()
        history.append({"kl": kl.item(), "expected_sparsity": expected_sparsity.item(), "target": target})
        done = step + 1
        if every and done >= warmup_steps and done % every == 0 and done < p["steps"]:
            reached = 1 - keep_probability(log_alpha.detach()).sum().item() / graph.n_edges
            checks.append({"step": done, "expected_sparsity": reached, "validation_faithfulness": None})
            if abs(reached - p["target_sparsity"]) <= SPARSITY_TOLERANCE:
                now = cut()
                v = faithfulness(model, graph, validation, mode, now[3].to(device), p, device, validation_cache)
                checks[-1]["validation_faithfulness"] = v["faithfulness"]
                if v["faithfulness"] is not None and v["faithfulness"] >= p["min_faithfulness"]:
                    stop = now, v
                    break

    scores, learned, threshold, kept = stop[0] if stop else cut()
    result = {
        "graph": graph, "scores": scores, "kept": kept, "threshold": threshold,
        "expected_sparsity": 1 - scores.mean().item(),
        "achieved_sparsity": 1 - kept.sum().item() / graph.n_edges,
        "dead_end_edges_removed": int(learned.sum().item() - kept.sum().item()),
        "kl": circuit_kl(model, graph, batches, kept.to(device)),
        "history": history, "params": p, "steps_run": len(history), "checks": checks,
        "candidates": _candidates_record(live, candidate, p), "node_level": False, "circuit": "edge_pruning",
    }
    if validation is not None:
        result["validation"] = stop[1] if stop else faithfulness(model, graph, validation, mode, kept.to(device), p,
                                                                 device, validation_cache)
    batches = b = validation_cache = None   # not held beside the held-out pairs' batches
    if heldout is not None:
        result["faithfulness"] = faithfulness(model, graph, heldout, mode, kept.to(device), p, device)
    return result


def select_circuit(model, pairs, mode, params, validation, heldout=None, progress=True, task="?", log=None,
                   only=None):
    """The circuit at the sparsest candidate of ``params["target_sparsity"]`` whose normalized
    faithfulness on the ``validation`` pairs reaches ``min_faithfulness``, candidates trained
    from the sparsest down (with ``attribution_fallback``, EAP-IG's circuit at each target right
    after Edge Pruning's), and with ``node_level_fallback`` the node-level circuit last (the
    rule is fixed before any number is seen, and the held-out pairs take no part in it). Returns
    discover's dict for that candidate, with ``selection``: every candidate tried and its
    validation figures. ClueError when none reaches the floor (``if_unfaithful: fail``).
    ``only``: one candidate instead, ``(target_sparsity, kind)`` with kind ``edge_pruning``,
    ``attribution`` or ``node_level`` (target None) (an after-run's circuit, at the candidate its
    circuit before was chosen at)."""
    p = resolve_params(params)
    tried, results = [], []
    attribution = None
    kinds = ["edge_pruning", "attribution"] if p["attribution_fallback"] else ["edge_pruning"]
    options = [(target, kind) for target in candidates(p["target_sparsity"]) for kind in kinds]
    if p["node_level_fallback"]:
        options.append((None, "node_level"))
    if only is not None:
        options = [only]
    if p["candidate_nodes"] >= 1 and any(kind == "node_level" for _, kind in options):
        raise ClueError(f"circuit {task} {mode}: a node-level circuit needs circuit.candidate_nodes below 1")
    # what every candidate shares, computed once: the discovery batches (kept once in memory, not
    # once more for each candidate), the candidate nodes' attribution, the validation pairs'
    # batches and the empty circuit's KL on them
    model, graph, batches, _ = _setup(model, pairs, mode, p)
    # the same candidate nodes for every target sparsity, and EAP-IG's ranking of the edges
    if p["candidate_nodes"] < 1 or any(kind == "attribution" for _, kind in options):
        attribution = attribute(model, graph, batches, p["attribution_steps"])
    shared = {"validation": validation, "attribution": attribution, "batches": batches, "validation_cache": {}}
    for target, kind in options:
        if kind == "node_level":
            result = node_circuit(model, pairs, mode, p, **shared)
        elif kind == "attribution":
            result = attribution_circuit(model, pairs, mode, {**p, "target_sparsity": target}, **shared)
        else:
            result = discover(model, pairs, mode, {**p, "target_sparsity": target}, progress, **shared)
            check_circuit(result, task, mode)
        results.append(result)
        v = result["validation"]
        tried.append({"target_sparsity": result["params"]["target_sparsity"], "circuit": kind,
                      "node_level": kind == "node_level",
                      "kept": int(result["kept"].sum().item()), "steps_run": result["steps_run"],
                      "validation_faithfulness": v["faithfulness"],
                      "validation_kl_circuit": v["kl_circuit"], "validation_kl_empty": v["kl_empty"],
                      "early_stop_checks": result.get("checks", [])})
        if log is not None:
            what = {"node_level": "the node-level circuit (every candidate edge)",
                    "attribution": f"target sparsity {target}, EAP-IG's circuit (the edges of the largest attribution)",
                    "edge_pruning": f"target sparsity {target} after {result['steps_run']} of {p['steps']} steps"}[kind]
            log(f"{mode} at {what}: {tried[-1]['kept']} edges kept, validation faithfulness "
                f"{_fmt(v['faithfulness'])} ({v['pairs']} pairs)")
        if v["faithfulness"] is not None and v["faithfulness"] >= p["min_faithfulness"]:
            chosen, met = len(tried) - 1, True
            break
    else:
        summary = ", ".join(f"{_name(t)}: {_fmt(t['validation_faithfulness'])}" for t in tried)
        if p["if_unfaithful"] == "fail":
            raise ClueError(
                f"circuit {task} {mode}: no candidate sparsity reaches circuit.min_faithfulness "
                f"{p['min_faithfulness']} on the {validation['clean'].shape[0]} validation pairs ({summary}); add "
                "lower candidates to circuit.target_sparsity"
                + ("" if p["node_level_fallback"] or p["candidate_nodes"] == 1 else
                   ", set circuit.node_level_fallback: true")
                + ", or lower circuit.min_faithfulness (or set circuit.if_unfaithful: most_faithful to keep the most "
                  "faithful, with a warning)")
        # circuit.if_unfaithful: most_faithful keeps the candidate most faithful on validation
        chosen = max(range(len(tried)), key=lambda i: (tried[i]["validation_faithfulness"] or float("-inf"),
                                                       tried[i]["target_sparsity"]))
        met = False
        if log is not None:
            log(f"{mode}: no candidate reaches {p['min_faithfulness']} on validation ({summary}); keeping the most "
                f"faithful, {_name(tried[chosen])}")
    result = results[chosen]
    batches = shared = None   # not held beside the held-out pairs' batches
    if heldout is not None:
        device = torch.device(p["device"])
        result["faithfulness"] = faithfulness(model, result["graph"], heldout, mode, result["kept"].to(device),
                                              p, device)
    if only is None:
        rule = ("the sparsest candidate whose validation faithfulness reaches "
                f"circuit.min_faithfulness ({p['min_faithfulness']})"
                + (", EAP-IG's circuit after Edge Pruning's at each target" if p["attribution_fallback"] else "")
                + (", the node-level circuit last" if p["node_level_fallback"] else ""))
    else:
        rule = (f"the one candidate of the circuit it is compared with ({_name(tried[0])}), training stopped once "
                f"its validation faithfulness reaches circuit.min_faithfulness ({p['min_faithfulness']})")
    result["selection"] = {"rule": rule + ("" if met else "; none did: the most faithful on validation"),
                           "candidates": ([] if only[1] == "node_level" else [only[0]]) if only is not None
                           else candidates(p["target_sparsity"]), "tried": tried,
                           "chosen": tried[chosen]["target_sparsity"], "node_level": tried[chosen]["node_level"],
                           "circuit": tried[chosen]["circuit"],
                           "reached_min_faithfulness": met}
    return result


def _name(tried):
    return {"node_level": "node-level", "attribution": f"EAP-IG {tried['target_sparsity']}",
            "edge_pruning": str(tried["target_sparsity"])}[tried["circuit"]]


def _fmt(value):
    return "n/a" if value is None else f"{value:.4f}"


def faithfulness(model, graph, pairs, mode, kept, params, device, cache=None):
    """KL of the circuit and of the empty circuit on ``pairs``, and 1 - their ratio. ``cache``: a
    dict that a caller measuring several circuits on the same pairs (same model, mode and params)
    passes to every call: the first stores the pairs' prepared batches (kept as
    ``keep_other_runs`` says) and the empty circuit's KL in it, the others reuse them."""
    cache = {} if cache is None else cache
    keep = params.get("keep_other_runs", DEFAULTS["keep_other_runs"])
    key = (pairs, model, mode, params["batch_size"], keep)
    filled_for = cache.setdefault("for", key)
    if filled_for[0] is not pairs or filled_for[1] is not model or filled_for[2:] != key[2:]:
        raise ValueError("faithfulness: this cache was filled for other pairs, another model, mode or batching")
    if "batches" not in cache:
        cache["batches"] = _prepare_batches(model, graph, pairs, mode, params["batch_size"], device, keep)
    if "kl_empty" not in cache:
        kl_circuit, cache["kl_empty"] = circuit_kls(model, graph, cache["batches"], [kept, torch.zeros_like(kept)])
    else:
        kl_circuit, = circuit_kls(model, graph, cache["batches"], [kept])
    kl_empty = cache["kl_empty"]
    return {"pairs": int(pairs["clean"].shape[0]), "kl_circuit": kl_circuit, "kl_empty": kl_empty,
            "faithfulness": 1 - kl_circuit / kl_empty if kl_empty > 0 else None}


def check_circuit(result, task, mode):
    """Fail (ClueError naming task, mode and value) when training missed the sparsity target."""
    p = result["params"]
    reached = result["expected_sparsity"]
    if abs(reached - p["target_sparsity"]) > SPARSITY_TOLERANCE:
        raise ClueError(
            f"circuit {task} {mode}: training reached expected sparsity {reached:.4f}, not the target "
            f"{p['target_sparsity']} (tolerance {SPARSITY_TOLERANCE}); raise circuit.steps or "
            f"circuit.lagrangian_lr")


def circuit_record(result, model_name, task, mode):
    """The circuit JSON of docs/formats.md."""
    graph = result["graph"]
    edges = [{"writer": w, "reader": r, "score": round(float(s), 6), "kept": bool(k)}
             for (w, r), s, k in zip(graph.edge_names(), result["scores"].tolist(), result["kept"].tolist())]
    p = result["params"]
    return {
        "model": model_name, "task": task, "mode": mode,
        "writers": graph.writers, "readers": graph.readers, "edges": edges,
        "target_sparsity": p["target_sparsity"], "expected_sparsity": result["expected_sparsity"],
        "achieved_sparsity": result["achieved_sparsity"], "threshold": result["threshold"],
        "dead_end_edges_removed": result["dead_end_edges_removed"],
        "kl": result["kl"], "validation": result.get("validation"), "faithfulness": result.get("faithfulness"),
        "selection": result.get("selection"), "candidates": result["candidates"],
        "node_level": result["node_level"], "circuit": result["circuit"],
        "steps": p["steps"], "steps_run": result["steps_run"],
        # what each early-stop check saw (step, expected sparsity, validation faithfulness; None
        # where the sparsity was not yet at its target): how faithfulness grew with the steps
        "early_stop_checks": result.get("checks", []),
        # how jobs are split, and whether the other runs are kept or recomputed, change no circuit
        "config": {k: v for k, v in p.items() if k not in ("jobs", "keep_other_runs")},
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

def node_edges(record, graph):
    """The kept reader-level edges of a circuit JSON as node-level edges (writer -> the writer its
    reader feeds): a q reader feeds its head, a k/v reader every head of its key/value group, an
    MLP reader its MLP, ``out`` the output. ``embed`` stays as a source."""
    owners = reader_owners(graph)
    reader_index = {name: i for i, name in enumerate(graph.readers)}
    edges = set()
    for e in record["edges"]:
        if not e["kept"]:
            continue
        targets = owners[reader_index[e["reader"]]]
        for dst in ([graph.writers[o] for o in targets] if targets else ["out"]):
            edges.add((e["writer"], dst))
    return sorted(edges)


def draw(record, graph, path):
    """An svg/png of the circuit at node level (clue.reports.drawing): only neurons on a kept edge,
    labelled, one row per layer's heads and per layer's MLP."""
    from clue.reports.drawing import draw_nodes

    edges = [(s, d, "edge") for s, d in node_edges(record, graph)]
    kept = sum(e["kept"] for e in record["edges"])
    faithful = (record.get("faithfulness") or {}).get("faithfulness")
    title = (f"{record['task']} {record['mode']} circuit: {kept} of {len(record['edges'])} edges kept, "
             f"{len(edges)} node-level edges; KL {record['kl']:.3g}"
             + (f", faithfulness {faithful:.3f} (held-out)" if faithful is not None else ""))
    draw_nodes(edges, path, title, {"edge": ("tab:blue", "node-level edge")})


# ---------------------------------------------------------------------------------------------
# CLI

def add_arguments(parser):
    parser.add_argument("--model-dir", required=True, help="HF checkpoint dir with tokenizer")
    parser.add_argument("--data-dir", required=True, help="task dir containing pairs.jsonl")
    parser.add_argument("--task", required=True, help="task name (recorded, and named in errors)")
    parser.add_argument("--model-name", required=True, help="model name (recorded)")
    parser.add_argument("--mode", required=True, nargs="+", choices=MODES,
                        help="noising and/or denoising: several modes train one after the other on one loaded model")
    parser.add_argument("--params", default="{}", help="the `circuit` config section as JSON")
    parser.add_argument("--out", required=True, nargs="+", help="circuit JSON to write, one per --mode")
    parser.add_argument("--drawing", nargs="+", default=None,
                        help="drawing of the kept edges (.svg or .png), one per --mode")
    parser.add_argument("--same-sparsity-as", nargs="+", default=None, metavar="CIRCUIT_JSON",
                        help="circuit JSONs, one per --mode: find each circuit at the one candidate that JSON's "
                             "circuit was chosen at (its target sparsity, or the node-level circuit), as Table 3's "
                             "circuits after unlearning are found")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def task_params(params, task):
    """The resolved ``circuit`` section for one task: its own target sparsity (or candidates)
    when the section names one."""
    p = resolve_params(params)
    p["target_sparsity"] = p["target_sparsity_per_task"].get(task, p["target_sparsity"])
    return p


def chosen_candidate(path):
    """The candidate a circuit JSON was chosen at: ``(target_sparsity, kind)`` (select_circuit's
    ``only``), ``(None, "node_level")`` for a node-level circuit."""
    try:
        selection = json.loads(Path(path).read_text())["selection"]
        kind = selection.get("circuit", "node_level" if selection["node_level"] else "edge_pruning")
        return (None, kind) if kind == "node_level" else (float(selection["chosen"]), kind)
    except FileNotFoundError:
        raise ClueError(f"--same-sparsity-as {path}: file not found") from None
    except (ValueError, KeyError, TypeError) as e:
        raise ClueError(f"--same-sparsity-as {path}: not a circuit JSON with a selection ({e!r})") from None


def discovery_order(pairs, seed):
    """The discovery pairs (load_pairs) in the order training meets them: the file's for seed 0,
    a seeded permutation of the same pairs for any other seed (INIT_SPREAD)."""
    if not seed:
        return pairs
    import random

    order = list(range(len(pairs["last"])))
    random.Random(f"circuit-pairs-{seed}").shuffle(order)
    return {k: v[torch.tensor(order)] for k, v in pairs.items()}


def main(args):
    if len(args.out) != len(args.mode) or (args.drawing and len(args.drawing) != len(args.mode)):
        raise ClueError(f"--mode names {len(args.mode)} mode(s): give as many --out paths"
                        f"{' and --drawing paths' if args.drawing else ''}")
    if args.same_sparsity_as and len(args.same_sparsity_as) != len(args.mode):
        raise ClueError(f"--mode names {len(args.mode)} mode(s): give as many --same-sparsity-as paths")
    params = json_params(args.params, "circuit")
    p = task_params(params, args.task)
    only = [chosen_candidate(path) for path in args.same_sparsity_as] if args.same_sparsity_as else [None] * len(args.mode)
    torch.manual_seed(p["seed"])

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from clue.base_model import base_model_path

    if not Path(args.model_dir).is_dir():
        raise ClueError(f"{args.model_dir}: model directory not found")
    # A base directory of a pretrained model records where the weights live (clue_base.json).
    path = base_model_path(args.model_dir) if (Path(args.model_dir) / "clue_base.json").exists() else args.model_dir
    # The rule declares circuit.threads; a fixed count keeps CPU runs bit-identical.
    if p["device"] == "cpu":
        torch.set_num_threads(p["threads"])
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, p["dtype"]))
    check_supported(model)
    check_context(tokenizer, model.config.max_position_embeddings, args.data_dir, args.task, args.model_dir)
    pairs = discovery_order(load_pairs(args.data_dir, args.task, tokenizer, p["max_pairs"]), p["seed"])
    validation = load_pairs(args.data_dir, args.task, tokenizer, p["max_pairs"], "validation_pairs.jsonl")
    heldout = load_pairs(args.data_dir, args.task, tokenizer, p["max_pairs"], "heldout_pairs.jsonl")

    def log(line):
        print(f"clue circuit: {args.task} {line}", file=sys.stderr)

    # discover() seeds itself, so each mode gives the circuit it gives in a process of its own
    for mode, out, drawing, one in zip(args.mode, args.out, args.drawing or [None] * len(args.mode), only):
        start = time.perf_counter()
        # nothing is written for a failed circuit
        result = select_circuit(model, pairs, mode, p, validation, heldout, progress=not args.quiet,
                                task=args.task, log=log, only=one)
        seconds = time.perf_counter() - start  # in the log, not the artifact: same config, same bytes
        f = result["faithfulness"]
        kept = int(result["kept"].sum().item())
        how = ("as the node-level circuit (every candidate edge" if result["node_level"] else
               f"at target sparsity {result['params']['target_sparsity']} "
               f"({'EAP-IG, ' if result['circuit'] == 'attribution' else ''}threshold {result['threshold']:.4f}")
        log(f"{mode}: kept {kept} of {result['graph'].n_edges} edges {how}, "
            f"{result['dead_end_edges_removed']} dead-end edges removed), expected sparsity "
            f"{result['expected_sparsity']:.4f}, achieved {result['achieved_sparsity']:.4f}, KL {result['kl']:.4g}; "
            f"held-out ({f['pairs']} pairs): KL circuit {f['kl_circuit']:.4g}, empty {f['kl_empty']:.4g}, "
            f"faithfulness {_fmt(f['faithfulness'])}; {seconds:.1f} s")
        record = circuit_record(result, args.model_name, args.task, mode)
        write_json(out, record)
        warning = caveats.circuit(record)
        if warning:
            print(f"clue circuit: warning: {warning}", file=sys.stderr)
        if drawing:
            draw(record, result["graph"], drawing)
    return 0
