"""Advantage estimators, checked against values worked out by hand (arithmetic in the comments)."""
import math

import pytest
import torch

from rewardflow.algos import (
    ADVANTAGES,
    GROUP_ADVANTAGES,
    TOKEN_ADVANTAGES,
    dr_grpo_advantages,
    grpo_advantages,
    grpo_unlikely_advantages,
    kl_shaped_rewards,
    masked_whiten,
    reinforce_pp_advantages,
    reinforce_pp_baseline_advantages,
    reinforce_pp_baseline_token_advantages,
    reinforce_pp_outcome_token_advantages,
    reinforce_pp_token_advantages,
    remax_advantages,
    returns_to_go,
    rloo_advantages,
    seed_grpo_advantages,
    unlikeliness_reward,
)

from conftest import close, t  # hand-worked checks at ATOL = 1e-6, rtol 0


def test_grpo_group_scale():
    # mean 0.5; unbiased std = sqrt(4 * 0.25 / 3) = sqrt(1/3); A = +-0.5 / sqrt(1/3) = +-0.8660254
    a = 0.5 / math.sqrt(1 / 3)
    close(grpo_advantages(t([1, 0, 0, 1]), eps=0.0), [[a, -a, -a, a]])


def test_dr_grpo_no_std():
    # mean 1/3 -> [2/3, -1/3, -1/3]; a GRPO std division would give [1.1547, -0.5774, -0.5774]
    close(dr_grpo_advantages(t([1, 0, 0])), [[2 / 3, -1 / 3, -1 / 3]])
    close(dr_grpo_advantages(t([2, 2])), [[0, 0]])


def test_rloo_leave_one_out():
    # A_0 = 1 - (0+0+1)/3 = 2/3 ; A_1 = 0 - (1+0+1)/3 = -2/3   (= G/(G-1) (r - mean) = 4/3 * +-0.5)
    close(rloo_advantages(t([1, 0, 0, 1])), [[2 / 3, -2 / 3, -2 / 3, 2 / 3]])
    with pytest.raises(ValueError):
        rloo_advantages(t([1]))


def test_remax_greedy_baseline():
    # baseline subtracted, not added: [[1-1, 0-1], [0-0, 0-0]]
    close(remax_advantages(t([1, 0], [0, 0]), baseline=torch.tensor([1.0, 0.0])), [[0, -1], [0, 0]])
    close(remax_advantages(t([1.0]), baseline=torch.tensor([0.25])), [[0.75]])


def test_reinforce_pp_global_normalisation():
    # batch mean 0.75; deviations [.25, -.75, .25, .25]; unbiased var = .75/3 = .25, std .5
    # A = [0.5, -1.5, 0.5, 0.5]: the all-correct group keeps a positive advantage (no per-prompt baseline)
    close(reinforce_pp_advantages(t([1, 0], [1, 1]), eps=0.0), [[0.5, -1.5], [0.5, 0.5]])


def test_reinforce_pp_baseline_group_then_batch():
    # centred [[.5, -.5], [0, 0]], batch mean 0, unbiased var (.25+.25)/3 = 1/6 -> A = +-0.5 / sqrt(1/6)
    a = 0.5 / math.sqrt(1 / 6)
    close(reinforce_pp_baseline_advantages(t([1, 0], [1, 1]), eps=0.0), [[a, -a], [0, 0]])


def test_returns_to_go_discount_and_holes():
    # gamma .5: G2 = 3, G1 = 2 + .5*3 = 3.5, G0 = 1 + .5*3.5 = 2.75, padding 0
    close(returns_to_go(t([1, 2, 3, 0]), t([1, 1, 1, 0]), gamma=0.5), [[2.75, 3.5, 3, 0]])
    # a masked token inside the row is skipped: its reward 5 is ignored, G0 = 1 + 2 + 3 = 6
    close(returns_to_go(t([1, 5, 2, 3]), t([1, 0, 1, 1])), [[6, 0, 5, 3]])


