"""Baseline localizers (Table 1 rows WAGLE, DEPN, PCGU, MEMIT): score the base model on the
forget and retain sets and write a ``forget`` mask in the axis-mask format (docs/formats.md,
"masks"); ``clue unlearn --method po --masks ...`` then trains inside it.

Adding a localizer touches one file plus a config entry: write ``clue/localizers/<name>.py`` with
a function ``fn(ctx, ratio) -> ({param: {axis: tensor}}, info_dict)`` decorated with
``@register_localizer("<name>", default_ratio=...)``, and list ``<name>`` under ``methods`` in the
config (``localize.ratios.<name>`` overrides the default ratio). Every module of this package is
imported at the bottom of this file; modules import torch inside their functions, because the
Snakefile reads this registry at startup.

What ``ratio`` means (every localizer selects ``floor(ratio * n)`` units):

- ``wagle`` (dense): the fraction of all q,k,v,o,gate,up,down weights of the model, ranked together
  as in the published code; the mask's unlearned-parameter % (a mean of per-matrix fractions)
  differs from ``100 * ratio`` where the selection is uneven across matrices.
- ``pcgu`` (rows): the fraction of the rows of each of those matrices (same %, within one row).
- ``depn``, ``memit`` (MLP neurons: gate/up rows + down columns): the fraction of all MLP neurons of
  the model. They never touch attention, so their unlearned-parameter % is ``3/7 * 100 * ratio``
  at most 42.9% (see DEFAULTS).
"""

import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from clue import import_submodules
from clue.errors import ClueError
from clue.io import json_params, read_jsonl, seeded_sample, with_defaults

# The `localize` config section.
# ratios: each localizer's default ratio comes from its registration (``default_ratio``); the
# config's ``localize.ratios`` overrides it per localizer.
# wagle_mu: WAGLE's curvature constant (the retain Hessian approximated as mu * I), so
# theta - grad_r / mu is one retain gradient step of size 1/mu; 1e-6 as in every published WAGLE
# config (see wagle.py). With mu = 1 the retain term was negligible next to theta and the mask was
# |theta * grad_f| alone.
# trace_noise: MEMIT/ROME causal tracing's embedding noise, in standard deviations of the embedding
# matrix (ROME uses 3), for forget prompts whose corrupted prompt (pairs.jsonl) has another length.
DEFAULTS = {
    "ratios": {},
    "n_examples": 64,
    "batch_size": 8,
    "ig_steps": 16,
    "seed": 0,
    "wagle_mu": 1e-6,
    "trace_noise": 3.0,
    "device": "auto",
    "jobs": "per_localizer",  # read by the workflow only: one localizer per job, or a pair's all in one
}


@dataclass(frozen=True)
class Localizer:
    name: str
    fn: Callable  # fn(ctx, ratio) -> ({param: {axis: tensor}}, info dict)
    default_ratio: float  # used when the config's localize.ratios does not name this localizer
    label: str  # the row's name in Table 1
    # False: the mask is a function of the forget set alone (the workflow makes it once a forget set
    # and copies it to every pair); True: it scores the retain set too
    reads_retain: bool = True


LOCALIZERS = {}


def register_localizer(name, *, default_ratio, label=None, reads_retain=True):
    def decorate(fn):
        if name in LOCALIZERS:
            raise ValueError(f"localizer {name!r} is registered twice")
        LOCALIZERS[name] = Localizer(name, fn, check_ratio(name, default_ratio), label or name.upper(), reads_retain)
        return fn

    return decorate


def get_localizer(name):
    try:
        return LOCALIZERS[name]
    except KeyError:
        raise ClueError(f"unknown localizer {name!r} (known: {', '.join(sorted(LOCALIZERS))})") from None


# --------------------------------------------------------------------------- parameters

