"""NPO+KL (Zhang et al. 2024): the NPO forget loss, regularised by KL(original || model) on the
retain texts instead of their NLL (the retain term is weighted by ``lambda`` as for every method)."""

from clue.losses import register_forget_loss
from clue.losses.npo import npo_loss


@register_forget_loss("npo_kl", data="text", needs_reference=True, label="NPO+KL", retain="kl")
def npo_kl_loss(model, batch, params=None):
    return npo_loss(model, batch, params)
