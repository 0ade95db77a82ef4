"""Preference losses on two hand-worked pairs.

pair 1: policy chosen -1, rejected -2; reference -1.5, -1.5   (policy prefers chosen)
pair 2: policy chosen -3, rejected -1; reference -2, -2       (policy prefers rejected)
beta .5 -> implicit rewards: pair 1 chosen .25, rejected -.25 (z = .5); pair 2 chosen -.5, rejected .5 (z = -1)
"""

import pytest
import torch

from rewardflow.algos import PREFERENCE_LOSSES, cdpo_loss, dpo_loss, ipo_loss, rpo_loss, simpo_loss

from conftest import close, softplus  # hand-worked checks at ATOL = 1e-6, rtol 0

PC, PR = torch.tensor([-1.0, -3.0], dtype=torch.float64), torch.tensor([-2.0, -1.0], dtype=torch.float64)
RC, RR = torch.tensor([-1.5, -2.0], dtype=torch.float64), torch.tensor([-1.5, -2.0], dtype=torch.float64)


def test_dpo_values_and_stats():
    # -log sigmoid(z) = log(1 + e^-z): (log(1 + e^-.5) + log(1 + e^1)) / 2
    loss, stats = dpo_loss(PC, PR, RC, RR, beta=0.5)
    close(loss, (softplus(-0.5) + softplus(1.0)) / 2)
    assert stats["pref/accuracy"] == pytest.approx(0.5)
    assert stats["pref/margin"] == pytest.approx((0.5 - 1.0) / 2)
    assert stats["pref/chosen_reward"] == pytest.approx((0.25 - 0.5) / 2)


def test_cdpo_label_smoothing():
    # .9 * log(1 + e^-z) + .1 * log(1 + e^z), averaged over z = .5, -1
    loss, _ = cdpo_loss(PC, PR, RC, RR, beta=0.5, label_smoothing=0.1)
    per = [0.9 * softplus(-z) + 0.1 * softplus(z) for z in (0.5, -1.0)]
    close(loss, sum(per) / 2)
    close(cdpo_loss(PC, PR, RC, RR, beta=0.5, label_smoothing=0.0)[0], dpo_loss(PC, PR, RC, RR, beta=0.5)[0].item())


def test_ipo_squared_margin():
    # target 1/(2 beta) = 1; h1 = (-1+1.5) - (-2+1.5) = 1 -> 0 ; h2 = (-3+2) - (-1+2) = -2 -> 9 ; mean 4.5
    close(ipo_loss(PC, PR, RC, RR, beta=0.5)[0], 4.5)


def test_simpo_length_normalised_margin():
    # beta 2, gamma 1, |y_w| = [2, 4], |y_l| = [4, 1]:
    # pair 1: 2*(-1/2) - 2*(-2/4) - 1 = -1 -> log(1 + e) ; pair 2: 2*(-3/4) - 2*(-1) - 1 = -.5 -> log(1 + e^.5)
    cl, rl = torch.tensor([2.0, 4.0], dtype=torch.float64), torch.tensor([4.0, 1.0], dtype=torch.float64)
    loss, _ = simpo_loss(PC, PR, None, None, beta=2.0, gamma=1.0, chosen_len=cl, rejected_len=rl)
    close(loss, (softplus(1.0) + softplus(0.5)) / 2)
    with pytest.raises(ValueError):
        simpo_loss(PC, PR, None, None)


def test_rpo_adds_length_normalised_nll():
    # DPO (beta .5) + alpha * mean(1/2, 3/4) = DPO + .625
    cl = torch.tensor([2.0, 4.0], dtype=torch.float64)
    loss, stats = rpo_loss(PC, PR, RC, RR, beta=0.5, alpha=1.0, chosen_len=cl)
    close(loss, (softplus(-0.5) + softplus(1.0)) / 2 + 0.625)
    assert stats["pref/nll"] == pytest.approx(0.625)


LENS = {"chosen_len": torch.tensor([2.0, 4.0, 3.0, 1.0]), "rejected_len": torch.tensor([4.0, 1.0, 2.0, 2.0])}


@pytest.mark.parametrize("name", sorted(PREFERENCE_LOSSES))
def test_split_batch_sums_to_full_batch(name):
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (-3 * torch.rand(4, generator=g) for _ in range(4))
    fn = PREFERENCE_LOSSES[name]
    full = fn(pc, pr, rc, rr, beta=0.5, normalizer=4, **LENS)[0]
    halves = sum(
        fn(pc[s], pr[s], rc[s], rr[s], beta=0.5, normalizer=4, chosen_len=LENS["chosen_len"][s], rejected_len=LENS["rejected_len"][s])[0]
        for s in (slice(0, 2), slice(2, 4))
    )
    torch.testing.assert_close(halves, full, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", sorted(PREFERENCE_LOSSES))
def test_one_step_widens_chosen_over_rejected(name):
    pc, pr = torch.tensor([-2.0, -2.0], requires_grad=True), torch.tensor([-2.0, -2.0], requires_grad=True)
    rc, rr = torch.tensor([-2.0, -2.0]), torch.tensor([-2.0, -2.0])
    lens = {"chosen_len": torch.tensor([2.0, 2.0]), "rejected_len": torch.tensor([2.0, 2.0])}
    PREFERENCE_LOSSES[name](pc, pr, rc, rr, beta=0.5, **lens)[0].backward()
    assert (pc.grad < 0).all() and (pr.grad > 0).all()  # descent raises chosen, lowers rejected
