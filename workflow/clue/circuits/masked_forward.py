"""An edge-masked forward pass over a Hugging Face Llama-family causal LM.

The residual stream is split into the outputs of its *writers* and the inputs of its *readers*
(names as in docs/formats.md):

- writers: ``embed``, ``a{L}.h{H}`` (one attention head: its attention result times its slice
  of ``o_proj``), ``m{L}`` (one MLP);
- readers: ``a{L}.h{H}.q``, ``a{L}.h{G}.k``, ``a{L}.h{G}.v`` (G = key/value head), ``m{L}``, ``out``.

An edge (w, r) exists for every writer w upstream of reader r. With a gate ``z`` per edge, reader
r reads ``sum_w z_wr * h_w(x) + (1 - z_wr) * h_w(x~)``, where ``h_w(x)`` is computed in this
(masked) run and ``h_w(x~)`` is the writer's output in an unmasked run on the other input. Each
reader then applies its own RMSNorm and projection with the HF module's own weights (no copy):
q/k/v readers use ``input_layernorm`` and their head's rows of ``q_proj`` / ``k_proj`` /
``v_proj``; ``m{L}`` uses ``post_attention_layernorm`` and the layer's MLP; ``out`` uses the final
norm and ``lm_head``.

An ``o_proj`` bias (Llama with ``attention_bias=True``) is split evenly over the layer's heads, so
the writers still sum to the HF residual stream. Being input-independent it is the same on both
inputs, so no gate ever changes it.

Sequences are right-padded: with a causal mask no real position attends to a padding position,
so the real positions are computed exactly as without padding, and callers read the logits at
the last real position (``positions``).
"""

from dataclasses import dataclass, field

import torch

from clue.errors import ClueError

SUPPORTED_MODEL_TYPES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                         "qwen2": "Qwen2ForCausalLM"}


