"""An edge-masked forward pass over a Hugging Face Llama-family causal LM.

The residual stream is split into the outputs of its *writers* and the inputs of its *readers*
(names as in docs/formats.md):

- writers: ``embed``, ``a{L}.h{H}`` (one attention head: its attention result times its slice
  of ``o_proj``), ``m{L}`` (one MLP);
- readers: ``a{L}.h{H}.q``, ``a{L}.h{G}.k``, ``a{L}.h{G}.v`` (G = key/value head), ``m{L}``, ``out``.

An edge (w, r) exists for every writer w upstream of reader r. With a gate ``z`` per edge, reader
r reads ``sum_w z_wr * h_w(x) + (1 - z_wr) * h_w(x~)``, where ``h_w(x)`` is computed in this
(masked) run and ``h_w(x~)`` is the writer's output in an unmasked run on the other input. Each
reader then applies its own RMSNorm and projection with the HF modules' weights:
q/k/v readers use ``input_layernorm`` and their head's rows of ``q_proj`` / ``k_proj`` /
``v_proj``; ``m{L}`` uses ``post_attention_layernorm`` and the layer's MLP; ``out`` uses the final
norm and ``lm_head``. The MLP reader's norm runs the module's formula written out (``_RMSNorm``,
the same numbers bit for bit, a cheaper backward). A q/k/v reader computes the same function with
the norm folded into its projection (``_NormedProj``: the norm's weight times the head's rows,
then the projected head times 1 / rms of the input), in other roundings and a fraction of the
elementwise work: a layer has one such reader a live head and two a key/value head, each as
large as the residual stream.

An ``o_proj`` bias (Llama with ``attention_bias=True``) is split evenly over the layer's heads, so
the writers still sum to the HF residual stream. Being input-independent it is the same on both
inputs, so no gate ever changes it.

Sequences are right-padded: with a causal mask no real position attends to a padding position,
so the real positions are computed exactly as without padding, and callers read the logits at
the last real position (``positions``).
"""

from contextlib import contextmanager
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


@dataclass
class LiveNodes:
    """Which writers a gated run computes, and where the gates of their edges sit.

    Edge Pruning may only keep edges between *live* nodes: ``live`` [n_writers] marks the writers
    (``embed`` always), and a reader is computed when a writer it feeds is live (a k/v reader when
    any query head of its group is). Every other writer contributes the other run's output, as a
    writer whose out-edges are all closed does, so it is not computed at all: a gated run with
    these live nodes gives the same logits as a run on the whole graph with every edge that touches
    a dead node closed (``candidate_edges``), at a cost that shrinks with the live nodes (an MLP not
    computed, a mix over fewer stored writers).

    Per layer: ``heads`` (live heads), ``groups`` (their key/value heads), ``kv_of_head`` (position
    of each live head's group in ``groups``), ``mlp`` (bool), ``attn_gates`` [live writers upstream
    of the layer (a prefix of the stored rows), q + k + v readers, + 1 for the MLP reader when
    live] and ``mlp_head_gates`` [live heads] (indices into the gate vector);
    ``out_gates`` [live writers]. ``gate_order``: every reader group's gate indices, flattened and
    concatenated, so a gated run gathers its gates in one index (one node in the backward instead
    of one a reader group, each scattering into a zero vector of every gate); ``gate_shapes``:
    each reader group's shape in that order: per layer with a live node ``attn_gates`` (at
    position ``attn_block`` of the layer's plan), then ``mlp_head_gates`` when the layer has
    live heads and a live MLP (``mlp_head_block``; None when not), and ``out_gates`` last.
    ``computed``: the layers with a live node."""

    live: torch.Tensor
    layers: list
    out_gates: torch.Tensor
    gate_order: torch.Tensor = None
    gate_shapes: list = field(default_factory=list)
    computed: list = field(default_factory=list)

    @property
    def n_live(self):
        return int(self.live.sum())


