"""The hf backend: our own batched sampler over any transformers causal LM, with a KV cache.

Why not `model.generate`: we need per-token logprobs of the sampled tokens at the sampling temperature
(for the RL ratio), n samples per prompt without re-encoding the prompt n times in Python, and
finished rows removed from the batch so they stop costing compute.

Randomness is per request: every sample draws from a counter-based stream keyed by (prompt seed, sample
index, step, token), so what a prompt samples never depends on the rest of the batch, and a batch split
over Ray workers or torch.distributed ranks samples exactly what one process would. Llama-architecture
models decode through `_LlamaDecoder` (preallocated K/V, no per-token framework overhead); teacher forcing
runs length-sorted, trimmed chunks.
"""
from __future__ import annotations

import inspect
from pathlib import Path

import torch

from .base import Completion, LogprobOutput, SamplingParams, TokenBatch
# the decode machinery lives in decode.py; re-exported here because callers and tests import these names from hf
from .decode import _LlamaDecoder, _filter_logits, _gumbel, _hash32, _mix32, derive_prompt_seeds, pick_next, row_keys  # noqa: F401
from .prefill import grouped_prefill
from .prefix_cache import read_prefixes, store_rows


def _distinct(rows: list[list[int]]) -> tuple[list[int], list[int]]:
    """(the first row of each distinct row, in order; the distinct row of every row)."""
    seen: dict[tuple, int] = {}
    firsts, index = [], []
    for i, r in enumerate(rows):
        u = seen.setdefault(tuple(r), len(seen))
        if u == len(firsts):
            firsts.append(i)
        index.append(u)
    return firsts, index


def _checkpointing(model) -> bool:
    """Whether activation (gradient) checkpointing is on; transformers 5 renamed the flag (the old name warns)."""
    if hasattr(model, "is_activation_checkpointing"):
        return bool(model.is_activation_checkpointing)
    return bool(getattr(model, "is_gradient_checkpointing", False))


