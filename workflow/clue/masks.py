"""Forget and conflict masks (paper section 4, DESIGN section 6).

A neuron owns whole rows or columns of the Llama-family weight matrices, so a mask is stored as
*axis masks*: for every touched weight, a uint8 vector over its rows (output dimension) or its
columns (input dimension); unstructured localizers store a ``dense`` tensor of the weight's shape.
A weight element belongs to a category's mask when its row, its column or its dense entry is set
(docs/formats.md, "masks"). A 7B model's CLUE masks are then kilobytes; :func:`load_masks`
materialises dense boolean masks at training time and validates them against the model.

Neuron -> parameter slices (Llama naming):

- ``a{L}.h{H}``: rows ``H*head_dim:(H+1)*head_dim`` of ``q_proj`` (and its bias, when the model
  has one, as Qwen2 does), the same columns of ``o_proj``, and rows ``G*head_dim:(G+1)*head_dim``
  of ``k_proj`` and ``v_proj`` (and their biases) for its key/value head
  ``G = H // (num_attention_heads // num_key_value_heads)``. Under grouped-query attention a key/
  value head is read by every query head of its group, so in CLUE's masks (forget and conflict
  categories) its rows go to the forget mask only when every query head of the group is a forget
  neuron; a group that mixes categories gives them to the conflict mask (trained in stage 2, with
  the retain loss), so stage 1 never edits what a conflict or retain head reads and the two masks
  are disjoint. Other mask files select a key/value head when any query head of its group is.
- ``m{L}``: every row of ``gate_proj`` and ``up_proj``, every column of ``down_proj``.
"""

import re
import sys
from pathlib import Path

from clue.errors import ClueError
from clue.io import atomic_path, read_json

FORMAT = "clue-axis-mask/1"
CATEGORIES = ("forget", "conflict")  # the categories the CLUE localizer writes, in stage order
AXES = ("rows", "cols", "dense")

# The seven attention and MLP weight matrices of a layer: the space masks live in and the
# denominator of "unlearned parameter %" (paper footnote 4: 7 matrices x 32 layers for Zephyr).
_PROJ_RE = re.compile(r"(?:^|\.)layers\.(\d+)\.(?:self_attn|mlp)\.(q|k|v|o|gate|up|down)_proj\.(weight|bias)$")
_HEAD_RE = re.compile(r"^a(\d+)\.h(\d+)$")
_MLP_RE = re.compile(r"^m(\d+)$")


# --------------------------------------------------------------------------- model structure

def projection_params(named_shapes):
    """Map ``(layer, proj, kind)`` -> parameter name, for proj in q,k,v,o,gate,up,down and kind in
    weight, bias. ``named_shapes``: iterable of parameter names (or (name, shape) pairs)."""
    out = {}
    for item in named_shapes:
        name = item[0] if isinstance(item, tuple) else item
        m = _PROJ_RE.search(name)
        if m:
            out[(int(m.group(1)), m.group(2), m.group(3))] = name
    return out


def matrix_names(model_or_names):
    """Names of the attention and MLP weight matrices (q,k,v,o,gate,up,down of every layer), in
    layer order: the matrices that "unlearned parameter %" averages over."""
    names = model_or_names
    if hasattr(model_or_names, "named_parameters"):
        names = [n for n, _ in model_or_names.named_parameters()]
    order = {p: i for i, p in enumerate("q k v o gate up down".split())}
    found = [(k, n) for k, n in projection_params(names).items() if k[2] == "weight"]
    return [n for (layer, proj, _), n in sorted(found, key=lambda kv: (kv[0][0], order[kv[0][1]]))]


def attention_geometry(config):
    """(num_layers, num_heads, num_kv_heads, head_dim) of a Llama-family config."""
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    if heads % kv_heads:
        raise ClueError(f"num_attention_heads={heads} is not a multiple of num_key_value_heads={kv_heads}")
    return config.num_hidden_layers, heads, kv_heads, head_dim


def kv_head(head, heads, kv_heads):
    """The key/value head that query head ``head`` reads (grouped-query attention)."""
    return head // (heads // kv_heads)


