"""Loop-level checks against the references: what the RL loop actually passes (the normaliser, the baseline, the
advantages), with every expected number worked out by hand from the reference formula in the comments."""
import math
from types import SimpleNamespace

import pytest
import torch

from rewardflow.policy.base import Completion
from rewardflow.recipes.config_loader import load_config
from rewardflow.train.algorithms import ALGORITHMS, Prepared, _normalizer
from rewardflow.train.rollout import Rollout, collect_rollout


def test_dr_grpo_divides_the_token_sum_by_n_times_l_max():
    # Dr.GRPO (Liu et al. 2025 eq. 3; TRL loss_type="dr_grpo"): sum of token losses / (N * L_max).
    # 3 sequences with 2, 4 and 0 completion tokens, L_max = 8: 3 * 8 = 24 (not 8, the old normaliser)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], dtype=torch.float)
    assert _normalizer("seq-mean-token-sum", mask, 8) == 24
    assert _normalizer("token-mean", mask, 8) == 6  # DAPO: all valid tokens
    assert _normalizer("seq-mean-token-mean", mask, 8) == 2  # GRPO paper: sequences that have tokens
    assert load_config(overrides=["algo.name=dr_grpo"]).algo.agg == "seq-mean-token-sum"  # the name implies it


def _prepared(mask, ref_gap=0.0):
    old = torch.zeros_like(mask)
    return Prepared(batch=None, mask=mask, old_logp=old, ref_logp=old - ref_gap)


def test_reinforce_rej_takes_the_verifiers_plus_minus_one_not_shaped_rewards():
    # Reinforce-Rej (Xiong et al. 2025): advantage +1 for a correct sample, -1 for a wrong one, whatever shaping
    # did to the reward (here an overlong penalty and a learned-scorer term moved them to 0.7 / -0.3 / 0.9 / 0.1)
    cfg = load_config(overrides=["algo.name=reinforce_rej", "rollout.group_size=4"])
    ro = SimpleNamespace(rewards=torch.tensor([[0.7, -0.3, 0.9, 0.1]]), correct=torch.tensor([[1.0, 0.0, 1.0, 0.0]]))
    ro.outcome = ro.correct
    p = _prepared(torch.ones(4, 3))
    ALGORITHMS["reinforce_rej"].prepare(p, ro, cfg, {})
    assert p.adv.tolist() == [1.0, -1.0, 1.0, -1.0]


def test_kl_in_the_reward_before_or_after_the_grpo_estimator():
    # group of 2, rewards (1, 0), 2 tokens each, k1 KL_t = old - ref = 0.5 on every token, beta = 0.1.
    cfg = load_config(overrides=["algo.kl_coef=0.1", "algo.kl_mode=reward", "algo.kl_estimator=k1", "rollout.group_size=2"])
    ro = SimpleNamespace(rewards=torch.tensor([[1.0, 0.0]]), step_rewards=None)
    # after (default): GRPO advantages (1 - .5) / std = .5 / .7071 = .7071 and -.7071 (unbiased std of (1, 0)),
    # minus the KL return-to-go beta * sum_{i>=t} KL_i = 0.1 * (1.0, 0.5) = (0.1, 0.05)
    p = _prepared(torch.ones(2, 2), ref_gap=0.5)
    ALGORITHMS["grpo"].prepare(p, ro, cfg, {})
    a = 0.5 / math.sqrt(0.5)
    assert p.adv.flatten().tolist() == pytest.approx([a - 0.1, a - 0.05, -a - 0.1, -a - 0.05], abs=1e-5)
    # before (verl): r - beta * sum_t KL_t = (1 - 0.1, 0 - 0.1) = (0.9, -0.1): the same KL on both samples cancels
    # in the group baseline, leaving the advantages (.7071, -.7071) on every token
    cfg = load_config(overrides=["algo.kl_coef=0.1", "algo.kl_mode=reward", "algo.kl_estimator=k1", "algo.kl_placement=before", "rollout.group_size=2"])
    p = _prepared(torch.ones(2, 2), ref_gap=0.5)
    ALGORITHMS["grpo"].prepare(p, ro, cfg, {})
    assert p.adv.reshape(2, -1)[:, 0].tolist() == pytest.approx([a, -a], abs=1e-5)


