"""Every online algorithm of the registry, every policy loss (and loop option) through the RL loop's optimise() on a
tiny model: finite loss, the weights move; and on a toy task
whose reward starts mid-range (reward = "the completion contains a digit", about 0.4 for the random tiny
model), a few steps of each algorithm raise the reward on fixed held-out samples. A flipped sign lowers it
instead, so the rise assertion fails for a broken sign."""
import math

import pytest
import torch

from rewardflow.algos import POLICY_LOSSES
from rewardflow.data import GymSource, Problem
from rewardflow.optim import make_optimizer
from rewardflow.policy.base import SamplingParams
from rewardflow.policy.hf import HFPolicy
from rewardflow.recipes.config_loader import load_config
from rewardflow.rewards.implicit import ImplicitPRM
from rewardflow.train.algorithms import ALGORITHMS
from rewardflow.train.metrics import MetricsLog
from rewardflow.train.ppo import make_critic
from rewardflow.train.rl import Rollout, optimise, train_rl


@pytest.fixture(scope="module")
def source():
    return GymSource("chain_sum", seed=0, eval_size=8, min_terms=2, max_terms=2, min_digits=1, max_digits=1)


def _rollout(policy, step_rewards=False):
    G = 4
    prompts = ["1 + 2 =", "7 - 3 ="]
    groups = policy.generate(prompts, SamplingParams(n=G, max_new_tokens=8, seed=0))
    correct = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, 0.0]])  # [B, G], both groups have variance
    probs = [Problem(str(i), p, None, "t") for i, p in enumerate(prompts) for _ in range(G)]
    comps = [c for g in groups for c in g]
    steps = [torch.linspace(-0.5, 0.5, max(1, len(c.steps))) for c in comps] if step_rewards else None
    return Rollout(probs, [ids for ids in policy.encode_prompts(prompts) for _ in range(G)], comps, correct.clone(),
                   [["3", "4", None, "3"], ["1", "2", "4", "1"]], baseline=torch.tensor([0.0, 1.0]), correct=correct, step_rewards=steps)


