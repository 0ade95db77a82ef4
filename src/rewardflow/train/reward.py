"""The RL reward of config section `reward:`: the verifier's verdict plus weighted learned scorers, per-step rewards
for dense credit from the first process scorer (shaped), the user's plain-Python reward functions
(rewards/functions.py, run in a worker process), and the online update of scorers that learn (PRIME).

    reward(sample) = verifier_weight * verdict + sum_i weights[i] * transform(aggregate(scorer_i(sample)))
                     + sum_j function_weights[j] * f_j(sample)      (f_j = None counts as 0)
                     + remote_weight * server(sample)              (reward.remote_url, rewards/remote.py)
    step_rewards(sample) = shaping(step scores of the first scorer that returns any)   (when algo.dense.coef > 0)
"""
from __future__ import annotations


import torch

from ..config import RewardConfig
from ..data.steps import split_steps
from ..rewards import StepScores, aggregate, load_scorer
from ..rewards.functions import RewardFunctions
from ..rewards.remote import RemoteReward
from ..rewards.shaping import SHAPINGS, TRANSFORMS


class UserRewards:
    """The user's rewards that are not Scorers: the RewardFunctions of `reward.functions` and the RemoteReward of
    `reward.remote_url` (either may be absent). Each part adds its weighted [B, G] reward and reports its own means."""

    def __init__(self, parts: list):
        self.parts = parts

    def rewards(self, problems: list, texts: list[str], shape: tuple[int, int]) -> torch.Tensor:
        total = torch.zeros(shape)  # [B, G]
        for part in self.parts:
            total = total + part.rewards(problems, texts, shape)
        return total

    def pop_metrics(self) -> dict:
        return {k: v for part in self.parts for k, v in part.pop_metrics().items()}

    def close(self) -> None:
        for part in self.parts:
            part.close()


class RewardScorers(list):
    """The learned scorers of `reward.scorers` (a plain list of them), plus `.functions`: the UserRewards of
    `reward.functions` and `reward.remote_url`, or None. Carried as one object so the training loop passes both
    wherever it passes scorers."""

    functions: UserRewards | None = None


def load_reward_scorers(rw: RewardConfig) -> RewardScorers:
    out = RewardScorers(load_scorer(spec) for spec in rw.scorers)
    parts: list = []
    if rw.functions:
        parts.append(RewardFunctions(list(rw.functions), list(rw.function_weights), rw.function_timeout))
    if rw.remote_url:
        parts.append(RemoteReward(rw.remote_url, weight=rw.remote_weight, timeout=rw.remote_timeout, retries=rw.remote_retries))
    if parts:
        out.functions = UserRewards(parts)
    return out


def function_metrics(reward_scorers) -> dict:
    """`reward/fn/<name>`: each reward function's mean value since the last call ({} without reward functions)."""
    functions = getattr(reward_scorers, "functions", None)
    return functions.pop_metrics() if functions is not None else {}


def learned_rewards(scores: list[list[StepScores]], rw: RewardConfig, shape: tuple[int, int]) -> torch.Tensor:
    """sum_i weights[i] * transform(aggregate(scores[i])): scores[i] holds scorer i's StepScores of the N = B*G samples. [B, G]."""
    total = torch.zeros(shape)
    for weight, member in zip(rw.weights, scores):
        r = torch.tensor([aggregate(s, rw.aggregation) for s in member], dtype=torch.float).view(shape)  # [B, G]
        total = total + weight * TRANSFORMS[rw.transform](r, rw.transform_quantile)
    return total


def dense_step_rewards(scores: list[list[StepScores]], rw: RewardConfig) -> list[torch.Tensor]:
    """The shaped step scores of the first scorer that returned any, one [S_i] tensor per sample."""
    for member in scores:
        if any(s.steps for s in member):
            return SHAPINGS[rw.shaping]([torch.tensor(s.steps, dtype=torch.float) for s in member], rw.clip_eta)
    raise ValueError(f"algo.dense.coef > 0 needs per-step scores, but none of reward.scorers={list(rw.scorers)} returned any")


def score_samples(scorers: list, problems: list, texts: list[str], correct: torch.Tensor, rw: RewardConfig, *, dense: bool,
                  functions: UserRewards | RewardFunctions | None = None):
    """-> (rewards [B, G] before length shaping, step_rewards [N] of [S_i] or None) for completions `texts` of `problems` (N = B*G)."""
    rewards = rw.verifier_weight * correct  # [B, G]
    if functions is not None:
        rewards = rewards + functions.rewards(problems, texts, tuple(correct.shape))
    if not scorers:
        return rewards, None
    solutions = [split_steps(t) for t in texts]
    scores = [s.score(problems, solutions) for s in scorers]  # [len(scorers)][N]
    rewards = rewards + learned_rewards(scores, rw, tuple(correct.shape))
    return rewards, dense_step_rewards(scores, rw) if dense else None


def update_scorers(scorers: list, rollout) -> dict:
    """PRIME (Cui et al. 2025, "Process Reinforcement through Implicit Rewards", Alg. 1): a scorer that learns is updated
    on this step's rollouts with the verifier's outcomes, after it scored them. Stats come back under reward/."""
    if not rollout.completions:
        return {}
    solutions = [split_steps(c.text) for c in rollout.completions]
    correct = rollout.correct.reshape(-1).tolist()  # [N]
    stats = {}
    for i, s in enumerate(scorers):
        if hasattr(s, "update"):
            prefix = "reward/" if len(scorers) == 1 else f"reward/{i}/"
            stats.update({prefix + k: v for k, v in (s.update(rollout.problems, solutions, correct) or {}).items()})
    return stats
