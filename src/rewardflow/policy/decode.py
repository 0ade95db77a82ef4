"""The sampler's per-token machinery: counter-based sampling (Gumbel-max with per-row streams), top-k/top-p
filtering, the fused pick of next token + logprob, and `_LlamaDecoder`, our decode step for Llama-architecture
models over preallocated key/value buffers. `policy/hf.py` drives them; nothing here knows about prompts.

Where a decode step's time goes (docs/speed.md has the measurements): on a 1M-parameter model it is Python and
dispatch overhead (about 15 small ops per layer), on a 135M model it is the weight matmuls (aten::mm, 70-80% of the
step), so the fp32 step is bound by BLAS on skinny matrices and the lever there is bf16 weights, not fewer ops.
The overhead of the small model is what `torch.compile` removes (`_compiled_layers`: 3x per step at batch 1, 1.6x at
16 rows, 1.2x at 64); at 256 rows it is about even with the eager step, which drops finished rows.
"""
from __future__ import annotations

import warnings
from functools import lru_cache

import torch

_M32 = 0xFFFFFFFF


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mixer (xorshift-multiply rounds, after C. Wellons' "lowbias32") on int64 tensors
    holding values in [0, 2^32). Multipliers are < 2^31 so no product overflows int64."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x346CA68B) & _M32
    return x ^ (x >> 16)


def mix32(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Combine integers a and b (int64 tensors, b < 2^31) elementwise into 32-bit seeds (deterministic, platform independent)."""
    return _hash32((_hash32(a & _M32) + 0x3C6EF372 * (b + 1)) & _M32)


def _mix32(a: int, b: int) -> int:
    return int(mix32(torch.tensor([a]), torch.tensor([b]))[0])


def row_keys(prompt_seeds: list[int], n: int) -> list[int]:
    """The random-stream key of sample j of prompt i, prompt-major: [_mix32(s_i, j) for s_i in seeds for j < n], in one pass."""
    seeds = torch.tensor(prompt_seeds, dtype=torch.long)[:, None].expand(-1, n)  # [B, n]
    return mix32(seeds, torch.arange(n)[None, :].expand_as(seeds)).flatten().tolist()


def derive_prompt_seeds(seed: int | None, n_prompts: int, offset: int = 0) -> list[int]:
    """Per-prompt seeds of prompts offset .. offset+n-1 of a request seeded `seed`. None draws one base seed
    from torch's global RNG, so unseeded calls still follow `torch.manual_seed`."""
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
    return mix32(torch.full((n_prompts,), seed, dtype=torch.long), torch.arange(offset, offset + n_prompts)).tolist()


@lru_cache(maxsize=8)
def _token_hash(vocab: int, device: str) -> torch.Tensor:
    """_hash32 of every token id's counter [V]: the same every step, so it is computed once per (V, device)."""
    token = torch.arange(vocab, device=device) * 0x1B873593  # [V] < 2^52
    return _hash32(token & _M32)


def _gumbel(keys: torch.Tensor, t: int, vocab: int) -> torch.Tensor:
    """Gumbel(0, 1) noise [n, V] for rows with 32-bit `keys` [n] at step t, a pure function of (key, t, token)."""
    step_key = _hash32((keys + (t + 1) * 0x2545F491) & _M32)  # [n]
    bits = _hash32(step_key[:, None] ^ _token_hash(vocab, str(keys.device))[None, :])  # [n, V]
    u = (bits.double() + 0.5) / 2.0**32  # (0, 1), never 0 or 1
    return (-torch.log(-torch.log(u))).float()  # [n, V]


def _filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Mask logits [n, V] outside the top-k and the top-p nucleus (Holtzman et al. 2020) with -inf."""
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # [n, 1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # [n, V]
        probs = sorted_logits.softmax(-1)  # [n, V]
        # drop a token when the mass before it already reaches top_p (the first token always stays)
        drop_sorted = (probs.cumsum(-1) - probs) >= top_p  # [n, V]
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def pick_next(logits: torch.Tensor, params, keys: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Next token [n] and its logprob [n] at the sampling temperature (before top-k/top-p truncation), from logits [n, V].

    Sampling is the Gumbel-max trick (Gumbel 1954; Maddison et al. 2014): argmax(logits + G) with
    G = -log(-log U) is an exact draw from softmax(logits). U comes from a counter-based hash of
    (row key, step, token), so every row has its own stream regardless of batch composition.
    Fused: the logprob is the picked logit minus one logsumexp per row, so no [n, V] log-softmax is written.
    """
    logits = logits.float()  # a no-op for fp32 models; bf16 logits are scored in fp32
    if params.temperature <= 0:
        scaled = logits
        tok = logits.argmax(-1)  # [n]
    else:
        scaled = logits / params.temperature  # [n, V]
        filtered = _filter_logits(scaled, params.top_k, params.top_p)  # [n, V]
        tok = (filtered + _gumbel(keys, t, logits.shape[-1])).argmax(-1)  # [n]
    return tok, scaled.gather(-1, tok[:, None]).squeeze(-1) - scaled.logsumexp(-1)


def _decode_layers(body, layers, lm_head, rope, tok, pos, attn, col, K, V, whole: bool = False):
    """Logits [n, V] after feeding tokens `tok` [n] at positions `pos` [n]: their keys and values go into column
    `col` ([1] long) of the per-layer buffers K[i], V[i] [n, H_kv, S, Dh]; `attn` [n, S] marks real columns. The eager
    step passes buffers cut at col + 1; the compiled step passes them `whole`, so its shapes stay the same from step
    to step, and masks the columns after `col`."""
    n, S = tok.shape[0], attn.shape[1]
    x = body.embed_tokens(tok[:, None])  # [n, 1, d]
    cos, sin = body.rotary_emb(x, pos[:, None])  # [n, 1, Dh]
    # additive mask, built once per step for all layers: 0 on real columns, -inf on padding (and unwritten columns)
    hidden = attn == 0  # [n, S]
    if whole:
        hidden = hidden | (torch.arange(S, device=tok.device) > col)
    bias = torch.zeros(attn.shape, dtype=x.dtype, device=x.device).masked_fill_(hidden, float("-inf"))[:, None, None, :]
    for i, layer in enumerate(layers):
        a = layer.self_attn
        h = layer.input_layernorm(x)
        q = a.q_proj(h).view(n, 1, -1, a.head_dim).transpose(1, 2)  # [n, H, 1, Dh]
        k = a.k_proj(h).view(n, 1, -1, a.head_dim).transpose(1, 2)  # [n, H_kv, 1, Dh]
        v = a.v_proj(h).view(n, 1, -1, a.head_dim).transpose(1, 2)  # [n, H_kv, 1, Dh]
        q, k = rope(q, k, cos, sin)
        K[i].index_copy_(2, col, k)
        V[i].index_copy_(2, col, v)
        x = x + a.o_proj(_attend(q, K[i], V[i], bias, a.scaling, fused=whole and n > 1).reshape(n, 1, -1))
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    return lm_head(body.norm(x))[:, -1]  # [n, V]


def _attend(q: torch.Tensor, K: torch.Tensor, V: torch.Tensor, bias: torch.Tensor, scale: float, fused: bool) -> torch.Tensor:
    """Attention of one query per row, q [n, H, 1, Dh], over key/value buffers K, V [n, H_kv, S', Dh] with the
    additive mask `bias` [n, 1, 1, S']; returns [n, H_kv, H/H_kv, Dh] (query heads in order, grouped by their key/value
    head). Grouped-query heads share their key/value head: the H/H_kv query heads of one group ride as rows of one
    matmul instead of repeating K and V.

    Eager (`fused=False`, buffers cut at the current column, so strided views): two plain batched matmuls; the fused
    SDPA kernel would first copy the strided views. Compiled with more than one row (`fused=True`, whole contiguous
    buffers): SDPA, which inductor keeps as one kernel; its own lowering of the two small products into a fused C++
    loop took 300 us per layer at 16 rows, 6x the batched matmuls, and made the compiled step slower than the eager one
    from 64 rows up. At one row that lowering is still the faster (0.64 vs 0.71 ms per step; docs/speed.md)."""
    n, h_kv, dh = q.shape[0], K.shape[1], q.shape[-1]
    if fused:
        o = torch.nn.functional.scaled_dot_product_attention(q, K, V, attn_mask=bias, scale=scale, enable_gqa=h_kv != q.shape[1])
        return o.view(n, h_kv, -1, dh)  # [n, H, 1, Dh] -> [n, H_kv, H/H_kv, Dh]: query head h is (h // G, h % G)
    q = q.view(n, h_kv, -1, dh)  # [n, H_kv, H/H_kv, Dh]
    scores = (q @ K.transpose(-1, -2)) * scale + bias  # [n, H_kv, H/H_kv, S']
    # softmax in fp32 as the transformers attention does, so bf16 weights sample what its forward samples
    return scores.softmax(-1, dtype=torch.float32).to(scores.dtype) @ V  # [n, H_kv, H/H_kv, Dh]


_COMPILE_FAILED: list[str] = []  # why torch.compile failed in this process, once it has: later steps run eagerly


@lru_cache(maxsize=1)
def _compiled_layers():
    """_decode_layers through torch.compile (inductor: C++ kernels on CPU), built on first use. Shapes are static
    within a call (whole buffers, no row compaction); a second call with other shapes recompiles once, with
    dynamic sizes from then on (torch.compile's automatic dynamic shapes)."""
    return torch.compile(_decode_layers)


class _LlamaDecoder:
    """One decode step of a Llama-architecture model with our own preallocated key/value buffers.

    Why: for small models the time per generated token is mostly Python and framework overhead, not
    FLOPs. The transformers forward rebuilds masks, walks output-capturing wrappers and grows its cache by
    concatenation on every token; here a step is the layer arithmetic alone, writing keys and values in
    place into buffers sized once for prompt + budget. The prefill still runs through the model's own
    forward (and its cache is copied in), and the submodules are called as modules, so hooks on them
    fire (LoRA-wrapped projections work unchanged). When anything hooks the whole model's forward, or the
    model is not Llama-shaped, the sampler keeps using the transformers forward for every step (also in
    training mode with attention dropout).

    `compiled=True` runs the step through torch.compile: at small batch, where the eager step is ~45 small ops of
    dispatch overhead, that removes most of it (docs/speed.md); finished rows then stay in the batch (fed <pad>)
    instead of being dropped, so the step's shapes never change within a call.
    """

    MODEL_TYPES = ("llama",)  # same block structure, RoPE and (grouped-query) attention as LlamaDecoderLayer

    @classmethod
    def maybe(cls, model, cache, total_len: int, compiled: bool = False) -> "_LlamaDecoder | None":
        if getattr(model.config, "model_type", None) not in cls.MODEL_TYPES:
            return None
        if model.training and getattr(model.config, "attention_dropout", 0.0) > 0:
            return None  # the transformers forward applies attention dropout in training mode; this step has none
        if model._forward_hooks or model._forward_pre_hooks or model.model._forward_hooks or model.model._forward_pre_hooks:
            return None  # someone observes whole forwards: give them every one
        return cls(model, cache, total_len, compiled and not _COMPILE_FAILED)

    def __init__(self, model, cache, total_len: int, compiled: bool = False):
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        self.rope, self.compiled = apply_rotary_pos_emb, compiled
        self.body, self.lm_head = model.model, model.lm_head
        self.layers = list(self.body.layers)
        n, h_kv, p, dh = cache.layers[0].keys.shape  # [N, H_kv, P, Dh]
        self.K, self.V = [], []  # per layer [N, H_kv, P+T, Dh]: separate buffers, so a compiled step updates each in place
        for layer in cache.layers:
            for buf, src in ((self.K, layer.keys), (self.V, layer.values)):
                buf.append(src.new_zeros(n, h_kv, total_len, dh))
                buf[-1][:, :, :p] = src
        self.length = p  # filled columns

    def select(self, keep: torch.Tensor) -> None:
        """Keep rows `keep` (ascending): move only their filled columns to the front, no reallocation."""
        m, t = len(keep), self.length
        for buf in (self.K, self.V):
            for i, x in enumerate(buf):
                x[:m, :, :t] = x[keep, :, :t]  # the right side is gathered into a copy first: no aliasing
                buf[i] = x[:m]

    def step(self, tok: torch.Tensor, pos: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        """Logits [n, V] after feeding tokens `tok` [n] at positions `pos` [n]; `attn` [n, P+T] marks real columns."""
        t = self.length
        col = torch.tensor([t], device=tok.device)
        args = (self.body, self.layers, self.lm_head, self.rope, tok, pos)
        if self.compiled:
            try:
                logits = _compiled_layers()(*args, attn, col, self.K, self.V, True)
            except Exception as e:  # no C++ compiler, an inductor limitation: say so once, then step eagerly
                self._give_up_compiling(e)
        if not self.compiled:
            logits = _decode_layers(*args, attn[:, : t + 1], col, [x[:, :, : t + 1] for x in self.K], [x[:, :, : t + 1] for x in self.V])
        self.length = t + 1
        return logits

    def _give_up_compiling(self, error: Exception) -> None:
        """The compiled step failed (compilation comes before running; should part of it have run, the eager step
        writes the same keys and values into the same column again): this and every later decoder in the process
        step eagerly. This call keeps its finished rows (compaction was planned off for it)."""
        reason = f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"
        if not _COMPILE_FAILED:
            warnings.warn(f"compile_decode: torch.compile of the decode step failed ({reason}); decoding without it "
                          "(same tokens, slower at small batch). Inductor on CPU needs a working C++ compiler (g++ or clang).",
                          RuntimeWarning, stacklevel=3)
            _COMPILE_FAILED.append(reason)
        self.compiled = False
