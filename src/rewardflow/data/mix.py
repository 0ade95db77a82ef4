"""Weighted mixing of several training sources (config `data.mix`, `data.mix_weights`).

Training problem i comes from source j with probability weights[j] / sum(weights), drawn from a generator seeded by
(seed, i) alone: the mixture is deterministic, a resumed run draws what the straight run drew, and no index depends
on any other. Within the chosen source the row is drawn the same way (with replacement), so sources of any length
mix at the stated rates.
"""
from __future__ import annotations

import bisect
import random


def mix_choice(index: int, cumulative: list[float], seed: int) -> tuple[int, random.Random]:
    """(the source of training index `index`, the generator that then picks its row). `cumulative` are the
    normalised cumulative weights, e.g. weights [3, 1] -> [0.75, 1.0]: a draw u in [0, 0.75) picks source 0."""
    rng = random.Random(f"rewardflow-mix:{seed}:{index}")  # str seeds hash with SHA-512: stable across runs and platforms
    u = rng.random()
    return min(bisect.bisect_right(cumulative, u), len(cumulative) - 1), rng


def cumulative_weights(weights: list[float]) -> list[float]:
    """[3, 1] -> [0.75, 1.0]. Weights must be >= 0 with a positive sum."""
    if not weights or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"data.mix_weights={list(weights)} must be >= 0 with a positive sum")
    total, out, acc = float(sum(weights)), [], 0.0
    for w in weights:
        acc += w
        out.append(acc / total)
    out[-1] = 1.0  # no rounding gap above the last edge
    return out


class MixSource:
    """Training problems drawn from several sources by weight; eval problems from one held-out set."""

    def __init__(self, sources: list, weights: list[float], eval_problems: list, *, seed: int = 0, names: list[str] | None = None):
        if len(sources) != len(weights):
            raise ValueError(f"data.mix has {len(sources)} sources but data.mix_weights has {len(weights)} weights")
        self.sources, self.cumulative, self.seed = list(sources), cumulative_weights(list(weights)), seed
        self.names = names or [str(j) for j in range(len(sources))]
        for name, src in zip(self.names, self.sources):
            if isinstance(src, list) and not src:
                raise ValueError(f"data.mix source {name} has no problems")
        self.eval_problems = eval_problems

    def train_problem(self, index: int):
        j, rng = mix_choice(index, self.cumulative, self.seed)
        src = self.sources[j]
        if isinstance(src, list):  # a file's rows
            return src[rng.randrange(len(src))]
        return src.train_problems([rng.randrange(10**9)])[0]  # a reasoning-gym stream: any deterministic index

    def train_problems(self, indices) -> list:
        return [self.train_problem(int(i)) for i in indices]
