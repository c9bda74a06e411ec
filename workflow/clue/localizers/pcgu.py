"""PCGU (Yu et al. 2023), adapted from contrastive sentence pairs to forget/retain sets: the
weight blocks are the rows of every q,k,v,o,gate,up,down matrix (one output unit each); a row's
score is the cosine similarity between its gradient of the forget-set NLL and its gradient of the
retain-set NLL (both losses learning, i.e. the same sign convention as PCGU's two sentences). The
least similar ``floor(ratio * rows)`` rows of each matrix form the mask: updating them for the
forget set moves the retain loss least in the same direction.

A row whose forget or retain gradient is exactly zero has no direction; its similarity is 0.
"""

from clue.localizers import n_select, register_localizer


def row_cosine(g_forget, g_retain, eps=1e-30):
    """Cosine similarity of matching rows of two gradient matrices: ``[rows]`` (0 for a zero row)."""
    import torch

    dot = (g_forget * g_retain).sum(dim=1)
    norm = g_forget.norm(dim=1) * g_retain.norm(dim=1)
    return torch.where(norm > eps, dot / norm.clamp_min(eps), torch.zeros_like(dot))


def least_similar_rows(similarity, ratio):
    """uint8 row vector selecting the ``floor(ratio * rows)`` rows of lowest similarity."""
    import torch

    k = n_select(ratio, similarity.numel())
    rows = torch.zeros(similarity.numel(), dtype=torch.uint8)
    if k:
        rows[torch.topk(-similarity.cpu(), k, sorted=False).indices] = 1
    return rows


# PCGU selects rows per matrix, so its ratio is its unlearned-parameter %: the paper's ~86%.
@register_localizer("pcgu", default_ratio=0.86)
def pcgu(ctx, ratio):
    from clue.masks import matrix_names

    names = matrix_names(ctx.model)
    gf, gr = ctx.forget_grads(names), ctx.retain_grads(names)
    masks = {n: {"rows": least_similar_rows(row_cosine(gf[n], gr[n]), ratio)} for n in names}
    fewest = min(gf[n].shape[0] for n in names)
    return masks, {"selection": "least similar rows per matrix", "units": f"the smallest matrix has {fewest} rows"}
