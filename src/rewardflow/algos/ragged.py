"""Ragged per-step values -> one padded [N, S] tensor and its valid mask: the one padding that step scores, step
rewards and step token ends go through (rewards.shaping, algos.dense, policy.forward.pad_ends). It lives in the
lowest room that needs it, so every room above can import it."""
from __future__ import annotations

from collections.abc import Sequence

import torch


def pad_ragged(rows: Sequence[Sequence[float] | torch.Tensor], *, fill: float = 0.0, dtype: torch.dtype | None = None,
               width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """N rows of S_i values (lists or 1-d tensors) -> (padded [N, S], valid [N, S] bool).

    Row n fills padded[n, :S_i]; every later position holds `fill` and is False in `valid` (valid steps come first in
    each row, the layout every per-step function assumes). S is `width` when given (a row longer than it is an error,
    never cut silently), else the longest row (0 for no rows or only empty ones). dtype defaults to torch's default
    float dtype.
    """
    lengths = [len(r) for r in rows]
    S = max(lengths, default=0) if width is None else width
    if any(k > S for k in lengths):
        raise ValueError(f"pad_ragged: a row holds {max(lengths)} values, more than the width {S}")
    dtype = torch.get_default_dtype() if dtype is None else dtype
    padded = torch.full((len(rows), S), fill, dtype=dtype)  # [N, S]
    for n, r in enumerate(rows):
        padded[n, : len(r)] = torch.as_tensor(r, dtype=dtype)
    valid = torch.arange(S)[None, :] < torch.tensor(lengths, dtype=torch.long).view(-1, 1)  # [N, S]
    return padded, valid