def neuron_slices(neuron, config, shapes):
    """The parameter slices one neuron owns: a list of ``(param_name, axis, start, stop)``.

    ``shapes`` maps parameter name -> shape (from the model); it supplies the naming prefix and
    whether q/k/v carry biases."""
    layers, heads, kv_heads, head_dim = attention_geometry(config)
    params = projection_params(shapes)

    def name(layer, proj, kind="weight"):
        key = (layer, proj, kind)
        if key not in params:
            if kind == "bias":
                return None
            raise ClueError(f"neuron {neuron}: the model has no parameter for layers.{layer} {proj}_proj.{kind}")
        return params[key]

    m = _HEAD_RE.match(neuron)
    if m:
        layer, head = int(m.group(1)), int(m.group(2))
        if layer >= layers or head >= heads:
            raise ClueError(f"neuron {neuron}: the model has {layers} layers of {heads} attention heads")
        g = kv_head(head, heads, kv_heads)
        q, kv = (head * head_dim, (head + 1) * head_dim), (g * head_dim, (g + 1) * head_dim)
        out = [(name(layer, "q"), "rows", *q), (name(layer, "o"), "cols", *q),
               (name(layer, "k"), "rows", *kv), (name(layer, "v"), "rows", *kv)]
        for proj, span in (("q", q), ("k", kv), ("v", kv)):
            bias = name(layer, proj, "bias")
            if bias is not None:
                out.append((bias, "rows", *span))
        return out
    m = _MLP_RE.match(neuron)
    if m:
        layer = int(m.group(1))
        if layer >= layers:
            raise ClueError(f"neuron {neuron}: the model has {layers} layers")
        rows = shapes[name(layer, "gate")][0]
        return [(name(layer, "gate"), "rows", 0, rows), (name(layer, "up"), "rows", 0, rows),
                (name(layer, "down"), "cols", 0, shapes[name(layer, "down")][1])]
    raise ClueError(f"neuron {neuron!r}: not a neuron name (expected a{{L}}.h{{H}} or m{{L}})")


def _axis_len(shape, axis):
    return shape[0] if axis == "rows" else shape[1]


def kv_categories(neurons_by_category, config):
    """{(layer, key/value head): category} for CLUE's categories (forget, conflict): forget when
    every query head of the group is a forget neuron, else conflict when any is a forget or a
    conflict neuron (module docstring)."""
    _, heads, kv_heads, _ = attention_geometry(config)
    per_group = heads // kv_heads
    forget = set(neurons_by_category.get("forget", []))
    out = {}
    for category in ("forget", "conflict"):
        for neuron in neurons_by_category.get(category, []):
            m = _HEAD_RE.match(neuron)
            if m:
                layer, g = int(m.group(1)), kv_head(int(m.group(2)), heads, kv_heads)
                whole = all(f"a{layer}.h{g * per_group + k}" in forget for k in range(per_group))
                out[(layer, g)] = "forget" if whole else "conflict"
    return out


def axis_masks_from_neurons(neurons_by_category, config, shapes):
    """``{category: [neuron, ...]}`` -> ``{category: {param: {axis: uint8 vector}}}``. With CLUE's
    categories (forget and conflict), a key/value head's rows go where :func:`kv_categories` says."""
    import torch

    clue_layout = {"forget", "conflict"} <= set(neurons_by_category)
    kv_owner = kv_categories(neurons_by_category, config) if clue_layout else {}
    _, heads, kv_heads, _ = attention_geometry(config)
    kv_params = {n for (_, proj, _), n in projection_params(shapes).items() if proj in ("k", "v")}
    out = {category: {} for category in neurons_by_category}
    for category, neurons in neurons_by_category.items():
        for neuron in neurons:
            head = _HEAD_RE.match(neuron)
            for param, axis, start, stop in neuron_slices(neuron, config, shapes):
                owner = category
                if head and clue_layout and param in kv_params:
                    owner = kv_owner[(int(head.group(1)), kv_head(int(head.group(2)), heads, kv_heads))]
                vec = out[owner].setdefault(param, {}).get(axis)
                if vec is None:
                    vec = out[owner][param][axis] = torch.zeros(_axis_len(shapes[param], axis), dtype=torch.uint8)
                vec[start:stop] = 1
    return out


