"""ROVER: uniform-policy Q on a toy tree, softmax sampling, the successor term and the training loss."""
import math

import torch

from rewardflow.algos import rover_loss, rover_next_q_mean, rover_policy, rover_q, uniform_policy_q, vocab_mean_logprob

from conftest import close, t, toy_logits  # hand-worked checks at ATOL = 1e-6, rtol 0

LOG = math.log


def test_uniform_policy_q_greedy_is_optimal():
    # root -> A (4 wrong leaves) or B; B -> b1 (wrong) or b2; b2 -> c1 (correct) or c2 (wrong)
    # Q(b2, c1) = 1, Q(B, b2) = (1 + 0)/2 = .5, Q(root, B) = (0 + .5)/2 = .25, Q(root, A) = 0
    children = {"root": ["A", "B"], "A": ["a1", "a2", "a3", "a4"], "B": ["b1", "b2"], "b2": ["c1", "c2"]}
    q = uniform_policy_q(children, {"c1": 1.0}, "root")
    assert q[("root", "A")] == 0.0 and q[("root", "B")] == 0.25 and q[("B", "b2")] == 0.5 and q[("b2", "c1")] == 1.0
    s = "root"
    while s in children:  # act greedily on Q_u: reaches the only correct leaf (Theorem 3.1)
        s = max(children[s], key=lambda kid: q[(s, kid)])
    assert s == "c1"


def test_rover_policy_softmax_temperature():
    # Q = [0, log 3]: rho 1 -> [1/4, 3/4]; rho .5 -> softmax([0, 2 log 3]) = [1/10, 9/10]
    q = t([0.0, LOG(3)])
    close(rover_policy(q, rho=1.0), [[0.25, 0.75]])
    close(rover_policy(q, rho=0.5), [[0.1, 0.9]])


def test_successor_term_shift_and_vocab_mean():
    # mean log-softmax of [0, log 3] = (log .25 + log .75)/2
    close(vocab_mean_logprob(torch.tensor([[[0.0, LOG(3)]]], dtype=torch.float64)), [[(LOG(0.25) + LOG(0.75)) / 2]])
    # rho 2: mean Q at s_t = 2 * ([-1, -2, -3] - [-1.5, -1, -3]) * mask = [1, -2, 0]; read at t+1 -> [-2, 0, 0]
    out = rover_next_q_mean(t([-1, -2, -3]), t([-1.5, -1, -3]), t([1, 1, 0]), rho=2.0)
    close(out, [[-2.0, 0.0, 0.0]])


def test_rover_loss_values_and_stop_gradient():
    # Q = rho (logp - old) = [log 2, 0]; target = r~ + next = [.5 + .1, .5 + 0]
    # ((log 2 - .6)^2 + (0 - .5)^2) / 2
    logp = t([LOG(0.5), LOG(0.5)]).requires_grad_(True)
    next_q = t([0.1, 0.0]).requires_grad_(True)
    loss, _ = rover_loss(logp, t([LOG(0.25), LOG(0.5)]), next_q, torch.tensor([0.5], dtype=torch.float64), t([1, 1]))
    close(loss, ((LOG(2) - 0.6) ** 2 + 0.25) / 2)
    loss.backward()
    assert next_q.grad is None  # the target is held constant
    # d/dlogp_t = 2 (Q_t - target_t) / 2
    close(logp.grad, [[LOG(2) - 0.6, -0.5]])
    close(rover_q(t([0.0]), t([-1.0]), rho=3.0), [[3.0]])


def test_rover_centred_reward_sign_and_split():
    logits, logp_of = toy_logits()  # conftest.py

    before, mask = logp_of(logits).detach(), torch.ones(2, 3, dtype=torch.float64)
    reward = torch.tensor([0.5, -0.5], dtype=torch.float64)  # centred: above and below the group mean
    next_q = torch.zeros(2, 3, dtype=torch.float64)
    rover_loss(logp_of(logits), before, next_q, reward, mask)[0].backward()
    after = logp_of(logits.detach() - 0.5 * logits.grad)
    assert (after[0] > before[0]).all() and (after[1] < before[1]).all()
    full = rover_loss(before + 0.1, before, next_q, reward, mask, normalizer=6)[0]
    halves = sum(
        rover_loss(before[s] + 0.1, before[s], next_q[s], reward[s], mask[s], normalizer=6)[0] for s in (slice(0, 1), slice(1, 2))
    )
    close(halves, full.item())
