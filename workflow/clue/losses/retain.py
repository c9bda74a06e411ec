"""Retain terms: the language-modelling NLL on retain texts (train.jsonl "text"), token mean; or,
for methods that regularise towards the original model (NPO+KL, Gradient Difference),
KL(original || model) of the next-token distributions on the same texts, token mean."""

from clue.losses import mean_nll


def retain_loss(model, batch, params=None):
    return mean_nll(model, batch)


def retain_kl(model, reference, batch):
    """Mean over scored positions of KL(p_reference || p_model); ``reference`` is the frozen
    original model."""
    import torch
    import torch.nn.functional as F

    def logp(m):
        logits = m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()   # a bf16 log-softmax over a large vocabulary loses too much
        return F.log_softmax(logits, -1)

    with torch.no_grad():
        ref = logp(reference)
    cur = logp(model)
    scored = batch["target_mask"][:, 1:] & batch["attention_mask"][:, 1:].bool()
    kl = (ref.exp() * (ref - cur)).sum(-1)
    return kl[scored].mean()