# Every registered algorithm by name, so one registered later is tested with no edit here (each ADVANTAGES entry is
# one), every policy loss (with two epochs, so the ratio moves off 1, and a KL term), then variants of loop options.
CASES = {
    **{name: [f"algo.name={name}"] for name in ALGORITHMS},
    **{f"loss-{loss}": [f"algo.loss={loss}", "algo.epochs=2", "algo.kl_coef=0.1"] for loss in POLICY_LOSSES},
    "ppo-model-kl-reward": ["algo.name=ppo", "algo.ppo.critic=model", "algo.kl_coef=0.1", "algo.kl_mode=reward"],
    "raft-best": ["algo.name=raft", "algo.raft.keep=best"],
    "raft_pp-2-epochs": ["algo.name=raft_pp", "algo.epochs=2"],
    "rover-2-epochs": ["algo.name=rover", "algo.epochs=2"],
    "entropy-bonus": ["algo.entropy_coef=0.01"],
    "reinforce_pp-kl-reward": ["algo.name=reinforce_pp", "algo.kl_coef=0.1", "algo.kl_mode=reward", "algo.kl_estimator=k1"],
    "grpo-kl-reward": ["algo.kl_coef=0.1", "algo.kl_mode=reward"],
    "d3s-both": ["algo.d3s.mode=both"],
    "overlong-filter": ["algo.dapo.overlong_filter=true"],
    "dense": ["algo.dense.coef=1.0"],
}
# PRIME's config names its implicit PRM among the reward scorers (the test hands optimise() the scorer itself)
CASES["prime"] = CASES["prime"] + ["reward.scorers=[implicit_prm]", "reward.weights=[0.0]"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_algorithm_trains(tiny_ckpt, case):
    # the rollout samples 8 tokens; the budget leaves room for every preset's overlong_cache (DAPO's 16)
    cfg = load_config(overrides=CASES[case] + ["rollout.group_size=4", "rollout.max_new_tokens=32"])
    policy, ref = HFPolicy.from_pretrained(tiny_ckpt), HFPolicy.from_pretrained(tiny_ckpt)
    critic = make_critic(policy, cfg) if ALGORITHMS[cfg.algo.name].critic else None
    before = {k: v.clone() for k, v in policy.model.state_dict().items()}
    opt, sched = make_optimizer(policy.model, 1e-2, 0.0, 0, 10)
    # PRIME reads token rewards from an implicit PRM among the reward scorers (here: from the same checkpoint)
    scorers = [ImplicitPRM(HFPolicy.from_pretrained(tiny_ckpt), HFPolicy.from_pretrained(tiny_ckpt))] if cfg.algo.name == "prime" else ()
    stats = optimise(policy, ref, _rollout(policy, step_rewards=case == "dense"), cfg, opt, sched, critic=critic, scorers=scorers)
    assert math.isfinite(stats["loss/policy"]) and math.isfinite(stats["train/grad_norm"])
    assert stats["train/grad_norm"] > 0 and stats["train/tokens"] > 0
    assert any(not torch.equal(before[k], v) for k, v in policy.model.state_dict().items())
    if critic is not None:
        assert math.isfinite(stats["loss/value"]) and critic.head.weight.abs().sum() > 0  # the value head learned too


class _Verdict:
    def __init__(self, ok):
        self.correct, self.pred = ok, None


class DigitScorer:
    """Toy verifier: correct iff the completion contains a digit (flip=True rewards the opposite)."""

    def __init__(self, flip=False):
        self.flip = flip

    def score_texts(self, problems, texts):
        return [_Verdict(any(ch.isdigit() for ch in t) != self.flip) for t in texts]


def _digit_rate(policy, source):
    groups = policy.generate([p.prompt for p in source.eval_problems], SamplingParams(n=16, max_new_tokens=6, seed=123))
    return sum(any(ch.isdigit() for ch in c.text) for g in groups for c in g) / sum(len(g) for g in groups)


def _train(tiny_ckpt, source, tmp_path, overrides, flip=False, steps=8):
    cfg = load_config(overrides=overrides + ["rollout.prompts_per_step=8", "rollout.group_size=4", "rollout.max_new_tokens=6", f"trainer.steps={steps}",
                                             "trainer.lr=1e-2", "trainer.lr_schedule=constant", "trainer.warmup_steps=0", "trainer.save_every=0", "trainer.eval_every=0"])
    policy = HFPolicy.from_pretrained(tiny_ckpt)
    ref = HFPolicy.from_pretrained(tiny_ckpt) if cfg.algo.kl_coef > 0 else None
    train_rl(cfg, policy, ref, source, DigitScorer(flip), tmp_path / "run", log=MetricsLog(tmp_path / "m.jsonl"))
    return _digit_rate(policy, source)


# One representative per kind of update: every ADVANTAGES entry shares grpo's loss path. (RAFT, which only imitates
# the kept samples, moves slower: 0.41 -> 0.46 in 8 steps, too close to sampling noise for a fast test.)
RISE = {
    "grpo": ["algo.name=grpo"],
    "ppo": ["algo.name=ppo"],
    "rover": ["algo.name=rover"],
    "reinforce_rej": ["algo.name=reinforce_rej"],
    "dapo": ["algo.dapo.dynamic_sampling=true", "algo.eps_high=0.28", "algo.dapo.overlong_cache=2"],
}


@pytest.mark.parametrize("name", sorted(RISE))
def test_reward_rises_on_an_easy_task(tiny_ckpt, source, tmp_path, name):
    start = _digit_rate(HFPolicy.from_pretrained(tiny_ckpt), source)
    assert 0.25 < start < 0.6, "the toy task should start mid-range"
    after = _train(tiny_ckpt, source, tmp_path, RISE[name])
    assert after > start + 0.25, f"{name}: digit rate {start:.3f} -> {after:.3f}"


def test_flipped_reward_falls(tiny_ckpt, source, tmp_path):
    """The same toy task with the reward flipped: the rate must fall, so the rise above is the reward's doing."""
    start = _digit_rate(HFPolicy.from_pretrained(tiny_ckpt), source)
    assert _train(tiny_ckpt, source, tmp_path, ["algo.name=grpo"], flip=True) < start - 0.05
