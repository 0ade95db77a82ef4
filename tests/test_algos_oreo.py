"""OREO value and policy losses: values, which tensors carry gradient, and the direction of the update.

Shared example (beta .1, R = 1): V = [.2, .5], log pi/pi_ref = [log 2, log .5] = [.693147, -.693147].
value residuals: t0: .2 - 1 + .1 * (log 2 + log .5) = -.8 ; t1: .5 - 1 + .1 * log .5 = -.569315
policy residuals are equal in value (same Bellman residual), only the gradients differ.
"""
import math

import torch

from rewardflow.algos import exact_kl, kl_estimate, oreo_policy_loss, oreo_value_loss, step_sums

from conftest import close, t, toy_logits  # hand-worked checks at ATOL = 1e-6, rtol 0

LOG = math.log
R1 = -0.5 - 0.1 * LOG(2)  # -.569315


def example():
    values = t([0.2, 0.5]).requires_grad_(True)
    logp = t([LOG(0.5), LOG(0.5)]).requires_grad_(True)
    ref = t([LOG(0.25), LOG(1.0)])
    return values, logp, ref, torch.tensor([1.0], dtype=torch.float64), t([1, 1])


def test_value_loss_values_and_gradients():
    values, logp, ref, reward, mask = example()
    loss, _ = oreo_value_loss(values, logp, ref, reward, mask, beta=0.1)
    close(loss, (0.64 + R1**2) / 2)  # seq-mean-token-mean over T = 2
    loss.backward()
    close(values.grad, [[-0.8, R1]])  # d/dV_t = 2 res_t / 2
    assert logp.grad is None or torch.all(logp.grad == 0)  # the policy is frozen in the value loss


def test_policy_loss_values_and_gradients():
    values, logp, ref, reward, mask = example()
    loss, _ = oreo_policy_loss(logp, ref, values, reward, mask, beta=0.1)
    close(loss, (0.64 + R1**2) / 2)
    loss.backward()
    # only action t moves residual t: d/dlogp_t = 2 res_t beta / T = [-.08, .1 * R1]
    close(logp.grad, [[-0.08, 0.1 * R1]])
    assert values.grad is None or torch.all(values.grad == 0)  # the value is frozen in the policy loss


def test_policy_loss_kl_regulariser_and_mask():
    values, logp, ref, reward, _ = example()
    # second action padded: its log-ratio leaves the future sum, so residual t0 = .2 - 1 + .1 log 2 = -.730685;
    # plus the KL term alpha * token-mean(kl over valid) = .5 * .1
    loss, _ = oreo_policy_loss(logp, ref, values, reward, t([1, 0]), beta=0.1, kl=t([0.1, 0.3]), alpha=0.5)
    close(loss, (-0.8 + 0.1 * LOG(2)) ** 2 + 0.05)


def test_exact_kl_over_the_vocabulary():
    # V = 2. position 0: pi = softmax(0, 0) = (.5, .5), pi_ref = softmax(0, log 3) = (.25, .75):
    #   KL = .5 log(.5/.25) + .5 log(.5/.75) = .5 log(4/3) = .1438410
    # position 1: pi = softmax(log 3, 0) = (.75, .25), pi_ref = (.5, .5): KL = .75 log 1.5 + .25 log .5 = .1308120
    # position 2 is padding -> 0
    logits = torch.tensor([[[0.0, 0.0], [LOG(3), 0.0], [5.0, -5.0]]], dtype=torch.float64, requires_grad=True)
    ref_logits = torch.tensor([[[0.0, LOG(3)], [0.0, 0.0], [0.0, 0.0]]], dtype=torch.float64, requires_grad=True)
    kl = exact_kl(logits, ref_logits, t([1, 1, 0]))
    close(kl, [[0.5 * LOG(4 / 3), 0.75 * LOG(1.5) + 0.25 * LOG(0.5), 0.0]])
    # not the sampled k3 on the taken token: at position 0 with token 0 taken, log r = log .25 - log .5 = -log 2,
    # k3 = .5 - 1 + log 2 = .1931472 != .1438410
    k3 = kl_estimate(t([LOG(0.5)]), t([LOG(0.25)]), "k3")
    close(k3, [[0.5 - 1 + LOG(2)]])
    assert abs(k3.item() - kl[0, 0].item()) > 0.04
    # gradient to the policy only; d KL / d logit_0 at position 0: pi_0 (log(pi_0/q_0) - KL) = .5 (log 2 - .143841)
    kl.sum().backward()
    close(logits.grad[0, 0, 0], 0.5 * (LOG(2) - 0.5 * LOG(4 / 3)))
    assert ref_logits.grad is None
    # equal distributions: 0
    close(exact_kl(torch.tensor([[[1.0, 2.0, 3.0]]]), torch.tensor([[[1.0, 2.0, 3.0]]])), [[0.0]])


def test_policy_update_direction_success_and_failure():
    logits, logp_of = toy_logits()  # conftest.py

    before = logp_of(logits).detach()
    values = torch.full((2, 3), 0.5, dtype=torch.float64)
    reward, mask = torch.tensor([1.0, 0.0], dtype=torch.float64), torch.ones(2, 3, dtype=torch.float64)
    oreo_policy_loss(logp_of(logits), before, values, reward, mask, beta=0.1)[0].backward()
    after = logp_of(logits.detach() - 0.5 * logits.grad)
    assert (after[0] > before[0]).all() and (after[1] < before[1]).all()  # success up, failure down


def test_step_level_and_split_batch():
    # step level: tokens summed into steps, then the same losses on [N, S]
    token_logp, ends = t([-1.0, -1.0, -2.0], [-0.5, -0.5, -0.5]), torch.tensor([[2, 3], [1, 3]])
    step_logp = step_sums(token_logp, ends)  # [[-2, -2], [-.5, -1]]
    close(step_logp, [[-2, -2], [-0.5, -1.0]])
    ref, values = step_logp - 0.1, t([0.3, 0.4], [0.1, 0.0])
    reward, mask = torch.tensor([1.0, 0.0], dtype=torch.float64), t([1, 1], [1, 1])
    for fn, args in ((oreo_value_loss, (values, step_logp, ref)), (oreo_policy_loss, (step_logp, ref, values))):
        full = fn(*args, reward, mask, beta=0.1, normalizer=2)[0]
        halves = sum(fn(*(a[s] for a in args), reward[s], mask[s], beta=0.1, normalizer=2)[0] for s in (slice(0, 1), slice(1, 2)))
        close(halves, full.item())
    assert kl_estimate(step_logp, ref, "k3").shape == (2, 2)
