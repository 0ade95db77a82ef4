"""Scorers that run a model meter their own FLOPs (Scorer contract: flops_spent), and search books exactly that:
2 * params * the real tokens of every forward (both models for the implicit PRM, backbone and head for OREO's value
model, every question for the judge, the prover's rollouts for PAV), summed for ensembles."""
import pytest
import torch

from rewardflow.data.problem import Problem
from rewardflow.policy.base import Completion
from rewardflow.policy.hf import HFPolicy
from rewardflow.rewards.base import StepScores
from rewardflow.rewards.ensemble import EnsembleScorer
from rewardflow.rewards import load_scorer
from rewardflow.rewards.implicit import ImplicitPRM, encode_step_lists
from rewardflow.rewards.judge import JudgeScorer
from rewardflow.rewards.models import RewardModel
from rewardflow.rewards.pav import PAVScorer
from rewardflow.search import SearchConfig
from rewardflow.search.engine import Run
from rewardflow.train.offline import save_value
from rewardflow.train.ppo import Critic
from rewardflow.verify import Verifier

PROBLEMS = [Problem("0", "1 + 2 =", "3", "add"), Problem("1", "4 + 4 =", "8", "add")]
SOLUTIONS = [["1 + 2 = 3", "Answer: 3"], ["4 + 4 = 9", "8 + 1 = 9", "Answer: 9"]]

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def test_reward_model_meters_its_real_tokens(tiny_ckpt):
    rm = RewardModel.new(tiny_ckpt, "prm")
    assert rm.flops_spent == 0.0
    rm.score(PROBLEMS, SOLUTIONS)
    tokens = int(rm.encode([p.prompt for p in PROBLEMS], SOLUTIONS).attention_mask.sum())
    assert rm.flops_spent == 2 * rm.num_params * tokens
    assert rm.num_params == sum(p.numel() for p in rm.backbone.parameters()) + 32 + 1  # backbone + the scalar head


def test_implicit_prm_counts_policy_and_reference(tiny_ckpt):
    prm = ImplicitPRM.from_pretrained(tiny_ckpt, beta=0.5)
    prm.score(PROBLEMS, SOLUTIONS)
    batch, _ = prm._encode([p.prompt for p in PROBLEMS], SOLUTIONS)
    tokens = int(batch.attention_mask.sum())
    assert prm.flops_spent == 2 * (prm.policy.num_params + prm.ref.num_params) * tokens


def test_oreo_value_counts_backbone_and_head(tiny_ckpt, tmp_path):
    policy = HFPolicy.from_pretrained(tiny_ckpt)
    scorer = load_scorer(str(save_value(Critic(policy.model, mode="model"), policy.tokenizer, tmp_path / "value", beta=0.1)))
    assert scorer.flops_spent == 0.0
    scorer.score(PROBLEMS, SOLUTIONS)
    batch, _ = encode_step_lists(scorer.policy, [p.prompt for p in PROBLEMS], SOLUTIONS)
    assert scorer.num_params == sum(p.numel() for p in scorer.policy.model.parameters()) + 32 + 1  # backbone + the scalar head
    assert scorer.flops_spent == 2 * scorer.num_params * int(batch.attention_mask.sum())


def test_judge_counts_every_question(tiny_ckpt):
    judge = JudgeScorer(HFPolicy.from_pretrained(tiny_ckpt))
    judge.score(PROBLEMS, SOLUTIONS)
    questions = [q for p, s in zip(PROBLEMS, SOLUTIONS) for q in judge.questions(p, s)]  # 3 + 4 questions
    ids = judge.policy.encode_prompts(questions)
    yes, no = judge.policy.completion_ids([judge.yes, judge.no], add_eos=False)
    tokens = 2 * sum(len(i) for i in ids) + len(questions) * (len(yes) + len(no))  # each question asked with Yes and No
    assert judge.flops_spent == 2 * judge.policy.num_params * tokens


class Prover:
    """Every rollout: 3 prompt tokens read (1 of them cached) and 2 tokens sampled."""

    num_params = 1000

    def generate(self, prompts, params, prefixes=None):
        return [[Completion("Answer: 3", [5, 6], torch.zeros(2), "eos", prompt_tokens=3, cached_tokens=1) for _ in range(params.n)]
                for _ in prompts]


def test_pav_counts_its_prover_rollouts_and_ensemble_sums():
    with Verifier() as v:
        pav = PAVScorer(Prover(), v, rollouts=4)
        pav.score(PROBLEMS, SOLUTIONS)
        # one rollout set per prefix t < S_i: 2 + 3 prefixes, 4 rollouts each, (3 - 1) + 2 tokens per rollout
        assert pav.flops_spent == 2 * 1000 * (5 * 4 * 4)
        rm = type("Metered", (), {"flops_spent": 7.0})()
        assert EnsembleScorer([pav, rm, v]).flops_spent == pav.flops_spent + 7.0


class HalfScorer:
    """Spends 1000 FLOPs per call, whatever it scores."""

    def __init__(self):
        self.flops_spent = 0.0

    def score(self, problems, solutions):
        self.flops_spent += 1000.0
        return [StepScores([0.5] * len(s), 0.5) for s in solutions]


def test_search_books_what_the_scorer_metered_shared_by_tokens():
    run = Run(PROBLEMS, SearchConfig(), HalfScorer(), {"policy": object()})
    run.score([(0, SOLUTIONS[0]), (1, SOLUTIONS[1]), (1, SOLUTIONS[1][:1])])
    per = [run.compute[i]["scorer"] for i in range(2)]
    assert per[0].flops_scored + per[1].flops_scored == pytest.approx(1000.0)
    total = per[0].tokens_scored + per[1].tokens_scored
    assert per[0].flops_scored == pytest.approx(1000.0 * per[0].tokens_scored / total)
    assert per[1].tokens_scored > per[0].tokens_scored  # problem 1 had two solutions scored