def check_ratio(name, ratio):
    """A ratio must be a number in (0, 1]; the error names the localizer and the value."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
        raise ClueError(f"localize.ratios.{name} must be a number in (0, 1], not {ratio!r}")
    return float(ratio)


def resolve_params(params):
    """Defaults + the `localize` config section, validated (unknown keys are warned about)."""
    p = with_defaults(params, DEFAULTS, "localize", strict=False)
    ratios = p["ratios"]
    if not isinstance(ratios, dict):
        raise ClueError(f"localize.ratios must be a mapping localizer -> ratio, not {ratios!r}")
    bad = sorted(set(ratios) - set(LOCALIZERS))
    if bad:
        raise ClueError(f"localize.ratios names unknown localizer(s) {', '.join(bad)} "
                        f"(known: {', '.join(sorted(LOCALIZERS))})")
    defaults = {name: loc.default_ratio for name, loc in LOCALIZERS.items()}
    p["ratios"] = {**defaults, **{k: check_ratio(k, v) for k, v in ratios.items()}}
    for key in ("n_examples", "batch_size", "ig_steps", "seed"):
        v = p[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < (0 if key == "seed" else 1):
            raise ClueError(f"localize.{key} must be a {'non-negative' if key == 'seed' else 'positive'} "
                            f"integer, not {v!r}")
    for key in ("wagle_mu", "trace_noise"):
        v = p[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or not math.isfinite(v):
            raise ClueError(f"localize.{key} must be a positive number, not {v!r}")
    return p


def n_select(ratio, n):
    """How many of ``n`` units a ratio selects: ``floor(ratio * n)`` (the epsilon keeps 0.29 * 100
    from flooring to 28)."""
    return min(n, int(math.floor(ratio * n + 1e-9)))


# --------------------------------------------------------------------------- model helpers

def decoder_layers(model):
    """The decoder layers of a Llama-family model (``model.model.layers``)."""
    try:
        return list(model.model.layers)
    except AttributeError:
        raise ClueError(f"{type(model).__name__}: no model.layers; not a Llama-family causal LM") from None


def mlp_activations(model, layer, batch):
    """The MLP neuron activations of ``layer`` (the input of its down projection), ``[B, T, I]``,
    from a forward pass over ``batch`` without gradients."""
    import torch

    captured = {}

    def capture(module, args):
        captured["a"] = args[0].detach().clone()

    handle = decoder_layers(model)[layer].mlp.down_proj.register_forward_pre_hook(capture)
    try:
        with torch.no_grad():
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    finally:
        handle.remove()
    return captured["a"]


def mlp_param_names(model, layer):
    """(gate, up, down) weight names of a layer."""
    from clue.masks import projection_params

    params = projection_params([n for n, _ in model.named_parameters()])
    return tuple(params[(layer, p, "weight")] for p in ("gate", "up", "down"))


def neuron_axis_masks(model, selected):
    """``selected``: bool tensor ``[layers, intermediate]`` of MLP neurons -> axis masks (gate/up
    rows, down columns) for the layers with at least one selected neuron."""
    import torch

    out = {}
    for layer in range(selected.shape[0]):
        row = selected[layer]
        if not bool(row.any()):
            continue
        gate, up, down = mlp_param_names(model, layer)
        vec = row.to("cpu").to(torch.uint8)
        out[gate] = {"rows": vec.clone()}
        out[up] = {"rows": vec.clone()}
        out[down] = {"cols": vec.clone()}
    return out


def axis_mask_pct(masks, shapes):
    """Unlearned-parameter % of axis masks (mean over the q,k,v,o,gate,up,down matrices of the
    covered fraction), computed without materialising dense masks: |R x all| + |all x C| - |R x C|
    elements for rows R and columns C, or'ed with a dense mask's set entries."""
    import torch

    from clue.masks import matrix_names

    fracs = []
    for name in matrix_names(list(shapes)):
        axes = masks.get(name, {})
        n_rows, n_cols = shapes[name]
        rows = axes.get("rows", torch.zeros(n_rows, dtype=torch.uint8)).bool()
        cols = axes.get("cols", torch.zeros(n_cols, dtype=torch.uint8)).bool()
        r, c = int(rows.sum()), int(cols.sum())
        covered = r * n_cols + c * n_rows - r * c
        if "dense" in axes:
            d = axes["dense"].bool()
            # dense entries outside the covered rows/columns
            covered += int((d & ~rows[:, None] & ~cols[None, :]).sum())
        fracs.append(covered / (n_rows * n_cols))
    return 100.0 * sum(fracs) / len(fracs) if fracs else 0.0


# --------------------------------------------------------------------------- data

@dataclass
class PromptExample:
    """A forget prompt scored on its answer's first token; ``corrupted`` is the corrupted prompt's
    ids when it has the clean prompt's length (else None: causal tracing noises the embeddings)."""
    ids: list
    answer: int
    corrupted: list = None


