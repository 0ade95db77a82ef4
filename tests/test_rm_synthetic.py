"""rewards/synthetic.py: slipped worked solutions and their exact step labels, checked by hand."""
import random

import pytest

from rewardflow.data.problem import Problem
from rewardflow.rewards.synthetic import SLIPS, slipped_steps, synthetic_rows

GOLD = ["4 + 7 = 11", "11 - 3 = 8", "Answer: 8"]


def _ints(step: str) -> list[int]:
    return [int(t) for t in step.replace("=", " ").split() if t.lstrip("-").isdigit()]


def test_each_slip_makes_one_error_and_carries_it_on():
    for seed in range(40):
        rng = random.Random(seed)
        assert slipped_steps(GOLD, "none", rng) == GOLD
        direct = slipped_steps(GOLD, "direct", rng)
        assert len(direct) == 1 and direct[0].startswith("Answer: ")
        answer = slipped_steps(GOLD, "answer", rng)
        assert answer[:2] == GOLD[:2] and answer[2] != GOLD[2]  # only the answer line differs
        for kind in ("result", "operand"):
            steps = slipped_steps(GOLD, kind, rng)
            wrong = [k for k, (s, g) in enumerate(zip(steps, GOLD)) if s != g]
            assert wrong and len(steps) == 3, (kind, steps)
            for s in steps[:-1]:
                a, b, c = _ints(s)
                op = s.split()[1]
                if kind == "operand" or s is not steps[wrong[0]]:  # every step but a result slip computes correctly
                    assert c == (a + b if op == "+" else a - b), (kind, steps)
            # the answer line states the last result: the slip is carried on, as a sampling policy does
            assert steps[-1] == f"Answer: {_ints(steps[-2])[-1]}"


def test_rows_carry_the_oracle_labels():
    rng = random.Random(0)
    steps = slipped_steps(GOLD, "result", rng)
    problem = Problem("p0", "State the final answer to the following arithmetic problem: 4 + 7 - 3 =", "8", "chain_sum", {"expression": "4 + 7 - 3"})
    rows = synthetic_rows([problem] * 50, 4, seed=1)
    assert len(rows) == 200 and {r["label_kind"] for r in rows} == {"synthetic"}
    kinds_seen = set()
    for r in rows:
        s, lab = r["steps"], r["labels"]
        first_wrong = next((k for k, (x, g) in enumerate(zip(s, GOLD)) if x != g), None)
        if len(s) == 1:  # a direct answer: right exactly when it states the gold answer
            assert lab == [float(s[0] == "Answer: 8")]
            kinds_seen.add("direct")
        elif first_wrong is None:
            assert lab == [1.0, 1.0, 1.0] and r["correct"]
            kinds_seen.add("none")
        else:  # 1 before the first wrong step, 0 from it on
            assert lab == [1.0] * first_wrong + [0.0] * (3 - first_wrong)
            kinds_seen.add(first_wrong)
        assert r["correct"] == (r["pred"] == "8")
    assert kinds_seen >= {"direct", "none", 0, 1, 2}  # slips land on every step
    assert steps != GOLD


def test_a_step_that_is_not_a_chain_step_is_an_error():
    with pytest.raises(ValueError, match="not a chain step"):
        slipped_steps(["four plus seven is 11", "Answer: 11"], "result", random.Random(0))
    assert set(SLIPS) == {"none", "result", "operand", "answer", "direct"}
