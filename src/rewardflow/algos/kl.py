"""Per-token estimators of KL(pi || pi_ref) from samples of pi (Schulman 2020, "Approximating KL divergence")."""
from __future__ import annotations

import torch


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k3") -> torch.Tensor:
    """Tokens were sampled from pi. With log r = ref_logp - logp:
    k1 = -log r (unbiased, high variance, can be negative); k2 = (log r)^2 / 2 (biased, low variance);
    k3 = (r - 1) - log r (unbiased, always >= 0; used by GRPO, DeepSeekMath eq. 4). Shapes: [N, T] -> [N, T].
    """
    log_ratio = ref_logp - logp  # [N, T]
    if kind == "k1":
        return -log_ratio
    if kind == "k2":
        return 0.5 * log_ratio**2
    if kind == "k3":
        return torch.exp(log_ratio) - 1 - log_ratio
    raise ValueError(f"unknown KL estimator {kind!r}; valid: k1, k2, k3")
