"""Config `reward:` in the RL loop (train/reward.py): a fake process scorer combined with the real verifier gives the
hand-computed sample rewards and dense step rewards, the batch trains, the default stays the verdicts, and
reward.online_update calls a learning scorer's update() with the step's verdicts and logs its stats under reward/."""
import json
import math

import pytest
import torch

from rewardflow.recipes.config_loader import load_config
from rewardflow.data import GymSource, Problem
from rewardflow.policy.base import Completion
from rewardflow.policy.hf import HFPolicy
from rewardflow.policy.tiny import TinyModelConfig, make_tiny_checkpoint
from rewardflow.rewards import NAMED_SCORERS, StepScores
from rewardflow.rewards.verifier import VerifierScorer
from rewardflow.train.metrics import MetricsLog
from rewardflow.optim import make_optimizer
from rewardflow.train.rl import optimise, train_rl
from rewardflow.train.rollout import collect_batch

PROBLEMS = [Problem("0", "1 + 2 =", "3", "chain_sum"), Problem("1", "4 + 4 =", "8", "chain_sum")]
# G = 2 completions per prompt, prompt-major; verdicts [[1, 0], [1, 0]]
TEXTS = ["1 + 2 = 3\nAnswer: 3", "1 + 2 = 4\nAnswer: 4", "4 + 4 = 8\nso 8\nAnswer: 8", "Answer: 9"]
STEP_SCORE = {"1 + 2 = 3": 0.9, "Answer: 3": 0.8, "1 + 2 = 4": 0.2, "Answer: 4": 0.6, "4 + 4 = 8": 0.7, "so 8": 0.5, "Answer: 8": 0.9, "Answer: 9": 0.1}


class FakePRM:
    """Deterministic step scores looked up by step text; outcome 0.5 (unused unless aggregation=outcome)."""

    def __init__(self):
        self.updates = []

    def score(self, problems, solutions):
        return [StepScores(steps=[STEP_SCORE.get(s, 0.3) for s in steps], outcome=0.5) for steps in solutions]


class LearningPRM(FakePRM):
    def update(self, problems, solutions, correct):
        self.updates.append((problems, solutions, correct))
        return {"loss/fake": float(len(self.updates))}


class Scripted:
    """The tiny policy, but generate() returns TEXTS (with their teacher-forced logprobs as the sampling logprobs)."""

    def __init__(self, policy):
        self.policy = policy

    def generate(self, prompts, params, prefixes=None):
        ids = self.policy.completion_ids(TEXTS)
        prompt_ids = [p for p in self.policy.encode_prompts(prompts) for _ in range(params.n)]
        with torch.no_grad():
            logp = self.policy.logprobs(self.policy.token_batch(prompt_ids, ids)).logprobs  # [N, T]
        comps = [Completion(t, x, logp[i, : len(x)], "eos") for i, (t, x) in enumerate(zip(TEXTS, ids))]
        return [comps[i * params.n : (i + 1) * params.n] for i in range(len(prompts))]

    def encode_prompts(self, prompts, prefixes=None):
        return self.policy.encode_prompts(prompts, prefixes)


class Source:
    def train_problems(self, indices):
        return PROBLEMS


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), TinyModelConfig(hidden_size=32, layers=2, heads=2, intermediate_size=64))


@pytest.fixture(scope="module")
def verifier():
    v = VerifierScorer()
    yield v
    v.verifier.close()


BASE = ["rollout.prompts_per_step=2", "rollout.group_size=2", "reward.scorers=[fake]", "reward.weights=[0.5]", "reward.verifier_weight=2",
        "algo.dense.coef=0.5"]