# --------------------------------------------------------------------------- file format

def write_masks(path, masks, *, model, localizer, categories=None, extra_metadata=None):
    """Write axis masks ``{category: {param: {axis: tensor}}}`` as safetensors (docs/formats.md).

    ``axis`` is ``rows``, ``cols`` or ``dense``; values are stored as uint8 0/1. Every category in
    ``categories`` (default: the dict's keys) is listed in the metadata, even when it is empty.
    ``extra_metadata``: further string metadata (e.g. a baseline localizer's ``ratio``); it cannot
    override the format keys."""
    import torch
    from safetensors.torch import save_file

    categories = list(categories if categories is not None else masks)
    tensors = {}
    for category, params in masks.items():
        if category not in categories or "/" in category or "," in category:
            raise ClueError(f"mask category {category!r} is not a listed category name")
        for param, axes in params.items():
            for axis, vec in axes.items():
                if axis not in AXES:
                    raise ClueError(f"{category}/{param}: unknown mask axis {axis!r} (expected one of {AXES})")
                tensors[f"{category}/{param}/{axis}"] = (vec != 0).to(torch.uint8).contiguous()
    metadata = {"format": FORMAT, "model": str(model), "localizer": str(localizer),
                "categories": ",".join(categories)}
    for key, value in (extra_metadata or {}).items():
        if key in metadata:
            raise ClueError(f"mask metadata key {key!r} is reserved")
        metadata[str(key)] = str(value)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
        _sort_metadata(tmp)


