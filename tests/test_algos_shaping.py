"""Reward shaping (overlong, unlikeliness, semantic entropy) and dense per-step credit."""
import math

import torch

import pytest

from rewardflow.algos import (
    dense_advantages,
    normalize_step_rewards,
    overlong_filter_mask,
    overlong_penalty,
    prime_rloo_advantages,
    seed_scale,
    semantic_entropy,
    step_sums,
    unlikeliness_reward,
)

from conftest import close, t  # hand-worked checks at ATOL = 1e-6, rtol 0


def test_overlong_penalty_eq13():
    # L_max 10, L_cache 4 -> soft zone (6, 10]: 7 -> (6-7)/4 = -.25, 8 -> -.5, 10 -> -1; beyond 10 -> -1
    out = overlong_penalty(torch.tensor([5, 6, 7, 8, 10, 11]), max_len=10, cache_len=4)
    close(out, [0.0, 0.0, -0.25, -0.5, -1.0, -1.0])
    assert overlong_filter_mask(torch.tensor([True, False])).tolist() == [False, True]


def test_unlikeliness_least_likely_correct_keeps_full_reward():
    # G 2, beta .5: the likelier correct sample keeps 1 - .5 * 1/2 = .75, the other 1
    close(unlikeliness_reward(t([1, 1]), t([-0.1, -5.0]), beta_rank=0.5), [[0.75, 1.0]])
    close(unlikeliness_reward(t([0, 0]), t([-0.1, -5.0]), beta_rank=0.5), [[0.0, 0.0]])


def test_semantic_entropy_frequency_and_probability():
    # [a, a, b, c]: p = [.5, .25, .25], SE = -(log .5 + 2 log .25)/3 ; all equal -> 0
    se = semantic_entropy([["a", "a", "b", "c"], [7, 7, 7, 7]])
    close(se, [-(math.log(0.5) + 2 * math.log(0.25)) / 3, 0.0])
    # probability-weighted: pi = [.2, .2, .6] (already normalised) -> p(a) = .4, p(b) = .6
    se = semantic_entropy([["a", "a", "b"]], seq_logp=torch.log(t([0.2, 0.2, 0.6])))
    close(se, [-(math.log(0.4) + math.log(0.6)) / 2])
    # confident group keeps the full advantage; G = 1 is left alone
    close(seed_scale([["x", "x", "x"]], alpha=1.0), [1.0])
    close(seed_scale([["x"]]), [1.0])


def test_dense_advantages_modes():
    # steps cover tokens [0,2), [2,3), [3,5); token 5 is after the last step
    rewards, ends = t([1.0, 0.0, 2.0]), torch.tensor([[2, 3, 5]])
    # returns-to-go gamma 1: [3, 2, 2]; gamma .5: G2 = 2, G1 = 0 + .5*2 = 1, G0 = 1 + .5*1 = 1.5
    close(dense_advantages(rewards, ends, 6), [[3, 3, 2, 2, 2, 0]])
    close(dense_advantages(rewards, ends, 6, gamma=0.5), [[1.5, 1.5, 1, 2, 2, 0]])
    close(dense_advantages(rewards, ends, 6, mode="step"), [[1, 1, 0, 2, 2, 0]])
    close(dense_advantages(rewards, ends, 6, mode="last"), [[0, 1, 0, 0, 2, 0]])


def test_dense_advantages_ragged_list():
    # row0: steps [0,1) r=1, [1,3) r=2 -> returns [3, 2, 2]; row1: one step [0,2) r=3, padding end -1
    out = dense_advantages([torch.tensor([1.0, 2.0]), torch.tensor([3.0])], torch.tensor([[1, 3], [2, -1]]), 3)
    close(out, [[3, 2, 2], [3, 3, 0]])


def test_step_sums():
    # tokens [1, 2, 3, 4], steps [0,1) and [1,3), padded third step -> [1, 2+3, 0]
    close(step_sums(t([1, 2, 3, 4]), torch.tensor([[1, 3, -1]])), [[1, 5, 0]])


