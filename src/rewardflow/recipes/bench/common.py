"""Shared pieces of the benchmarks: the machine note, the fp32 peak, MFU next to throughputs, peak RSS,
robust step statistics, atomic JSON output and a torch-profiler summary."""
from __future__ import annotations

import os
import platform
import resource
import statistics

import torch

from ...atomic import write_json
from ...eval.flops import matmul_peak_gflops, throughput_mfu

__all__ = ["machine_note", "measure_peak", "with_mfu", "peak_rss_mb", "step_stats", "write_json", "profile_summary", "throughput_mfu"]


def _cpu_model() -> tuple[str, bool]:
    """(the CPU's model name, whether it has AVX-512): fp32 and bf16 kernels, so speed ratios, differ between them."""
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return platform.processor() or platform.machine(), False
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), platform.machine())
    return name, "avx512f" in info


def machine_note() -> dict:
    model, avx512 = _cpu_model()
    return {
        "cpu": platform.processor() or platform.machine(),
        "cpu_model": model,
        "avx512": avx512,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_avg_1m": os.getloadavg()[0],
        "note": "2-core CPU shared with other jobs at the time: ratios measured side by side in one run are what count",
    }


def measure_peak(threads: int | None = None, sizes: tuple[int, ...] = (256, 512, 1024, 2048)) -> dict:
    """fp32 matmul peak at `threads` torch threads (default: the current setting)."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return matmul_peak_gflops(sizes)
    finally:
        torch.set_num_threads(before)


def with_mfu(row: dict, params: int, peak_gflops: float, gen_key: str | None = None, train_key: str | None = None) -> dict:
    """Add mfu_gen / mfu_train next to the tokens/s fields named by gen_key / train_key."""
    out = dict(row)
    m = throughput_mfu(params, peak_gflops, gen_tok_per_s=row.get(gen_key, 0.0) if gen_key else 0.0,
                       train_tok_per_s=row.get(train_key, 0.0) if train_key else 0.0)
    out.update(m)
    return out


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def step_stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}




def profile_summary(prof, top: int = 12) -> list[dict]:
    """The ops with the most self CPU time in a torch.profiler run, with their share of the total."""
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    rows = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return [{"op": e.key, "self_cpu_ms": e.self_cpu_time_total / 1e3, "share": e.self_cpu_time_total / total, "calls": e.count} for e in rows]
