"""NPO (negative preference optimisation, Zhang et al. 2024): DPO with the forget texts as
negative examples only:

    L = -(2 / beta) * mean_i logsigmoid(-beta * (log p_theta(x_i) - log p_ref(x_i)))

with log p the sequence log-probability (sum over tokens) and p_ref the frozen base model. The
reference log-probabilities arrive in ``batch["ref_logp"]`` (the unlearn stage computes them once
with the base model, so no second copy of the model is held during training)."""

from clue.errors import ClueError
from clue.losses import register_forget_loss, sequence_logprob

DEFAULT_BETA = 0.1


def npo_from_logps(logp, ref_logp, beta=DEFAULT_BETA):
    """The NPO loss from per-sequence log-probabilities of the model and of the reference."""
    if beta <= 0:
        raise ClueError(f"npo_beta must be positive, not {beta}")
    import torch.nn.functional as F

    return -(2.0 / beta) * F.logsigmoid(-beta * (logp - ref_logp)).mean()


@register_forget_loss("npo", data="text", needs_reference=True)
def npo_loss(model, batch, params=None):
    if "ref_logp" not in batch:
        raise ClueError("NPO needs the reference model's log-probabilities (batch['ref_logp'])")
    beta = (params or {}).get("npo_beta", DEFAULT_BETA)
    return npo_from_logps(sequence_logprob(model, batch), batch["ref_logp"].to(batch["input_ids"].device), beta)
