"""Retain loss: the language-modelling NLL on retain texts (train.jsonl "text"), token mean."""

from clue.losses import mean_nll


def retain_loss(model, batch, params=None):
    return mean_nll(model, batch)
