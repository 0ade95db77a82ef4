"""Packed SFT (config `sft.pack`): several short (prompt, completion) examples share one row of up to `max_len`
tokens, so a batch of short examples is not mostly padding. The loss is still on completion tokens only.

The packing is the plain kind: examples in one row can attend to the ones before them (no per-example attention
mask). Each example starts with its own prompt, so the model conditions on the right question; what it also sees is
earlier, unrelated text, which short-example fine-tuning tolerates and which costs no padding.
"""
from __future__ import annotations

import torch

from ..algos import sft_nll_loss


def pack_examples(prompt_ids: list[list[int]], completion_ids: list[list[int]], max_len: int) -> list[tuple[list[int], list[int]]]:
    """Greedy, in order: each row is prompt_1 + completion_1 + prompt_2 + ... while it fits in `max_len` tokens.
    Returns (token ids, loss mask) per row: mask 1 on completion tokens, 0 on prompt tokens. An example longer
    than `max_len` gets a row of its own, cut to `max_len` tokens."""
    if max_len < 2:
        raise ValueError(f"max_len={max_len} must be >= 2")
    rows: list[tuple[list[int], list[int]]] = []
    ids: list[int] = []
    mask: list[int] = []
    for p, c in zip(prompt_ids, completion_ids):
        if ids and len(ids) + len(p) + len(c) > max_len:
            rows.append((ids, mask))
            ids, mask = [], []
        ids.extend(p)
        ids.extend(c)
        mask.extend([0] * len(p) + [1] * len(c))
        if len(ids) >= max_len:
            rows.append((ids[:max_len], mask[:max_len]))
            ids, mask = [], []
    if ids:
        rows.append((ids, mask))
    return rows


def packed_backward(policy, pairs: list[tuple[str, str]], micro_batch_size: int | None, max_len: int) -> tuple[float, int]:
    """train/sft.py's sft_backward for packed rows: accumulate the gradient of the token-mean completion NLL of
    one batch; returns (loss, completion tokens)."""
    rows = pack_examples(policy.encode_prompts([p for p, _ in pairs]), policy.completion_ids([c for _, c in pairs]), max_len)
    n_tokens = sum(sum(m[1:]) for _, m in rows)  # the first token of a row is context only (nothing predicts it)
    size = micro_batch_size or len(rows)
    total = 0.0
    for lo in range(0, len(rows), size):
        part = rows[lo : lo + size]
        # The row's first token is the "prompt", everything after it the "completion": logprobs come back for every
        # later token, and the packing mask then keeps the completion tokens' terms.
        batch = policy.token_batch([ids[:1] for ids, _ in part], [ids[1:] for ids, _ in part])
        logp = policy.logprobs(batch).logprobs  # [n, T]
        mask = torch.zeros_like(batch.completion_mask)  # [n, T]
        for i, (_, m) in enumerate(part):
            mask[i, : len(m) - 1] = torch.tensor(m[1:], dtype=mask.dtype)
        loss, _ = sft_nll_loss(logp, mask, normalizer=max(n_tokens, 1))
        loss.backward()
        total += loss.item()
    return total, n_tokens
