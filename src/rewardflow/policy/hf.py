"""The hf backend: our own batched sampler over any transformers causal LM, with a KV cache.

Why not `model.generate`: we need per-token logprobs of the sampled tokens at the sampling temperature
(for the RL ratio), n samples per prompt without re-encoding the prompt n times in Python, and
finished rows removed from the batch so they stop costing compute.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .base import Completion, LogprobOutput, SamplingParams, TokenBatch


def _filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Mask logits [n, V] outside the top-k and the top-p nucleus (Holtzman et al. 2020) with -inf."""
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # [n, 1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # [n, V]
        cum = sorted_logits.softmax(-1).cumsum(-1)  # [n, V]
        # drop a token when the mass before it already reaches top_p (the first token always stays)
        drop_sorted = (cum - sorted_logits.softmax(-1)) >= top_p  # [n, V]
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


class HFPolicy:
    """A Policy over a transformers causal LM and its tokenizer (chat template applied to prompts)."""

    def __init__(self, model, tokenizer, *, device: str = "cpu", use_chat_template: bool = True):
        self.model = model.to(device)
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

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: str = "cpu", dtype: torch.dtype | None = None, **kw) -> "HFPolicy":
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32)
        return cls(model, tokenizer, device=device, **kw)

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    # -- prompts ---------------------------------------------------------------------------------
    def render(self, prompt: str, prefix: str | None = None) -> str:
        if self.use_chat_template:
            text = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
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
    def generate(self, prompts: list[str], params: SamplingParams, prefixes: list[str] | None = None) -> list[list[Completion]]:
        prompt_ids = self.encode_prompts(prompts, prefixes)
        rows = [ids for ids in prompt_ids for _ in range(params.n)]  # N = B * n, prompt-major
        out_ids, out_lp, lengths, reasons = self._sample(rows, params)
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
                )
            )
        return [completions[i * params.n : (i + 1) * params.n] for i in range(len(prompts))]

    def _sample(self, rows: list[list[int]], params: SamplingParams):
        from transformers import DynamicCache

        n_rows, max_new = len(rows), params.max_new_tokens
        P = max(len(r) for r in rows)
        input_ids = torch.full((n_rows, P), self.pad_id, dtype=torch.long)
        attn = torch.zeros((n_rows, P), dtype=torch.long)
        for i, r in enumerate(rows):  # left padding: every prompt ends at column P-1
            input_ids[i, P - len(r) :] = torch.tensor(r)
            attn[i, P - len(r) :] = 1
        input_ids, attn = input_ids.to(self.device), attn.to(self.device)
        pos = (attn.cumsum(-1) - 1).clamp(min=0)  # [N, P]
        gen = None
        if params.seed is not None:
            gen = torch.Generator(device=self.device).manual_seed(params.seed)

        out_ids = torch.full((n_rows, max_new), self.pad_id, dtype=torch.long)
        out_lp = torch.zeros((n_rows, max_new))
        lengths = torch.zeros(n_rows, dtype=torch.long)  # tokens emitted per original row
        reasons = ["length"] * n_rows
        active = torch.arange(n_rows)  # original row of each batch row
        finished = torch.zeros(n_rows, dtype=torch.bool)  # per batch row, awaiting compaction
        tails = [""] * n_rows
        max_stop = max((len(s) for s in params.stop), default=0)

        cache = DynamicCache()
        logits = self.model(input_ids=input_ids, attention_mask=attn, position_ids=pos, past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
        next_pos = pos[:, -1]  # [N]
        for t in range(max_new):
            tok, lp = self._pick(logits.float(), params, gen)  # [n], [n]
            live = ~finished
            rows_live = active[live]
            out_ids[rows_live, t] = tok[live].cpu()
            out_lp[rows_live, t] = lp[live].cpu()
            now_done = live & (tok.cpu() == self.eos_id)
            lengths[rows_live] = t + 1
            for b in torch.nonzero(now_done).flatten().tolist():
                reasons[active[b].item()] = "eos"
            if max_stop:
                for b in torch.nonzero(live & ~now_done).flatten().tolist():
                    r = active[b].item()
                    tails[r] = (tails[r] + self._pieces[tok[b].item()])[-(max_stop + 8) :]
                    if any(tails[r].endswith(s) for s in params.stop):
                        reasons[r] = "stop"
                        now_done[b] = True
            finished |= now_done
            if bool(finished.all()) or t == max_new - 1:
                break
            # Compact: drop finished rows from the batch (and the KV cache) once they are >= 1/8 of it.
            if finished.sum() * 8 >= len(finished):
                keep = torch.nonzero(~finished).flatten()
                cache.batch_select_indices(keep.to(self.device))
                active, attn, next_pos, tok = active[keep], attn[keep], next_pos[keep], tok[keep]
                finished = finished[keep]
            tok = tok.masked_fill(finished.to(tok.device), self.pad_id)
            attn = torch.cat([attn, torch.ones_like(attn[:, :1])], dim=1)
            next_pos = next_pos + 1
            logits = self.model(input_ids=tok[:, None], attention_mask=attn, position_ids=next_pos[:, None], past_key_values=cache, use_cache=True).logits[:, -1]
        return out_ids, out_lp, lengths.tolist(), reasons

    @staticmethod
    def _pick(logits: torch.Tensor, params: SamplingParams, gen) -> tuple[torch.Tensor, torch.Tensor]:
        """Next token and its logprob at the sampling temperature (before top-k/top-p truncation)."""
        if params.temperature <= 0:
            logp_all = logits.log_softmax(-1)  # [n, V]
            tok = logits.argmax(-1)
        else:
            scaled = logits / params.temperature
            logp_all = scaled.log_softmax(-1)  # [n, V]
            probs = _filter_logits(scaled, params.top_k, params.top_p).softmax(-1)
            tok = torch.multinomial(probs, 1, generator=gen).squeeze(-1)
        return tok, logp_all.gather(-1, tok[:, None]).squeeze(-1)

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
        P, T = batch.prompt_len, batch.completion_mask.shape[1]
        pos = (batch.attention_mask.cumsum(-1) - 1).clamp(min=0)  # [N, P+T]
        # logits at positions P-1 .. P+T-2 predict the completion tokens P .. P+T-1
        logits = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=pos, logits_to_keep=T + 1).logits[:, :-1]
        logits = logits.float() / temperature  # [N, T, V]
        log_norm = logits.logsumexp(-1)  # [N, T]
        logp = logits.gather(-1, batch.completion_ids[..., None]).squeeze(-1) - log_norm  # [N, T]
        entropy = None
        if with_entropy:
            with torch.no_grad():
                probs = (logits - log_norm[..., None]).exp()
                entropy = log_norm - (probs * logits).sum(-1)  # [N, T]
        return LogprobOutput(logp, entropy)