def live_nodes(graph, live=None):
    """LiveNodes of ``graph`` for the writers marked in ``live`` (None: every writer)."""
    H, G = graph.n_heads, graph.n_kv
    live = torch.ones(len(graph.writers), dtype=torch.bool) if live is None else torch.as_tensor(live).bool().clone()
    live[0] = True                                        # embed: the input
    rows = torch.nonzero(live).flatten()                  # stored writers, in graph order
    layers = []
    for l in range(graph.n_layers):
        first = 1 + l * (H + 1)
        up = rows[rows < first]
        heads = torch.nonzero(live[first:first + H]).flatten()
        groups = torch.unique(heads // (H // G))
        mlp = bool(live[first + H])
        cols = torch.cat([heads, H + groups, H + G + groups])
        gates = graph.attn_index[l][up][:, cols]
        if mlp:
            gates = torch.cat([gates, graph.mlp_index[l][up, None]], 1)
        layers.append({"heads": heads, "groups": groups, "kv_of_head": torch.searchsorted(groups, heads // (H // G)),
                       "mlp": mlp, "attn_gates": gates,
                       "mlp_head_gates": graph.mlp_index[l][first + heads], "head_writers": first + heads})
    out_gates = graph.out_index[rows]
    # the reader groups, layer by layer, and where each layer's sit
    blocks = []
    for plan in layers:
        plan["attn_block"] = plan["mlp_head_block"] = None
        if len(plan["heads"]) or plan["mlp"]:
            plan["attn_block"] = len(blocks)
            blocks.append(plan["attn_gates"])
        if len(plan["heads"]) and plan["mlp"]:
            plan["mlp_head_block"] = len(blocks)
            blocks.append(plan["mlp_head_gates"][:, None])
    blocks.append(out_gates[:, None])
    return LiveNodes(live, layers, out_gates, torch.cat([b.flatten() for b in blocks]),
                     [tuple(b.shape) for b in blocks],
                     [l for l, plan in enumerate(layers) if plan["attn_block"] is not None])


def candidate_edges(graph, live):
    """0/1 [E]: the edges a gated run with these live nodes can open (from a live writer into
    ``out`` or into a reader of a live writer)."""
    live = torch.as_tensor(live).bool()
    reader_live = torch.tensor([not owners or bool(live[owners].any()) for owners in reader_owners(graph).values()])
    w, r = torch.tensor(graph.edges).unbind(1)
    return (live[w] & reader_live[r]).float()


def reader_owners(graph):
    """For every reader, the writers it is an input of: a head's q reader feeds that head, a k/v
    reader every head of its key/value group, ``m{L}`` the MLP; ``out`` feeds no writer."""
    index = {name: i for i, name in enumerate(graph.writers)}
    group = graph.n_heads // graph.n_kv
    owners = {}
    for r, name in enumerate(graph.readers):
        parts = name.split(".")
        if name == "out":
            owners[r] = []
        elif len(parts) == 1:                 # m{L}
            owners[r] = [index[name]]
        elif parts[2] == "q":
            owners[r] = [index[f"{parts[0]}.{parts[1]}"]]
        else:                                 # k/v of key/value head G
            g = int(parts[1][1:])
            owners[r] = [index[f"{parts[0]}.h{h}"] for h in range(g * group, (g + 1) * group)]
    return owners


class _DiffStore:
    """This run's writer outputs minus the other run's, for every live writer, in one buffer
    [n_live, B, T, D] that the gated readers multiply in place, and the gradient buffer their
    backward passes accumulate into.

    Why not concatenate the upstream writers for every reader group (the straightforward
    version)? Each concatenation is a copy that autograd keeps for the backward, one per layer of
    ever more writers: stored activations grow with the square of the depth (a 7B model would
    keep ~35,000 writer slices instead of 1,057). Here each writer's difference is stored once,
    so memory grows linearly, and each reader group is one matrix product."""

    def __init__(self, rows, like, dtype):
        self.values = like.new_empty((rows, *like.shape[1:]), dtype=dtype)
        self.grads = None

    def add(self, first, out, other, token=None):
        """Store the differences ``out - other`` of writers first .. first + n - 1 (this run's
        outputs and the other run's), subtracted straight into the store; returns a token that
        later reader groups take as an input, so autograd runs their backward before this block's
        (see _Store). ``token``: the previous block's, which this block's token then stands for too."""
        return _Store.apply(out, other, self, first, *([] if token is None else [token]))

    def mix(self, z, residual, token, first=0):
        """[R, B, T, D]: residual + sum over the n = z.shape[0] writers first .. first + n - 1 of
        z[w, r] times writer w's difference; ``residual`` [B, T, D] (every reader's) or
        [R, B, T, D] (each reader's own); ``token``: that of the last block stored."""
        return _Mix.apply(z, residual, self, first, token)


class _Store(torch.autograd.Function):
    @staticmethod
    def forward(ctx, out, other, store, first, *previous):
        n = out.shape[0]
        torch.sub(out, other, out=store.values[first:first + n])
        ctx.store, ctx.rows = store, slice(first, first + n)
        return out.new_zeros(())

    @staticmethod
    def backward(ctx, _):
        # every reader group that read these writers has added its gradient by now: autograd
        # runs a node's backward only after all nodes that consumed its output, and the tokens
        # chain, so a reader group that takes the last block's token runs before every block's
        # (one edge a reader group, not one for every block it reads); the tokens get no gradient
        grads = ctx.store.grads
        grad_diff = grads[ctx.rows] if grads is not None else None   # a view: these rows are final
        ctx.store = None   # a graph kept alive after its backward (until the next step's loss) frees the store
        return (grad_diff, None, None, None) + (None,) * (len(ctx.needs_input_grad) - 4)


class _Mix(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, residual, store, first, token):
        n, R = z.shape
        ctx.save_for_backward(z)
        ctx.store, ctx.rows = store, slice(first, first + n)
        # backward's products run in the forward's precision: what torch.amp.custom_bwd does, but
        # that decorator fixes one device type, and this forward runs on the CPU or a GPU
        device = residual.device.type
        ctx.autocast = torch.is_autocast_enabled(device), torch.get_autocast_dtype(device)
        # these rows are final: later writers only fill rows after them, so reading them again
        # in backward is safe
        values = store.values[ctx.rows].reshape(n, -1)
        ctx.shared = residual.dim() < store.values.dim()        # one residual for every reader
        # the gates in the store's dtype: the cast autocast makes, and the one a bf16 model needs
        return torch.addmm(residual.reshape(1 if ctx.shared else R, -1), z.t().to(values.dtype),
                           values).view(R, *store.values.shape[1:])

    @staticmethod
    def backward(ctx, grad):
        enabled, dtype = ctx.autocast
        with torch.autocast(grad.device.type, dtype=dtype, enabled=enabled):
            return _Mix._backward(ctx, grad)

    @staticmethod
    def _backward(ctx, grad):
        z, = ctx.saved_tensors
        store, n = ctx.store, z.shape[0]
        g = grad.reshape(grad.shape[0], -1)                    # [R, B*T*D]
        values = store.values[ctx.rows].reshape(n, -1)
        # [n, R], in the layout that is faster on a CPU for the dtype (the same numbers either way)
        grad_z = (g @ values.t()).t() if values.dtype == torch.float32 else values @ g.t()
        z = z.to(g.dtype)                                      # as in the forward
        # d(input r)/d(difference w) = z[w, r]; the first backward (the out reader's, which reads
        # every stored writer) writes the gradient buffer instead of zero-filling and adding to it
        if store.grads is None and n == store.values.shape[0]:
            store.grads = torch.mm(z, g).view(store.values.shape)
        else:
            if store.grads is None:
                store.grads = torch.zeros_like(store.values)
            store.grads[ctx.rows].view(n, -1).add_(torch.mm(z, g))
        grad_residual = None
        if ctx.needs_input_grad[1]:
            grad_residual = grad.sum(0) if ctx.shared else grad
        ctx.store = None   # as in _Store.backward
        # the token only orders the backward (see _Store)
        return grad_z, grad_residual, None, None, None


class _RMSNorm(torch.autograd.Function):
    """A Llama-family RMSNorm (``LlamaRMSNorm``, ``MistralRMSNorm`` and ``Qwen2RMSNorm`` share the
    formula), giving the module's numbers bit for bit, forward and backward.

    Why: autograd's backward of the module's ops makes 12 new tensors of the input's size (it
    divides the mean's gradient expanded over D, copies ``h.pow(1)`` and doubles it, and adds the
    two gradients of ``h`` into a new one); written out, with the same roundings in the same
    places, it makes 8 and adds in place."""

    @staticmethod
    def forward(ctx, x, weight, eps):
        h = x.to(torch.float32)
        r = torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
        y = weight * (h * r).to(x.dtype)
        # x, not h: a bf16 input is kept in half the memory (h is recomputed from it exactly)
        ctx.save_for_backward(x, r, weight)
        ctx.dtypes = x.dtype, y.dtype
        return y

    @staticmethod
    def backward(ctx, grad):
        x, r, weight = ctx.saved_tensors
        h = x.to(torch.float32)
        x_dtype, y_dtype = ctx.dtypes
        g = grad.to(y_dtype) * weight                            # d y / d normed
        g = g.to(x_dtype).to(torch.float32)                      # back through both casts of normed
        grad_r = (g * h).sum(-1, keepdim=True)
        # mean's backward divides the gradient expanded over D by D, pow's multiplies by 2 h: the
        # same numbers as (2 (gradient / D)) h, one rounding of the same product (doubling is exact)
        grad_mean = (-0.5 * grad_r * r.pow(3)) / h.shape[-1] * 2.0
        grad_h = g * r
        grad_h += grad_mean * h
        return grad_h.to(x_dtype), None, None


def _reader_norm(norm, x):
    """``norm(x)`` (a Llama-family RMSNorm module) as the module computes it."""
    return _RMSNorm.apply(x, norm.weight, norm.variance_epsilon)


class _NormedProj(torch.autograd.Function):
    """A reader's RMSNorm and its head's projection in one: ``W (w * x * r(x)) = ((W w) x) r(x)``
    with ``r(x) = 1 / sqrt(mean(x^2) + eps)`` per position. ``x`` [n, M, D] (n readers),
    ``w_folded`` [n, hd, D]: each reader's rows of the projection times the norm's weight;
    returns [n, M, hd]: the product (in autocast's dtype under autocast) times r (float32, or x's
    dtype when wider), in x's dtype, or in float32 for a float32 x under autocast.

    Why: the q/k/v readers' inputs are the step's largest activations, a copy of the residual
    stream a reader. The module's norm makes float32 copies of them, normalises, casts and scales
    (seven passes over each, more in the backward); here the forward reads each once for r and
    once in the product, and the backward adds r's term to the product's gradient in place. The
    same function in other roundings: under autocast the product is in its dtype, as the
    module's output would be; r is float32, and r's gradient term is computed in the output's
    dtype (bf16 in a gated step under autocast, whose reader inputs are bf16)."""

    @staticmethod
    def forward(ctx, x, w_folded, eps):
        device = x.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
        wide = torch.promote_types(x.dtype, torch.float32)
        rms_sq = torch.linalg.vector_norm(x, dim=-1, keepdim=True, dtype=wide).square_().div_(x.shape[-1])
        r = rms_sq.add_(eps).rsqrt_()
        w = w_folded.to(dtype)
        projected = torch.bmm(x.to(dtype), w.transpose(1, 2))
        ctx.save_for_backward(x, w, r, projected)
        out = projected * r
        return out if dtype != x.dtype else out.to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        x, w, r, projected = ctx.saved_tensors
        grad_r = (grad * projected).sum(-1, keepdim=True)
        grad_x = torch.bmm((grad * r).to(w.dtype), w).to(x.dtype)
        # d r / d x = -r^3 x / D
        return grad_x.addcmul_(x, grad_r.mul_(r.pow(3)).div_(-x.shape[-1])), None, None


def forward(model, graph, input_ids, gates=None, other=None, positions=None, live=None):
    """Run ``model`` on ``input_ids`` [B, T] through the edge graph.

    ``gates`` None: the unmasked model (every reader reads the plain residual stream).
    ``gates`` [E] (values in [0, 1], may require grad): reader inputs mix this run's writer outputs
    with ``other`` [n_writers, B, T, D], the writer outputs of an unmasked run on the other input.
    ``live``: a LiveNodes (see live_nodes): a gated run computes only those writers and reads
    only the gates of edges between them; None: every writer.
    ``positions`` [B]: return logits only at these positions ([B, V]); None: all ([B, T, V]).

    Returns ``(logits, writer_outputs)``: writer_outputs [n_writers, B, T, D] in ``graph.writers``
    order for an unmasked run (the ``other`` of a later gated run), None for a gated run.

    A gated reader's input is written as the other run's residual stream plus the gated
    differences, ``sum_w h_w(x~) + sum_w z_wr * (h_w(x) - h_w(x~))``: the first sum is a running
    sum of ``other``, the differences of the live writers live in a _DiffStore. The readers of
    MIX_GROUP layers at a time take their sums over the rows stored before the first of them
    from one product (a _MixGroup), and each later layer of the group adds the rows stored since.
    """
    check_supported(model)
    base, config = model.model, model.config
    B, T = input_ids.shape
    _check_window(config, T)
    if gates is not None and (other is None or other.shape[:3] != (len(graph.writers), B, T)):
        raise ValueError("gated forward needs `other` writer outputs of shape [n_writers, B, T, D]")
    if gates is None or live is None:
        live = _every_node(graph)
    H = graph.n_heads

    embed = base.embed_tokens(input_ids)
    if gates is None:
        residual, outputs = embed, [embed.unsqueeze(0)]
    else:
        # under autocast the differences are stored in its dtype: every product that reads them
        # would cast them to it anyway (the same numbers), and casting once here saves a cast of
        # every row a reader group reads, forward and backward, and half the buffer
        device = input_ids.device.type
        store = _DiffStore(live.n_live, other, torch.get_autocast_dtype(device)
                           if torch.is_autocast_enabled(device) else other.dtype)
        residual = other[0]                   # sum of the other run's writers so far
        z = gates[live.gate_order].split([a * b for a, b in live.gate_shapes])
        blocks = [block.view(shape) for block, shape in zip(z, live.gate_shapes)]
        token = store.add(0, embed.unsqueeze(0), other[:1])
        stored = 1                            # rows of the store filled so far
    group = None                              # a _MixGroup under way

    def add_writers(block, writers=None, out=None):
        # out [n, B, T, D]: this run's outputs of the live writers ``writers`` of a block of
        # writers (a slice), None when none of them is live; updates the residual stream and
        # returns what the block added to it (this run's writers ungated, the other run's gated)
        nonlocal residual, stored, token
        if gates is None:
            outputs.append(out)
            added = out.sum(0)
        else:
            if out is not None:
                token = store.add(stored, out, other[writers], token)
                stored += out.shape[0]
            added = other[block].sum(0)
            if group is not None and group.partial:
                group.delta = group.delta + added
        residual = residual + added
        return added

    def upstream_inputs(l):
        # [R, B, T, D]: the inputs of layer l's q/k/v readers and, last, its MLP reader (when
        # live) over the writers upstream of the layer
        nonlocal group
        plan = live.layers[l]
        if gates is None:
            return residual.unsqueeze(0).expand(plan["attn_gates"].shape[1], *residual.shape)
        z = blocks[plan["attn_block"]]
        if group is not None and l in group.partial:
            # rows 0 .. group.rows - 1 were read when the group began; the rows stored since
            return store.mix(z[group.rows:], group.partial.pop(l) + group.delta, token, first=group.rows)
        later = [m for m in live.computed if m > l][:MIX_GROUP - 1]
        z_later = [blocks[live.layers[m]["attn_block"]][:stored] for m in later]
        sums = store.mix(torch.cat([z, *z_later], 1), residual, token)
        sums = sums.split([z.shape[1]] + [b.shape[1] for b in z_later])
        group = _MixGroup(stored, dict(zip(later, sums[1:])))
        # a copy: the readers keep their input for the backward, and a view would keep the later
        # layers' sums (the rest of the product's output) alive with it
        return sums[0].clone()

    position_ids = torch.arange(T, device=input_ids.device).unsqueeze(0).expand(B, T)
    cos, sin = base.rotary_emb(embed, position_ids)          # the model's own RoPE, [B, T, hd]
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    future = torch.ones(T, T, dtype=torch.bool, device=input_ids.device).triu(1)

    for l, layer in enumerate(base.layers):
        attn, plan = layer.self_attn, live.layers[l]
        hd = attn.head_dim
        first = 1 + l * (H + 1)
        heads, groups = plan["heads"], plan["groups"]
        nh, ng = len(heads), len(groups)

        # q/k/v readers of the layer's live heads, batched: normalise each reader's input,
        # project with that head's rows of q_proj / k_proj / v_proj.
        # The MLP reader's input over the same upstream writers comes out of the same product
        # (one pass over the stored differences per layer, not two); its own layer's heads are
        # added below. Split, not sliced: a slice's backward writes a zero-filled copy of x.
        if not (nh or plan["mlp"]):                          # nothing of this layer is computed
            add_writers(slice(first, first + H + 1))
            continue
        x = upstream_inputs(l)
        x_attn, mlp_upstream = x.split([nh + 2 * ng, x.shape[0] - nh - 2 * ng])
        if nh:
            # every q/k/v reader normalised and projected with its head's rows
            q, k, v = _head_proj(attn, layer.input_layernorm, x_attn, heads, groups, hd)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            k, v = k[:, plan["kv_of_head"]], v[:, plan["kv_of_head"]]   # query head h uses kv head h // (H/G)
            scores = torch.matmul(q, k.transpose(2, 3)) * attn.scaling
            scores = scores.masked_fill(future, torch.finfo(scores.dtype).min)
            probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
            result = torch.matmul(probs, v)                      # [B, nh, T, hd]

            # Writers a{l}.h{h}: head h's result times its columns of o_proj.
            w_o = attn.o_proj.weight.view(-1, H, hd)             # [D, H, hd]
            w_o = w_o if nh == H else w_o[:, heads]
            out = torch.einsum("bhte,dhe->hbtd", result, w_o)
            if attn.o_proj.bias is not None:
                out = out + attn.o_proj.bias / H
            other_heads = add_writers(slice(first, first + H), plan["head_writers"], out)
        else:
            other_heads = add_writers(slice(first, first + H))

        # Reader m{l} (sees this layer's heads too) and writer m{l}.
        if not plan["mlp"]:
            add_writers(slice(first + H, first + H + 1))
            continue
        if gates is None:
            x = residual
        elif nh:
            x = store.mix(blocks[plan["mlp_head_block"]], mlp_upstream[0] + other_heads,
                          token, first=stored - nh)[0]
        else:
            x = mlp_upstream[0] + other_heads
        mlp = layer.mlp(_reader_norm(layer.post_attention_layernorm, x))
        add_writers(slice(first + H, first + H + 1), slice(first + H, first + H + 1), mlp.unsqueeze(0))

    x = residual if gates is None else store.mix(blocks[-1], residual, token)[0]
    if positions is not None:
        x = x[torch.arange(B, device=x.device), positions]    # the norm is per position
    logits = model.lm_head(base.norm(x))
    return logits, (torch.cat(outputs, 0) if gates is None else None)


class LowPrecisionWeights:
    """Copies of a model's Linear weights (``o_proj``, the MLP projections, ``lm_head``) in an
    autocast dtype, made once, and a context that puts them in the model's place for a gated step.

    Autocast casts a frozen weight again at every use (it caches only the casts of leaf tensors
    that require grad), and keeps each cast for the backward: a step's products see the same
    numbers either way, so the copies only save the casts. Norms and the embedding keep their
    float32 weights, as under autocast; a tied ``lm_head`` gets its own copy while the embedding
    keeps the float32 one. ``q_proj``, ``k_proj`` and ``v_proj`` keep their weights too: a gated
    run multiplies their rows by the layer's input norm weight and then casts the product
    (_head_proj), so their copies are that product, cast once (``folded_weight`` on the module
    inside the context). ``dtype`` None: only that product, in the model's dtype, the same
    numbers as the gated run's own; made once, not at every step, and kept once: the backward
    keeps whichever the step used (a copy of the q/k/v matrices, 1.5 GiB for a bf16 7B model)."""

    def __init__(self, model, dtype):
        self.folded = [(getattr(layer.self_attn, name), layer.input_layernorm)
                       for layer in model.model.layers for name in ("q_proj", "k_proj", "v_proj")]
        skip = {id(m) for m, _ in self.folded}
        self.linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and id(m) not in skip]
        self.copies = None if dtype is None else [
            torch.nn.Parameter(m.weight.detach().to(dtype), requires_grad=False) for m in self.linears]
        self.folded_copies = []
        for m, norm in self.folded:
            folded = _folded_rows(m, norm).detach()
            self.folded_copies.append(folded if dtype is None else folded.to(dtype))

    @contextmanager
    def in_place(self):
        originals = [m.weight for m in self.linears]
        try:
            for m, w in zip(self.linears, self.copies or []):
                m.weight = w
            for (m, _), w in zip(self.folded, self.folded_copies):
                m.folded_weight = w
            yield
        finally:
            if self.copies is not None:
                for m, w in zip(self.linears, originals):
                    m.weight = w
            for m, _ in self.folded:
                m.__dict__.pop("folded_weight", None)


# Layers whose readers' sums over the rows stored before the first of them come out of one
# product: each stored row is read once for three layers' readers instead of once a layer (the
# later layers then read only the rows stored since). A step on SmolLM2 is 5-7% faster than
# with one layer a product; two or four layers a product are no faster than three.
MIX_GROUP = 3


@dataclass
class _MixGroup:
    """Layers that share one product of a gated run: ``rows``, the stored rows it read;
    ``partial``, the later layers' reader inputs over those rows ({layer: [R, B, T, D]}, the
    other run's stream as it was at the group's first layer included); ``delta``, what the other
    run's writers have added to the stream since then."""

    rows: int
    partial: dict
    delta: object = 0


def _every_node(graph):
    # built once per graph: the plan of a run that computes every writer
    if getattr(graph, "_every_node", None) is None:
        graph._every_node = live_nodes(graph)
    return graph._every_node


def _folded_rows(linear, norm):
    """A q/k/v projection's weight times its reader's norm weight (one product for the gated run
    and LowPrecisionWeights' copies alike, so both give the same numbers)."""
    return linear.weight * norm.weight


def _head_proj(attn, norm, x, heads, groups, hd):
    """The q/k/v readers' norms and projections: ``x`` [nh + 2 ng, B, T, D] holds the inputs of
    the q readers of ``heads`` and the k and v readers of ``groups``; each is normalised by
    ``norm`` (the layer's input_layernorm) and goes through its head's rows of q_proj / k_proj /
    v_proj -> q [B, nh, T, hd], k and v [B, ng, T, hd]."""
    outs = []
    for linear, which, x_ in zip((attn.q_proj, attn.k_proj, attn.v_proj), (heads, groups, groups),
                                 x.split([len(heads), len(groups), len(groups)])):
        n, B, T, D = x_.shape
        # the rows times the norm's weight (made once inside LowPrecisionWeights.in_place)
        folded = linear.__dict__.get("folded_weight")
        w = (_folded_rows(linear, norm) if folded is None else folded).view(-1, hd, D)
        w = w if len(which) == w.shape[0] else w[which]
        out = _NormedProj.apply(x_.reshape(n, B * T, D), w, norm.variance_epsilon)
        out = out.view(n, B, T, hd).transpose(0, 1)
        if linear.bias is not None:
            out = out + linear.bias.view(-1, hd)[which].view(1, -1, 1, hd)
        outs.append(out)
    return outs
