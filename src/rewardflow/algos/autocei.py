"""Auto-CEI (Zhao et al., ICLR 2025, "Automatic Curriculum Expert Iteration for Reliable LLM Reasoning"): the
mathematics only. The policy may answer or say "I don't know"; expert iteration keeps correct answers and refusals
whose reward is positive; the refusal reward rises with the reasoning length L that came before the refusal, so a
lazy refusal (small L) is penalised and a refusal after a long attempt is accepted; between iterations the
curriculum moves the length threshold c1 by hill climbing on f = (1 - lambda) * precision + lambda * (1 - refusal rate).

The formulas follow the authors' code (SalesforceAIResearch/Auto-CEI, src/utils/utils.py and src/rl/curriculum.py):
refusal reward 2 * sigmoid(c2 * (L - c1)) - 1, initial c1 = mean refusal length + step, step = min(0.2 * std(L), 0.5),
c2 = -ln(0.1) / (4 * std(L)). Pure functions of numbers and tensors.
"""
from __future__ import annotations

import math

import torch

CORRECT_REWARD, WRONG_REWARD = 1.0, -1.0  # the paper's outcome rewards for an answer


def refusal_reward(length: torch.Tensor | float, c1: float, c2: float) -> torch.Tensor:
    """2 * sigmoid(c2 * (L - c1)) - 1, in (-1, 1): negative below the threshold c1 (laziness), 0 at it, positive
    above it; c2 > 0 sets how sharply it turns. length: any shape (steps of reasoning before the refusal)."""
    if c2 <= 0:
        raise ValueError(f"c2={c2} must be > 0: the refusal reward must rise with the reasoning length")
    L = torch.as_tensor(length, dtype=torch.float64)
    return 2 * torch.sigmoid(c2 * (L - c1)) - 1


def ei_rewards(correct: torch.Tensor, refused: torch.Tensor, length: torch.Tensor, *, c1: float, c2: float,
               fixed_refusal: float | None = None) -> torch.Tensor:
    """Per-sample rewards of expert iteration, [N]: +1 for a correct answer, -1 for a wrong one, and for a refusal
    the length-dependent refusal_reward (Auto-CEI) or, with fixed_refusal set, that constant (R-Tuning style: every
    refusal earns the same, however little reasoning came before it). correct, refused: [N] bool; length: [N]."""
    answer = torch.where(correct.bool(), CORRECT_REWARD, WRONG_REWARD).to(torch.float64)  # [N]
    if fixed_refusal is not None:
        ref = torch.full_like(answer, float(fixed_refusal))  # [N]
    else:
        ref = refusal_reward(length, c1, c2)  # [N]
    return torch.where(refused.bool(), ref, answer)  # [N]


def ei_keep(rewards: torch.Tensor) -> torch.Tensor:
    """Expert iteration keeps the samples with positive reward: correct answers and accepted refusals. [N] bool."""
    return rewards > 0


def objective(precision: float, refusal_rate: float, lam: float) -> float:
    """The curriculum's objective f = (1 - lambda) * precision + lambda * (1 - refusal rate) (the authors' code):
    lambda trades precision (accuracy on answered problems) against answering at all."""
    if not 0 <= lam <= 1:
        raise ValueError(f"lambda={lam} must lie in [0, 1]")
    return (1 - lam) * precision + lam * (1 - refusal_rate)


def reliability(correct: list[bool], refused: list[bool]) -> dict[str, float]:
    """precision = correct / answered, refusal rate = refused / all, accuracy = correct / all. A refused sample is never
    counted correct. Nothing answered gives precision 0, not 1: otherwise refusing everything would score
    f = 1 - lambda, above any policy that answers with precision below 1 (a useless policy must not win the objective)."""
    n = len(correct)
    if n == 0 or len(refused) != n:
        raise ValueError(f"need one refusal flag per sample and at least one sample (got {n} and {len(refused)})")
    n_ref = sum(bool(r) for r in refused)
    n_ok = sum(bool(c) and not bool(r) for c, r in zip(correct, refused))
    answered = n - n_ref
    return {"precision": n_ok / answered if answered else 0.0, "refusal_rate": n_ref / n, "accuracy": n_ok / n}


def initial_threshold(refusal_lengths: list[float], all_lengths: list[float], *, step_frac: float = 0.2,
                      max_step: float = 0.5) -> tuple[float, float, float]:
    """(c1, step, c2) from the starting policy's samples: step = min(step_frac * std(L), max_step) over all samples'
    lengths, c1 = mean length of its refusals + step, c2 = -ln(0.1) / (4 * std(L)) (the authors' constant: the
    reward reaches +-9/11 four standard deviations from c1). std is the population standard deviation."""
    if not all_lengths:
        raise ValueError("initial_threshold needs the lengths of at least one sample")
    mean_all = sum(all_lengths) / len(all_lengths)
    std = math.sqrt(sum((x - mean_all) ** 2 for x in all_lengths) / len(all_lengths))
    std = max(std, 1e-6)  # all samples equally long: a sharp step at c1 rather than a division by zero
    step = min(step_frac * std, max_step)
    base = sum(refusal_lengths) / len(refusal_lengths) if refusal_lengths else mean_all
    return base + step, step, -math.log(0.1) / std / 4


def curriculum_update(c1: float, direction: int, step: float, f_new: float, f_prev: float) -> tuple[float, int]:
    """One hill-climbing move of the threshold: keep moving in `direction` (+1 asks for longer reasoning before a
    refusal, -1 for shorter) while the objective improves (f_new > f_prev), turn round when it does not.
    Returns (next c1, next direction); c1 never goes below 0."""
    if direction not in (1, -1):
        raise ValueError(f"direction={direction} must be +1 or -1")
    new_direction = direction if f_new > f_prev else -direction
    return max(0.0, c1 + new_direction * step), new_direction