class Context:
    """What a localizer scores on: the base model (eval mode, frozen), the tokenizer and the data
    (loaded lazily, ``n_examples`` seeded records of each set)."""

    def __init__(self, model, tokenizer, forget_dir, retain_dir, params, device):
        """``retain_dir``: a retain task's data directory, or a list of them (a retain set of
        several tasks: the retain texts are drawn from all of them)."""
        self.model, self.tokenizer, self.params, self.device = model, tokenizer, params, device
        self.forget_dir = Path(forget_dir)
        self.retain_dirs = [Path(d) for d in ([retain_dir] if isinstance(retain_dir, (str, Path)) else retain_dir or [])]
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
        self._cache = {}

    def _texts(self, directories, seed):
        from clue.losses import encode_text

        paths = [d / "train.jsonl" for d in directories]
        recs = [r for path in paths for r in read_jsonl(path, required=["text"])]
        recs = seeded_sample(recs, self.params["n_examples"], random.Random(seed), " + ".join(map(str, paths)))
        return [encode_text(self.tokenizer, r["text"]) for r in recs]

    def forget_texts(self):
        """Encoded forget corpus lines (train.jsonl "text"): the forget loss is their NLL."""
        if "forget" not in self._cache:
            self._cache["forget"] = self._texts([self.forget_dir], self.params["seed"])
        return self._cache["forget"]

    def retain_texts(self):
        if not self.retain_dirs:
            raise ClueError("this localizer scores the retain set: give --retain-dir")
        if "retain" not in self._cache:
            self._cache["retain"] = self._texts(self.retain_dirs, self.params["seed"] + 1)
        return self._cache["retain"]

    def prompt_examples(self):
        """Forget prompts with a one-token target: pairs.jsonl (clean -> clean_answer, with the
        corrupted prompt) or, without pairs, train.jsonl records that have a prompt."""
        if "prompts" in self._cache:
            return self._cache["prompts"]
        pairs = self.forget_dir / "pairs.jsonl"
        if pairs.exists():
            recs = read_jsonl(pairs, required=["clean", "clean_answer", "corrupted"])
            recs = [(r["clean"], r["clean_answer"], r["corrupted"]) for r in recs]
            source = pairs
        else:
            source = self.forget_dir / "train.jsonl"
            recs = [(r["prompt"], r["answer"], None) for r in read_jsonl(source, required=["prompt", "answer"])
                    if r["prompt"].strip()]
        recs = seeded_sample(recs, self.params["n_examples"], random.Random(self.params["seed"]), source)
        out = []
        for prompt, answer, corrupted in recs:
            ids = list(self.tokenizer(prompt, add_special_tokens=True)["input_ids"])
            ans = list(self.tokenizer(" " + answer, add_special_tokens=False)["input_ids"])
            if not ids or not ans:
                raise ClueError(f"{source}: prompt {prompt!r} / answer {answer!r} is empty after tokenization")
            cor = None
            if corrupted is not None:
                cor = list(self.tokenizer(corrupted, add_special_tokens=True)["input_ids"])
                cor = cor if len(cor) == len(ids) else None
            out.append(PromptExample(ids, ans[0], cor))
        self._cache["prompts"] = out
        return out

    def forget_grads(self, names):
        if "gf" not in self._cache:
            self._cache["gf"] = nll_gradients(self.model, names, self.forget_texts(), self.params["batch_size"],
                                              self.pad_id, self.device)
        return self._cache["gf"]

    def retain_grads(self, names):
        if "gr" not in self._cache:
            self._cache["gr"] = nll_gradients(self.model, names, self.retain_texts(), self.params["batch_size"],
                                              self.pad_id, self.device)
        return self._cache["gr"]


