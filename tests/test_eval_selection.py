"""eval.metrics.top_scored / vote: the one best-of-N and the one weighted vote. Search (search.base.choose), reward-model
evaluation (eval.rm.selection) and the RM benchmark (recipes/bench/rm.py) all choose through them; the last test checks
the three agree on the same samples."""
import math
import random

import pytest

from rewardflow.eval.metrics import best_of_n, top_scored, vote, weighted_vote
from rewardflow.eval.rm.selection import maj_credit, rm_credit, weighted_maj_credit
from rewardflow.search.base import Candidate, choose


def test_top_scored_by_hand():
    assert top_scored([0.1, 0.9, 0.3]) == [1]
    assert top_scored([0.5, 0.2, 0.5]) == [0, 2]  # every tied winner, earliest first
    assert top_scored([0.5, 0.2, 0.9], idx=[0, 1]) == [0]  # only the samples in idx compete
    # a missing or NaN score never beats a real one, even a negative one; with nothing real, all tie
    assert top_scored([None, -3.0, math.nan]) == [1]
    assert top_scored([None, math.nan]) == [0, 1]
    assert top_scored([]) == []


def test_vote_by_hand():
    keys = ["a", "b", "b", None, "a"]
    # unit weights: a 2, b 2 -> both win, representatives 0 and 1
    assert vote(keys, [1.0] * 5) == [0, 1]
    # weights: a 0.1 + 0.1 = 0.2, b 0.3 + 0.3 = 0.6, None never votes (its 9.0 is ignored)
    assert vote(keys, [0.1, 0.3, 0.3, 9.0, 0.1]) == [1]
    # over samples 2..4 only: b 0.3 vs a 0.1 -> b, represented by its first sample in idx, 2
    assert vote(keys, [0.1, 0.3, 0.3, 9.0, 0.1], idx=[2, 3, 4]) == [2]
    assert vote([None, None], [1.0, 1.0]) == []


def test_weighted_vote_judges_the_returned_sample():
    # "x" wins 2 votes to 1; its first sample (0) is what a selector returns, so its correctness counts
    assert weighted_vote(["x", "y", "x"], [1.0, 1.0, 1.0], [True, False, False]) == 1.0
    with pytest.raises(ValueError):
        weighted_vote(["x"], [1.0, 2.0], [True])


def _cands(answers, scores):
    return [Candidate(steps=[f"Answer: {a}"], answer=a, score=s) for a, s in zip(answers, scores)]


def test_search_choose_by_hand():
    cs = _cands(["3", "4", "4", None], [0.9, 0.2, 0.3, 5.0])
    assert choose(cs, "best") == 3  # the top score, whether or not it answered
    assert choose(cs, "weighted") == 0  # "3": 0.9 beats "4": 0.5; None does not vote
    assert choose(cs, "majority") == 1  # "4" twice: its first candidate
    cs = _cands(["4", "3", "4"], [0.1, 0.3, 0.4])
    assert choose(cs, "weighted") == 2  # "4": 0.5 beats "3": 0.3, then the top-scored "4"
    assert choose(_cands([None, None], [0.2, 0.7]), "majority") == 1  # nobody answered: the top score
    assert choose([], "best") is None
    with pytest.raises(ValueError, match="valid: best, weighted, majority"):
        choose(cs, "median")


def test_search_eval_and_bench_choose_the_same_sample():
    """On random samples (scores with ties, answers with repeats) the three users agree: search's choose returns the
    sample whose correctness the benchmark's best_of_n / weighted_vote and eval's first-k credits report."""
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(1, 6)
        answers = [rng.choice(["1", "2", "3"]) for _ in range(n)]
        scores = [rng.choice([0.1, 0.5, 0.9]) for _ in range(n)]
        correct = [a == "2" for a in answers]
        cs = _cands(answers, scores)
        idx = range(n)
        assert float(correct[choose(cs, "best")]) == best_of_n(scores, correct) == rm_credit(idx, scores, correct, "first")
        assert float(correct[choose(cs, "weighted")]) == weighted_vote(answers, scores, correct) == \
            weighted_maj_credit(idx, answers, scores, correct, "raw", "first")
        assert float(correct[choose(cs, "majority")]) == maj_credit(idx, answers, correct, "first")
