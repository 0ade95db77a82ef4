"""Teacher-forced forward passes that need more than Policy.logprobs gives: full logits with gradient
(entropy bonus, ROVER's vocabulary mean), last hidden states (PPO's value head), and step boundaries of
completions (the dense-advantage hook). Works on any transformers causal LM behind HFPolicy."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..algos.ragged import pad_ragged
from ..data.steps import split_steps


@dataclass
class Forward:
    logp: torch.Tensor  # [N, T] log pi(completion token) at the temperature
    logits: torch.Tensor | None = None  # [N, T, V] at the temperature, with gradient
    hidden: torch.Tensor | None = None  # [N, T, H] last hidden state of the state s_t before token t


def forward(model, batch, temperature: float = 1.0, *, logits: bool = False, hidden: bool = False) -> Forward:
    """One forward over a TokenBatch; the position P-1+t predicts completion token t (as in HFPolicy.logprobs)."""
    P, T = batch.prompt_len, batch.completion_mask.shape[1]
    pos = (batch.attention_mask.cumsum(-1) - 1).clamp(min=0)  # [N, P+T]
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=pos,
                logits_to_keep=T + 1, output_hidden_states=hidden)
    z = out.logits[:, :-1].float() / temperature  # [N, T, V]
    logp = z.gather(-1, batch.completion_ids[..., None]).squeeze(-1) - z.logsumexp(-1)  # [N, T]
    h = out.hidden_states[-1][:, P - 1 : P + T - 1].float() if hidden else None  # [N, T, H]
    return Forward(logp, z if logits else None, h)


def step_token_ends(tokenizer, token_ids: list[int], text: str) -> list[int]:
    """Exclusive end token index of each step of `text` (split_steps: paragraphs, else lines), found by decoding
    growing prefixes of token_ids; the step containing the last decoded character ends at len(token_ids)."""
    steps = split_steps(text)
    if not steps:
        return []
    prefix_len = [len(tokenizer.decode(token_ids[: k + 1], skip_special_tokens=True)) for k in range(len(token_ids))]
    ends, pos, k = [], 0, 0
    for step in steps:
        found = text.find(step, pos)
        pos = (found if found >= 0 else pos) + len(step)  # character just after the step
        while k < len(token_ids) - 1 and prefix_len[k] < pos:
            k += 1
        ends.append(k + 1)
    ends[-1] = len(token_ids)  # trailing tokens (eos) belong to the last step
    return ends


def pad_ends(ends: list[list[int]]) -> torch.Tensor:
    """Ragged step ends -> [N, S] long, padded with -1 (algos.dense's convention for a missing step)."""
    width = max(1, max((len(e) for e in ends), default=1))  # at least one column, so [N, S] always has a step axis
    return pad_ragged(ends, fill=-1, dtype=torch.long, width=width)[0]
