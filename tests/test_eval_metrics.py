"""eval/metrics.py and eval/runner.py: pass@k, maj@k and intervals by hand; evaluate_policy on a scripted policy and verifier."""
import math
from dataclasses import dataclass

import pytest
import torch

from rewardflow.data.problem import Problem
from rewardflow.eval.metrics import Z95, maj_at_k, majority, mean_ci, pass_at_k, wilson_ci
from rewardflow.eval.runner import evaluate_policy
from rewardflow.policy.base import Completion

TOL = 1e-9
Z2 = Z95**2  # 3.8414588...


# ----------------------------------------------------------------------------- pass@k


@pytest.mark.parametrize(
    "n, c, k, expected",
    [
        (4, 1, 2, 1 - 3 / 6),  # 1 - C(3,2)/C(4,2) = 1 - 3/6 = .5
        (5, 2, 3, 1 - 1 / 10),  # 1 - C(3,3)/C(5,3) = 1 - 1/10 = .9
        (10, 3, 5, 1 - 21 / 252),  # 1 - C(7,5)/C(10,5) = 1 - 21/252 = 11/12
        (4, 1, 1, 1 / 4),  # pass@1 = c/n
        (10, 3, 1, 3 / 10),
        (8, 0, 4, 0.0),  # no correct sample
        (4, 3, 2, 1.0),  # n - c = 1 < k = 2: every 2-subset holds a correct one
        (4, 4, 4, 1.0),
        (6, 1, 6, 1.0),  # k = n with one correct
    ],
)
def test_pass_at_k_by_hand(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=TOL)


def test_pass_at_k_matches_binomials_for_large_n():
    # the product form must agree with the exact ratio where the binomials are astronomically large
    for n, c, k in [(200, 10, 100), (1000, 1, 1), (1000, 7, 50), (64, 63, 1)]:
        exact = 1 - math.comb(n - c, k) / math.comb(n, k)
        assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)


def test_pass_at_k_grows_with_k_and_c():
    assert [pass_at_k(8, 2, k) for k in range(1, 9)] == sorted(pass_at_k(8, 2, k) for k in range(1, 9))
    assert [pass_at_k(8, c, 3) for c in range(9)] == sorted(pass_at_k(8, c, 3) for c in range(9))


@pytest.mark.parametrize("n, c, k", [(4, 5, 1), (4, -1, 1), (4, 1, 0), (4, 1, 5), (0, 0, 1)])
def test_pass_at_k_invalid_arguments(n, c, k):
    with pytest.raises(ValueError, match="pass@k needs"):
        pass_at_k(n, c, k)


# ----------------------------------------------------------------------------- majority vote


def test_majority():
    assert majority(["a", "b", "b", "a"]) == "a"  # tie: the answer seen first
    assert majority(["b", "a", "a", "b"]) == "b"
    assert majority(["1", "2", "2"]) == "2"
    assert majority([None, None, "x"]) == "x"  # None never votes, even when it is the most common
    assert majority([None, None]) is None
    assert majority([]) is None


def test_maj_at_k():
    answers, correct = ["3", "5", "5", None], [False, True, True, False]
    assert maj_at_k(answers, correct, 4) == 1.0  # "5" x2 beats "3" x1
    assert maj_at_k(answers, correct, 1) == 0.0  # only "3"
    assert maj_at_k(answers, correct, 2) == 0.0  # "3" and "5" tie: first seen, "3", is wrong
    assert maj_at_k([None, None, None, "7"], [False, False, False, True], 4) == 1.0  # Nones do not vote
    assert maj_at_k([None, None], [False, False], 2) == 0.0
    # the vote is judged by the correctness of the samples that gave the voted answer
    assert maj_at_k(["x", "y", "x"], [False, True, False], 3) == 0.0


# ----------------------------------------------------------------------------- intervals


def test_mean_ci_by_hand():
    # [.2, .4, .6]: mean .4, sample sd sqrt((.04 + 0 + .04)/2) = .2, half-width z * .2 / sqrt(3) = .2263171
    mean, lo, hi = mean_ci([0.2, 0.4, 0.6])
    half = Z95 * 0.2 / math.sqrt(3)
    assert (mean, lo, hi) == pytest.approx((0.4, 0.4 - half, 0.4 + half), abs=TOL)
    assert half == pytest.approx(0.2263171, abs=1e-7)
    # [0, 1]: sd = sqrt(.5) -> half = z * .7071/1.4142 = .98: clipped to [0, 1]
    assert mean_ci([0.0, 1.0]) == pytest.approx((0.5, 0.0, 1.0), abs=TOL)
    # differences are not clipped: [-.1, .1]: mean 0, sd sqrt(.02) = .141421, half z * .141421 / sqrt(2) = z * .1
    assert mean_ci([-0.1, 0.1], clip=False) == pytest.approx((0.0, -Z95 * 0.1, Z95 * 0.1), abs=TOL)
    assert mean_ci([-0.1, 0.1]) == pytest.approx((0.0, 0.0, Z95 * 0.1), abs=TOL)
    assert mean_ci([0.3, 0.3, 0.3]) == pytest.approx((0.3, 0.3, 0.3), abs=TOL)  # no spread, no width
    assert mean_ci([0.5]) == (0.5, 0.0, 1.0)  # one value: no information about the spread
    assert all(math.isnan(x) for x in mean_ci([]))