LS = lambda x: -math.log1p(math.exp(-x))  # log sigmoid(x)
CASES = {
    # r = 2 * verdict + 0.5 * min(steps): 2 + 0.5*min(0.9, 0.8), 0.5*min(0.2, 0.6), 2 + 0.5*min(0.7, 0.5, 0.9), 0.5*0.1.
    # Delta: [0.9-0.8, 0.8], [0.2-0.6, 0.6], [0.7-0.5, 0.5-0.9, 0.9], [0.1].
    "min-delta": (["reward.aggregation=min", "reward.shaping=delta"], [[2.4, 0.1], [2.25, 0.05]],
                  [[0.1, 0.8], [-0.4, 0.6], [0.2, -0.4, 0.9], [0.1]]),
    # mean steps: group 1 [0.85, 0.4], median 0.625 -> log sigmoid(+-0.225); group 2 [0.7, 0.1], median 0.4 -> log sigmoid(+-0.3).
    # Clip eta = 0.5: min(r - 0.5, 0) -> [0, 0], [-0.3, 0], [0, 0, 0], [-0.4].
    "mean-logsigmoid-clip": (["reward.aggregation=mean", "reward.transform=logsigmoid", "reward.shaping=clip", "reward.clip_eta=0.5"],
                             [[2 + 0.5 * LS(0.225), 0.5 * LS(-0.225)], [2 + 0.5 * LS(0.3), 0.5 * LS(-0.3)]],
                             [[0.0, 0.0], [-0.3, 0.0], [0.0, 0.0, 0.0], [-0.4]]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fake_prm_and_verifier_give_hand_computed_rewards_and_the_batch_trains(tiny, verifier, monkeypatch, case):
    overrides, rewards, step_rewards = CASES[case]
    monkeypatch.setitem(NAMED_SCORERS, "fake", lambda spec: FakePRM())
    cfg = load_config(overrides=BASE + overrides)
    policy = HFPolicy.from_pretrained(tiny)
    ro, _, _, _ = collect_batch(Scripted(policy), verifier, Source(), cfg, step=1, reward_scorers=[NAMED_SCORERS["fake"]("fake")])
    assert torch.equal(ro.correct, torch.tensor([[1.0, 0.0], [1.0, 0.0]]))  # Rollout.correct stays the verifier's
    torch.testing.assert_close(ro.rewards, torch.tensor(rewards))
    assert len(ro.step_rewards) == 4
    for got, want in zip(ro.step_rewards, step_rewards):
        torch.testing.assert_close(got, torch.tensor(want))
    opt, sched = make_optimizer(policy.model, 1e-2, 0.0, 0, 10)
    stats = optimise(policy, None, ro, cfg, opt, sched)
    assert math.isfinite(stats["loss/policy"]) and stats["train/grad_norm"] > 0


def test_without_a_reward_section_rewards_are_the_verdicts(tiny, verifier):
    policy = HFPolicy.from_pretrained(tiny)
    ro, _, _, _ = collect_batch(Scripted(policy), verifier, Source(), load_config(overrides=BASE[:2]), step=1)
    assert torch.equal(ro.rewards, ro.correct) and ro.step_rewards is None
    # dense credit without learned scorers keeps the verifier's (empty) step scores, as before the reward section
    ro, _, _, _ = collect_batch(Scripted(policy), verifier, Source(), load_config(overrides=BASE[:2] + ["algo.dense.coef=0.5"]), step=1)
    assert torch.equal(ro.rewards, ro.correct) and [len(s) for s in ro.step_rewards] == [0, 0, 0, 0]


def test_dense_credit_needs_a_process_scorer(tiny, verifier):
    outcome_only = type("ORM", (), {"score": lambda self, p, s: [StepScores(steps=[], outcome=0.7) for _ in s]})()
    cfg = load_config(overrides=BASE)
    with pytest.raises(ValueError, match=r"algo.dense.coef > 0 needs per-step scores, but none of reward.scorers=\['fake'\]"):
        collect_batch(Scripted(HFPolicy.from_pretrained(tiny)), verifier, Source(), cfg, step=1, reward_scorers=[outcome_only])


def test_online_update_runs_every_step_and_logs_under_reward(tiny, tmp_path, monkeypatch):
    prm = LearningPRM()
    monkeypatch.setitem(NAMED_SCORERS, "fake", lambda spec: prm)
    cfg = load_config(overrides=["rollout.prompts_per_step=2", "rollout.group_size=2", "rollout.max_new_tokens=6", "trainer.steps=2",
                                 "trainer.save_every=0", "trainer.eval_every=0", "reward.scorers=[fake]", "reward.weights=[1.0]",
                                 "reward.online_update=true"])
    source = GymSource("chain_sum", seed=0, eval_size=2, min_terms=2, max_terms=2, min_digits=1, max_digits=1)
    verifier = VerifierScorer()
    train_rl(cfg, HFPolicy.from_pretrained(tiny), None, source, verifier, tmp_path / "run", log=MetricsLog(tmp_path / "m.jsonl"))
    verifier.verifier.close()
    assert len(prm.updates) == 2
    problems, solutions, correct = prm.updates[0]
    assert len(problems) == len(solutions) == len(correct) == 4 and all(c in (0.0, 1.0) for c in correct)
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [r["reward/loss/fake"] for r in rows if "reward/loss/fake" in r] == [1.0, 2.0]


class StatefulPRM(LearningPRM):
    """A learning scorer whose state is the number of updates it has taken."""

    def state(self):
        return {"n": len(self.updates)}

    def load_state(self, state):
        self.updates = [None] * state["n"]


def test_online_scorer_state_is_checkpointed_and_resumed(tiny, tmp_path, monkeypatch):
    source = GymSource("chain_sum", seed=0, eval_size=2, min_terms=2, max_terms=2, min_digits=1, max_digits=1)
    verifier = VerifierScorer()
    base = ["rollout.prompts_per_step=2", "rollout.group_size=2", "rollout.max_new_tokens=6", "trainer.save_every=1",
            "trainer.eval_every=0", "reward.scorers=[fake]", "reward.weights=[1.0]", "reward.online_update=true"]
    first, second = StatefulPRM(), StatefulPRM()
    monkeypatch.setitem(NAMED_SCORERS, "fake", lambda spec: first)
    train_rl(load_config(overrides=base + ["trainer.steps=2"]), HFPolicy.from_pretrained(tiny), None, source, verifier, tmp_path / "run",
             log=MetricsLog(tmp_path / "m.jsonl"))
    monkeypatch.setitem(NAMED_SCORERS, "fake", lambda spec: second)
    train_rl(load_config(overrides=base + ["trainer.steps=3"]), HFPolicy.from_pretrained(tiny), None, source, verifier, tmp_path / "run",
             log=MetricsLog(tmp_path / "m.jsonl"), resume=True)
    verifier.verifier.close()
    assert len(first.updates) == 2
    assert len(second.updates) == 3  # restored at 2 from the step-2 checkpoint, then one more update: not restarted at 0
