"""Shared fixtures: tiny random Llama-family models and a word-level tokenizer, built in memory
so unit tests need no trained checkpoint and no network."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def make_tokenizer(words):
    """A word-level PreTrainedTokenizerFast over ``words`` (plus special tokens)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<pad>", "<bos>", "<eos>"]
    vocab = {w: i for i, w in enumerate(specials + sorted(set(words) - set(specials)))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<bos>", eos_token="<eos>"
    )


def make_model(kind="llama", vocab_size=64, hidden_size=32, layers=2, heads=4, kv_heads=None,
               intermediate_size=64, seed=0, tied=False):
    """A small random model of the Llama family: ``llama`` (MHA), ``gqa`` (Mistral-style grouped
    query attention, kv_heads < heads) or ``qwen2`` (biases on q/k/v); ``tied``: lm_head shares
    the embedding's weight (as SmolLM2's does)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    if kv_heads is None:
        kv_heads = heads // 2 if kind in ("gqa", "qwen2") else heads
    common = dict(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
                  num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                  max_position_embeddings=64, tie_word_embeddings=tied)
    if kind == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common, use_sliding_window=False))
    else:
        model = LlamaForCausalLM(LlamaConfig(**common))
    return model.eval()


@pytest.fixture
def tiny_model_factory():
    return make_model


@pytest.fixture
def tiny_tokenizer_factory():
    return make_tokenizer


ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ["Snakefile", "config.yaml", "rules", "workflow", "configs", "profiles", "envs"]


def copy_workflow(dest):
    """The repository's workflow (no results, logs or venv) copied to ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(src, dest / name)
    return dest


# The workflow tests' snakemake runs (tests/test_workflow.py, tests/test_workflow_real.py).
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
# must match clue.circuits.discover.SPARSITY_TOLERANCE (the job fails outside it)
SPARSITY_TOLERANCE = 0.01


def snakemake(cwd, *args, check=True):
    out = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, capture_output=True, text=True,
                         env=ENV)
    if check and out.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}")
    return out


def planned_jobs(out):
    """{rule: count} from a dry run's job stats table."""
    text = out.stdout + out.stderr
    stats = text.split("Job stats:")[1].split("Reasons:")[0] if "Job stats:" in text else ""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M) if m.group(1) != "total"}


def planned_priorities(out):
    """{rule: priority} of a dry run's jobs (a job without a priority line has Snakemake's 0); every
    job of a rule must show the same priority."""
    text = out.stdout + out.stderr
    found = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", text):
        m = re.match(r"(?:local)?rule (\w+):", block)
        if m:
            p = re.search(r"^\s+priority: (\d+)$", block, re.M)
            found.setdefault(m.group(1), set()).add(int(p.group(1)) if p else 0)
    assert all(len(v) == 1 for v in found.values()), found
    return {rule: v.pop() for rule, v in found.items()}