def _sort_metadata(path):
    """safetensors writes the metadata map in hash order, which differs from one write to the
    next; rewrite the header with the keys sorted so that equal masks give byte-identical files.
    The header only changes order, so it keeps its length and the tensor data stays in place."""
    import json
    import struct

    with open(path, "r+b") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))  # dicts keep the tensor order
        header["__metadata__"] = dict(sorted(header.get("__metadata__", {}).items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) > n:
            raise ClueError(f"{path}: the sorted safetensors header is longer than the original")
        f.seek(8)
        f.write(text + b" " * (n - len(text)))


def dense_to_axis_masks(dense):
    """``{category: {param: bool tensor}}`` -> axis-mask dict using the ``dense`` axis (for
    unstructured localizers); parameters whose mask is all zero are left out."""
    return {cat: {p: {"dense": m} for p, m in params.items() if bool(m.any())} for cat, params in dense.items()}


def _read_tensors(path, framework):
    """``(metadata, {key: tensor})`` of a mask file in ``framework`` ("pt", or "numpy" where torch
    is not imported); ClueError naming the file when it is missing, unreadable or of another format."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise ClueError(f"{path}: mask file not found")
    try:
        with safe_open(str(path), framework=framework) as f:
            metadata = f.metadata() or {}
            raw = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise ClueError(f"{path}: not a readable safetensors file ({e})") from None
    if metadata.get("format") != FORMAT:
        raise ClueError(f"{path}: metadata format is {metadata.get('format')!r}, expected {FORMAT!r}")
    return metadata, raw


def read_masks(path):
    """Raw contents of a mask file: ``(metadata, {category: {param: {axis: uint8 tensor}}})``."""
    metadata, raw = _read_tensors(path, "pt")
    categories = [c for c in metadata.get("categories", "").split(",") if c]
    masks = {c: {} for c in categories}
    for key, vec in raw.items():
        category, _, rest = key.partition("/")
        param, _, axis = rest.rpartition("/")
        if category not in masks or not param or axis not in AXES:
            raise ClueError(f"{path}: tensor {key!r} is not named category/parameter/axis with a category "
                            f"from the metadata ({','.join(categories)}) and an axis in {AXES}")
        masks[category].setdefault(param, {})[axis] = vec
    return metadata, masks


def load_masks(path, model, device=None):
    """Materialise dense boolean masks ``{category: {param_name: bool tensor}}`` for ``model``.

    Fails naming the parameter when the file names a parameter the model lacks or an axis vector
    whose length (or a dense mask whose shape) does not match the model's weight."""
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    return {category: dict(params) for category, params in iter_dense_masks(path, shapes, device)}


def iter_dense_masks(path, shapes, device=None):
    """``(category, [(param, dense bool mask), ...])`` for each category of a mask file, each
    parameter's mask materialised when the list is walked (a 7B model's masks, one at a time)."""
    _, masks = read_masks(path)
    for category, params in masks.items():
        yield category, ((param, _dense(path, category, param, axes, shapes, device)) for param, axes in params.items())


def _dense(path, category, param, axes, shapes, device):
    import torch

    if param not in shapes:
        raise ClueError(f"{path}: mask {category}/{param}: the model has no parameter {param!r} "
                        f"(is this mask file from another model?)")
    shape = shapes[param]
    dense = torch.zeros(shape, dtype=torch.bool, device=device)
    for axis, vec in axes.items():
        vec = vec.to(device=device) != 0
        if axis == "dense":
            if tuple(vec.shape) != shape:
                raise ClueError(f"{path}: mask {category}/{param}/dense has shape {tuple(vec.shape)}, "
                                f"but parameter {param} has shape {shape}")
            dense |= vec
            continue
        if axis == "cols" and len(shape) < 2:
            raise ClueError(f"{path}: mask {category}/{param}/cols: parameter {param} is a vector")
        want = _axis_len(shape, axis)
        if vec.dim() != 1 or vec.shape[0] != want:
            raise ClueError(f"{path}: mask {category}/{param}/{axis} has shape {tuple(vec.shape)}, "
                            f"but parameter {param} has {want} {axis} (shape {shape})")
        if axis == "rows":
            dense |= vec.view(-1, *([1] * (len(shape) - 1)))
        else:
            dense |= vec.view(1, -1)
    return dense


def union_masks(masks, categories=None):
    """Element-wise union over categories: ``{param: bool tensor}``."""
    out = {}
    for category, params in masks.items():
        if categories is not None and category not in categories:
            continue
        for param, m in params.items():
            out[param] = out[param] | m if param in out else m.clone()
    return out


# --------------------------------------------------------------------------- percentages

def _pct(fractions):
    return 100.0 * sum(fractions) / len(fractions) if fractions else 0.0


def mask_param_pct(masks, model):
    """Percent of parameters the union of ``masks`` covers, averaged over the attention and MLP
    weight matrices like :func:`unlearned_param_pct` (a matrix the masks do not touch counts 0).
    ``model`` supplies the full list of matrices (the denominator)."""
    union = union_masks(masks)
    params = dict(model.named_parameters())
    fracs = []
    for name in matrix_names(model):
        m = union.get(name)
        fracs.append(0.0 if m is None else m.sum().item() / params[name].numel())
    return _pct(fracs)


def _axis_pct(axis_masks, shapes):
    """mask_param_pct computed from row/column axis masks without materialising them (for the CLI
    summary on a weightless model): |rows x all| + |all x cols| - |rows x cols| per matrix."""
    fracs = []
    for name in matrix_names(list(shapes)):
        axes = axis_masks.get(name, {})
        n_rows, n_cols = shapes[name]
        r = int(axes["rows"].sum()) if "rows" in axes else 0
        c = int(axes["cols"].sum()) if "cols" in axes else 0
        fracs.append((r * n_cols + c * n_rows - r * c) / (n_rows * n_cols))
    return _pct(fracs)


def _changed_fraction(a, b):
    """Fraction of elements whose value changed (a value rewritten to itself is unchanged). Two
    dtypes are compared in the coarser one, so a checkpoint saved in bf16 from an fp32 base counts
    only the elements that training moved, not every rounding; a different shape is fully changed."""
    import torch

    if a.shape != b.shape:
        return 1.0
    if a.dtype != b.dtype:
        if not (a.is_floating_point() and b.is_floating_point()):
            return 1.0
        coarse = max(a.dtype, b.dtype, key=lambda t: torch.finfo(t).eps)
        a, b = a.to(coarse), b.to(coarse)
    if a.is_floating_point():
        int_dtype = {2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
        a, b = a.view(int_dtype), b.view(int_dtype)
    return (a != b).sum().item() / a.numel()


def unlearned_param_pct(base_model, model):
    """Table 1's "unlearned parameter %": the mean over the attention and MLP weight matrices
    (q,k,v,o,gate,up,down of every layer) of the percentage of elements that changed."""
    base = dict(base_model.named_parameters())
    cur = dict(model.named_parameters())
    return _pct([_changed_fraction(base[n].detach().cpu(), cur[n].detach().cpu()) for n in matrix_names(model)])


def resolve_base(model_dir):
    """Where ``from_pretrained`` finds a checkpoint: the directory itself, or, for a base directory
    of a pretrained model (``clue_base.json`` with ``pretrained``), the recorded HF id or path."""
    meta = Path(model_dir) / "clue_base.json"
    if meta.exists():
        pretrained = read_json(meta).get("pretrained")
        if pretrained:
            return str(pretrained)
    return str(model_dir)


def _local_checkpoint(model_dir):
    """A local directory holding the safetensors of ``model_dir`` (resolving an HF id through the
    local hub cache, which works offline once the model was downloaded)."""
    source = resolve_base(model_dir)
    if Path(source).is_dir():
        return Path(source)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, allow_patterns=["*.safetensors", "*.json"]))
    except Exception as e:  # hub errors come in many types; the message says what went wrong
        raise ClueError(f"{model_dir}: cannot find the checkpoint {source} ({e})") from None


