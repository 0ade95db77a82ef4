"""Process advantage verifiers as a Scorer (Setlur et al. 2024, "Rewarding Progress: Scaling Automated Process
Verifiers for LLM Reasoning"): the step score is the *progress* a step makes under a prover policy,

    A_k = Q(prefix_k) - Q(prefix_{k-1}),    Q(prefix_0) = Q from the question alone,

with Q a Monte-Carlo estimate of the prover's success rate when it continues from the prefix (K rollouts, each
verified against the gold answer; the whole solution's own verdict stands for Q(prefix_S)). Progress feeds the
RL loop's dense hook with `algo.dense.mode=step` (each token of step k gets A_k, added to the outcome
advantage), as the paper adds PAV progress to the outcome reward. The outcome score is the solution's verdict.

The estimates are computed here, not learned: K rollouts per step per sample make it exact but costly, which
is the trade the paper's learned PAV avoids. Saved as a directory whose scorer.json is
{"kind": "pav", "prover": checkpoint dir, "rollouts": K, "max_new_tokens": ..., "temperature": ...}.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..data.problem import Problem
from ..data.steps import join_steps
from .base import StepScores
from .label import LabelConfig, prefix_text, rollout_outcomes
from .shaping import pav_progress


class PAVScorer:
    def __init__(self, prover, verifier=None, *, rollouts: int = 4, max_new_tokens: int = 64, temperature: float = 1.0, seed: int = 0):
        from ..verify import Verifier

        self.prover, self.verifier = prover, verifier or Verifier()
        self.cfg = LabelConfig(method="mc-soft", rollouts=rollouts, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
        self.calls = 0  # every score() call rolls out with a new seed, so repeated prefixes are estimated afresh
        self.flops_spent = 0.0  # Scorer contract: the prover's rollouts (prefill and decode)

    @classmethod
    def load(cls, path: str | Path) -> "PAVScorer":
        from ..policy.hf import HFPolicy

        path = Path(path)
        meta = json.loads((path / "scorer.json").read_text())
        prover = Path(meta["prover"]) if Path(meta["prover"]).is_absolute() else path / meta["prover"]
        return cls(HFPolicy.from_pretrained(prover), rollouts=meta.get("rollouts", 4), max_new_tokens=meta.get("max_new_tokens", 64),
                   temperature=meta.get("temperature", 1.0), seed=meta.get("seed", 0))

    def q_values(self, problems: list[Problem], solutions: list[list[str]]) -> list[list[float]]:
        """Q(prefix_t) for t = 0..S_i of every solution: rollouts for t < S_i, the solution's verdict at t = S_i."""
        items, where = [], []
        for i, (p, steps) in enumerate(zip(problems, solutions)):
            for t in range(len(steps)):
                items.append((p, prefix_text(steps, t) if t else ""))
                where.append(i)
        outcomes = rollout_outcomes(_Metered(self.prover, self), self.verifier, items, self.cfg, seed=self.cfg.seed + 7919 * self.calls)
        self.calls += 1
        q: list[list[float]] = [[] for _ in problems]
        for i, r in zip(where, outcomes):
            q[i].append(sum(r) / len(r))
        finals = self.verifier.verify(problems, [join_steps(s) for s in solutions])
        for i, f in enumerate(finals):
            q[i].append(float(f.correct))
        return q

    def score(self, problems: list[Problem], solutions: list[list[str]]) -> list[StepScores]:
        q = self.q_values(problems, solutions)
        progress = pav_progress([torch.tensor(x[1:], dtype=torch.float64) for x in q], torch.tensor([x[0] for x in q], dtype=torch.float64))
        return [StepScores(steps=a.tolist(), outcome=x[-1]) for a, x in zip(progress, q)]


class _Metered:
    """The prover as seen by rollout_outcomes: every generate call adds 2 * params * (tokens read + tokens sampled)
    to owner.flops_spent; anything else is the prover's own."""

    def __init__(self, prover, owner):
        self._prover, self._owner = prover, owner

    def __getattr__(self, name):
        return getattr(self._prover, name)

    def generate(self, *args, **kwargs):
        groups = self._prover.generate(*args, **kwargs)
        tokens = sum(c.prompt_tokens - c.cached_tokens + len(c.token_ids) for g in groups for c in g)
        self._owner.flops_spent += 2.0 * (getattr(self._prover, "num_params", 0) or 0) * tokens
        return groups
