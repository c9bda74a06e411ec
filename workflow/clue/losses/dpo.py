"""DPO (Rafailov et al. 2023) for unlearning, as in Hong et al.'s appendix A: on each forget
prompt the refusal is preferred over the original answer,

    L = -mean_i logsigmoid(beta * ((log p(refusal) - log p_ref(refusal)) - (log p(answer) - log p_ref(answer))))

with log p the sum over the answer's tokens and p_ref the frozen base model (its log-probabilities
computed once before training, as for NPO)."""

from clue.errors import ClueError
from clue.losses import register_forget_loss, sequence_logprob

DEFAULT_BETA = 0.1


@register_forget_loss("dpo", data="preference", needs_reference=True)
def dpo_loss(model, batch, params=None):
    import torch.nn.functional as F

    chosen, rejected = batch["chosen"], batch["rejected"]
    if "ref_logp" not in chosen or "ref_logp" not in rejected:
        raise ClueError("DPO needs the reference model's log-probabilities of both answers")
    beta = (params or {}).get("dpo_beta", DEFAULT_BETA)
    margin = ((sequence_logprob(model, chosen) - chosen["ref_logp"])
              - (sequence_logprob(model, rejected) - rejected["ref_logp"]))
    return -F.logsigmoid(beta * margin).mean()
