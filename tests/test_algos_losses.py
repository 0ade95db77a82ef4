"""Policy losses, aggregation, KL and entropy terms: hand-worked values, data-parallel splits, gradient signs."""
import math

import pytest
import torch

from rewardflow.algos import (
    POLICY_LOSSES,
    aggregate_tokens,
    clipped_policy_loss,
    dual_clip_policy_loss,
    entropy_bonus,
    entropy_from_logits,
    gspo_loss,
    kl_estimate,
    kl_penalty_loss,
    sft_nll_loss,
)

from conftest import close, t  # hand-worked checks at ATOL = 1e-6, rtol 0

LOG = math.log


def test_aggregate_tokens_modes():
    per_token, mask = t([1, 2, 3], [4, 0, 0]), t([1, 1, 1], [1, 0, 0])
    close(aggregate_tokens(per_token, mask, "token-mean"), (1 + 2 + 3 + 4) / 4)  # 2.5
    close(aggregate_tokens(per_token, mask, "seq-mean-token-mean"), (6 / 3 + 4 / 1) / 2)  # 3.0
    close(aggregate_tokens(per_token, mask, "seq-mean-token-sum", normalizer=3), 10 / 3)
    close(aggregate_tokens(per_token, torch.zeros_like(mask), "token-mean"), 0.0)  # no tokens: 0, not nan
    with pytest.raises(ValueError):
        aggregate_tokens(per_token, mask, "seq-mean-token-sum")


def test_clipped_policy_loss_values_and_clip_higher():
    # ratios [1.5, 0.5, 1.1], A [1, -1, -1], eps .2:
    #   token0 A>0: min(1.5, 1.2) = 1.2 -> -1.2 ; token1 A<0: min(-.5, -.8) = -.8 -> .8 ; token2: -1.1 -> 1.1
    # token-mean (-1.2 + .8 + 1.1)/3 = .7/3 ; clipped tokens 0 and 1 -> clip_frac 2/3
    logp, old, mask = t([LOG(1.5), LOG(0.5), LOG(1.1)]), t([0, 0, 0]), t([1, 1, 1])
    adv = t([1, -1, -1])
    loss, stats = clipped_policy_loss(logp, old, adv, mask)
    close(loss, 0.7 / 3)
    assert stats["loss/clip_frac"] == pytest.approx(2 / 3)
    # DAPO clip-higher eps_high .28: token0 -> -1.28, total (-1.28 + .8 + 1.1)/3 = .62/3
    loss, _ = clipped_policy_loss(logp, old, adv, mask, eps_high=0.28)
    close(loss, 0.62 / 3)


def test_dual_clip_bounds_negative_advantage():
    # ratios [5, 1, 5], A [-1, -1, 1]: PPO losses [5, 1, -1.2]; dual clip c=3 caps the first at -c*A = 3
    # -> (3 + 1 - 1.2)/3 = 2.8/3 (plain PPO-clip: (5 + 1 - 1.2)/3 = 1.6)
    logp, old, mask, adv = t([LOG(5), 0, LOG(5)]), t([0, 0, 0]), t([1, 1, 1]), t([-1, -1, 1])
    loss, stats = dual_clip_policy_loss(logp, old, adv, mask, dual_clip_c=3.0)
    close(loss, 2.8 / 3)
    assert stats["loss/dual_clip_frac"] == pytest.approx(1 / 3)
    close(clipped_policy_loss(logp, old, adv, mask)[0], 1.6)
    # the capped token has zero gradient
    logp = logp.clone().requires_grad_(True)
    dual_clip_policy_loss(logp, old, adv, mask)[0].backward()
    assert logp.grad[0, 0].item() == 0.0 and logp.grad[0, 1].item() != 0.0


def test_gspo_sequence_ratio_values():
    # row0: s = exp((log 2 + 0)/2) = sqrt 2, A = 1 -> -min(1.414, 1.2) = -1.2
    # row1: one valid token, s = .9, A = -1 -> -min(-.9, -.9) = .9   -> seq-mean (-1.2 + .9)/2 = -.15
    logp, old = t([LOG(2), 0.0], [LOG(0.9), 5.0]), t([0, 0], [0, 0])
    mask, adv = t([1, 1], [1, 0]), torch.tensor([1.0, -1.0], dtype=torch.float64)
    loss, _ = gspo_loss(logp, old, adv, mask, eps_low=0.2, eps_high=0.2)
    close(loss, -0.15)
    # paper clip range (3e-4, 4e-4): row0 -> -1.0004 ; row1 clip(.9) = .9997 -> -min(-.9, -.9997) = .9997
    loss, stats = gspo_loss(logp, old, adv, mask)
    close(loss, (-1.0004 + 0.9997) / 2)
    assert stats["loss/clip_frac"] == pytest.approx(1.0)
    # token-level PPO on the same data differs (token ratios 2 and 1): a normaliser/ratio mix-up shows here
    assert abs(clipped_policy_loss(logp, old, adv, mask, agg="seq-mean-token-mean")[0].item() + 0.15) > 1e-3


