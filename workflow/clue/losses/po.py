"""PO (preference optimisation towards a refusal; the paper's default forget loss): NLL of the
refusal answer given the forget prompt. Only the refusal tokens are scored."""

from clue.losses import mean_nll, register_forget_loss


@register_forget_loss("po", data="refusal")
def po_loss(model, batch, params=None):
    return mean_nll(model, batch)