def test_masked_whiten():
    # valid [1, 2, 3]: mean 2, unbiased std 1 -> [-1, 0, 1]; padding stays 0
    close(masked_whiten(t([1, 2, 3, 99]), t([1, 1, 1, 0]), eps=0.0), [[-1, 0, 1, 0]])


def test_kl_shaped_rewards_outcome_on_last_token():
    # r_t = -beta KL_t, plus the outcome on the last valid token; a row with no tokens stays 0
    kl = t([0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [1, 1, 1])
    mask = t([1, 1, 0], [1, 1, 1], [0, 0, 0])
    out = kl_shaped_rewards(torch.tensor([1.0, 2.0, 5.0], dtype=torch.float64), kl, mask, beta=1.0)
    close(out, [[-0.1, -0.2 + 1, 0], [-0.4, -0.5, -0.6 + 2], [0, 0, 0]])


def test_reinforce_pp_token_advantages():
    # beta .5: row0 rewards [-.05, -.1, 1], returns [.85, .9, 1]; row1 rewards [-.15, 0] (outcome 0), returns [-.15, 0]
    # whiten the 5 valid returns: mean 2.6/5 = .52; squared deviations .1089+.1444+.2304+.4489+.2704 = 1.203,
    # population variance over tokens (OpenRLHF) 1.203/5 = .2406 (the unbiased 1.203/4 would give .30075)
    kl = t([0.1, 0.2, 0.0], [0.3, 0.0, 0.0])
    mask = t([1, 1, 1], [1, 1, 0])
    out = reinforce_pp_token_advantages(torch.tensor([1.0, 0.0], dtype=torch.float64), kl, mask, beta=0.5, eps=0.0)
    s = math.sqrt(0.2406)
    close(out, [[(0.85 - 0.52) / s, (0.9 - 0.52) / s, (1.0 - 0.52) / s], [(-0.15 - 0.52) / s, (0 - 0.52) / s, 0]])


# rows of the [B=2, G=2] batch below: sample 0 has 2 tokens, 1 has 1, 2 has 1, 3 has 3 -> 7 valid tokens
TOKEN_MASK = t([1, 1, 0], [1, 0, 0], [1, 0, 0], [1, 1, 1])


def test_reinforce_pp_outcome_whitens_over_tokens():
    # rewards [[1, 0], [1, 1]] on every token: 1, 1 | 0 | 1 | 1, 1, 1 -> token mean 6/7
    # deviations 1/7 (six tokens), -6/7 (one): population var (6/49 + 36/49) / 7 = 6/49, std sqrt(6)/7
    # A = (1/7) / (sqrt(6)/7) = 1/sqrt(6) = .4082483 ; (-6/7) / (sqrt(6)/7) = -sqrt(6) = -2.4494897
    # (per-sample whitening gives [.5, -1.5, .5, .5] instead: a sample counts once whatever its length)
    a, b = 1 / math.sqrt(6), -math.sqrt(6)
    out = reinforce_pp_outcome_token_advantages(t([1, 0], [1, 1]), TOKEN_MASK, eps=0.0)
    close(out, [[a, a, 0], [b, 0, 0], [a, 0, 0], [a, a, a]])


def test_reinforce_pp_baseline_whitens_over_tokens():
    # centred [[.5, -.5], [0, 0]] on the tokens: .5, .5 | -.5 | 0 | 0, 0, 0 -> token mean .5/7 = 1/14
    # deviations 3/7 (x2), -4/7 (x1), -1/14 (x4): sum of squares 18/49 + 16/49 + 4/196 = 35/49; var 5/49, std sqrt(5)/7
    # A = 3/sqrt(5) = 1.3416408, -4/sqrt(5) = -1.7888544, -1/(2 sqrt(5)) = -.2236068  (per sample: +-1.2247, 0)
    a, b, c = 3 / math.sqrt(5), -4 / math.sqrt(5), -1 / (2 * math.sqrt(5))
    out = reinforce_pp_baseline_token_advantages(t([1, 0], [1, 1]), TOKEN_MASK, eps=0.0)
    close(out, [[a, a, 0], [b, 0, 0], [c, 0, 0], [c, c, c]])
    assert set(TOKEN_ADVANTAGES) == {"reinforce_pp", "reinforce_pp_baseline"}


def test_group_estimators_reject_a_group_of_one():
    single = t([1], [0])  # [B=2, G=1]
    extra = {"seed_grpo": {"answers": [["a"], ["b"]]}, "grpo_unlikely": {"seq_logp": t([-1], [-2])}}
    assert GROUP_ADVANTAGES == {"grpo", "dr_grpo", "rloo", "reinforce_pp_baseline", "seed_grpo", "grpo_unlikely"}
    for name in GROUP_ADVANTAGES:
        with pytest.raises(ValueError, match="G >= 2"):
            ADVANTAGES[name](single, **extra.get(name, {}))
    with pytest.raises(ValueError, match="G >= 2"):
        reinforce_pp_baseline_token_advantages(single, t([1], [1]))
    # no group needed: REINFORCE++ whitens over the batch [1, 0] -> mean .5, unbiased std sqrt(.5): +-.7071068;
    # ReMax subtracts the greedy reward
    close(ADVANTAGES["reinforce_pp"](single, eps=0.0), [[math.sqrt(0.5)], [-math.sqrt(0.5)]])
    close(ADVANTAGES["remax"](single, baseline=torch.tensor([0.5, 0.5])), [[0.5], [-0.5]])


def test_unlikeliness_reward_ranks_within_group():
    # logps [-1, -3, -2, -0.5]; likelihood order (0 = least likely) [2, 0, 1, 3]; beta .25, G 4:
    # [1 - .25*2/4, 1 - 0, 1 - .25*1/4, 0 (wrong stays wrong)] = [.875, 1, .9375, 0]
    out = unlikeliness_reward(t([1, 1, 1, 0]), t([-1, -3, -2, -0.5]), beta_rank=0.25)
    close(out, [[0.875, 1.0, 0.9375, 0.0]])
    close(grpo_unlikely_advantages(t([1, 1, 1, 0]), seq_logp=t([-1, -3, -2, -0.5])), grpo_advantages(out))


def test_seed_grpo_scales_by_semantic_entropy():
    # group 0: answers a,a,a,b -> p = [3/4, 1/4], SE = -(log .75 + log .25)/2; SE/log 4 = (log 4/3 + log 4)/(2 log 4)
    # group 1: four distinct answers -> SE = log 4, normalised 1.  alpha .5 -> scales 1 - .5 * ratio
    # base A = r - mean: group 0 [.25, .25, .25, -.75], group 1 [.75, -.25, -.25, -.25]
    ratio0 = (math.log(4 / 3) + math.log(4)) / (2 * math.log(4))
    s0, s1 = 1 - 0.5 * ratio0, 1 - 0.5
    answers = [["a", "a", "a", "b"], ["a", "b", "c", "d"]]
    out = seed_grpo_advantages(t([1, 1, 1, 0], [1, 0, 0, 0]), answers=answers, alpha=0.5)
    close(out, [[0.25 * s0, 0.25 * s0, 0.25 * s0, -0.75 * s0], [0.75 * s1, -0.25 * s1, -0.25 * s1, -0.25 * s1]])


def test_registry_keys_and_signatures():
    assert set(ADVANTAGES) == {"grpo", "dr_grpo", "rloo", "remax", "reinforce_pp", "reinforce_pp_baseline", "seed_grpo", "grpo_unlikely"}
    rewards = t([1, 0, 1], [0, 0, 1])  # [B=2, G=3]
    extra = {
        "remax": {"baseline": torch.tensor([1.0, 0.0])},
        "seed_grpo": {"answers": [["1", "2", "1"], ["3", "3", "4"]]},
        "grpo_unlikely": {"seq_logp": t([-1, -2, -3], [-3, -2, -1])},
    }
    for name, fn in ADVANTAGES.items():
        out = fn(rewards, **extra.get(name, {}))
        assert out.shape == rewards.shape, name
        assert torch.isfinite(out).all(), name
