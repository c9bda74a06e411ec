"""WAGLE (Jia et al. 2024): weight attribution from the bi-level unlearning problem, as in the
published code (github.com/OPTML-Group/WAGLE, ``src/unlearn/generate_mask.py``).

Score (``GenerateMask.snip_advanced``): per weight, ``|(theta - grad L_retain / mu) * grad L_forget|``,
the retain Hessian approximated by ``mu * I``, so ``theta - grad L_retain / mu`` is one retain
descent step of size ``1/mu``. Both losses are the token NLL (``compute_loss_adapted`` returns
``outputs.loss`` for the forget and the retain batches alike; the forget gradient's sign factors
out of the absolute value).

mu (``localize.wagle_mu``): 1e-6, the value of every shipped WAGLE config
(``configs/unlearn/{Tofu,wmdp}/*+WAGLE.json``; the command-line default of
``src/exec/unlearn_model.py`` is 1e-3). At this mu the retain term outweighs theta wherever
``|grad L_retain| >> 1e-6 * |theta|`` (at the review's median ``|grad L_retain|`` of 9e-6 it is 9,
against weights of order 1e-2), so the score is close to ``|grad L_retain * grad L_forget| / mu``:
weights that matter to both sets rank first. (At mu = 1 the retain term was negligible and the mask
was ``|theta * grad L_forget|``.)

Selection (``GenerateMask.get_mask``): global. The scores of all weights are concatenated, ranked,
and the ``int(ratio * N)`` weights of highest ``|...|`` are kept (the code ranks ``-|...|``
ascending and keeps ranks below the threshold); ``ratio`` is the fraction of weights selected for
unlearning (its README: ``tofu_0.8.pt`` has 80% of the weights selected).

What we do differently, and why:

- the pool is the q,k,v,o,gate,up,down matrices, not every parameter (the published ranking also
  holds embeddings, norms and the LM head): every localizer and CLUE's masks cover those matrices,
  and Table 1's unlearned-parameter % is measured on them. So ``ratio`` is the fraction of the
  attention/MLP weights; the mask's unlearned-parameter % (a mean of per-matrix fractions) differs
  from ``100 * ratio`` where the selection is uneven across matrices.
- the gradients are of the mean NLL over all scored tokens of the ``n_examples`` sampled records
  (shared with PCGU); the published code sums the gradients of per-batch mean losses over its whole
  dataset (batch size 1 in the shipped configs), larger by about the number of batches B, which
  ranks roughly like ours at mu / B. At mu = 1e-6 both are dominated by the retain term.
- ties at the threshold are broken by matrix order, then position (the published ``argsort``
  leaves it to the sort).
"""

from clue.localizers import n_select, register_localizer


def wagle_scores(params, forget_grads, retain_grads, mu):
    """``{name: |(theta - g_retain / mu) * g_forget|}`` (float32)."""
    return {n: ((params[n].detach().float() - retain_grads[n] / mu) * forget_grads[n]).abs() for n in forget_grads}


def select_top(scores, k):
    """Bool masks ``{name: tensor}`` selecting the ``k`` highest scores over all tensors together.

    A 7B model has ~6.5e9 scores: concatenating them for ``topk`` would double their memory, so the
    k-th largest is found by bisection on the float32 bit patterns (for non-negative floats they
    sort like the values) with one counting pass per bit."""
    import torch

    bits = {n: s.float().contiguous().view(torch.int32) for n, s in scores.items()}
    total = sum(b.numel() for b in bits.values())
    if k >= total:
        return {n: torch.ones_like(b, dtype=torch.bool) for n, b in bits.items()}

    def above(t):
        return sum(int((b > t).sum()) for b in bits.values())

    lo, hi = -1, max(int(b.max()) for b in bits.values())  # above(lo) = total > k >= above(hi) = 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if above(mid) <= k else (mid, hi)
    need = k - above(hi)  # the rest from the scores equal to the k-th largest
    out = {}
    for n, b in bits.items():
        m = b > hi
        if need:
            ties = (b == hi).flatten().nonzero()[:need, 0]
            m.view(-1)[ties] = True
            need -= len(ties)
        out[n] = m
    return out


# The paper's ~90% of the weights: ratio 0.9, one of the published mask ratios.
@register_localizer("wagle", default_ratio=0.90)
def wagle(ctx, ratio):
    from clue.masks import matrix_names

    names = matrix_names(ctx.model)
    params = dict(ctx.model.named_parameters())
    gf, gr = ctx.forget_grads(names), ctx.retain_grads(names)
    scores = wagle_scores({n: params[n] for n in names}, gf, gr, ctx.params["wagle_mu"])
    total = sum(s.numel() for s in scores.values())
    selected = select_top(scores, n_select(ratio, total))
    masks = {n: {"dense": selected[n].cpu()} for n in names if bool(selected[n].any())}
    return masks, {"mu": ctx.params["wagle_mu"], "selection": "top weights of all attention/MLP matrices",
                   "units": f"the attention/MLP matrices have {total} weights"}