def test_gspo_gradient_is_sequence_level():
    # unclipped: loss = -(1/N) sum_i s_i A_i with s_i = exp(mean_t logratio); d/dlogp_t = -s A / (|y| N)
    # row0: s = sqrt 2, A = 1, |y| = 2, N = 2 -> -sqrt(2)/4 on both tokens
    logp = t([LOG(2), 0.0], [0.0, 0.0]).requires_grad_(True)
    old, mask = t([0, 0], [0, 0]), t([1, 1], [1, 1])
    gspo_loss(logp, old, torch.tensor([1.0, 0.0], dtype=torch.float64), mask, eps_low=10, eps_high=10)[0].backward()
    close(logp.grad, [[-math.sqrt(2) / 4, -math.sqrt(2) / 4], [0, 0]])


def test_entropy_and_bonus():
    # uniform over 2: log 2 ; p = [.25, .75]: -(.25 log .25 + .75 log .75)
    h = entropy_from_logits(torch.tensor([[[0.0, 0.0], [0.0, LOG(3)]]], dtype=torch.float64))
    close(h, [[LOG(2), -(0.25 * LOG(0.25) + 0.75 * LOG(0.75))]])
    # bonus is a negative loss: -0.01 * mean(.5, 1.0) = -.0075
    loss, _ = entropy_bonus(t([0.5, 1.0]), t([1, 1]), coef=0.01)
    close(loss, -0.0075)


def test_sft_nll():
    # valid tokens -1, -2, -3 -> NLL mean (1 + 2 + 3)/3 = 2
    close(sft_nll_loss(t([-1, -2], [-3, 0]), t([1, 1], [1, 0]))[0], 2.0)


def test_kl_estimators_and_loss():
    # log r = ref - logp = log .5: k1 = log 2 ; k2 = (log 2)^2 / 2 ; k3 = .5 - 1 + log 2 = .193147
    logp, ref = t([0.0]), t([LOG(0.5)])
    close(kl_estimate(logp, ref, "k1"), [[LOG(2)]])
    close(kl_estimate(logp, ref, "k2"), [[LOG(2) ** 2 / 2]])
    close(kl_estimate(logp, ref, "k3"), [[0.5 - 1 + LOG(2)]])
    loss, stats = kl_penalty_loss(logp, ref, t([1]), kind="k3", coef=2.0)
    close(loss, 2 * (0.5 - 1 + LOG(2)))
    with pytest.raises(ValueError):
        kl_estimate(logp, ref, "k4")


@pytest.mark.parametrize("name", sorted(POLICY_LOSSES))
@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"])
def test_split_batch_sums_to_full_batch(name, agg):
    """Two data-parallel halves, each with the full batch's normaliser, add up to the full-batch loss."""
    g = torch.Generator().manual_seed(0)
    N, T = 4, 5
    logp = -torch.rand(N, T, generator=g, dtype=torch.float64)
    old = logp + 0.3 * (torch.rand(N, T, generator=g, dtype=torch.float64) - 0.5)
    adv = torch.randn(N, generator=g, dtype=torch.float64)
    mask = t([1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0])
    norm = {"token-mean": mask.sum().item(), "seq-mean-token-mean": N, "seq-mean-token-sum": T}[agg]
    fn = POLICY_LOSSES[name]
    kw = dict(eps_low=0.2, eps_high=0.28, agg=agg, normalizer=norm)
    full = fn(logp, old, adv, mask, **kw)[0]
    halves = sum(fn(logp[s], old[s], adv[s], mask[s], **kw)[0] for s in (slice(0, 2), slice(2, 4)))
    close(halves, full.item())


@pytest.mark.parametrize("name", sorted(POLICY_LOSSES))
def test_positive_advantage_raises_logp_after_one_step(name):
    """One SGD step on the logits: the A>0 sequence's tokens become likelier, the A<0 ones less likely."""
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)  # [N, T, V]
    actions = torch.tensor([[0, 1, 2], [3, 2, 1]])
    mask, adv = torch.ones(2, 3, dtype=torch.float64), torch.tensor([1.0, -1.0], dtype=torch.float64)

    def logp_of(z):
        return torch.log_softmax(z, -1).gather(-1, actions[..., None]).squeeze(-1)  # [N, T]

    before = logp_of(logits).detach()
    loss, _ = POLICY_LOSSES[name](logp_of(logits), before, adv, mask, eps_low=0.2, eps_high=0.2, agg="token-mean", normalizer=None)
    loss.backward()
    after = logp_of(logits.detach() - 0.5 * logits.grad)
    assert (after[0] > before[0]).all() and (after[1] < before[1]).all()
