"""GA (gradient ascent): minimise -NLL of the forget corpus, i.e. push its likelihood down."""

from clue.losses import mean_nll, register_forget_loss


@register_forget_loss("ga", data="text")
def ga_loss(model, batch, params=None):
    return -mean_nll(model, batch)
