"""Keys and values of token sequences a policy has already read, reused when a later input starts with them.

Step-wise search calls the policy again and again on prompt + the steps so far; without this every call
re-reads the whole prefix (the same idea as vLLM's automatic prefix caching, exact and in-process here).
Entries are whole sequences; every prefix of an entry can be found, through a rolling hash of its tokens
(checked token by token on a hit, so a hash collision cannot return wrong keys). Least recently used entries
go first once the cache holds more than `max_tokens` tokens. Any in-place change to the model's parameters
(an optimiser step, load_state_dict) empties it: cached keys belong to the weights that computed them.
"""
from __future__ import annotations

from collections import OrderedDict

import torch


def _prefix_hashes(ids: list[int]) -> list[int]:
    """h[k] identifies ids[:k] (h[0] = the empty prefix)."""
    h = [0]
    for t in ids:
        h.append(hash((h[-1], t)))
    return h


class PrefixCache:
    def __init__(self, max_tokens: int = 200_000):
        self.max_tokens = max_tokens
        self.entries: OrderedDict[int, tuple[list[int], torch.Tensor, torch.Tensor]] = OrderedDict()  # id -> (ids, K, V)
        self.index: dict[int, tuple[int, int]] = {}  # prefix hash -> (entry id, prefix length)
        self.tokens = 0
        self._next_id = 0
        self._weights: tuple | None = None

    def check_weights(self, model) -> None:
        """Empties the cache if any parameter changed in place since the last call (tensor version counters)."""
        version = tuple(p._version for p in model.parameters())
        if version != self._weights:
            self.clear()
            self._weights = version

    def clear(self) -> None:
        self.entries.clear()
        self.index.clear()
        self.tokens = 0

    def lookup(self, ids: list[int]) -> tuple[int, torch.Tensor | None, torch.Tensor | None]:
        """The longest cached prefix of ids: (length c, K, V) with K, V [layers, H_kv, c, Dh]; (0, None, None) if none."""
        h = _prefix_hashes(ids)
        for k in range(len(ids), 0, -1):
            hit = self.index.get(h[k])
            if hit is None:
                continue
            entry_ids, K, V = self.entries[hit[0]]
            if entry_ids[:k] == ids[:k]:
                self.entries.move_to_end(hit[0])
                return k, K[:, :, :k], V[:, :, :k]
        return 0, None, None

    def store(self, ids: list[int], K: torch.Tensor, V: torch.Tensor) -> None:
        """Remember K, V [layers, H_kv, len(ids), Dh] for ids (and thereby for every prefix of ids)."""
        if not ids or len(ids) > self.max_tokens:
            return
        eid, self._next_id = self._next_id, self._next_id + 1
        self.entries[eid] = (list(ids), K.detach().clone(), V.detach().clone())
        for k, h in enumerate(_prefix_hashes(ids)[1:], start=1):
            self.index[h] = (eid, k)  # the newest entry serves a shared prefix
        self.tokens += len(ids)
        while self.tokens > self.max_tokens:
            self._evict(next(iter(self.entries)))

    def _evict(self, eid: int) -> None:
        ids, _, _ = self.entries.pop(eid)
        self.tokens -= len(ids)
        # Keys that point here go; a prefix shared with a surviving entry becomes findable again once an entry holding it
        # is stored again. Only reuse is lost, never correctness. The entry serving a popular
        # prefix is moved to the end on every hit, so it is rarely the one evicted.
        for h in _prefix_hashes(ids)[1:]:
            if self.index.get(h, (None,))[0] == eid:
                del self.index[h]
