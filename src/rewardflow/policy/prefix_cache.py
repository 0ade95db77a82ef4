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


# ---------------------------------------------------------------- the sampler's side (HFPolicy._sample)

def read_prefixes(policy, rows: list[list[int]]):
    """A transformers DynamicCache holding the keys/values of every row's tokens but its last, left-padded to the
    longest (C columns), and C; what the prefix cache lacks is read now in one batched forward (each distinct prefix
    once) and stored. Also returns the tokens each row had computed for it (a prefix shared by rows is booked to
    its first row)."""
    store, dev = policy.prefix_cache, policy.device
    want = {tuple(r[:-1]): i for i, r in reversed(list(enumerate(rows)))}  # prefix -> first row that has it
    found = {u: store.lookup(list(u)) for u in want}
    missing = [u for u in want if found[u][0] < len(u)]
    computed = [1] * len(rows)  # the fed last token
    if missing:
        # [pad][cached c_u][pad][new tokens]: one forward over the new tokens of every missing prefix
        Cm = max(found[u][0] for u in missing)
        Sm = max(len(u) - found[u][0] for u in missing)
        ids = torch.full((len(missing), Sm), policy.pad_id, dtype=torch.long)
        attn = torch.zeros((len(missing), Cm + Sm), dtype=torch.long)
        for j, u in enumerate(missing):
            c, new = found[u][0], list(u[found[u][0] :])
            ids[j, Sm - len(new) :] = torch.tensor(new)
            attn[j, Cm - c : Cm] = 1
            attn[j, Cm + Sm - len(new) :] = 1
            computed[want[u]] += len(new)
        pos = (attn.cumsum(-1) - 1).clamp(min=0)[:, Cm:]
        cache = _seeded_cache([found[u] for u in missing], Cm, dev)
        policy.model(input_ids=ids.to(dev), attention_mask=attn.to(dev), position_ids=pos.to(dev), use_cache=True, logits_to_keep=1,
                   **{policy._cache_kw: cache})
        K = torch.stack([layer.keys for layer in cache.layers])  # [layers, M, H_kv, Cm+Sm, Dh]
        V = torch.stack([layer.values for layer in cache.layers])
        for j, u in enumerate(missing):
            cols = torch.nonzero(attn[j]).flatten().to(dev)
            found[u] = (len(u), K[:, j][:, :, cols], V[:, j][:, :, cols])
            store.store(list(u), *found[u][1:])
    C = max(len(r) - 1 for r in rows)
    return _seeded_cache([found[tuple(r[:-1])] for r in rows], C, dev), C, computed


def _left_pad(hits: list, C: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[(c, K [layers, H_kv, c, Dh] | None, V)] -> K, V [layers, N, H_kv, C, Dh], row j's keys in its last c columns."""
    ref = next(k for c, k, _ in hits if c)
    L, H, _, D = ref.shape
    K = ref.new_zeros((L, len(hits), H, C, D))
    V = torch.zeros_like(K)
    for j, (c, k, v) in enumerate(hits):
        if c:
            K[:, j, :, C - c :] = k
            V[:, j, :, C - c :] = v
    return K, V


def _seeded_cache(hits: list, C: int, device):
    """An HF DynamicCache whose layers start with the hits' keys/values, left-padded to C columns."""
    from transformers import DynamicCache

    cache = DynamicCache()
    if C:
        K, V = _left_pad(hits, C)
        for i in range(K.shape[0]):
            cache.update(K[i].to(device), V[i].to(device), i)
    return cache


def store_rows(policy, batch_rows, active, rows, out_ids, end_step, attn_buf, P: int, fast, cache) -> None:
    """Store prompt + generated tokens (all but the last, whose keys were never computed) of these batch rows."""
    for b in batch_rows.tolist():
        r = int(active[b])
        n_gen = int(end_step[r]) - 1
        cols = torch.cat([torch.nonzero(attn_buf[b, :P]).flatten(), torch.arange(P, P + n_gen, device=attn_buf.device)])
        keys, values = (fast.K, fast.V) if fast is not None else ([x.keys for x in cache.layers], [x.values for x in cache.layers])
        K, V = (torch.stack([x[b][:, cols] for x in buf]) for buf in (keys, values))  # [layers, H_kv, len, Dh]
        policy.prefix_cache.store(rows[r] + out_ids[r, :n_gen].tolist(), K, V)