def test_reinforce_pp_whitens_over_valid_tokens_in_the_loop():
    # OpenRLHF REINFORCE++ (outcome only): the return r_i on each valid token, whitened over all valid tokens.
    # rewards (1, 0); sample 0 has 3 tokens, sample 1 has 1: token values (1, 1, 1, 0), mean 3/4, population
    # variance 3/16 -> std sqrt(3)/4; whitened: (1/4) / (sqrt(3)/4) = 1/sqrt(3) and (-3/4) / (sqrt(3)/4) = -sqrt(3)
    cfg = load_config(overrides=["algo.name=reinforce_pp", "algo.kl_coef=0", "rollout.group_size=2"])
    ro = SimpleNamespace(rewards=torch.tensor([[1.0, 0.0]]), step_rewards=None)
    p = _prepared(torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]))
    ALGORITHMS["reinforce_pp"].prepare(p, ro, cfg, {})
    assert p.adv[0].tolist() == pytest.approx([1 / math.sqrt(3)] * 3, abs=1e-4)
    assert p.adv[1, 0].item() == pytest.approx(-math.sqrt(3), abs=1e-4)


class _Policy:
    """Returns fixed completions: samples of 10 tokens, a greedy answer of 15 (the length budget is 16)."""

    def generate(self, prompts, params):
        n = 15 if params.temperature == 0 else 10
        return [[Completion("Answer: 3", [1] * n, torch.zeros(n), "eos") for _ in range(params.n)] for _ in prompts]

    def encode_prompts(self, prompts):
        return [[1] for _ in prompts]


class _Verifier:
    def score_texts(self, problems, texts):
        return [SimpleNamespace(correct=True, pred="3") for _ in texts]


def test_remax_baseline_is_the_same_reward_function_on_the_greedy_answer():
    # DAPO soft overlong punishment (eq. 13) with L_max = 16, L_cache = 8: a length in (8, 16] gets
    # (8 - L) / 8. Samples of 10 tokens: 1 - 2/8 = 0.75. The greedy answer (15 tokens): 1 - 7/8 = 0.125, and that,
    # not the bare verdict 1.0, is ReMax's baseline (Li et al. 2024 Alg. 1: the greedy response's reward).
    cfg = load_config(overrides=["algo.name=remax", "algo.dapo.overlong_cache=8", "rollout.max_new_tokens=16", "rollout.group_size=2"])
    problems = [SimpleNamespace(prompt="1 + 2 =")]
    ro, _ = collect_rollout(_Policy(), _Verifier(), problems, cfg, seed=0)
    assert ro.rewards.tolist() == [[0.75, 0.75]]
    assert ro.baseline.tolist() == [0.125]
    assert isinstance(ro, Rollout)


def test_prime_takes_rloo_on_the_implicit_prms_token_rewards_plus_the_outcome():
    # PRIME (Cui et al. 2025 sec. 3.3), G = 2, two tokens each. Token rewards q: sample 0 (0.2, 0.4), sample 1 (0, 0);
    # response means 0.3 and 0. Leave-one-out baselines: 0 for sample 0, 0.3 for sample 1. Returns-to-go of q - baseline:
    # sample 0 (0.2 + 0.4, 0.4) = (0.6, 0.4); sample 1 (-0.3 - 0.3, -0.3) = (-0.6, -0.3). Outcome RLOO with rewards
    # (1, 0): +1 and -1 on every token. Total: (1.6, 1.4) and (-1.6, -1.3).
    cfg = load_config(overrides=["algo.name=prime", "rollout.group_size=2", "reward.scorers=[prm]", "reward.weights=[0.0]"])
    embeddings = lambda: SimpleNamespace(num_embeddings=10)
    model = SimpleNamespace(get_input_embeddings=embeddings)
    prm = SimpleNamespace(policy=SimpleNamespace(model=model), token_rewards=lambda batch, mask: torch.tensor([[0.2, 0.4], [0.0, 0.0]]))
    ro = SimpleNamespace(rewards=torch.tensor([[1.0, 0.0]]), step_rewards=None)
    p = _prepared(torch.ones(2, 2))
    ALGORITHMS["prime"].prepare(p, ro, cfg, {"scorers": [prm], "policy": SimpleNamespace(model=model)})
    assert p.adv.flatten().tolist() == pytest.approx([1.6, 1.4, -1.6, -1.3], abs=1e-6)
    with pytest.raises(ValueError, match="needs an implicit PRM"):
        ALGORITHMS["prime"].prepare(_prepared(torch.ones(2, 2)), ro, cfg, {"scorers": [], "policy": None})
