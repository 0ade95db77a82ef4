"""EnsembleScorer's reductions against hand-worked values (Coste et al. 2024), and JudgeScorer on a tiny model:
scores are probabilities, batching changes nothing, and fine-tuning the judge to answer Yes (or No) moves them."""
import json
import math

import pytest
import torch

from rewardflow.data import Problem
from rewardflow.policy.hf import HFPolicy
from rewardflow.rewards import SCORER_KINDS, StepScores
from rewardflow.rewards.ensemble import ENSEMBLE_REDUCTIONS, EnsembleScorer
from rewardflow.rewards.judge import JudgeScorer
from rewardflow.train.sft import run_sft

PROBLEMS = [Problem("0", "1 + 2 + 4 =", "7", "chain_sum"), Problem("1", "5 + 1 =", "6", "chain_sum")]
SOLUTIONS = [["1 + 2 = 3", "3 + 4 = 7", "Answer: 7"], ["5 + 1 = 7", "Answer: 7"]]


class Fixed:
    """A scorer returning given StepScores, whatever it is asked."""

    def __init__(self, outcomes, steps):
        self.outcomes, self.steps = outcomes, steps

    def score(self, problems, solutions):
        return [StepScores(steps=list(s), outcome=o) for o, s in zip(self.outcomes, self.steps)]


def _ensemble(how, lam=1.0):
    # solution 0: outcomes 0.2, 0.6, 0.7; steps [0.1, 0.9], [0.3, 0.5] and an outcome-only member (no steps)
    members = [Fixed([0.2, 1.0], [[0.1, 0.9], [0.5]]), Fixed([0.6, 1.0], [[0.3, 0.5], [0.5]]), Fixed([0.7, 1.0], [[], []])]
    return EnsembleScorer(members, how=how, lam=lam).score(PROBLEMS, SOLUTIONS)


@pytest.mark.parametrize("how, lam, outcome, steps", [
    # mean: (0.2 + 0.6 + 0.7) / 3 = 0.5; steps over the two process members: (0.1+0.3)/2, (0.9+0.5)/2
    ("mean", 1.0, 0.5, [0.2, 0.7]),
    # worst case (WCO): min
    ("min", 1.0, 0.2, [0.1, 0.5]),
    # UWO: Var = ((-0.3)^2 + 0.1^2 + 0.2^2) / 3 = 0.14 / 3; 0.5 - 2 * 0.046667 = 0.406667 (1/(M-1) would give 0.36);
    # steps: Var of (0.1, 0.3) = 0.01, of (0.9, 0.5) = 0.04 -> 0.2 - 0.02, 0.7 - 0.08
    ("mean_minus_var", 2.0, 0.5 - 2 * 0.14 / 3, [0.18, 0.62]),
    # std = sqrt(0.14 / 3) = 0.216025; steps: std 0.1 and 0.2
    ("mean_minus_std", 1.0, 0.5 - math.sqrt(0.14 / 3), [0.1, 0.5]),
])
def test_ensemble_reductions_by_hand(how, lam, outcome, steps):
    first, second = _ensemble(how, lam)
    assert first.outcome == pytest.approx(outcome, abs=1e-9)
    assert first.steps == pytest.approx(steps, abs=1e-9)
    # members that agree (all 1.0) have no spread: every rule returns 1.0
    assert second.outcome == pytest.approx(1.0, abs=1e-12) and second.steps == pytest.approx([0.5], abs=1e-12)


def test_ensemble_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown ensemble reduction 'max'.*mean_minus_std"):
        EnsembleScorer([Fixed([0.0], [[]])], how="max")
    clash = EnsembleScorer([Fixed([0.0], [[0.1, 0.2]]), Fixed([0.0], [[0.1]])])
    with pytest.raises(ValueError, match=r"disagree on the number of steps of solution 0: \[2, 1\]"):
        clash.score(PROBLEMS[:1], SOLUTIONS[:1])
    assert set(ENSEMBLE_REDUCTIONS) == {"mean", "min", "mean_minus_var", "mean_minus_std"}


