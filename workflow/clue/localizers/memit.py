"""MEMIT (causal-tracing localization): the localization step of ROME/MEMIT (Meng et al. 2022,
2023), without MEMIT's closed-form weight update: the mask is trained by the same masked
fine-tuning as the other baselines.

Causal tracing is *denoising* patching of MLP outputs (paper appendix I). For a forget prompt and
its answer's first token:

- clean run: the forget prompt (pairs.jsonl ``clean``);
- corrupted run: the task's corrupted prompt (``corrupted``) when it has the clean prompt's token
  length, else the clean prompt with Gaussian noise of ``trace_noise`` embedding standard
  deviations added to every input embedding (ROME's corruption; the data marks no subject span);
- restored run of layer L: the corrupted run with layer L's MLP output replaced, at every position,
  by its clean-run value.

The indirect effect of layer L is ``P_restored_L(answer) - P_corrupted(answer)``, averaged over the
sampled prompts. Layers are taken whole (every MLP neuron: gate/up rows, down columns) in order of
decreasing indirect effect until ``floor(ratio * layers * intermediate)`` neurons are selected; the
remainder comes from the next layer, whose neurons are ranked by their attribution-patching
estimate of the same indirect effect, ``sum_t (a_clean - a_corrupted) * dP/da`` at the corrupted
run (one gradient instead of one run per neuron).
"""

from clue.localizers import (answer_logits, decoder_layers, mlp_activations, n_select, neuron_axis_masks,
                             prompt_batch, register_localizer)


def corrupted_embeddings(model, batch, noise_scale, generator):
    """Input embeddings of the corrupted run: the corrupted prompt's embeddings, plus noise on the
    rows marked ``noised``."""
    import torch

    emb = model.get_input_embeddings()
    with torch.no_grad():
        e = emb(batch["corrupted_ids"])
        sigma = emb.weight.float().std()
        noise = torch.randn(e.shape, generator=generator, dtype=torch.float32) * noise_scale * sigma
        noise = noise.to(e.device) * batch["noised"].to(e.device)[:, None, None]
        return e + noise.to(e.dtype)


def answer_prob(logits, batch):
    import torch

    probs = torch.softmax(answer_logits(logits, batch), dim=-1)
    return probs.gather(1, batch["answer"][:, None])[:, 0]


def trace(model, batch, embeds):
    """Causal tracing of one batch: ``{"clean": [B], "corrupted": [B], "restored": [layers, B]}``
    answer probabilities (float32)."""
    import torch

    layers = decoder_layers(model)
    clean_out = {}

    def capture(i):
        def hook(module, args, output):
            clean_out[i] = output.detach().clone()
        return hook

    handles = [layer.mlp.register_forward_hook(capture(i)) for i, layer in enumerate(layers)]
    with torch.no_grad():
        try:
            p_clean = answer_prob(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                                  batch)
        finally:
            for h in handles:
                h.remove()
        p_cor = answer_prob(model(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).logits, batch)
        restored = []
        for i, layer in enumerate(layers):
            h = layer.mlp.register_forward_hook(lambda module, args, output, i=i: clean_out[i])
            try:
                restored.append(answer_prob(model(inputs_embeds=embeds,
                                                  attention_mask=batch["attention_mask"]).logits, batch))
            finally:
                h.remove()
    return {"clean": p_clean, "corrupted": p_cor, "restored": torch.stack(restored)}


def neuron_effects(model, batch, embeds, layer):
    """Attribution-patching estimate of each MLP neuron's indirect effect in ``layer``: ``[B, I]``."""
    import torch

    down = decoder_layers(model)[layer].mlp.down_proj
    clean = mlp_activations(model, layer, batch)
    store = {}

    def leaf(module, args):
        x = args[0].detach().requires_grad_(True)
        store["corrupted"] = x
        return (x,) + tuple(args[1:])

    h = down.register_forward_pre_hook(leaf)
    try:
        p = answer_prob(model(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).logits, batch)
    finally:
        h.remove()
    x = store["corrupted"]
    (grad,) = torch.autograd.grad(p.sum(), x)
    valid = batch["attention_mask"][..., None].to(grad.dtype)
    return ((clean - x.detach()) * grad * valid).float().sum(1)


def _batches(ctx):
    import torch

    examples = ctx.prompt_examples()
    gen = torch.Generator().manual_seed(ctx.params["seed"])
    bs = ctx.params["batch_size"]
    for start in range(0, len(examples), bs):
        batch = prompt_batch(examples[start: start + bs], ctx.pad_id, ctx.device)
        yield batch, corrupted_embeddings(ctx.model, batch, ctx.params["trace_noise"], gen)


# MLP neurons only, like DEPN: the paper's ~76% read as 0.76 of the MLP neurons (see depn.py).
@register_localizer("memit", default_ratio=0.76, label="MEMIT (causal-tracing localization)",
                    reads_retain=False)
def memit(ctx, ratio):
    import torch

    n_layers = len(decoder_layers(ctx.model))
    inter = decoder_layers(ctx.model)[0].mlp.down_proj.weight.shape[1]
    effect, n = torch.zeros(n_layers), 0
    p_clean = p_cor = 0.0
    for batch, embeds in _batches(ctx):
        t = trace(ctx.model, batch, embeds)
        effect += (t["restored"] - t["corrupted"][None]).sum(1).cpu()
        p_clean += float(t["clean"].sum())
        p_cor += float(t["corrupted"].sum())
        n += batch["input_ids"].shape[0]
    effect /= n
    # stable sort: equal effects keep layer order
    order = sorted(range(n_layers), key=lambda i: -float(effect[i]))
    k = n_select(ratio, n_layers * inter)
    full, rest = divmod(k, inter)
    selected = torch.zeros(n_layers, inter, dtype=torch.bool)
    for layer in order[:full]:
        selected[layer] = True
    if rest:
        layer = order[full]
        scores = torch.zeros(inter)
        for batch, embeds in _batches(ctx):
            scores += neuron_effects(ctx.model, batch, embeds, layer).sum(0).cpu()
        selected[layer, torch.topk(scores, rest, sorted=False).indices] = True
    return neuron_axis_masks(ctx.model, selected), {
        "name": "MEMIT (causal-tracing localization)",
        "indirect_effect": [float(x) for x in effect], "layer_order": order,
        "full_layers": order[:full], "partial_layer": order[full] if rest else None, "partial_neurons": rest,
        "p_clean": p_clean / n, "p_corrupted": p_cor / n,
        "units": f"the model has {n_layers * inter} MLP neurons"}
