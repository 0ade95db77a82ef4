"""Auto-CEI's mathematics (algos/autocei.py), every value worked by hand in the comments."""
import math

import pytest
import torch

from rewardflow.algos.autocei import (curriculum_update, ei_keep, ei_rewards, initial_threshold, objective, refusal_reward,
                                      reliability)

from conftest import close


def test_refusal_reward_by_hand():
    # 2 * sigmoid(c2 * (L - c1)) - 1 with c1 = 3, c2 = ln 3:
    # L = 3: 2 * 1/2 - 1 = 0;  L = 4: sigmoid(ln 3) = 3/4 -> 0.5;  L = 2: sigmoid(-ln 3) = 1/4 -> -0.5
    r = refusal_reward(torch.tensor([2.0, 3.0, 4.0]), c1=3.0, c2=math.log(3))
    close(r, [-0.5, 0.0, 0.5])
    # monotone in L: a lazy (short) refusal is worth less than one after a long attempt
    assert refusal_reward(1.0, 3.0, 1.0) < refusal_reward(5.0, 3.0, 1.0)
    with pytest.raises(ValueError):
        refusal_reward(1.0, 3.0, 0.0)


def test_ei_rewards_and_keep():
    # samples: correct answer, wrong answer, short refusal (L=2), long refusal (L=4); c1 = 3, c2 = ln 3
    correct = torch.tensor([True, False, False, False])
    refused = torch.tensor([False, False, True, True])
    length = torch.tensor([5.0, 5.0, 2.0, 4.0])
    r = ei_rewards(correct, refused, length, c1=3.0, c2=math.log(3))
    close(r, [1.0, -1.0, -0.5, 0.5])
    assert ei_keep(r).tolist() == [True, False, False, True]
    # R-Tuning style: every refusal gets the same fixed reward, so the short one is kept too
    fixed = ei_rewards(correct, refused, length, c1=3.0, c2=math.log(3), fixed_refusal=0.3)
    close(fixed, [1.0, -1.0, 0.3, 0.3])
    assert ei_keep(fixed).tolist() == [True, False, True, True]
    # a refusal is never counted as a correct answer even if the verifier's flag says so
    # (L = 0: sigmoid(-3 ln 3) = 1/(1 + 27) = 1/28 -> 2/28 - 1 = -0.928571...)
    close(ei_rewards(torch.tensor([True]), torch.tensor([True]), torch.tensor([0.0]), c1=3.0, c2=math.log(3)), [2 / 28 - 1])


def test_objective_and_reliability():
    # 4 problems: correct, wrong, refused, correct -> answered 3, precision 2/3, refusal 1/4, accuracy 2/4
    m = reliability([True, False, True, True], [False, False, True, False])
    assert m == {"precision": 2 / 3, "refusal_rate": 0.25, "accuracy": 0.5}
    # f = (1 - 0.2) * 2/3 + 0.2 * (1 - 1/4) = 0.53333 + 0.15 = 0.68333
    assert objective(m["precision"], m["refusal_rate"], 0.2) == pytest.approx(0.8 * 2 / 3 + 0.15, abs=1e-12)
    assert objective(1.0, 1.0, 0.0) == 1.0 and objective(1.0, 1.0, 1.0) == 0.0  # lambda's two ends
    # refusing everything: precision 0 (not 1), so f = 0.8 * 0 + 0.2 * 0 = 0 and a policy that refuses all never wins
    assert reliability([False], [True]) == {"precision": 0.0, "refusal_rate": 1.0, "accuracy": 0.0}
    with pytest.raises(ValueError):
        objective(0.5, 0.5, 1.5)


def test_initial_threshold_by_hand():
    # all lengths 1, 3, 5, 7: mean 4, population std sqrt((9+1+1+9)/4) = sqrt(5) = 2.2360...
    # step = min(0.2 * 2.236, 0.5) = 0.4472; refusals 5 and 7 -> mean 6, c1 = 6.4472; c2 = ln 10 / (4 * 2.236) = 0.25744
    c1, step, c2 = initial_threshold([5, 7], [1, 3, 5, 7])
    s5 = math.sqrt(5)
    assert step == pytest.approx(0.2 * s5, abs=1e-12)
    assert c1 == pytest.approx(6 + 0.2 * s5, abs=1e-12)
    assert c2 == pytest.approx(math.log(10) / (4 * s5), abs=1e-12)
    # a wide spread caps the step at 0.5
    assert initial_threshold([10], [0, 10])[1] == 0.5  # std 5 -> 0.2 * 5 = 1.0 > 0.5


def test_curriculum_update_hill_climbs():
    # improving: keep going up by the step
    assert curriculum_update(4.0, +1, 0.5, f_new=0.70, f_prev=0.60) == (4.5, +1)
    # worse: turn round and go down
    assert curriculum_update(4.5, +1, 0.5, f_new=0.55, f_prev=0.70) == (4.0, -1)
    # equal is not an improvement
    assert curriculum_update(4.0, -1, 0.5, f_new=0.7, f_prev=0.7) == (4.5, +1)
    # never below zero
    assert curriculum_update(0.2, -1, 0.5, f_new=0.9, f_prev=0.1) == (0.0, -1)
    with pytest.raises(ValueError):
        curriculum_update(1.0, 0, 0.5, 0.1, 0.2)
