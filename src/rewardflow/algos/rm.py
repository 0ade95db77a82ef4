"""Reward-model losses: pure functions of scalar scores (logits) and labels -> (loss, stats).

Outcome RMs score a whole solution; process RMs score every step boundary. Labels may be soft (Monte-Carlo
estimates, ER-PRM labels in [0, 1]): the cross-entropy losses take any target in [0, 1].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Pairwise loss of the Bradley-Terry model (Bradley & Terry 1952; Ouyang et al. 2022, eq. 1):

    L = -mean_p log sigma(r(x, y_chosen) - r(x, y_rejected)).
    chosen, rejected: [P] scores of the preferred (correct) and the other (wrong) solution of each pair.
    """
    margin = chosen - rejected  # [P]
    loss = -F.logsigmoid(margin).mean()
    return loss, {"rm/acc": (margin > 0).float().mean().item(), "rm/margin": margin.mean().item()}


def pointwise_bce_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Pointwise outcome loss (Cobbe et al. 2021, "Training Verifiers", Sec. 4: the verifier predicts
    correctness): L = -mean_i [l_i log sigma(z_i) + (1 - l_i) log(1 - sigma(z_i))]. logits, labels: [N]."""
    labels = labels.to(logits.dtype)
    loss = F.binary_cross_entropy_with_logits(logits, labels)
    acc = ((logits > 0).to(labels.dtype) == (labels > 0.5).to(labels.dtype)).float().mean()
    return loss, {"rm/acc": acc.item(), "rm/score_mean": torch.sigmoid(logits).mean().item()}


def step_bce_loss(step_logits: torch.Tensor, step_labels: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Process RM loss (Lightman et al. 2023; Wang et al. 2024, Math-Shepherd, eq. 3): binary cross-entropy at
    every step boundary, averaged over the real (unpadded) steps of the batch.

    step_logits, step_labels: [N, S]; mask: [N, S] bool, False on padded steps. Soft labels (MC fraction,
    ER-PRM) are targets in [0, 1]; hard labels are 0/1.
    """
    mask = mask.bool()
    per_step = F.binary_cross_entropy_with_logits(step_logits, step_labels.to(step_logits.dtype), reduction="none")  # [N, S]
    n = mask.sum().clamp(min=1)
    loss = (per_step * mask).sum() / n
    hit = ((step_logits > 0) == (step_labels > 0.5)) & mask  # [N, S]
    return loss, {"rm/step_acc": (hit.sum() / n).item(), "rm/steps": int(mask.sum())}