class HFPolicy:
    """A Policy over a transformers causal LM and its tokenizer (chat template applied to prompts)."""

    def __init__(self, model, tokenizer, *, device: str = "cpu", use_chat_template: bool = True, fast_decode: bool = True,
                 compile_decode: bool = False):
        self.model = model.to(device)
        self.fast_decode = fast_decode  # our own decode step for Llama-architecture models (see _LlamaDecoder)
        self.compile_decode = compile_decode  # that step through torch.compile, for calls of at most compile_max_rows rows:
        self.compile_max_rows = 64  # beyond, the gain over the eager step (which drops finished rows) fades (docs/speed.md)
        self.logprob_chunk_rows = 32  # teacher forcing runs length-sorted chunks of this many rows (0: one pass)
        self.share_prompts = True  # teacher forcing reads a prompt once for all its rows in a chunk (exact; see logprobs)
        self.tokenizer = tokenizer
        self.device = device
        self.use_chat_template = use_chat_template and tokenizer.chat_template is not None
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id
        # Text of each token id, to detect stop strings without decoding whole sequences every step.
        self._pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        self._pieces = [tokenizer.convert_tokens_to_string([p]) if p is not None else "" for p in self._pieces]
        for i in tokenizer.all_special_ids:  # decoding drops special tokens, so they can never complete a stop string
            self._pieces[i] = ""
        # transformers >= 5.2x names the KV-cache argument `cache` and deprecates `past_key_values`; older ones know only the latter
        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self.prefix_cache = None  # PrefixCache once enable_prefix_cache() is called (search); None: every call prefills everything

    def enable_prefix_cache(self, max_tokens: int = 200_000) -> None:
        """Reuse keys and values across generate calls whose inputs share a prefix (policy/prefix_cache.py), and
        read a prompt once for its n samples. Starts empty; Completion.cached_tokens says what each row reused."""
        from .prefix_cache import PrefixCache

        self.prefix_cache = PrefixCache(max_tokens)

    def disable_prefix_cache(self) -> None:
        self.prefix_cache = None

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: str = "cpu", dtype: torch.dtype | None = None, **kw) -> "HFPolicy":
        """`path`: a transformers directory, a .gguf file or a known model name (policy/resolve.py)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        from .resolve import resolve_model

        hf_logging.disable_progress_bar()
        path = resolve_model(path)
        return cls(AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32), AutoTokenizer.from_pretrained(path), device=device, **kw)

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    # -- prompts ---------------------------------------------------------------------------------
    def render(self, prompt: str, prefix: str | None = None) -> str:
        if self.use_chat_template:
            text = self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
        else:
            text = prompt
        return text + (prefix or "")

    def encode_prompts(self, prompts: list[str], prefixes: list[str] | None = None) -> list[list[int]]:
        prefixes = prefixes or [None] * len(prompts)
        texts = [self.render(p, x) for p, x in zip(prompts, prefixes)]
        return self.tokenizer(texts, add_special_tokens=not self.use_chat_template)["input_ids"]

    def completion_ids(self, texts: list[str], add_eos: bool = True) -> list[list[int]]:
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [x + [self.eos_id] for x in ids] if add_eos else ids

    # -- sampling --------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, prompts: list[str], params: SamplingParams, prefixes: list[str] | None = None, *,
                 prompt_seeds: list[int] | None = None) -> list[list[Completion]]:
        """params.n completions per prompt. Randomness is per request: prompt i's samples depend only on
        `prompt_seeds[i]` (default: derived from params.seed and i), never on what else is in the batch, so a
        batch split across workers (dist/ray_rollout.py) samples exactly what one process would."""
        prompt_ids = self.encode_prompts(prompts, prefixes)
        if prompt_seeds is None:
            prompt_seeds = derive_prompt_seeds(params.seed, len(prompts))
        if len(prompt_seeds) != len(prompts):
            raise ValueError(f"generate: {len(prompt_seeds)} prompt_seeds for {len(prompts)} prompts")
        rows = [ids for ids in prompt_ids for _ in range(params.n)]  # N = B * n, prompt-major
        out_ids, out_lp, lengths, reasons, computed = self._sample(rows, row_keys(prompt_seeds, params.n), params)
        completions = []
        for r in range(len(rows)):
            ids = out_ids[r, : lengths[r]].tolist()
            text_ids = ids[:-1] if reasons[r] == "eos" else ids
            completions.append(
                Completion(
                    text=self.tokenizer.decode(text_ids, skip_special_tokens=True),
                    token_ids=ids,
                    logprobs=out_lp[r, : lengths[r]].clone(),
                    finish_reason=reasons[r],
                    prompt_tokens=len(rows[r]),
                    cached_tokens=len(rows[r]) - computed[r],
                )
            )
        return [completions[i * params.n : (i + 1) * params.n] for i in range(len(prompts))]

    def _prefill_inputs(self, rows: list[list[int]], max_new: int):
        """The first forward's inputs: (cache, P prompt columns, input_ids [U, W], attention buffer [N, P + max_new],
        positions [U, W], tokens computed per row, inverse [N] or None). Identical rows (the n samples of a prompt) are
        fed once: the forward runs on the U distinct rows and `inverse` maps each row to its distinct row, whose
        logits and keys/values it then shares (the prompt's compute is booked to its first row). With the prefix
        cache, keys/values of all but each row's last token come from it (read now where missing), left-padded to C
        columns, and only the last token is fed."""
        from transformers import DynamicCache

        inverse = None
        if self.prefix_cache is not None:
            self.prefix_cache.check_weights(self.model)
            cache, C, computed = read_prefixes(self, rows)
            P, fed, first = C + 1, [r[-1:] for r in rows], [C - (len(r) - 1) for r in rows]
        else:
            firsts, index = _distinct(rows)
            fed, computed = [rows[i] for i in firsts], [len(r) if firsts[index[i]] == i else 0 for i, r in enumerate(rows)]
            if len(fed) < len(rows):
                inverse = torch.tensor(index, device=self.device)  # [N] -> distinct row
            cache, P = DynamicCache(), max(len(r) for r in rows)
            first = [P - len(r) for r in rows]  # left padding: every prompt ends at column P-1
        W = max(len(f) for f in fed)
        input_ids = torch.full((len(fed), W), self.pad_id, dtype=torch.long)
        for i, f in enumerate(fed):
            input_ids[i, W - len(f) :] = torch.tensor(f)
        # one preallocated mask for prompt + every new token: each step views one more column (no torch.cat)
        attn_buf = torch.zeros((len(rows), P + max_new), dtype=torch.long)
        for i, start in enumerate(first):
            attn_buf[i, start:] = 1  # new-token columns start at 1: finished rows wait as <pad>, masked by nothing
        input_ids, attn_buf = input_ids.to(self.device), attn_buf.to(self.device)
        fed_attn = attn_buf if inverse is None else attn_buf[torch.tensor(firsts, device=self.device)]  # [U, P + max_new]
        pos = (fed_attn[:, :P].cumsum(-1) - 1).clamp(min=0)[:, -W:]  # [U, fed columns]
        return cache, P, input_ids, attn_buf, pos, computed, inverse, fed_attn

    def _prefill(self, cache, input_ids, attn, pos):
        """Last-position logits [U, V] and the cache after the first forward: whole prompts run in length groups
        (policy/prefill.py), not padded to the longest; the prefix cache's rows feed one token each after `cache`."""
        if self.prefix_cache is None:
            return grouped_prefill(self.model, input_ids, attn, pos, self._cache_kw)
        out = self.model(input_ids=input_ids, attention_mask=attn, position_ids=pos, use_cache=True, logits_to_keep=1, **{self._cache_kw: cache})
        return out.logits[:, -1], cache

    def _hit_stop(self, tails: list[str], live_rows: list[int], active, tok, stop: list[str], max_stop: int) -> list[int]:
        """Batch rows whose text now ends with a stop string (per-row Python, only when the caller gave stops)."""
        hits = []
        for b in live_rows:
            r = int(active[b])
            tails[r] = (tails[r] + self._pieces[int(tok[b])])[-(max_stop + 8) :]
            if any(tails[r].endswith(s) for s in stop):
                hits.append(b)
        return hits

    def _sample(self, rows: list[list[int]], row_keys: list[int], params: SamplingParams):
        n_rows, max_new, dev = len(rows), params.max_new_tokens, self.device
        store = self.prefix_cache
        cache, P, input_ids, attn_buf, pos, computed, inverse, fed_attn = self._prefill_inputs(rows, max_new)
        keys = torch.tensor(row_keys, dtype=torch.long, device=dev)  # [N] per-row random stream

        out_ids = torch.full((n_rows, max_new), self.pad_id, dtype=torch.long, device=dev)
        out_lp = torch.zeros((n_rows, max_new), device=dev)
        end_step = torch.full((n_rows,), max_new, dtype=torch.long, device=dev)  # tokens emitted per original row
        reason_code = torch.zeros(n_rows, dtype=torch.long, device=dev)  # 0 length, 1 eos, 2 stop
        active = torch.arange(n_rows, device=dev)  # original row of each batch row
        finished = torch.zeros(n_rows, dtype=torch.bool, device=dev)  # per batch row, awaiting compaction
        tails = [""] * n_rows
        max_stop = max((len(s) for s in params.stop), default=0)

        logits, cache = self._prefill(cache, input_ids, fed_attn[:, :P], pos)
        next_pos = pos[:, -1]  # [U]
        if inverse is not None:  # every row takes its distinct row's logits and keys/values
            logits, next_pos = logits[inverse], next_pos[inverse]  # [N, V], [N]
            _select_rows(cache, inverse)
        compiled = self.compile_decode and n_rows <= self.compile_max_rows
        fast = _LlamaDecoder.maybe(self.model, cache, P + max_new, compiled) if self.fast_decode else None
        compact = fast is None or not fast.compiled  # the compiled step keeps its shapes: finished rows ride along
        for t in range(max_new):
            tok, lp = self._pick(logits, params, keys, t)  # [n], [n]
            live = ~finished
            rows_live = active[live]
            out_ids[rows_live, t] = tok[live]
            out_lp[rows_live, t] = lp[live]
            now_done = live & (tok == self.eos_id)
            if max_stop:  # stop strings need the text
                for b in self._hit_stop(tails, torch.nonzero(live & ~now_done).flatten().tolist(), active, tok, params.stop, max_stop):
                    reason_code[int(active[b])] = 2
                    now_done[b] = True
            reason_code[active[now_done & (tok == self.eos_id)]] = 1
            end_step[active[now_done]] = t + 1
            finished |= now_done
            n_done = int(finished.sum())  # the step's one host sync: ends the loop and decides compaction
            if t == max_new - 1 or n_done == len(finished):
                break
            # Compact: drop finished rows from the batch (and the KV cache) once they are >= 1/8 of it.
            if compact and n_done * 8 >= len(finished):
                if store is not None:  # remember what the leaving rows read and wrote before their keys are dropped
                    store_rows(self, torch.nonzero(finished).flatten(), active, rows, out_ids, end_step, attn_buf, P, fast, cache)
                keep = torch.nonzero(~finished).flatten()
                fast.select(keep) if fast is not None else _select_rows(cache, keep)
                active, attn_buf, next_pos, tok, keys = active[keep], attn_buf[keep], next_pos[keep], tok[keep], keys[keep]
                finished = finished[keep]
            tok = tok.masked_fill(finished, self.pad_id)
            next_pos = next_pos + 1
            if fast is not None:
                logits = fast.step(tok, next_pos, attn_buf)
            else:
                logits = self.model(input_ids=tok[:, None], attention_mask=attn_buf[:, : P + t + 1], position_ids=next_pos[:, None],
                                    use_cache=True, **{self._cache_kw: cache}).logits[:, -1]
        if store is not None:
            store_rows(self, torch.arange(len(active), device=dev), active, rows, out_ids, end_step, attn_buf, P, fast, cache)
        names = ("length", "eos", "stop")
        return out_ids.cpu(), out_lp.cpu(), end_step.tolist(), [names[c] for c in reason_code.tolist()], computed

    _pick = staticmethod(pick_next)  # decode.pick_next: next token and its logprob, fused

    # -- teacher forcing -------------------------------------------------------------------------
    def token_batch(self, prompt_ids: list[list[int]], completion_ids: list[list[int]]) -> TokenBatch:
        N = len(prompt_ids)
        P = max(len(p) for p in prompt_ids)
        T = max(1, max(len(c) for c in completion_ids))
        ids = torch.full((N, P + T), self.pad_id, dtype=torch.long)
        attn = torch.zeros((N, P + T), dtype=torch.long)
        cmask = torch.zeros((N, T), dtype=torch.float32)
        for i, (p, c) in enumerate(zip(prompt_ids, completion_ids)):
            ids[i, P - len(p) : P] = torch.tensor(p)
            ids[i, P : P + len(c)] = torch.tensor(c, dtype=torch.long)
            attn[i, P - len(p) : P + len(c)] = 1
            cmask[i, : len(c)] = 1
        return TokenBatch(ids.to(self.device), attn.to(self.device), cmask.to(self.device), P)

    def logprobs(self, batch: TokenBatch, *, temperature: float = 1.0, with_entropy: bool = False) -> LogprobOutput:
        """Teacher-forced logprobs [N, T]. Rows are sorted by length and run in chunks of `logprob_chunk_rows`,
        each trimmed to its own longest prompt and completion: a batch padded to its longest row would
        otherwise spend most of its FLOPs on padding (RL completions range from a few tokens to the budget).
        Trimming is exact: left-padding columns and columns after every row's last token change nothing
        that a real token attends to. With `share_prompts` the rows of one prompt (an RL group) stay in one chunk and
        the prompt is read once for all of them: its keys and values, computed with gradient, are gathered into each
        row's cache, so the logprobs and gradients are those of reading it per row (to fp32 rounding) at a fraction of
        the FLOPs when prompts are long against completions."""
        N, T = batch.completion_mask.shape
        chunk = self.logprob_chunk_rows
        if not chunk or N <= chunk:
            return self._logprobs_trimmed(batch, temperature, with_entropy)
        chunks = self._chunks(batch, chunk)
        order = torch.cat(chunks)  # [N]
        parts = [self._logprobs_trimmed(batch.select(idx), temperature, with_entropy) for idx in chunks]
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(N, device=order.device)
        logp = torch.cat([p.logprobs for p in parts])[inverse]  # [N, T]
        entropy = torch.cat([p.entropy for p in parts])[inverse] if with_entropy else None
        return LogprobOutput(logp, entropy)

    def _prompt_groups(self, batch: TokenBatch) -> torch.Tensor | None:
        """Distinct prompt of each row [N] (rows with the same prompt tokens and padding share one), or None when
        prompts are not shared: every row's prompt is distinct, share_prompts is off, or gradient checkpointing is on
        (transformers turns the cache off under it)."""
        if not self.share_prompts or _checkpointing(self.model):
            return None
        P = batch.prompt_len
        prompt = torch.cat([batch.input_ids[:, :P], batch.attention_mask[:, :P]], 1)  # [N, 2P]: ids and mask
        _, group = torch.unique(prompt, dim=0, return_inverse=True)  # [N]
        return group if int(group.max()) + 1 < len(group) else None

    def _chunks(self, batch: TokenBatch, chunk: int) -> list[torch.Tensor]:
        """Row indices of each chunk: shortest completions first; with shared prompts, whole prompt groups packed in
        the order of their longest completion (a group larger than `chunk` rows is cut), so a chunk reads each of its
        prompts once."""
        lengths = batch.completion_mask.sum(1).long()  # [N]
        group = self._prompt_groups(batch)
        if group is None:
            return list(torch.argsort(lengths, stable=True).split(chunk))
        members = [torch.nonzero(group == g).flatten() for g in range(int(group.max()) + 1)]
        members.sort(key=lambda rows: int(lengths[rows].max()))
        chunks, current = [], []
        for rows in (piece for rows in members for piece in rows.split(chunk)):
            if current and sum(map(len, current)) + len(rows) > chunk:
                chunks.append(torch.cat(current))
                current = []
            current.append(rows)
        return chunks + [torch.cat(current)]

    def _prompt_once_logits(self, ids, attn, pos, p: int, t_eff: int, group: torch.Tensor) -> torch.Tensor:
        """Logits [n, t_eff, V] predicting the completion tokens (columns p..p+t_eff-1 of ids [n, p+t_eff]), each
        distinct prompt read once: its last position's logits predict token 0, and its cache, gathered per row (a
        differentiable index), is what the rows' completion tokens 0..t_eff-2 attend to."""
        from transformers import DynamicCache

        n = len(group)
        firsts = torch.full((int(group.max()) + 1,), n, device=group.device).scatter_reduce(0, group, torch.arange(n, device=group.device), "amin")
        cache = DynamicCache()
        head = self.model(input_ids=ids[firsts, :p], attention_mask=attn[firsts, :p], position_ids=pos[firsts, :p], use_cache=True,
                          logits_to_keep=1, **{self._cache_kw: cache}).logits.index_select(0, group)  # [n, 1, V]; see _select_rows
        if t_eff == 1:
            return head
        _select_rows(cache, group)  # [U, ...] -> [n, ...]
        tail = self.model(input_ids=ids[:, p : p + t_eff - 1], attention_mask=attn[:, : p + t_eff - 1], position_ids=pos[:, p : p + t_eff - 1],
                          use_cache=True, **{self._cache_kw: cache}).logits  # [n, t_eff-1, V]
        return torch.cat([head, tail], 1)

    def _logprobs_trimmed(self, batch: TokenBatch, temperature: float, with_entropy: bool) -> LogprobOutput:
        P, T = batch.prompt_len, batch.completion_mask.shape[1]
        t_eff = max(1, int(batch.completion_mask.sum(1).max()))  # longest completion in this chunk
        first = int(batch.attention_mask[:, :P].any(0).float().argmax())  # first column any prompt uses
        ids, attn = batch.input_ids[:, first : P + t_eff], batch.attention_mask[:, first : P + t_eff]
        pos = (attn.cumsum(-1) - 1).clamp(min=0)  # [n, P'+T']
        group = self._prompt_groups(batch)
        if group is not None:
            logits = self._prompt_once_logits(ids, attn, pos, P - first, t_eff, group)
        else:  # logits at positions P-1 .. P+T'-2 predict the completion tokens P .. P+T'-1
            logits = self.model(input_ids=ids, attention_mask=attn, position_ids=pos, logits_to_keep=t_eff + 1).logits[:, :-1]
        logits = logits.float() / temperature  # [n, T', V]
        log_norm = logits.logsumexp(-1)  # [n, T']
        logp = logits.gather(-1, batch.completion_ids[:, :t_eff, None]).squeeze(-1) - log_norm  # [n, T']
        entropy = None
        if with_entropy:
            with torch.no_grad():
                probs = (logits - log_norm[..., None]).exp()
                entropy = torch.nn.functional.pad(log_norm - (probs * logits).sum(-1), (0, T - t_eff))  # [n, T]
        return LogprobOutput(torch.nn.functional.pad(logp, (0, T - t_eff)), entropy)  # zeros past each chunk's end


def _select_rows(cache, rows: torch.Tensor) -> None:
    """Keep rows `rows` (repeats allowed) of a transformers cache, in place: the one way this module selects cache
    rows, and unlike cache.batch_select_indices(rows) its backward adds in a fixed order. Plain key/value layers are
    gathered with index_select, not `x[rows]` as transformers does: with repeated rows (one prompt's cache read by its
    whole group) the backward of `x[rows]` is index_put_(accumulate=True), which on a multi-threaded CPU adds the
    rows' gradients in a varying order; two runs of one RL step then differed in the last bits of the gradient (and,
    steps later, in their samples). index_select's backward, index_add_, adds them in index order. Other layer
    kinds keep their own selection."""
    from transformers.cache_utils import DynamicLayer

    if not hasattr(cache, "layers"):  # a cache without per-layer objects selects its own way
        cache.batch_select_indices(rows)
        return
    for layer in cache.layers:
        if type(layer).batch_select_indices is DynamicLayer.batch_select_indices and layer.get_seq_length() > 0:
            layer.keys, layer.values = layer.keys.index_select(0, rows), layer.values.index_select(0, rows)
        else:
            layer.batch_select_indices(rows)
