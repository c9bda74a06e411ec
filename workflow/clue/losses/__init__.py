"""Forget losses registered by name, the retain loss, and the shared sequence log-probability.

Adding a forget method touches one file: define ``loss(model, batch, params)`` in
``clue/losses/<name>.py`` and decorate it with ``@register_forget_loss("<name>", data=...)``
(``retain="kl"`` when the method regularises with KL to the original model instead of the retain
NLL). Every
module of this package is imported below, so the loss is registered, is a Table 1 row (the loss on
every parameter) and a valid ``unlearn.stage_losses`` entry; list it under ``methods`` in the config.
Modules import torch inside their functions: the Snakefile reads this registry at startup.

Conventions (all losses are minimised):

- A *batch* is a dict of right-padded tensors ``input_ids``, ``attention_mask`` and
  ``target_mask`` (bool, ``[B, T]``: which tokens are scored), plus ``ref_logp`` (``[B]``) for
  losses that need a reference model. A *preference* batch (DPO) holds two such batches,
  ``chosen`` (the refusal) and ``rejected`` (the original answer), each with its ``ref_logp``. Token ``t`` is scored by the model's prediction at position
  ``t - 1``, so the first token of a sequence is never scored.
- Forget corpus lines (GA, NPO) and retain texts score the *whole text* (every token after the
  first; a tokenizer that prepends BOS makes the first word scored too). PO scores only the
  refusal tokens that follow the forget prompt.
- NLL losses (GA, PO, retain) are the **mean over scored tokens** of the batch (the usual language
  modelling loss). NPO uses the **sum over scored tokens** of each sequence (its log-probability,
  as in Zhang et al. 2024), averaged over the sequences of the batch.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from clue import import_submodules
from clue.errors import ClueError


@dataclass(frozen=True)
class ForgetLoss:
    name: str
    fn: Callable  # fn(model, batch, params) -> scalar tensor
    data: str  # "text": forget corpus lines (train.jsonl "text"); "refusal": refusal.jsonl prompt -> refusal;
    #            "preference": refusal.jsonl prompt -> (refusal preferred, original answer rejected)
    needs_reference: bool  # batch carries "ref_logp": the frozen base model's sequence log-prob
    label: str  # the row's name in Table 1
    retain: str = "nll"  # the retain term: "nll" of retain texts, or "kl" to the original model on them


FORGET_LOSSES = {}
DATA_KINDS = ("text", "refusal", "preference")
RETAIN_TERMS = ("nll", "kl")


def register_forget_loss(name, *, data="text", needs_reference=False, label=None, retain="nll"):
    if data not in DATA_KINDS:
        raise ValueError(f"forget loss {name}: data must be one of {', '.join(DATA_KINDS)}, not {data!r}")
    if retain not in RETAIN_TERMS:
        raise ValueError(f"forget loss {name}: retain must be 'nll' or 'kl', not {retain!r}")

    def decorate(fn):
        if name in FORGET_LOSSES:
            raise ValueError(f"forget loss {name!r} is registered twice")
        FORGET_LOSSES[name] = ForgetLoss(name, fn, data, needs_reference, label or name.upper(), retain)
        return fn

    return decorate


def get_forget_loss(name):
    try:
        return FORGET_LOSSES[name]
    except KeyError:
        raise ClueError(f"unknown forget loss {name!r} (known: {', '.join(sorted(FORGET_LOSSES))})") from None


# --------------------------------------------------------------------------- encoding

def _ids(tokenizer, text, special):
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def encode_text(tokenizer, text):
    """One corpus line -> ``(input_ids, target_mask)``: every token after the first is scored."""
    ids = _ids(tokenizer, text, True)
    if len(ids) < 2:
        raise ClueError(f"text {text!r} has fewer than two tokens; nothing to score")
    return ids, [False] + [True] * (len(ids) - 1)


def encode_prompt_target(tokenizer, prompt, target):
    """Prompt and answer -> ``(input_ids, target_mask)`` scoring only the answer's tokens.

    The two parts are tokenized separately (the answer as ``" " + target``, without special
    tokens), so the boundary is exact for any tokenizer."""
    p = _ids(tokenizer, prompt, True)
    a = _ids(tokenizer, " " + target, False)
    if not p or not a:
        raise ClueError(f"prompt {prompt!r} / answer {target!r}: empty after tokenization")
    return p + a, [False] * len(p) + [True] * len(a)


def encode_preference(tokenizer, prompt, chosen, rejected):
    """A DPO example: the prompt with the preferred answer and with the rejected one."""
    return (encode_prompt_target(tokenizer, prompt, chosen), encode_prompt_target(tokenizer, prompt, rejected))


def collate_preference(pairs, pad_id=0, ref_logp=None):
    """Preference examples -> {"chosen": batch, "rejected": batch}; ``ref_logp`` is [B, 2]."""
    return {"chosen": collate([c for c, _ in pairs], pad_id, None if ref_logp is None else ref_logp[:, 0]),
            "rejected": collate([r for _, r in pairs], pad_id, None if ref_logp is None else ref_logp[:, 1])}


def collate(encoded, pad_id=0, ref_logp=None):
    """Right-pad a list of ``(input_ids, target_mask)`` into a batch dict."""
    import torch

    width = max(len(ids) for ids, _ in encoded)
    n = len(encoded)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    target = torch.zeros((n, width), dtype=torch.bool)
    for i, (ids, tmask) in enumerate(encoded):
        input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention[i, : len(ids)] = 1
        target[i, : len(ids)] = torch.tensor(tmask, dtype=torch.bool)
    batch = {"input_ids": input_ids, "attention_mask": attention, "target_mask": target}
    if ref_logp is not None:
        batch["ref_logp"] = ref_logp
    return batch


AUTOCAST_DTYPES = ("bfloat16", "float16")


# The CPU instructions under which bf16 products run faster than float32 ones. AMX only: with
# avx512_bf16 alone (oneDNN capped below AMX on an AMX Xeon, ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16) a
# SmolLM2 training step took 1.5x as long in bf16 as in float32 and a circuit step 1.14x
# (docs/performance.md), so such a CPU (Cooper Lake, Zen 4) stays in float32.
BF16_CPU_FLAGS = ("amx_bf16",)


def cpu_info(cpuinfo="/proc/cpuinfo"):
    """The first CPU's fields of /proc/cpuinfo (Linux) as {key: value}; {} where it cannot be read."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return {}
    info = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    return info