def _checkpoint_index(model_dir):
    """parameter name -> safetensors file of a save_pretrained directory (sharded or not)."""
    from safetensors import safe_open

    model_dir = _local_checkpoint(model_dir)
    index = model_dir / "model.safetensors.index.json"
    if index.exists():
        return {k: model_dir / v for k, v in read_json(index)["weight_map"].items()}
    single = model_dir / "model.safetensors"
    if not single.exists():
        raise ClueError(f"{model_dir}: no model.safetensors or model.safetensors.index.json")
    with safe_open(str(single), framework="pt") as f:
        return {k: single for k in f.keys()}


def unlearned_param_pct_dirs(base_dir, model_dir):
    """:func:`unlearned_param_pct` between two save_pretrained checkpoint directories, reading one
    matrix at a time so it works for 7B checkpoints without loading either model."""
    from safetensors import safe_open

    base, cur = _checkpoint_index(base_dir), _checkpoint_index(model_dir)
    fracs = []
    for name in matrix_names(list(base)):
        if name not in cur:
            raise ClueError(f"{model_dir}: checkpoint lacks parameter {name} of the base model {base_dir}")
        with safe_open(str(base[name]), framework="pt") as fa, safe_open(str(cur[name]), framework="pt") as fb:
            fracs.append(_changed_fraction(fa.get_tensor(name), fb.get_tensor(name)))
    if not fracs:
        raise ClueError(f"{base_dir}: no attention/MLP weight matrices found (not a Llama-family checkpoint?)")
    return _pct(fracs)


# --------------------------------------------------------------------------- CLI

def checkpoint_geometry(model_dir):
    """(config, {parameter: shape}) of a checkpoint, read from its config.json and safetensors
    headers: no weights are loaded and transformers is not imported (its import alone takes
    longer than building a toy model's masks)."""
    from types import SimpleNamespace

    from safetensors import safe_open

    config_path = _local_checkpoint(model_dir) / "config.json"
    raw = read_json(config_path)
    if not isinstance(raw, dict):
        raise ClueError(f"{config_path}: not a model config (expected a JSON object)")
    config = SimpleNamespace(**raw)
    missing = [k for k in ("num_hidden_layers", "num_attention_heads", "hidden_size") if not hasattr(config, k)]
    if missing:
        raise ClueError(f"{config_path}: not a Llama-family config (no {', '.join(missing)})")
    by_file = {}
    for name, file in _checkpoint_index(model_dir).items():
        by_file.setdefault(file, []).append(name)
    shapes = {}
    for file, names in by_file.items():
        with safe_open(str(file), framework="pt") as f:
            shapes.update((name, tuple(f.get_slice(name).get_shape())) for name in names)
    return config, shapes