def test_wilson_ci_by_hand():
    # 0 of 10: centre = (0 + z^2/20)/(1 + z^2/10), half = z*sqrt(z^2/400)/(1 + z^2/10) = (z^2/20)/(1 + z^2/10)
    # upper = (z^2/10)/(1 + z^2/10) = .38414588/1.38414588 = .2775328
    p, lo, hi = wilson_ci(0, 10)
    assert (p, lo) == (0.0, 0.0)
    assert hi == pytest.approx((Z2 / 10) / (1 + Z2 / 10), abs=TOL) and hi == pytest.approx(0.2775328, abs=1e-7)
    # 10 of 10 mirrors it
    assert wilson_ci(10, 10) == pytest.approx((1.0, 1 - 0.2775328, 1.0), abs=1e-7)
    # 5 of 10: centre .5, half = z*sqrt(.025 + z^2/400)/(1 + z^2/10) = 1.959964*.1860205/1.3841459 = .2634069
    assert wilson_ci(5, 10) == pytest.approx((0.5, 0.5 - 0.2634069, 0.5 + 0.2634069), abs=1e-7)
    # 1 of 3: centre (1/3 + z^2/6)/(1 + z^2/3) = .9735765/2.2804863 = .4269166; half = z*sqrt(2/27 + z^2/36)/2.2804863 = .3654237
    assert wilson_ci(1, 3) == pytest.approx((1 / 3, 0.4269166 - 0.3654237, 0.4269166 + 0.3654237), abs=1e-6)
    assert all(math.isnan(x) for x in wilson_ci(0, 0))


# ----------------------------------------------------------------------------- evaluate_policy


@dataclass
class Verdict:
    pred: str | None
    correct: bool


class ScriptedVerifier:
    """The text is the answer itself; an empty text has no answer."""

    def __init__(self):
        self.calls = 0

    def verify(self, problems, texts):
        assert len(problems) == len(texts)
        self.calls += 1
        return [Verdict(t or None, bool(t) and t == p.answer) for p, t in zip(problems, texts)]


class ScriptedPolicy:
    """Returns fixed sampled texts per prompt, and a fixed greedy text when temperature is 0."""

    def __init__(self, samples: dict[str, list[str]], greedy: dict[str, str]):
        self.samples, self.greedy, self.calls = samples, greedy, []

    def generate(self, prompts, params, prefixes=None):
        self.calls.append((list(prompts), params))
        out = []
        for p in prompts:
            texts = [self.greedy[p]] * params.n if params.temperature == 0 else self.samples[p][: params.n]
            assert len(texts) == params.n
            out.append([Completion(text=t, token_ids=[], logprobs=torch.zeros(0), finish_reason="eos") for t in texts])
        return out


PROBLEMS = [Problem(id=f"p{i}", prompt=f"q{i}", answer=a, task="t") for i, a in enumerate(["5", "1", "9"])]
SAMPLES = {
    "q0": ["5", "3", "5", "7"],  # c = 2; votes 5:2 3:1 7:1 -> "5", right
    "q1": ["2", "2", "1", ""],  # c = 1; votes 2:2 1:1 (the empty one abstains) -> "2", wrong
    "q2": ["", "", "", "4"],  # c = 0; votes 4:1 -> "4", wrong
}
GREEDY_TEXTS = {"q0": "5", "q1": "0", "q2": "9"}  # right, wrong, right