def _log_answer(policy, question, answer):
    """log P(answer | question) of one row on its own (no batching or padding)."""
    batch = policy.token_batch(policy.encode_prompts([question]), policy.completion_ids([answer], add_eos=False))
    return policy.logprobs(batch).logprobs.sum().item()


def test_judge_scores_are_probabilities_batched_exactly_and_deterministic(tiny_ckpt):
    judge = JudgeScorer(HFPolicy.from_pretrained(tiny_ckpt))
    scores = judge.score(PROBLEMS, SOLUTIONS)
    assert [len(s.steps) for s in scores] == [3, 2]
    values = [v for s in scores for v in s.steps + [s.outcome]]
    assert all(0.0 < v < 1.0 for v in values)
    assert judge.score(PROBLEMS, SOLUTIONS) == scores  # deterministic
    # step 2 of solution 0, asked alone: sigmoid(log P(Yes) - log P(No)) equals the batched score
    question = judge.questions(PROBLEMS[0], SOLUTIONS[0])[1]
    assert question.endswith("Step 1: 1 + 2 = 3\nStep 2: 3 + 4 = 7\n\nIs step 2 correct? Answer Yes or No.")
    alone = 1 / (1 + math.exp(-(_log_answer(judge.policy, question, "Yes") - _log_answer(judge.policy, question, "No"))))
    assert scores[0].steps[1] == pytest.approx(alone, abs=1e-5)
    assert judge.score([PROBLEMS[0]], [[]])[0].steps == []  # an empty solution: the outcome question only


@pytest.mark.parametrize("answer", ["Yes", "No"])
def test_judge_fine_tuned_to_an_answer_moves_the_scores_its_way(tiny_ckpt, answer):
    """A few SFT steps teaching the judge to answer `answer` to its questions on other problems raise (Yes) or lower
    (No) every score of held-out solutions: a swapped ratio P(No) / (P(Yes) + P(No)) fails both cases."""
    policy = HFPolicy.from_pretrained(tiny_ckpt)
    judge = JudgeScorer(policy)
    before = judge.score(PROBLEMS, SOLUTIONS)
    train = [Problem(str(i), f"{i} + {i + 1} =", str(2 * i + 1), "chain_sum") for i in range(4)]
    questions = [q for p in train for q in judge.questions(p, [f"{p.prompt} {p.answer}", f"Answer: {p.answer}"])]
    run_sft(policy, lambda step: [(q, answer) for q in questions], steps=15, lr=3e-3)
    after = judge.score(PROBLEMS, SOLUTIONS)
    # compared as logits, log P(Yes) - log P(No): the untrained char-level judge starts near 0.0065 (3 tokens in Yes,
    # 2 in No), so probabilities have little room to fall; the logits move by about +4.7 (Yes) and -2.7 (No)
    logit = lambda scores: torch.logit(torch.tensor([v for s in scores for v in s.steps + [s.outcome]], dtype=torch.float64))
    moved = logit(after) - logit(before)
    assert torch.all(moved > 1.0) if answer == "Yes" else torch.all(moved < -1.0), moved


def test_judge_and_ensemble_load_from_directories(tiny_ckpt, tmp_path):
    assert {"judge", "ensemble"} <= set(SCORER_KINDS)  # registered, so load_scorer finds them
    # members: one relative to the ensemble's directory (inside it), one absolute
    (tmp_path / "e" / "j").mkdir(parents=True)
    (tmp_path / "e" / "j" / "scorer.json").write_text(json.dumps({"kind": "judge", "policy": str(tiny_ckpt)}))
    (tmp_path / "e" / "scorer.json").write_text(json.dumps({"kind": "ensemble", "members": ["j", str(tmp_path / "e" / "j")], "how": "min"}))
    ens = EnsembleScorer.load(tmp_path / "e")
    assert ens.how == "min" and len(ens.scorers) == 2 and all(isinstance(s, JudgeScorer) for s in ens.scorers)
    direct = JudgeScorer(HFPolicy.from_pretrained(tiny_ckpt)).score(PROBLEMS[:1], SOLUTIONS[:1])
    assert ens.score(PROBLEMS[:1], SOLUTIONS[:1])[0].steps == pytest.approx(direct[0].steps, abs=1e-6)
