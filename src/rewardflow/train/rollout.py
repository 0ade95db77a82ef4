"""Rollouts: sample G completions per prompt, score them, shape the rewards; DAPO's dynamic sampling refills
the batch with fresh prompts when groups carry no signal."""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..algos import overlong_penalty, refill_batch
from ..data.steps import split_steps
from ..policy.base import SamplingParams
from .algorithms import ALGORITHMS
from .reward import function_metrics, score_samples

EXTRA_OFFSET = 2_000_000  # dynamic sampling's extra prompts come from here on, so they never repeat the main stream


def step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step * 7_919 + 17) % (2**31 - 1)


@dataclass
class Rollout:
    problems: list  # [N] problem of each sequence (prompt-major: G consecutive rows per prompt)
    prompt_ids: list[list[int]]  # [N]
    completions: list  # [N] Completion
    rewards: torch.Tensor  # [B, G] after shaping
    answers: list[list]  # [B][G] extracted final answers (None when there is none)
    baseline: torch.Tensor | None = None  # [B] reward of the greedy rollout (ReMax)
    correct: torch.Tensor | None = None  # [B, G] the verifier's 0/1 verdicts before shaping
    # The dense hook: per sample, one reward per step of its completion (steps = data.split_steps of the text,
    # token boundaries found by train.forward.step_token_ends). Filled from a Scorer's StepScores.steps.
    step_rewards: list[torch.Tensor] | None = None  # [N] tensors [S_i]

    @property
    def seq_logp(self) -> torch.Tensor:
        """Mean token logprob of each sample, [B, G]: how likely the policy found it."""
        B, G = self.rewards.shape
        return torch.stack([c.logprobs.mean() for c in self.completions]).view(B, G)

    @property
    def outcome(self) -> torch.Tensor:
        """[B, G] verdicts when known, else the rewards: what keep/drop decisions look at."""
        return self.correct if self.correct is not None else self.rewards

    def groups(self, idx: list[int]) -> "Rollout":
        """The rollout of the prompts `idx` only."""
        G = self.rewards.shape[1]
        rows = [b * G + g for b in idx for g in range(G)]
        pick = lambda xs: None if xs is None else [xs[r] for r in rows]
        return Rollout(pick(self.problems), pick(self.prompt_ids), pick(self.completions), self.rewards[idx], [self.answers[b] for b in idx],
                       None if self.baseline is None else self.baseline[idx], None if self.correct is None else self.correct[idx], pick(self.step_rewards))

    @staticmethod
    def cat(parts: list["Rollout"]) -> "Rollout":
        opt = lambda xs: None if any(x is None for x in xs) else xs
        join = lambda xs: None if xs is None else [r for x in xs for r in x]
        tcat = lambda xs: None if xs is None else torch.cat(xs)
        return Rollout(join([p.problems for p in parts]), join([p.prompt_ids for p in parts]), join([p.completions for p in parts]),
                       torch.cat([p.rewards for p in parts]), join([p.answers for p in parts]), tcat(opt([p.baseline for p in parts])),
                       tcat(opt([p.correct for p in parts])), join(opt([p.step_rewards for p in parts])))