def test_evaluate_policy_by_hand():
    policy, verifier = ScriptedPolicy(SAMPLES, GREEDY_TEXTS), ScriptedVerifier()
    out = evaluate_policy(policy, verifier, PROBLEMS, n_samples=4, ks=(1, 2, 4), temperature=0.8, max_new_tokens=7, seed=3)
    assert (out["n_problems"], out["n_samples"], out["temperature"]) == (3, 4, 0.8)
    # pass@1 per problem: 2/4, 1/4, 0 -> mean .25; sd sqrt((.25^2 + 0 + .25^2)/2) = .25 -> half z*.25/sqrt(3) = .2828964
    assert out["pass@1"] == pytest.approx(0.25, abs=TOL)
    assert out["pass@1_ci"] == pytest.approx([0.0, 0.25 + Z95 * 0.25 / math.sqrt(3)], abs=TOL)
    # pass@2: 1 - C(2,2)/C(4,2) = 5/6, 1 - C(3,2)/C(4,2) = 1/2, 0 -> (5/6 + 1/2)/3 = 4/9
    assert out["pass@2"] == pytest.approx(4 / 9, abs=TOL)
    # pass@4: 1, 1, 0 -> 2/3
    assert out["pass@4"] == pytest.approx(2 / 3, abs=TOL)
    # maj@4 (the largest k only): right, wrong, wrong -> 1/3 with its Wilson interval
    assert "maj@1" not in out and "maj@2" not in out
    assert out["maj@4"] == pytest.approx(1 / 3, abs=TOL)
    assert out["maj@4_ci"] == pytest.approx(list(wilson_ci(1, 3)[1:]), abs=TOL)
    # distinct non-empty answers: {5,3,7}, {2,1}, {4} -> (3 + 2 + 1)/3 = 2
    assert out["distinct_answers"] == pytest.approx(2.0, abs=TOL)
    # greedy: right, wrong, right -> 2/3
    assert out["greedy"] == pytest.approx(2 / 3, abs=TOL)
    assert out["greedy_ci"] == pytest.approx(list(wilson_ci(2, 3)[1:]), abs=TOL)
    # the sampling parameters reached the policy; the greedy pass is one temperature-0 sample
    (prompts, sampled), (_, greedy) = policy.calls
    assert prompts == ["q0", "q1", "q2"]
    assert (sampled.n, sampled.temperature, sampled.max_new_tokens, sampled.seed) == (4, 0.8, 7, 3)
    assert (greedy.n, greedy.temperature, greedy.max_new_tokens) == (1, 0.0, 7)


def test_evaluate_policy_chunks_give_the_same_metrics():
    whole = evaluate_policy(ScriptedPolicy(SAMPLES, GREEDY_TEXTS), ScriptedVerifier(), PROBLEMS, n_samples=4, ks=(1, 2, 4))
    policy, seen = ScriptedPolicy(SAMPLES, GREEDY_TEXTS), []
    # chunk 1 with n = 4: max(1, 1*8//4) = 2 prompts per sampling call, 8 per greedy call
    chunked = evaluate_policy(policy, ScriptedVerifier(), PROBLEMS, n_samples=4, ks=(1, 2, 4), chunk=1, progress=seen.append)
    assert chunked == whole
    assert [len(prompts) for prompts, _ in policy.calls] == [2, 1, 3]
    assert seen == [2, 1]  # progress counts the problems of the sampling pass


def test_evaluate_policy_without_greedy():
    policy = ScriptedPolicy(SAMPLES, GREEDY_TEXTS)
    out = evaluate_policy(policy, ScriptedVerifier(), PROBLEMS, n_samples=4, ks=(1, 4), greedy=False)
    assert "greedy" not in out and len(policy.calls) == 1
    assert out["maj@4"] == pytest.approx(1 / 3, abs=TOL)


def test_evaluate_policy_caps_padded_tokens_per_call(monkeypatch):
    """Long prompts (MathHay contexts) are split by padded tokens, not only by count: with a budget of 40 tokens,
    n = 4 and 7 new tokens, a batch holds rows while rows * 4 * (longest + 7) <= 40, so one problem per call."""
    import rewardflow.eval.runner as runner

    class Encoding(ScriptedPolicy):
        def encode_prompts(self, prompts):
            return [[0] * 3 for _ in prompts]  # 3 tokens each: 2 rows cost 2 * 4 * 10 = 80 > 40, 1 row 40

    monkeypatch.setattr(runner, "MAX_BATCH_TOKENS", 40)
    policy = Encoding(SAMPLES, GREEDY_TEXTS)
    capped = evaluate_policy(policy, ScriptedVerifier(), PROBLEMS, n_samples=4, ks=(1, 2, 4), max_new_tokens=7)
    assert [len(prompts) for prompts, _ in policy.calls] == [1, 1, 1, 3]  # greedy (n = 1): 3 * 10 = 30 <= 40
    whole = evaluate_policy(ScriptedPolicy(SAMPLES, GREEDY_TEXTS), ScriptedVerifier(), PROBLEMS, n_samples=4, ks=(1, 2, 4), max_new_tokens=7)
    assert capped == whole