def test_unlikeliness_ties_break_by_position():
    # G = 20 equal logps: a stable sort gives likelihood order 0, 1, ..., 19 by position, so sample i keeps
    # 1 - .25 * i / 20 (torch's default argsort is not stable past 16 elements and would scramble this)
    out = unlikeliness_reward(torch.ones(1, 20, dtype=torch.float64), torch.zeros(1, 20, dtype=torch.float64), beta_rank=0.25)
    expected = 1 - 0.25 * torch.arange(20, dtype=torch.float64) / 20
    torch.testing.assert_close(out, expected[None], atol=1e-12, rtol=0)


def test_dense_process_mode_normalises_per_group():
    # DeepSeekMath sec. 4.1.3, G = 2, two questions. Group 0: row 0 steps [1, .5] ending at tokens 2, 4; row 1 one
    # step [0] ending at 3. R = {1, .5, 0}: mean .5, unbiased std sqrt((.25 + 0 + .25) / 2) = .5 -> r~ = [1, 0], [-1]
    # Group 1: rows 2, 3 one step each [2], [4] ending at 1: mean 3, std sqrt((1 + 1) / 1) = sqrt(2) -> -+1/sqrt(2)
    # A_t = sum of r~ of the steps ending at or after t: row 0 [1 + 0, 1, 0, 0, 0 (after the last step)]
    step_rewards = t([1, 0.5], [0, 0], [2, 0], [4, 0])
    ends = torch.tensor([[2, 4], [3, -1], [1, -1], [1, -1]])
    out = dense_advantages(step_rewards, ends, 5, mode="process", group_size=2, eps=0.0)
    h = 1 / math.sqrt(2)
    close(out, [[1, 1, 0, 0, 0], [-1, -1, -1, 0, 0], [-h, 0, 0, 0, 0], [h, 0, 0, 0, 0]])
    # the un-normalised "return" mode keeps the raw step rewards: row 0 [1.5, 1.5, .5, .5, 0]
    close(dense_advantages(step_rewards, ends, 5, mode="return")[0], [1.5, 1.5, 0.5, 0.5, 0])
    close(normalize_step_rewards(step_rewards, ends > 0, 2, eps=0.0), [[1, 0], [-1, 0], [-h, 0], [h, 0]])
    with pytest.raises(ValueError, match="group_size"):
        dense_advantages(step_rewards, ends, 5, mode="process")


def test_prime_rloo_advantages():
    # PRIME sec. 3.3, K = 3 samples of one prompt. Implicit token rewards and their per-response means:
    # row 0 [.3, .1, .2] -> .2 ; row 1 [.4, -.2, pad] -> .1 ; row 2 [.6, pad, pad] -> .6
    # leave-one-out baselines (mean of the other two means): .35, .4, .15
    # row 0: [-.05, -.25, -.15] -> returns (gamma 1) [-.45, -.40, -.15]; row 1: [0, -.6] -> [-.6, -.6, 0]; row 2 [.45]
    # outcome [1, 0, 1] RLOO: 1 - .5 = .5, 0 - 1 = -1, 1 - .5 = .5, added to every valid token
    rewards = t([0.3, 0.1, 0.2], [0.4, -0.2, 0.0], [0.6, 0.0, 0.0])
    mask = t([1, 1, 1], [1, 1, 0], [1, 0, 0])
    out = prime_rloo_advantages(rewards, mask, 3, outcome=t([1, 0, 1]))
    close(out, [[0.05, 0.10, 0.35], [-1.6, -1.6, 0], [0.95, 0, 0]])
    # gamma .5, process part only: row 0 t2 -.15, t1 -.25 + .5 * -.15 = -.325, t0 -.05 + .5 * -.325 = -.2125;
    # row 1 t1 -.6, t0 0 + .5 * -.6 = -.3
    out = prime_rloo_advantages(rewards, mask, 3, gamma=0.5)
    close(out, [[-0.2125, -0.325, -0.15], [-0.3, -0.6, 0], [0.45, 0, 0]])
    with pytest.raises(ValueError, match="G >= 2"):
        prime_rloo_advantages(rewards, mask, 1)
