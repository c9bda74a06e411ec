"""WAGLE (Jia et al. 2024): weight attribution from the bi-level unlearning problem.

Per weight, the score is ``|(theta - grad L_retain / mu) * grad L_forget|`` (the published
``snip_advanced`` score: the retain Hessian approximated by ``mu * I``). ``L_forget`` and
``L_retain`` are the mean token NLL of the forget corpus lines and of the retain texts over the
``n_examples`` sampled records (the sign of the forget gradient does not matter: it factors out of
the absolute value, so the GA loss gives the same score).

Selection is per matrix: the top ``floor(ratio * numel)`` weights of each q,k,v,o,gate,up,down
matrix. The published code ranks all parameters globally, but gradient scales differ by matrix type
and depth, so a global top-k concentrates the mask in a few matrices; per matrix, the mask's
unlearned-parameter % is exactly ``100 * ratio`` and comparable across localizers.
"""

from clue.localizers import n_select, register_localizer


def wagle_scores(params, forget_grads, retain_grads, mu):
    """``{name: |(theta - g_retain / mu) * g_forget|}`` (float32)."""
    return {n: ((params[n].detach().float() - retain_grads[n] / mu) * forget_grads[n]).abs() for n in forget_grads}


def top_fraction(score, ratio):
    """Bool mask of the top ``floor(ratio * numel)`` entries of ``score`` (ties: torch.topk's order)."""
    import torch

    k = n_select(ratio, score.numel())
    mask = torch.zeros(score.numel(), dtype=torch.bool, device=score.device)
    if k:
        mask[torch.topk(score.flatten(), k, sorted=False).indices] = True
    return mask.view(score.shape)


# WAGLE selects per matrix, so its ratio is its unlearned-parameter %: the paper's ~90%.
@register_localizer("wagle", default_ratio=0.90)
def wagle(ctx, ratio):
    from clue.masks import matrix_names

    names = matrix_names(ctx.model)
    params = dict(ctx.model.named_parameters())
    gf, gr = ctx.forget_grads(names), ctx.retain_grads(names)
    scores = wagle_scores({n: params[n] for n in names}, gf, gr, ctx.params["wagle_mu"])
    masks = {n: {"dense": top_fraction(scores[n], ratio).cpu()} for n in names}
    smallest = min(params[n].numel() for n in names)
    return masks, {"mu": ctx.params["wagle_mu"], "selection": "top weights per matrix",
                   "units": f"the smallest matrix has {smallest} weights"}