def neurons_by_category(assign, categories=CATEGORIES, source="assignment"):
    """Neuron names per category from a solve assignment (docs/formats.md, "solve")."""
    neurons = assign.get("neurons")
    if not isinstance(neurons, dict):
        raise ClueError(f"{source}: missing the 'neurons' object")
    out = {c: [] for c in categories}
    for name, info in neurons.items():
        if not isinstance(info, dict) or "category" not in info:
            raise ClueError(f"{source}: neuron {name} has no category")
        if info["category"] in out:
            out[info["category"]].append(name)
    return out


def random_control(by_cat, config, seed, pair=""):
    """The random-mask control of CLUE's categories (Table 1's `random` row): in every layer the
    query heads are relabelled by a seeded random permutation that maps key/value groups onto
    key/value groups (the groups shuffled, then the heads inside each), so each head's category
    moves to a random head while every weight matrix keeps exactly CLUE's forget and conflict
    fractions: q and o as many heads as CLUE's, k and v as many groups of each make-up (GQA-exact
    rule), the MLP of each layer (one neuron, whole matrices) as CLUE's. Only which heads are
    trained differs. ``pair`` (forget__retain) enters the seed, so each pair draws its own heads."""
    import random

    layers, heads, kv_heads, _ = attention_geometry(config)
    per_group = heads // kv_heads
    rng = random.Random(f"random-mask-{pair}-{seed}")
    mapping = {}
    for layer in range(layers):
        groups = list(range(kv_heads))
        rng.shuffle(groups)
        for g, target in enumerate(groups):
            inside = list(range(per_group))
            rng.shuffle(inside)
            for i, j in enumerate(inside):
                mapping[f"a{layer}.h{g * per_group + i}"] = f"a{layer}.h{target * per_group + j}"
    return {c: [mapping.get(n, n) for n in names] for c, names in by_cat.items()}


def random_like(masks, seed, key=""):
    """The random-mask control of a localizer's mask (Table 1's `random-<localizer>`): in every
    matrix, each axis vector (rows, columns, or the dense entries) permuted by a seeded random
    permutation, so each matrix keeps exactly as many masked rows, columns and entries as the
    localizer chose (the union of rows and columns too: its size does not depend on where they
    are); only which ones differs. ``key`` (the pair) enters the seed with the category, the
    matrix and the axis."""
    import hashlib

    import torch

    out = {}
    for category, params in masks.items():
        out[category] = {}
        for param, axes in params.items():
            out[category][param] = {}
            for axis, vec in axes.items():
                digest = hashlib.sha256(f"random-like-{key}-{seed}-{category}-{param}-{axis}".encode()).digest()
                gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
                flat = vec.reshape(-1)
                out[category][param][axis] = flat[torch.randperm(flat.numel(), generator=gen)].reshape(vec.shape)
    return out


def control_overlap(clue, control):
    """How much of the random-mask control is CLUE's own mask: {category: fraction of the control's
    heads of that category that CLUE puts in the same category}, and ``trained``: of its forget and
    conflict heads together, those CLUE trains too (either category). Heads only: the control keeps
    CLUE's MLP neurons by construction. None where the control has no head of that kind."""
    def heads(names):
        return {n for n in names if n.startswith("a")}

    out = {}
    for c in ("forget", "conflict"):
        mine = heads(control.get(c, []))
        out[c] = len(mine & heads(clue.get(c, []))) / len(mine) if mine else None
    trained = heads(control.get("forget", [])) | heads(control.get("conflict", []))
    clue_trained = heads(clue.get("forget", [])) | heads(clue.get("conflict", []))
    out["trained"] = len(trained & clue_trained) / len(trained) if trained else None
    return out


def masked_entries(axis_masks):
    """How many rows, columns and dense entries one category's axis masks set (0: an empty mask)."""
    return int(sum(int((vec != 0).sum()) for axes in axis_masks.values() for vec in axes.values()))


def mask_sizes(path):
    """{category: masked_entries} of a mask file, read without torch (Table 1's warnings)."""
    metadata, raw = _read_tensors(path, "numpy")
    sizes = {c: 0 for c in metadata.get("categories", "").split(",") if c}
    for key, vec in raw.items():
        category = key.partition("/")[0]
        sizes[category] = sizes.get(category, 0) + int((vec != 0).sum())
    return sizes


