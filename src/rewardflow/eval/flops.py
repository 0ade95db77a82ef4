"""The physical limit: this machine's fp32 matmul peak, and model-FLOPs utilisation (MFU) of a workload.

What we count (Kaplan et al. 2020, "Scaling Laws for Neural Language Models", sec. 2.1; Chowdhery et al.
2022, PaLM, appendix B):

- a forward pass costs 2·P FLOPs per token (one multiply and one add per weight), a backward pass 4·P,
  so a generated token costs 2·P and a trained token 6·P (forward + backward);
- P counts every parameter once. With tied embeddings the shared matrix is the lm_head matmul (real
  FLOPs); the embedding lookup itself is a gather, which we ignore (it is one V×d matrix, counted once);
- attention scores and the weighted sum (QKᵀ and AV) add 4·L·d·ctx FLOPs per token at context length
  ctx forward (×3 when trained); `attention_flops` gives them, callers add them when they know ctx;
- norms, activations, softmax and sampling are not counted (they are O(d) per token, not O(P)).

MFU = counted FLOPs / seconds / measured peak. The peak is the best of a square-matmul sweep, so MFU
is "how close is this workload to what this machine's BLAS can do", not to a datasheet number.
"""
from __future__ import annotations

import time

import torch


def matmul_peak_gflops(sizes: tuple[int, ...] = (256, 512, 1024, 2048), reps: int = 5, dtype: torch.dtype = torch.float32,
                       device: str = "cpu", min_seconds: float = 0.05) -> dict:
    """Best fp32 GFLOP/s of n×n @ n×n matmuls (2·n³ FLOPs each) over `sizes`, best of `reps` timings.

    Each timing repeats the matmul until `min_seconds` have passed, so small sizes are not timer noise.
    Uses the current `torch.get_num_threads()`; returns {"peak_gflops", "by_size": {n: gflops}, "threads"}.
    """
    by_size = {}
    for n in sizes:
        a = torch.randn(n, n, dtype=dtype, device=device)
        b = torch.randn(n, n, dtype=dtype, device=device)
        out = torch.empty(n, n, dtype=dtype, device=device)
        torch.matmul(a, b, out=out)  # warm-up (allocations, BLAS thread pool)
        best = 0.0
        for _ in range(reps):
            calls, t0 = 0, time.perf_counter()
            while True:
                torch.matmul(a, b, out=out)
                calls += 1
                if device != "cpu":
                    torch.cuda.synchronize()
                elapsed = time.perf_counter() - t0
                if elapsed >= min_seconds:
                    break
            best = max(best, 2 * n**3 * calls / elapsed / 1e9)
        by_size[n] = best
    return {"peak_gflops": max(by_size.values()), "by_size": by_size, "threads": torch.get_num_threads(), "dtype": str(dtype)}


def attention_flops(layers: int, hidden: int, context: int) -> float:
    """Forward FLOPs per token of QKᵀ and AV at context length `context`: 2 matmuls × 2·d·ctx each, per layer."""
    return 4.0 * layers * hidden * context


def model_flops(params: int, *, gen_tokens: float = 0, train_tokens: float = 0, forward_tokens: float = 0,
                attn_per_token: float = 0.0) -> float:
    """FLOPs of a workload: 2·P per generated or forward-only (scored) token, 6·P per trained token.

    `attn_per_token` (from `attention_flops`) is added per forward token and 3× per trained token.
    """
    forward = gen_tokens + forward_tokens
    return (2.0 * params + attn_per_token) * forward + (6.0 * params + 3 * attn_per_token) * train_tokens


def mfu(flops: float, seconds: float, peak_gflops: float) -> float:
    """Model-FLOPs utilisation: achieved FLOP/s over the measured peak (a fraction, not a percentage)."""
    if seconds <= 0 or peak_gflops <= 0:
        raise ValueError(f"mfu needs seconds > 0 and peak_gflops > 0, got {seconds}, {peak_gflops}")
    return flops / seconds / (peak_gflops * 1e9)


def throughput_mfu(params: int, peak_gflops: float, *, gen_tok_per_s: float = 0.0, train_tok_per_s: float = 0.0) -> dict:
    """MFU of generation (2·P per token) and of training (6·P per token) from throughputs: the figures that go
    next to every tokens/s number in the benchmarks."""
    out = {}
    if gen_tok_per_s:
        out["mfu_gen"] = mfu(model_flops(params, gen_tokens=gen_tok_per_s), 1.0, peak_gflops)
    if train_tok_per_s:
        out["mfu_train"] = mfu(model_flops(params, train_tokens=train_tok_per_s), 1.0, peak_gflops)
    return out


# ---------------------------------------------------------------- the other limit: memory bandwidth
# At small batch a decode step is bound by reading the weights (and the KV cache) from memory, not by FLOPs.

def memory_bandwidth_gbs(megabytes: int = 256, reps: int = 5, device: str = "cpu") -> dict:
    """Measured memory bandwidth (GB/s, 1e9 bytes/s) at the current thread count, best of `reps`:

    - "read_gbs": a sum over a `megabytes` fp32 buffer (far larger than any cache), bytes read / seconds: what a
      decode step does to its weights;
    - "copy_gbs": a copy of that buffer into another, (bytes read + bytes written) / seconds.
    """
    n = megabytes * 2**20 // 4
    a = torch.ones(n, dtype=torch.float32, device=device)
    b = torch.empty_like(a)
    best_read = best_copy = 0.0
    for _ in range(reps + 1):  # the first round warms pages and the thread pool
        t0 = time.perf_counter()
        a.sum().item()  # .item() waits for the device, so the timing covers the read
        t1 = time.perf_counter()
        b.copy_(a)
        if device != "cpu":
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        best_read, best_copy = max(best_read, 4 * n / (t1 - t0) / 1e9), max(best_copy, 8 * n / (t2 - t1) / 1e9)
    return {"read_gbs": best_read, "copy_gbs": best_copy, "megabytes": megabytes, "threads": torch.get_num_threads()}


def decode_bound_tok_per_s(bandwidth_gbs: float, weight_bytes: float, batch: int, *, kv_bytes_per_token: float = 0.0,
                           context: float = 0.0) -> float:
    """The memory-bandwidth limit of batched decoding, in generated tokens/s.

    One step reads every weight once (shared by the batch) and each row's keys and values:
    bytes per step = weight_bytes + batch · context · kv_bytes_per_token, and it emits `batch` tokens, so
    tok/s <= batch · bandwidth / bytes per step. (kv_bytes_per_token = 2 · layers · kv_heads · head_dim · element size.)
    """
    if bandwidth_gbs <= 0 or weight_bytes <= 0 or batch < 1:
        raise ValueError(f"decode_bound_tok_per_s needs bandwidth > 0, weight_bytes > 0, batch >= 1; got {bandwidth_gbs}, {weight_bytes}, {batch}")
    step_bytes = weight_bytes + batch * context * kv_bytes_per_token
    return batch * bandwidth_gbs * 1e9 / step_bytes