def check_supported(model):
    """Raise ClueError unless ``model`` is a Llama-family causal LM this module can run."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES or not hasattr(model, "lm_head"):
        raise ClueError(
            f"circuit discovery does not support {type(model).__name__} (model_type "
            f"{model_type!r}); supported: {', '.join(SUPPORTED_MODEL_TYPES.values())}")


@dataclass
class EdgeGraph:
    """Writers, readers and edges of a model, and where each reader's gates sit in the flat
    gate vector. Edge order: layer by layer, the attention readers (writer-major), then the MLP
    reader, then ``out``; ``edges[i]`` is the (writer index, reader index) of gate ``i``."""

    n_layers: int
    n_heads: int
    n_kv: int
    writers: list = field(default_factory=list)
    readers: list = field(default_factory=list)
    edges: list = field(default_factory=list)
    attn_index: list = field(default_factory=list)  # per layer: LongTensor [n_upstream, H + 2G]
    mlp_index: list = field(default_factory=list)   # per layer: LongTensor [n_upstream + H]
    out_index: torch.Tensor = None                  # LongTensor [n_writers]

    @property
    def n_edges(self):
        return len(self.edges)

    def edge_names(self):
        return [(self.writers[w], self.readers[r]) for w, r in self.edges]


def build_graph(config):
    """The computational graph of a model with this config (layers, heads, kv heads)."""
    L, H, G = config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads
    g = EdgeGraph(L, H, G)
    g.writers = ["embed"] + [w for l in range(L) for w in [f"a{l}.h{h}" for h in range(H)] + [f"m{l}"]]

    def add_readers(names, n_up):
        # One gate per (upstream writer, reader): returns their indices as an [n_up, R] tensor.
        first_reader = len(g.readers)
        g.readers.extend(names)
        first_edge = len(g.edges)
        g.edges.extend((w, first_reader + r) for w in range(n_up) for r in range(len(names)))
        return torch.arange(first_edge, len(g.edges)).view(n_up, len(names))

    for l in range(L):
        n_up = 1 + l * (H + 1)  # embed and every writer of the earlier layers
        attn = ([f"a{l}.h{h}.q" for h in range(H)] + [f"a{l}.h{k}.k" for k in range(G)]
                + [f"a{l}.h{k}.v" for k in range(G)])
        g.attn_index.append(add_readers(attn, n_up))
        g.mlp_index.append(add_readers([f"m{l}"], n_up + H)[:, 0])  # also this layer's heads
    g.out_index = add_readers(["out"], len(g.writers))[:, 0]
    return g


def _rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _check_window(config, seq_len):
    window = getattr(config, "sliding_window", None)
    if window is not None and seq_len > window:
        raise ClueError(f"sequence length {seq_len} exceeds the model's sliding window {window}; "
                        "the masked forward implements full causal attention only")


def forward(model, graph, input_ids, gates=None, other=None, positions=None):
    """Run ``model`` on ``input_ids`` [B, T] through the edge graph.

    ``gates`` None: the unmasked model (every reader reads the plain residual stream).
    ``gates`` [E] (values in [0, 1], may require grad): reader inputs mix this run's writer outputs
    with ``other`` [n_writers, B, T, D], the writer outputs of an unmasked run on the other input.
    ``positions`` [B]: return logits only at these positions ([B, V]); None: all ([B, T, V]).

    Returns ``(logits, writer_outputs)`` with writer_outputs [n_writers, B, T, D] in
    ``graph.writers`` order.
    """
    check_supported(model)
    base, config = model.model, model.config
    B, T = input_ids.shape
    _check_window(config, T)
    if gates is not None and (other is None or other.shape[:3] != (len(graph.writers), B, T)):
        raise ValueError("gated forward needs `other` writer outputs of shape [n_writers, B, T, D]")
    H, G = graph.n_heads, graph.n_kv

    embed = base.embed_tokens(input_ids)
    writers = [embed.unsqueeze(0)]          # list of [n, B, T, D] blocks, concatenated on demand
    residual = embed                        # only used when ungated

    def reader_inputs(index, n_up):
        # [R, B, T, D]: each reader's gated mix of the n_up upstream writers.
        if gates is None:
            return residual.unsqueeze(0).expand(index.shape[-1], *residual.shape)
        mine = torch.cat(writers, 0)
        z = gates[index]
        return (torch.einsum("nr,nbtd->rbtd", z, mine)
                + torch.einsum("nr,nbtd->rbtd", 1 - z, other[:n_up]))

    position_ids = torch.arange(T, device=input_ids.device).unsqueeze(0).expand(B, T)
    cos, sin = base.rotary_emb(embed, position_ids)          # the model's own RoPE, [B, T, hd]
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    future = torch.ones(T, T, dtype=torch.bool, device=input_ids.device).triu(1)

    for l, layer in enumerate(base.layers):
        attn = layer.self_attn
        hd = attn.head_dim
        n_up = 1 + l * (H + 1)

        # q/k/v readers of this layer, batched: normalise each reader's input, project with
        # that head's rows of q_proj / k_proj / v_proj.
        x = layer.input_layernorm(reader_inputs(graph.attn_index[l], n_up))
        q = _head_proj(attn.q_proj, x[:H], H, hd)
        k = _head_proj(attn.k_proj, x[H:H + G], G, hd)
        v = _head_proj(attn.v_proj, x[H + G:], G, hd)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        k = k.repeat_interleave(H // G, dim=1)               # query head h uses kv head h // (H/G)
        v = v.repeat_interleave(H // G, dim=1)
        scores = torch.matmul(q, k.transpose(2, 3)) * attn.scaling
        scores = scores.masked_fill(future, torch.finfo(scores.dtype).min)
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        result = torch.matmul(probs, v)                      # [B, H, T, hd]

        # Writers a{l}.h{h}: head h's result times its columns of o_proj.
        w_o = attn.o_proj.weight.view(-1, H, hd)              # [D, H, hd]
        heads = torch.einsum("bhte,dhe->hbtd", result, w_o)
        if attn.o_proj.bias is not None:
            heads = heads + attn.o_proj.bias / H
        writers.append(heads)
        residual = residual + heads.sum(0)

        # Reader m{l} (sees this layer's heads too) and writer m{l}.
        x = reader_inputs(graph.mlp_index[l].unsqueeze(1), n_up + H)[0]
        mlp = layer.mlp(layer.post_attention_layernorm(x))
        writers.append(mlp.unsqueeze(0))
        residual = residual + mlp

    x = reader_inputs(graph.out_index.unsqueeze(1), len(graph.writers))[0]
    if positions is not None:
        x = x[torch.arange(B, device=x.device), positions]    # the norm is per position
    logits = model.lm_head(base.norm(x))
    return logits, torch.cat(writers, 0)


def _head_proj(linear, x, n, hd):
    """Per-head projection: reader i of ``x`` [n, B, T, D] through rows i*hd:(i+1)*hd of
    ``linear`` -> [B, n, T, hd]."""
    w = linear.weight.view(n, hd, -1)
    out = torch.einsum("nbtd,ned->bnte", x, w)
    if linear.bias is not None:
        out = out + linear.bias.view(1, n, 1, hd)
    return out