def add_arguments(parser):
    parser.add_argument("--assign", help="solve assignment JSON (results/{model}/assign/...)")
    parser.add_argument("--like", help="instead of --assign: a localizer's mask file, whose random-mask control "
                        "(--localizer random, random_like) is written")
    parser.add_argument("--pair", default="", help="with --like: the forget__retain pair (it enters the seed)")
    parser.add_argument("--model-dir", help="base checkpoint directory (its config names the parameters); with "
                        "--assign")
    parser.add_argument("--localizer", default="clue", choices=["clue", "random"],
                        help="clue: the assignment's categories; random: the random-mask control of them "
                        "(random_control, with --seed)")
    parser.add_argument("--seed", type=int, help="the random-mask control's seed (--localizer random)")
    parser.add_argument("--model-name", required=True, help="model wildcard, stored in the metadata")
    parser.add_argument("--out", required=True, help="output .safetensors")


def main_like(args):
    """A localizer's random-mask control: its mask's entries moved at random inside each matrix."""
    if args.localizer != "random" or args.seed is None:
        raise ClueError("--like writes a random-mask control: give --localizer random and --seed")
    metadata, masks = read_masks(args.like)
    categories = [c for c in metadata.get("categories", "").split(",") if c]
    moved = random_like(masks, args.seed, args.pair)
    write_masks(args.out, moved, model=args.model_name, localizer="random", categories=categories,
                extra_metadata={"seed": args.seed, "pair": args.pair, "matched_to": args.like,
                                "matched_localizer": metadata.get("localizer", "")})
    sizes = ", ".join(f"{c} {masked_entries(moved.get(c, {}))}" for c in categories)
    print(f"clue masks: {metadata.get('localizer')}'s mask moved at random inside each matrix (seed {args.seed}; "
          f"masked rows, columns and entries by category: {sizes}, as in {args.like}) -> {args.out}", file=sys.stderr)
    return 0


def main(args):
    if args.like:
        if args.assign:
            raise ClueError("give --assign (CLUE's masks or their control) or --like (a localizer's control), not both")
        return main_like(args)
    if not args.assign or not args.model_dir:
        raise ClueError("give --assign (an assignment JSON) and --model-dir, or --like (a localizer's mask file)")
    assign = read_json(args.assign)
    by_cat = neurons_by_category(assign, source=args.assign)
    config, shapes = checkpoint_geometry(args.model_dir)
    extra = None
    if args.localizer == "random":
        if args.seed is None:
            raise ClueError("--localizer random draws its heads with a seed: give --seed")
        pair = f"{assign.get('forget')}__{assign.get('retain')}"
        clue_by_cat, by_cat = by_cat, random_control(by_cat, config, args.seed, pair)
        overlap = control_overlap(clue_by_cat, by_cat)
        extra = {"seed": args.seed, "pair": pair, "matched_to": args.assign,
                 **{f"overlap_{c}": "none" if v is None else f"{v:.4f}" for c, v in overlap.items()}}
        shown = ", ".join(f"{c} {'-' if v is None else f'{v:.0%}'}" for c, v in overlap.items())
        print(f"clue masks: the control's heads that CLUE also puts there: {shown} (its MLP neurons are "
              "CLUE's by construction)", file=sys.stderr)
    masks = axis_masks_from_neurons(by_cat, config, shapes)
    write_masks(args.out, masks, model=args.model_name, localizer=args.localizer, categories=CATEGORIES,
                extra_metadata=extra)
    counts = ", ".join(f"{len(by_cat[c])} {c}" for c in CATEGORIES)
    pct = ", ".join(f"{c} {_axis_pct(masks[c], shapes):.2f}%" for c in CATEGORIES)
    print(f"clue masks: {counts} neurons; mask covers {pct} of the attention/MLP weights -> {args.out}",
          file=sys.stderr)
    if args.localizer == "clue":   # the random control's sizes are CLUE's: warned about once, here
        from clue import caveats

        warning = caveats.empty_masks(f"{assign.get('forget')}__{assign.get('retain')}", assign.get("forget"),
                                      {c: masked_entries(masks[c]) for c in CATEGORIES})
        if warning:
            print(f"clue masks: warning: {warning}", file=sys.stderr)
    return 0
