"""Forget and retain losses against values computed by hand (math.log / math.exp) on a bigram
"model" whose logits are a fixed table: the logits at a position are the row of the current token."""

import math
from types import SimpleNamespace

import pytest
import torch

from clue.errors import ClueError
from clue.losses import (FORGET_LOSSES, collate, encode_prompt_target, encode_text, get_forget_loss,
                         sequence_logprob)
from clue.losses.retain import retain_kl, retain_loss
from conftest import make_model, make_tokenizer

TABLE = [[0.0, 1.0, 2.0], [0.5, -1.0, 0.0], [1.0, 1.0, 3.0]]


class Bigram(torch.nn.Module):
    def __init__(self, table=TABLE):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(table, dtype=torch.float64))

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=self.w[input_ids])


def lp(prev, nxt, table=TABLE):
    """log p(nxt | prev) by hand."""
    row = table[prev]
    return row[nxt] - math.log(sum(math.exp(x) for x in row))


def batch_of(*seqs, targets=None):
    enc = [(list(s), [False] + [True] * (len(s) - 1) if targets is None else t) for s, t in
           zip(seqs, targets or [None] * len(seqs))]
    return collate(enc, pad_id=0)


def test_registry():
    assert {"ga", "npo", "po", "dpo", "npo_kl", "graddiff"} <= set(FORGET_LOSSES)
    assert get_forget_loss("po").data == "refusal" and get_forget_loss("ga").data == "text"
    assert get_forget_loss("npo").needs_reference and not get_forget_loss("po").needs_reference
    with pytest.raises(ClueError, match="unknown forget loss 'kl'.*dpo, ga, graddiff, npo, npo_kl, po"):
        get_forget_loss("kl")


def test_ga_two_tokens():
    # one two-token text [0, 2]: GA = -NLL = log p(2|0)
    got = get_forget_loss("ga").fn(Bigram(), batch_of([0, 2]))
    assert got.item() == pytest.approx(lp(0, 2), abs=1e-12)
    assert lp(0, 2) == pytest.approx(2 - math.log(1 + math.e + math.e ** 2))


def test_ga_is_token_mean_and_ignores_padding():
    # [0, 2] and [1, 1, 0] (the first is padded with token 0): 3 scored tokens in all
    got = get_forget_loss("ga").fn(Bigram(), batch_of([0, 2], [1, 1, 0]))
    assert got.item() == pytest.approx((lp(0, 2) + lp(1, 1) + lp(1, 0)) / 3, abs=1e-12)


def test_ga_step_lowers_the_likelihood():
    model = Bigram()
    loss = get_forget_loss("ga").fn(model, batch_of([0, 2]))
    loss.backward()
    with torch.no_grad():
        model.w -= 0.1 * model.w.grad
    assert sequence_logprob(model, batch_of([0, 2])).item() < lp(0, 2)


def test_npo_by_hand():
    beta = 0.5
    batch = batch_of([0, 2], [1, 1, 0])
    ref = [-1.0, -4.0]
    batch["ref_logp"] = torch.tensor(ref, dtype=torch.float64)
    theta = [lp(0, 2), lp(1, 1) + lp(1, 0)]  # sequence log-prob = sum over tokens
    want = -(2 / beta) * sum(math.log(1 / (1 + math.exp(beta * (t - r)))) for t, r in zip(theta, ref)) / 2
    got = get_forget_loss("npo").fn(Bigram(), batch, {"npo_beta": beta})
    assert got.item() == pytest.approx(want, abs=1e-12)


def test_npo_at_the_reference_is_2_log2_over_beta():
    batch = batch_of([0, 2])
    batch["ref_logp"] = torch.tensor([lp(0, 2)], dtype=torch.float64)
    assert get_forget_loss("npo").fn(Bigram(), batch, {}).item() == pytest.approx(2 / 0.1 * math.log(2))
    del batch["ref_logp"]
    with pytest.raises(ClueError, match="ref_logp"):
        get_forget_loss("npo").fn(Bigram(), batch, {})


def test_dpo_by_hand():
    # prompt [0]; chosen (refusal) [2, 1], rejected (answer) [1]; beta 0.5
    beta, ref_c, ref_r = 0.5, -2.0, -0.5
    chosen = batch_of([0, 2, 1], targets=[[False, True, True]])
    rejected = batch_of([0, 1], targets=[[False, True]])
    chosen["ref_logp"] = torch.tensor([ref_c], dtype=torch.float64)
    rejected["ref_logp"] = torch.tensor([ref_r], dtype=torch.float64)
    margin = (lp(0, 2) + lp(2, 1) - ref_c) - (lp(0, 1) - ref_r)
    want = math.log(1 + math.exp(-beta * margin))        # -log sigmoid(beta * margin)
    got = get_forget_loss("dpo").fn(Bigram(), {"chosen": chosen, "rejected": rejected}, {"dpo_beta": beta})
    assert got.item() == pytest.approx(want, abs=1e-12)
    assert get_forget_loss("dpo").data == "preference" and get_forget_loss("dpo").needs_reference


