"""The prompt forward that starts sampling, run in groups of prompts of similar length.

Why: a batch of prompts is left-padded to its longest, and one forward over [U, P] spends the padding's share of
its FLOPs on pad tokens. RL batches and benchmark prompt sets mix lengths (a system prompt plus questions of any
size), so at large batch this waste is most of the prefill, and the prefill is a large part of a short generation
(`bench sampler`: 256 prompts of 17-96 tokens padded to 96). Here the rows are sorted by length and cut into groups,
each run trimmed to its own longest prompt; their keys and values are then laid into one cache of P columns, each
row's prompt ending at column P-1 as a single padded forward would leave it. The left columns a group did not
compute stay zero, and the attention mask hides them, as it hid the pad tokens' keys.

Exact up to fp32 rounding: a real token attends to the same real tokens at the same positions; only the shapes of
the matrix products change (tests/test_prefill.py compares tokens and logprobs with the single forward).
"""
from __future__ import annotations

from collections import Counter

import torch

# What one more forward call costs, in prompt tokens of work: the per-call overhead (Python, dispatch, one pass over
# the weights) that a group must save in padding to be worth cutting off. About a millisecond of a 1M-parameter
# model's forward on a 2-core CPU; for larger models the same constant errs towards fewer, larger groups.
CALL_COST_TOKENS = 64


def length_groups(lengths: list[int], call_cost: int | None = None) -> list[list[int]]:
    """Row indices of each group, shortest prompts first, cut so that the sum over groups of (rows x longest length)
    plus `call_cost` per group is least. Groups are runs of the length-sorted rows, so the cut points are found by
    dynamic programming over the distinct lengths: O(m^2) for m distinct lengths."""
    call_cost = CALL_COST_TOKENS if call_cost is None else call_cost
    counts = Counter(lengths)
    distinct = sorted(counts)  # L_1 < ... < L_m
    rows_upto = [0]  # rows_upto[j]: rows with length <= L_j
    for length in distinct:
        rows_upto.append(rows_upto[-1] + counts[length])
    best, cut = [0] + [float("inf")] * len(distinct), [0] * (len(distinct) + 1)
    for j in range(1, len(distinct) + 1):  # best[j]: least cost of the rows up to L_j; cut[j]: where its last group starts
        for i in range(j):
            cost = best[i] + (rows_upto[j] - rows_upto[i]) * distinct[j - 1] + call_cost
            if cost < best[j]:
                best[j], cut[j] = cost, i
    bounds, j = [], len(distinct)
    while j > 0:
        bounds.append(distinct[j - 1])  # each group's longest length
        j = cut[j]
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    groups, start = [], 0
    for top in reversed(bounds):
        end = start
        while end < len(order) and lengths[order[end]] <= top:
            end += 1
        groups.append(order[start:end])
        start = end
    return groups


def left_padded(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """input_ids, attention mask and positions [U, P] of token rows left-padded to the longest (P), as the sampler
    feeds whole prompts."""
    P = max(map(len, rows))
    input_ids, attn = torch.full((len(rows), P), pad_id), torch.zeros((len(rows), P), dtype=torch.long)
    for i, x in enumerate(rows):
        input_ids[i, P - len(x) :], attn[i, P - len(x) :] = torch.tensor(x), 1
    return input_ids, attn, (attn.cumsum(-1) - 1).clamp(min=0)


def grouped_prefill(model, input_ids: torch.Tensor, attn: torch.Tensor, pos: torch.Tensor, cache_kw: str, call_cost: int | None = None):
    """Last-position logits [U, V] and a transformers DynamicCache of P columns for left-padded prompts
    input_ids, attn, pos [U, P], as one forward over them would return, computed in length groups."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    U, P = input_ids.shape
    lengths = attn.sum(1).tolist()
    groups = length_groups(lengths, call_cost)
    if len(groups) == 1:
        groups = [list(range(U))]  # one forward over the batch as given: no reordering
    parts = []
    for rows in groups:
        idx = torch.tensor(rows, device=input_ids.device)
        w = max(1, max(lengths[r] for r in rows))  # this group's columns: its longest prompt
        cache = DynamicCache()
        logits = model(input_ids=input_ids[idx, P - w :], attention_mask=attn[idx, P - w :], position_ids=pos[idx, P - w :],
                       use_cache=True, logits_to_keep=1, **{cache_kw: cache}).logits[:, -1]  # [u, V]
        if len(groups) == 1:
            return logits, cache
        if not all(type(layer) is DynamicLayer for layer in cache.layers):  # other state (sliding windows, recurrent)
            return grouped_prefill(model, input_ids, attn, pos, cache_kw, call_cost=1 << 60)  # one forward, as before
        parts.append((idx, w, logits, cache))
    logits = parts[0][2].new_empty(U, parts[0][2].shape[-1])  # [U, V]
    for idx, _, lg, _ in parts:
        logits[idx] = lg
    cache = DynamicCache()
    for i in range(len(parts[0][3].layers)):
        k0 = parts[0][3].layers[i].keys  # [u, H_kv, w, Dh]
        K = k0.new_zeros(U, k0.shape[1], P, k0.shape[3])  # [U, H_kv, P, Dh]
        V = torch.zeros_like(K)
        for idx, w, _, c in parts:
            K[idx, :, P - w :] = c.layers[i].keys
            V[idx, :, P - w :] = c.layers[i].values
            c.layers[i].keys = c.layers[i].values = None  # freed as it is copied: the prompts' keys/values exist about once
        cache.update(K, V, i)
    return logits, cache
