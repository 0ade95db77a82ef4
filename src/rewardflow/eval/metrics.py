"""Policy metrics: pass@k (unbiased), maj@k, and 95% confidence intervals; and the one implementation of choosing a
sample out of N (best-of-N by score, majority and score-weighted voting) that search strategies, reward-model
evaluation and benchmarks all call. Pure functions."""
from __future__ import annotations

import math
from typing import Hashable, Sequence

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021, "Evaluating Large Language Models
    Trained on Code", eq. 1): 1 - C(n-c, k) / C(n, k), as a product to stay exact for large n."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


# ---------------------------------------------------------------- choosing one of N samples


def _comparable(score: float | None) -> float:
    """A missing (None) or NaN score never beats a real one."""
    return -math.inf if score is None or math.isnan(score) else score


def top_scored(scores: Sequence[float | None], idx: Sequence[int] | None = None) -> list[int]:
    """Best-of-N reranking (Cobbe et al. 2021; Lightman et al. 2023): the indices among `idx` (default: all) that hold
    the largest score, ascending, so `[0]` breaks a tie towards the earliest sample (a constant scorer then takes the
    first sample, not an oracle) and all of them let a caller share credit between tied winners."""
    idx = range(len(scores)) if idx is None else idx
    if not idx:
        return []
    best = max(_comparable(scores[i]) for i in idx)
    return sorted(i for i in idx if _comparable(scores[i]) == best)


def vote(keys: Sequence[Hashable | None], weights: Sequence[float], idx: Sequence[int] | None = None) -> list[int]:
    """Weighted voting over answers (Wang et al. 2023 self-consistency with unit weights; Uesato et al. 2022 and Li et
    al. 2023 "Making Language Models Better Reasoners with Step-Aware Verifier" with reward weights): sum the weight of
    each distinct key among `idx` (default: all) and return the representative (first sample) of every key with the
    largest total, ascending (`[0]` is the earliest answer seen). A None key (no answer) does not vote; no votes at all
    returns []."""
    idx = range(len(keys)) if idx is None else idx
    total: dict[Hashable, float] = {}
    first: dict[Hashable, int] = {}
    for i in idx:
        if keys[i] is not None:
            total[keys[i]] = total.get(keys[i], 0.0) + weights[i]
            first.setdefault(keys[i], i)
    if not total:
        return []
    best = max(total.values())
    return sorted(first[k] for k, w in total.items() if w == best)


def majority(answers: Sequence[Hashable | None]) -> Hashable | None:
    """Most frequent non-None answer; ties go to the answer seen first. None when no sample answered."""
    winners = vote(answers, [1.0] * len(answers))
    return answers[winners[0]] if winners else None


def maj_at_k(answers: Sequence[Hashable | None], correct: Sequence[bool], k: int) -> float:
    """1.0 when the majority answer of the first k samples is a correct one (Wang et al. 2023,
    self-consistency); samples with no extractable answer do not vote. The voted answer is judged by its first
    sample, the one a selector would return (samples with equal answers are judged alike)."""
    winners = vote(answers[:k], [1.0] * k)
    return float(correct[winners[0]]) if winners else 0.0


def best_of_n(scores: Sequence[float], correct: Sequence[bool]) -> float:
    """1.0 when the highest-scored sample is correct (`top_scored`; ties go to the earliest sample)."""
    if len(scores) != len(correct) or not scores:
        raise ValueError(f"best_of_n needs as many scores as samples (got {len(scores)} and {len(correct)})")
    return float(correct[top_scored(scores)[0]])


def weighted_vote(answers: Sequence[Hashable | None], scores: Sequence[float], correct: Sequence[bool]) -> float:
    """1.0 when the answer with the largest summed score is correct (`vote` with the scores as weights; ties go to
    the earliest answer; samples without an answer do not vote; nobody answering scores 0)."""
    if not len(answers) == len(scores) == len(correct):
        raise ValueError(f"weighted_vote needs aligned answers, scores, correct (got {len(answers)}, {len(scores)}, {len(correct)})")
    winners = vote(answers, scores)
    return float(correct[winners[0]]) if winners else 0.0


# ---------------------------------------------------------------- intervals


def mean_ci(values: Sequence[float], clip: bool = True) -> tuple[float, float, float]:
    """Mean with a 95% normal-approximation interval (sample std / sqrt(n)), clipped to [0, 1] unless clip=False
    (differences, which can be negative)."""
    n = len(values)
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0, 1.0
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = Z95 * sd / math.sqrt(n)
    return (mean, max(0.0, mean - half), min(1.0, mean + half)) if clip else (mean, mean - half, mean + half)


def paired_delta(after_runs: Sequence[Sequence[float]], before_runs: Sequence[Sequence[float]]) -> dict:
    """Per-problem metric after minus before on the same problems (each side averaged over its runs first), with its
    95% interval over problems: far tighter than two unpaired intervals, because problem difficulty cancels."""
    n = len(before_runs[0])
    if any(len(r) != n for r in [*after_runs, *before_runs]):
        raise ValueError(f"paired delta needs the same problems in every run ({sorted({len(r) for r in [*after_runs, *before_runs]})})")
    avg = lambda runs, j: sum(r[j] for r in runs) / len(runs)  # noqa: E731
    mean, lo, hi = mean_ci([avg(after_runs, j) - avg(before_runs, j) for j in range(n)], clip=False)
    return {"mean": mean, "ci95": [lo, hi], "n": n}


def wilson_ci(successes: float, n: int) -> tuple[float, float, float]:
    """Proportion with the Wilson score 95% interval (Wilson 1927): sane at 0 and n successes."""
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    p = successes / n
    denom = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denom
    return p, max(0.0, centre - half), min(1.0, centre + half)