def test_retain_kl_by_hand():
    # reference: TABLE; model: another table; text [0, 2, 1]: KL at positions of tokens 0 and 2
    other = [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [2.0, -1.0, 1.0]]
    batch = batch_of([0, 2, 1])

    def kl(prev):
        p = [math.exp(lp(prev, j)) for j in range(3)]
        return sum(p[j] * (lp(prev, j) - lp(prev, j, other)) for j in range(3))

    got = retain_kl(Bigram(other), Bigram(), batch)
    assert got.item() == pytest.approx((kl(0) + kl(2)) / 2, abs=1e-12)
    assert retain_kl(Bigram(), Bigram(), batch).item() == pytest.approx(0.0, abs=1e-15)
    assert get_forget_loss("npo_kl").retain == "kl" and get_forget_loss("graddiff").retain == "kl"
    assert get_forget_loss("ga").retain == "nll"


def test_po_scores_only_the_refusal_tokens():
    # prompt [0], refusal [2, 1]: PO = -(log p(2|0) + log p(1|2)) / 2
    batch = batch_of([0, 2, 1], targets=[[False, True, True]])
    got = get_forget_loss("po").fn(Bigram(), batch)
    assert got.item() == pytest.approx(-(lp(0, 2) + lp(2, 1)) / 2, abs=1e-12)


def test_encoding_with_a_word_tokenizer():
    tok = make_tokenizer("what is the virus i do not know".split())
    ids, tmask = encode_prompt_target(tok, "what is the virus", "i do not know")
    assert tok.convert_ids_to_tokens(ids) == "what is the virus i do not know".split()
    assert tmask == [False] * 4 + [True] * 4
    ids, tmask = encode_text(tok, "the virus")
    assert len(ids) == 2 and tmask == [False, True]
    with pytest.raises(ClueError, match="fewer than two tokens"):
        encode_text(tok, "virus")


def test_retain_loss_matches_the_hf_language_modelling_loss():
    # independent reference: transformers' own shifted cross-entropy with labels = input_ids
    model = make_model("llama", vocab_size=16, layers=1).double()
    tok = make_tokenizer("a b c d e f g h".split())
    enc = [encode_text(tok, "a b c d e"), encode_text(tok, "f g h")]
    want = sum(model(input_ids=torch.tensor([ids]), labels=torch.tensor([ids])).loss.item() * (len(ids) - 1)
               for ids, _ in enc) / (4 + 2)
    got = retain_loss(model, collate(enc, pad_id=tok.pad_token_id))
    assert got.item() == pytest.approx(want, rel=1e-6)  # HF computes its loss in float32


# ------------------------------------------------------------- precision that follows the hardware

def test_auto_precision_is_bf16_only_where_the_cpu_computes_it_natively(tmp_path, monkeypatch):
    """`autocast: auto` reads the CPU's flags: AVX2 alone (torch emulates bf16, ~12x slower than
    float32) and avx512_bf16 without AMX (measured 1.1-1.5x slower than float32) give float32;
    amx_bf16 gives bf16, unless ONEDNN_MAX_CPU_ISA caps oneDNN below AMX; a CUDA device asks torch."""
    import torch

    import clue.losses as losses

    avx2 = tmp_path / "avx2"
    avx2.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n")
    zen4 = tmp_path / "zen4"
    zen4.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    amx = tmp_path / "amx"
    amx.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n")
    assert losses.cpu_flags(avx2) == {"fpu", "sse2", "avx", "avx2", "fma"}
    assert losses.cpu_flags(tmp_path / "missing") == set()
    assert not losses.native_bf16("cpu", losses.cpu_flags(avx2), environ={})
    assert not losses.native_bf16("cpu", losses.cpu_flags(zen4), environ={})
    assert losses.native_bf16("cpu", losses.cpu_flags(amx), environ={})
    # oneDNN capped below AMX (the caps an AVX2 or avx512_bf16 CPU is emulated with): float32
    for isa, want in (("AVX2", False), ("avx512_core_bf16", False), ("AVX512_CORE_AMX", True), ("ALL", True)):
        assert losses.native_bf16("cpu", losses.cpu_flags(amx), environ={"ONEDNN_MAX_CPU_ISA": isa}) is want, isa
    assert not losses.native_bf16("cpu", losses.cpu_flags(amx), environ={"DNNL_MAX_CPU_ISA": "AVX512_CORE"})
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    read = losses.cpu_flags
    for path, want in ((avx2, None), (zen4, None), (amx, torch.bfloat16)):
        monkeypatch.setattr(losses, "cpu_flags", lambda cpuinfo=None, path=path: read(path))   # this machine's CPU
        assert losses.autocast_dtype("auto", "unlearn.autocast", "cpu") is want
        with losses.autocast("auto", "unlearn.autocast", "cpu"):
            assert torch.is_autocast_enabled("cpu") == (want is not None)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")   # the process's own environment is read
    assert losses.autocast_dtype("auto", "unlearn.autocast", "cpu") is None
    assert "capped by ONEDNN_MAX_CPU_ISA=AVX2" in losses.machine() and "auto precision: float32" in losses.machine()
    assert losses.autocast_dtype("bfloat16", "unlearn.autocast", "cpu") is torch.bfloat16   # asked for: kept
    assert losses.autocast_dtype(None, "unlearn.autocast", "cpu") is None
