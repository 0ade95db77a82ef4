"""Every advantage estimator and policy loss in the registries runs by name through the RL loop's
optimise() on a tiny model: finite loss, and the weights move."""
import math

import pytest
import torch

from rewardflow.algos import ADVANTAGES, POLICY_LOSSES
from rewardflow.recipes.config_loader import load_config
from rewardflow.data import Problem
from rewardflow.policy.base import SamplingParams
from rewardflow.policy.hf import HFPolicy
from rewardflow.policy.tiny import TinyModelConfig, make_tiny_checkpoint
from rewardflow.optim import make_optimizer
from rewardflow.train.rl import Rollout, optimise


@pytest.fixture(scope="module")
def init(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), TinyModelConfig(hidden_size=32, layers=2, heads=2, intermediate_size=64))


def _rollout(policy):
    G = 4
    prompts = ["1 + 2 =", "7 - 3 ="]
    groups = policy.generate(prompts, SamplingParams(n=G, max_new_tokens=8, seed=0))
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, 0.0]])  # [B, G], both groups have variance
    answers = [["3", "4", None, "3"], ["1", "2", "4", "1"]]
    probs = [Problem(str(i), p, None, "t") for i, p in enumerate(prompts) for _ in range(G)]
    prompt_ids = [ids for ids in policy.encode_prompts(prompts) for _ in range(G)]
    return Rollout(probs, prompt_ids, [c for g in groups for c in g], rewards, answers, baseline=torch.tensor([0.0, 1.0]))


@pytest.mark.parametrize("name", sorted(ADVANTAGES))
def test_every_advantage_runs_in_the_loop(init, name):
    _check(init, [f"algo.name={name}"])


@pytest.mark.parametrize("loss", sorted(POLICY_LOSSES))
def test_every_policy_loss_runs_in_the_loop(init, loss):
    _check(init, [f"algo.loss={loss}", "algo.epochs=2", "algo.kl_coef=0.1"])


def _check(init, overrides):
    cfg = load_config(overrides=overrides + ["rollout.group_size=4", "rollout.max_new_tokens=8"])
    policy, ref = HFPolicy.from_pretrained(init), HFPolicy.from_pretrained(init)
    before = {k: v.clone() for k, v in policy.model.state_dict().items()}
    opt, sched = make_optimizer(policy.model, 1e-2, 0.0, 0, 10)
    stats = optimise(policy, ref, _rollout(policy), cfg, opt, sched)
    assert math.isfinite(stats["loss/policy"]) and math.isfinite(stats["train/grad_norm"])
    assert stats["train/grad_norm"] > 0
    assert any(not torch.equal(before[k], v) for k, v in policy.model.state_dict().items())