def prompt_batch(examples, pad_id, device):
    """Right-padded batch of prompt examples: ids, attention, last (index of the last prompt token,
    where the answer is predicted), answer ids, corrupted ids (the clean ids where there is no
    same-length corrupted prompt) and ``noised`` (bool: those rows get embedding noise)."""
    import torch

    width = max(len(e.ids) for e in examples)
    n = len(examples)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    cor = torch.full((n, width), pad_id, dtype=torch.long)
    attn = torch.zeros((n, width), dtype=torch.long)
    for i, e in enumerate(examples):
        ids[i, : len(e.ids)] = torch.tensor(e.ids)
        cor[i, : len(e.ids)] = torch.tensor(e.corrupted if e.corrupted is not None else e.ids)
        attn[i, : len(e.ids)] = 1
    return {"input_ids": ids.to(device), "attention_mask": attn.to(device),
            "corrupted_ids": cor.to(device),
            "noised": torch.tensor([e.corrupted is None for e in examples], device=device),
            "last": torch.tensor([len(e.ids) - 1 for e in examples], device=device),
            "answer": torch.tensor([e.answer for e in examples], device=device)}


def answer_logits(logits, batch):
    """Logits (float32) at each row's last prompt position: ``[B, V]``."""
    import torch

    return logits[torch.arange(logits.shape[0], device=logits.device), batch["last"]].float()


# --------------------------------------------------------------------------- gradients

def accumulate_gradients(model, names, closures):
    """Sum of the gradients of the scalar losses returned by ``closures`` (callables of no
    argument) w.r.t. the parameters ``names``, as float32 tensors. Only those parameters require
    grad while it runs, so nothing else holds gradient memory."""
    import torch

    params = dict(model.named_parameters())
    flags = {n: p.requires_grad for n, p in params.items()}
    for n, p in params.items():
        p.requires_grad_(n in names)
        p.grad = None
    try:
        grads = {n: torch.zeros(params[n].shape, dtype=torch.float32, device=params[n].device) for n in names}
        for closure in closures:
            loss = closure()
            loss.backward()
            for n in names:
                if params[n].grad is not None:
                    grads[n] += params[n].grad.float()
                    params[n].grad = None
        return grads
    finally:
        for n, p in params.items():
            p.requires_grad_(flags[n])
            p.grad = None


def nll_gradients(model, names, encoded, batch_size, pad_id, device):
    """Gradient of the mean NLL over all scored tokens of ``encoded`` (the GA/retain loss of
    clue.losses, taken over the whole set rather than per batch, so the batch size cannot change
    it)."""
    from clue.losses import collate, to_device, token_logprobs

    total = sum(int(sum(m[1:])) for _, m in encoded)
    if total == 0:
        raise ClueError("no scored tokens in the scoring set")

    def closure(chunk):
        def run():
            logp, _ = token_logprobs(model, to_device(collate(chunk, pad_id), device))
            return -logp.sum() / total
        return run

    chunks = [encoded[i: i + batch_size] for i in range(0, len(encoded), batch_size)]
    return accumulate_gradients(model, names, [closure(c) for c in chunks])


# --------------------------------------------------------------------------- entry points

def load_base(base_dir, device):
    import torch  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from clue.base_model import check_model_type
    from clue.masks import resolve_base

    source = resolve_base(base_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source)
    except OSError as e:
        raise ClueError(f"{base_dir}: cannot load the base checkpoint {source} ({e})") from None
    check_model_type(model)
    model.to(device).eval()
    for q in model.parameters():
        q.requires_grad_(False)
    return model, tokenizer


