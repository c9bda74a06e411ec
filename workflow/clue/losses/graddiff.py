"""Gradient Difference as Hong et al. define it (appendix A, after Yao et al. 2024): gradient
ascent on the forget corpus, regularised by KL(original || model) on a reference text set (the
retain texts). It differs from the ``ga`` row only in that retain term (``ga`` uses the retain NLL)."""

from clue.losses import register_forget_loss
from clue.losses.ga import ga_loss


@register_forget_loss("graddiff", data="text", label="GradDiff", retain="kl")
def graddiff_loss(model, batch, params=None):
    return ga_loss(model, batch, params)
