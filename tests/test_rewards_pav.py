"""PAV progress as a Scorer, on a fake prover whose success counts from every prefix are known exactly."""
import json
import random
import shutil

import pytest
import torch

from rewardflow.data import Problem
from rewardflow.policy.base import Completion
from rewardflow.rewards import SCORER_KINDS
from rewardflow.rewards.pav import PAVScorer


class Prover:
    """From a prefix of t steps (t = number of newlines; the question alone is t = 0), exactly successes[prompt][t]
    of the n rollouts end in the gold answer."""

    def __init__(self, problems, successes):
        self.problems, self.successes, self.seeds = problems, successes, []

    def generate(self, prompts, params, prefixes=None):
        self.seeds.append(params.seed)
        out = []
        for prompt, prefix in zip(prompts, prefixes):
            k, gold = self.successes[prompt][prefix.count("\n")], int(self.problems[prompt].answer)
            order = list(range(params.n))
            random.Random(f"{params.seed}|{prompt}|{prefix}").shuffle(order)
            out.append([Completion(f"Answer: {gold if i in order[:k] else gold + 100}", [], torch.zeros(0), "eos") for i in range(params.n)])
        return out


def test_progress_is_the_change_in_prover_success(verifier):
    probs = [Problem("a", "qa", "7", "t"), Problem("b", "qb", "5", "t")]
    # qa: Q0 = 1/4, Q1 = 3/4, Q2 = 0/4; the solution itself is wrong (Q3 = 0)
    # qb: Q0 = 2/4, then the correct one-step solution (Q1 = 1)
    prover = Prover({p.prompt: p for p in probs}, {"qa": [1, 3, 0], "qb": [2]})
    pav = PAVScorer(prover, verifier, rollouts=4)
    sols = [["3 + 4 = 7", "7 + 2 = 9", "Answer: 9"], ["Answer: 5"]]
    a, b = pav.score(probs, sols)
    # progress: qa: 3/4 - 1/4 = 0.5, 0 - 3/4 = -0.75, 0 - 0 = 0; qb: 1 - 2/4 = 0.5
    assert a.steps == pytest.approx([0.5, -0.75, 0.0]) and a.outcome == 0.0
    assert b.steps == pytest.approx([0.5]) and b.outcome == 1.0
    # progress telescopes: the sum is Q(final) - Q0
    assert sum(a.steps) == pytest.approx(0.0 - 0.25)
    pav.score(probs, sols)
    assert prover.seeds[0] != prover.seeds[1]  # a second call estimates with fresh rollouts


def test_pav_loads_from_a_scorer_directory(tiny_ckpt, tmp_path):
    shutil.copytree(tiny_ckpt, tmp_path / "prover")  # its own copy: the scorer names its prover by a relative path
    (tmp_path / "pav").mkdir()
    (tmp_path / "pav" / "scorer.json").write_text(json.dumps({"kind": "pav", "prover": "../prover", "rollouts": 2, "max_new_tokens": 8}))
    pav = SCORER_KINDS["pav"](tmp_path / "pav")
    (s,) = pav.score([Problem("a", "What is 1 + 1?", "2", "t")], [["1 + 1 = 2", "Answer: 2"]])
    assert len(s.steps) == 2 and all(-1.0 <= x <= 1.0 for x in s.steps) and s.outcome == 1.0
    pav.verifier.close()