def _flags(info):
    return set((info.get("flags") or info.get("Features") or "").split())   # x86, ARM


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The CPU's feature flags (Linux), or an empty set where they cannot be read."""
    return _flags(cpu_info(cpuinfo))


def onednn_allows_amx(environ=None):
    """Whether oneDNN, which computes torch's bf16 CPU products, may use AMX: not when
    ONEDNN_MAX_CPU_ISA (or its old name DNNL_MAX_CPU_ISA) caps it at an ISA without AMX."""
    import os

    environ = os.environ if environ is None else environ
    isa = (environ.get("ONEDNN_MAX_CPU_ISA") or environ.get("DNNL_MAX_CPU_ISA") or "ALL").upper()
    return isa in ("ALL", "DEFAULT") or "AMX" in isa


def native_bf16(device_type, flags=None, environ=None):
    """Whether ``device_type`` computes bf16 products faster than float32 ones: a CUDA GPU that
    supports bf16, or a CPU with AMX (amx_bf16) that oneDNN may use. Elsewhere bf16 is slower: an
    AVX2-only CPU emulates it (about 12x slower than float32 a training step), and avx512_bf16
    alone was 1.1-1.5x slower (BF16_CPU_FLAGS; docs/performance.md)."""
    import torch

    if device_type == "cuda":
        # without the emulation a V100- or T4-class GPU would count as supporting bf16
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    return bool(set(BF16_CPU_FLAGS) & (cpu_flags() if flags is None else flags)) and onednn_allows_amx(environ)