def collect_rollout(policy, scorer, problems, cfg, seed: int, reward_scorers: list = ()) -> tuple[Rollout, float]:
    """G samples of each problem, the verifier's verdicts (`scorer.score_texts`), and the rewards of config `reward:`
    (train/reward.py): the weighted verdict plus the weighted `reward_scorers`, whose first process scorer also
    gives the dense step rewards."""
    r, a = cfg.rollout, cfg.algo
    params = SamplingParams(n=r.group_size, temperature=r.temperature, top_p=r.top_p, top_k=r.top_k, max_new_tokens=r.max_new_tokens, seed=seed)
    t0 = time.perf_counter()
    groups = policy.generate([p.prompt for p in problems], params)
    gen_seconds = time.perf_counter() - t0
    completions = [c for g in groups for c in g]
    flat = [p for p in problems for _ in range(r.group_size)]
    verdicts = scorer.score_texts(flat, [c.text for c in completions])
    correct = torch.tensor([float(v.correct) for v in verdicts]).view(len(problems), r.group_size)  # [B, G]
    rewards, step_rewards = score_samples(list(reward_scorers), flat, [c.text for c in completions], correct, cfg.reward, dense=a.dense.coef > 0,
                                          functions=getattr(reward_scorers, "functions", None))
    rewards = _length_shaped(rewards, completions, cfg)
    answers = [[v.pred for v in verdicts[i * r.group_size : (i + 1) * r.group_size]] for i in range(len(problems))]
    prompt_ids = [ids for ids in policy.encode_prompts([p.prompt for p in problems]) for _ in range(r.group_size)]
    baseline = None
    if ALGORITHMS[a.name].greedy_baseline:  # ReMax (Li et al. 2024, Alg. 1): the greedy rollout's reward is the baseline
        greedy = [g[0] for g in policy.generate([p.prompt for p in problems], SamplingParams(n=1, temperature=0.0, max_new_tokens=r.max_new_tokens))]
        verdict = torch.tensor([[float(v.correct)] for v in scorer.score_texts(problems, [g.text for g in greedy])])  # [B, 1]
        # the same reward function as the samples' (config validation keeps learned scorers out of ReMax)
        baseline = _length_shaped(cfg.reward.verifier_weight * verdict, greedy, cfg).view(-1)  # [B]
    if a.dense.coef > 0 and not reward_scorers and hasattr(scorer, "score"):  # no learned scorers: the verifier's (empty) step scores
        scores = scorer.score(flat, [split_steps(c.text) for c in completions])
        step_rewards = [torch.tensor(s.steps, dtype=torch.float) for s in scores]
    return Rollout(flat, prompt_ids, completions, rewards, answers, baseline, correct, step_rewards), gen_seconds


def _length_shaped(rewards: torch.Tensor, completions: list, cfg) -> torch.Tensor:
    """rewards [B, G] plus DAPO's soft overlong punishment (eq. 13) when algo.dapo.overlong_cache > 0."""
    if cfg.algo.dapo.overlong_cache <= 0:
        return rewards
    lengths = torch.tensor([len(c.token_ids) for c in completions])
    return rewards + overlong_penalty(lengths, max_len=cfg.rollout.max_new_tokens, cache_len=cfg.algo.dapo.overlong_cache).view_as(rewards)


def collect_batch(policy, scorer, source, cfg, step: int, reward_scorers: list = ()) -> tuple[Rollout, Rollout, float, dict]:
    """The step's prompts, and with algo.dapo.dynamic_sampling DAPO's refill (Yu et al. 2025, Algorithm 1): keep groups
    whose verdicts differ, sample further prompts (at most dynamic_sampling_max_rounds rounds) until B remain.
    Every round is seeded from (seed, step, round), so a resumed run draws the same prompts.
    Returns (the batch to train on, everything sampled (for reward metrics), generation seconds, metrics)."""
    B, seed = cfg.rollout.prompts_per_step, cfg.trainer.seed
    rollout, seconds = collect_rollout(policy, scorer, source.train_problems(range((step - 1) * B, step * B)), cfg, step_seed(seed, step), reward_scorers)
    if not cfg.algo.dapo.dynamic_sampling:
        return rollout, rollout, seconds, function_metrics(reward_scorers)
    max_rounds = cfg.algo.dapo.max_rounds
    kept_idx, _ = refill_batch(list(range(B)), rollout.outcome, B)
    parts, sampled, n_kept, drawn, rounds = [rollout.groups(kept_idx)], [rollout], len(kept_idx), B, 0
    while n_kept < B and rounds < max_rounds:
        rounds += 1
        first = EXTRA_OFFSET + ((step - 1) * max_rounds + rounds - 1) * B
        more, s = collect_rollout(policy, scorer, source.train_problems(range(first, first + B)), cfg, step_seed(seed, step) + 104_729 * rounds,
                                  reward_scorers)
        seconds += s
        drawn += B
        sampled.append(more)
        idx, _ = refill_batch(list(range(B)), more.outcome, B - n_kept)
        parts.append(more.groups(idx))
        n_kept += len(idx)
    info = {"rollout/prompts_drawn": drawn, "rollout/kept_groups": n_kept, "rollout/extra_rounds": rounds, **function_metrics(reward_scorers)}
    return Rollout.cat(parts), Rollout.cat(sampled), seconds, info