def run_localizer(name, ctx, ratio):
    """Run a registered localizer; returns ``(axis masks, info)``. Fails when the ratio is outside
    (0, 1] or when the mask it returns is empty, naming the ratio."""
    loc = get_localizer(name)
    ratio = check_ratio(name, ratio)
    masks, info = loc.fn(ctx, ratio)
    if not any(bool(v.any()) for axes in masks.values() for v in axes.values()):
        raise ClueError(f"localizer {name} selects nothing at ratio {ratio}: floor(ratio x units) is 0 "
                        f"({info.get('units', 'see the localizer')}); raise localize.ratios.{name}")
    return masks, info


def localize(base_dir, forget_dir, retain_dir, localizers, outs, params=None, model_name="model"):
    """Score the base model and write each localizer's ``forget`` mask to its path in ``outs``;
    returns one summary dict per localizer. Several localizers share one loaded model and one
    :class:`Context` (so WAGLE and PCGU share their gradients); the RNG is reseeded before each, so
    every mask equals the one that localizer writes alone."""
    import torch

    from clue.losses import torch_device
    from clue.masks import write_masks

    if len(localizers) != len(outs):
        raise ClueError(f"give one --out per --localizer ({len(localizers)} localizers, {len(outs)} outputs)")
    for name in localizers:
        if get_localizer(name).reads_retain and not retain_dir:
            raise ClueError(f"localizer {name} scores the retain set: give --retain-dir")
    p = resolve_params(params)
    device = torch_device(p["device"])
    model, tokenizer = load_base(base_dir, device)
    ctx = Context(model, tokenizer, forget_dir, retain_dir, p, device)
    shapes = {n: tuple(q.shape) for n, q in model.named_parameters()}
    summaries = []
    for name, out in zip(localizers, outs):
        t0 = time.time()
        ratio = p["ratios"][name]
        torch.manual_seed(p["seed"])
        masks, info = run_localizer(name, ctx, ratio)
        pct = axis_mask_pct(masks, shapes)
        write_masks(out, {"forget": masks}, model=model_name, localizer=name, categories=["forget"],
                    extra_metadata={"ratio": ratio, "mask_param_pct": f"{pct:.4f}"})
        summaries.append({"localizer": name, "ratio": ratio, "mask_param_pct": pct, "info": info,
                          "seconds": round(time.time() - t0, 3), "out": str(out)})
    return summaries


def add_arguments(parser):
    parser.add_argument("--base-dir", required=True, help="base checkpoint directory (save_pretrained + tokenizer)")
    parser.add_argument("--forget-dir", required=True, help="forget task data dir (train.jsonl, pairs.jsonl)")
    parser.add_argument("--retain-dir", nargs="*", default=[],
                        help="retain task data dir (train.jsonl); several: a retain set of several tasks; "
                        "none: only localizers that do not read it (depn, memit)")
    parser.add_argument("--localizer", required=True, nargs="+", choices=sorted(LOCALIZERS),
                        help="baseline localizer(s) (memit = MEMIT (causal-tracing localization)); several "
                        "share one loaded model, with one --out each")
    parser.add_argument("--params", default="{}", help="the `localize` config section as a JSON object")
    parser.add_argument("--model-name", required=True, help="model wildcard, stored in the metadata")
    parser.add_argument("--out", required=True, nargs="+", help="output mask .safetensors (category 'forget'), "
                        "one per localizer")


def main(args):
    params = json_params(args.params, "localize")
    for rec in localize(args.base_dir, args.forget_dir, args.retain_dir, args.localizer, args.out, params,
                        model_name=args.model_name):
        print(f"clue localize: {rec['localizer']} at ratio {rec['ratio']}: the forget mask covers "
              f"{rec['mask_param_pct']:.2f}% of the attention/MLP weights, {rec['seconds']:.1f}s -> {rec['out']}",
              file=sys.stderr)
    return 0


# Importing every module of the package registers its localizer (keep at the bottom: the modules
# import from here).
import_submodules(__name__, __path__)