# Environment variables that cap the instructions torch's kernels use (oneDNN: bf16 products;
# MKL: float32 products; ATen: its own vectorised kernels): set, a timing is not the CPU's own.
ISA_CAPS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY")


def machine():
    """One line naming what a timing ran on: the CPU's model, family and model number, its cores,
    its bf16 flags and what `auto` precision picks there, torch's kernel level, and any variable
    that caps the instructions the kernels use (ISA_CAPS)."""
    import os

    import torch

    info = cpu_info()
    bf16 = sorted({"avx512_bf16", "amx_bf16"} & _flags(info))
    caps = [f"{k}={os.environ[k]}" for k in ISA_CAPS if os.environ.get(k)]
    return (f"{info.get('model name', 'unknown CPU')} (family {info.get('cpu family', '?')}, model "
            f"{info.get('model', '?')}), {os.cpu_count()} cores, bf16 flags: {', '.join(bf16) or 'none'}, "
            f"auto precision: {'bf16' if native_bf16('cpu') else 'float32'}, "
            f"torch {torch.__version__} kernels {torch.backends.cpu.get_cpu_capability()}"
            + (f", capped by {' '.join(caps)}" if caps else ""))


def autocast_dtype(value, key, device_type=None):
    """A config's ``autocast`` setting as a torch dtype (None for null); a ClueError naming ``key``
    for anything else. ``auto`` is bfloat16 where ``device_type`` (default: CUDA when there is a
    GPU, else the CPU) computes it natively, else None (float32). Training (``unlearn.autocast``),
    evaluation (``evaluate.autocast``) and circuit discovery (``circuit.autocast``) share it."""
    if value is None:
        return None
    if value == "auto":
        import torch

        device_type = device_type or ("cuda" if torch.cuda.is_available() else "cpu")
        return torch.bfloat16 if native_bf16(device_type) else None
    if value not in AUTOCAST_DTYPES:
        raise ClueError(f"{key} must be null, auto or one of {', '.join(AUTOCAST_DTYPES)}, not {value!r}")
    import torch

    return getattr(torch, value)


def autocast(value, key, device_type):
    """The context a config's ``autocast`` setting asks for: torch.autocast at its dtype, disabled
    for null, or for auto where the device has no native bf16 (``key`` names the setting in the
    error)."""
    import torch

    dtype = autocast_dtype(value, key, device_type)
    return torch.autocast(device_type, dtype=dtype, enabled=dtype is not None)


def torch_device(name):
    """A config's ``device``: ``auto`` is CUDA when there is a GPU, else the CPU."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def to_device(batch, device):
    return {k: to_device(v, device) if isinstance(v, dict) else v.to(device) for k, v in batch.items()}


# --------------------------------------------------------------------------- log-probabilities

def token_logprobs(model, batch):
    """``(logp, scored)``: log-probability of each token given its prefix (``[B, T-1]``, for tokens
    1..T-1) and the bool mask of tokens that count."""
    import torch
    import torch.nn.functional as F

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    targets = batch["input_ids"][:, 1:]
    if logits.dtype in (torch.float16, torch.bfloat16):
        # at least float32: a bf16 log-softmax over a 32k vocabulary loses too much precision
        logits = logits.float()
    logp = -F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                            reduction="none").view(targets.shape)
    scored = batch["target_mask"][:, 1:] & batch["attention_mask"][:, 1:].bool()
    return logp.masked_fill(~scored, 0.0), scored


def sequence_logprob(model, batch):
    """Per-sequence log-probability: the sum over its scored tokens (``[B]``)."""
    logp, _ = token_logprobs(model, batch)
    return logp.sum(dim=1)


def mean_nll(model, batch):
    """Negative log-likelihood averaged over all scored tokens of the batch."""
    logp, scored = token_logprobs(model, batch)
    n = scored.sum()
    if n == 0:
        raise ClueError("a batch has no scored tokens")
    return -logp.sum() / n


# Importing every module of the package registers its losses (keep this at the bottom: the modules
# import from here).
import_submodules(__name__, __path__)
