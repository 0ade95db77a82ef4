"""Truncated importance sampling / decoupled PPO (algos.losses.truncated_is_weights, importance_weighted_advantages),
against numbers worked by hand, and the claim that weighting the advantage weights every surrogate's token loss."""
import math

import pytest
import torch

from rewardflow.algos.losses import (
    clipped_policy_loss,
    dual_clip_policy_loss,
    gspo_loss,
    importance_weighted_advantages,
    truncated_is_weights,
)


def test_weights_are_the_truncated_ratio_on_valid_tokens():
    behav = torch.tensor([[-1.0, -2.0, -0.5]])
    prox = torch.tensor([[-1.0, -1.5, -1.0]])
    mask = torch.tensor([[1, 1, 0]])
    w, st = truncated_is_weights(prox, behav, mask, cap=1.5)
    # raw ratios exp(prox - behav): exp(0) = 1, exp(0.5) = 1.6487 -> capped at 1.5, the padded token -> 0
    torch.testing.assert_close(w, torch.tensor([[1.0, 1.5, 0.0]]), rtol=0, atol=1e-7)
    assert st["tis/weight_mean"] == pytest.approx((1.0 + 1.5) / 2, abs=1e-7)
    assert st["tis/capped_frac"] == pytest.approx(1 / 2)  # one of the two valid tokens hit the cap
    # k1 KL(behav || prox): mean of behav - prox over valid tokens = (0 + (-0.5)) / 2
    assert st["tis/behav_kl"] == pytest.approx(-0.25, abs=1e-7)


def test_a_cap_above_the_ratio_leaves_it_untouched_and_direction_matters():
    behav = torch.tensor([[-2.0, -1.0]])
    prox = torch.tensor([[-1.5, -1.2]])
    w, st = truncated_is_weights(prox, behav, torch.ones(1, 2), cap=10.0)
    # exp(0.5) = 1.648721, exp(-0.2) = 0.818731: the ratio is pi_prox / pi_behav, not its inverse
    torch.testing.assert_close(w, torch.tensor([[math.exp(0.5), math.exp(-0.2)]]), rtol=0, atol=1e-6)
    assert st["tis/capped_frac"] == 0.0


def test_weights_carry_no_gradient():
    prox = torch.tensor([[-1.0, -0.5]], requires_grad=True)
    w, _ = truncated_is_weights(prox, torch.tensor([[-1.2, -0.4]]), torch.ones(1, 2), cap=2.0)
    assert not w.requires_grad


def test_sequence_advantages_broadcast_over_tokens():
    adv = torch.tensor([2.0, -1.0])  # [N]
    w = torch.tensor([[1.0, 0.5], [2.0, 0.0]])  # [N, T]
    torch.testing.assert_close(importance_weighted_advantages(adv, w), torch.tensor([[2.0, 1.0], [-2.0, 0.0]]), rtol=0, atol=0)
    token_adv = torch.tensor([[1.0, 3.0], [4.0, -2.0]])
    torch.testing.assert_close(importance_weighted_advantages(token_adv, w), torch.tensor([[1.0, 1.5], [8.0, 0.0]]), rtol=0, atol=0)


def test_weighted_clip_loss_by_hand():
    # two tokens, trainer ratio pi/pi_prox = [1.5, 1.0], advantage 2, TIS weights [1, 1.5], eps 0.2, token-mean.
    # token 1: -min(1.5 * 2, 1.2 * 2) * 1 = -2.4; token 2: -min(1 * 2, 1 * 2) * 1.5 = -3.0; mean = -2.7.
    prox = torch.tensor([[-1.0, -1.0]])
    logp = prox + torch.log(torch.tensor([[1.5, 1.0]]))
    w = torch.tensor([[1.0, 1.5]])
    mask = torch.ones(1, 2)
    loss, _ = clipped_policy_loss(logp, prox, importance_weighted_advantages(torch.tensor([2.0]), w), mask)
    assert loss.item() == pytest.approx(-2.7, abs=1e-6)
    unweighted, _ = clipped_policy_loss(logp, prox, torch.tensor([2.0]), mask)
    assert unweighted.item() == pytest.approx((-2.4 - 2.0) / 2, abs=1e-6)  # the correction really changes the loss


def test_dual_clip_bound_scales_with_the_weight():
    # A = -1, ratio 5, c = 3: PPO term -min(-5, -1.2) = 5, dual-clip bound min(5, 3) = 3; weight 0.5 -> 1.5.
    # weighted advantage -0.5: PPO term -min(-2.5, -0.6) = 2.5, bound -c * A = 1.5 -> min = 1.5, the same.
    old = torch.tensor([[-2.0]])
    logp = old + math.log(5.0)
    loss, _ = dual_clip_policy_loss(logp, old, importance_weighted_advantages(torch.tensor([-1.0]), torch.tensor([[0.5]])), torch.ones(1, 1))
    assert loss.item() == pytest.approx(1.5, abs=1e-6)


@pytest.mark.parametrize("loss_fn", [clipped_policy_loss, dual_clip_policy_loss, gspo_loss])
def test_weighting_the_advantage_weights_each_token_loss(loss_fn):
    """Positive homogeneity: loss(adv * w) per token = w * loss(adv) per token, checked with 1-token rows, where a
    row's loss is its only token's."""
    g = torch.Generator().manual_seed(0)
    logp, old = -torch.rand(6, 1, generator=g) * 2, -torch.rand(6, 1, generator=g) * 2
    adv = torch.tensor([1.0, -1.0, 0.5, -2.0, 3.0, -0.3])
    w = torch.tensor([[0.3], [1.7], [2.0], [0.0], [1.0], [0.9]])
    mask = torch.ones(6, 1)
    for i in range(6):
        weighted, _ = loss_fn(logp[i:i + 1], old[i:i + 1], importance_weighted_advantages(adv[i:i + 1], w[i:i + 1]), mask[i:i + 1])
        plain, _ = loss_fn(logp[i:i + 1], old[i:i + 1], adv[i:i + 1], mask[i:i + 1])
        assert weighted.item() == pytest.approx(w[i, 0].item() * plain.item(), abs=1e-6)


def test_fused_correction_uses_the_first_forward_and_skips_later_epochs():
    """OffPolicyCorrection reads pi_prox from the loss's forward: rows are corrected once, at their first forward,
    and a second epoch's forward (after an update) does not change their old logprobs or weights again."""
    from types import SimpleNamespace

    from rewardflow.train.overlap import OffPolicyCorrection

    behav = torch.tensor([[-1.0, -2.0], [-0.5, -0.5]])
    p = SimpleNamespace(old_logp=behav.clone(), mask=torch.tensor([[1.0, 1.0], [1.0, 0.0]]), adv=torch.tensor([2.0, -1.0]))
    tis = OffPolicyCorrection(p, SimpleNamespace(algo=SimpleNamespace(tis_cap=1.5)))
    assert tis.stats() == {"tis/weight_mean": 1.0, "tis/capped_frac": 0.0, "tis/behav_kl": 0.0}  # nothing seen yet
    first = SimpleNamespace(logp=torch.tensor([[-1.0, -1.5], [-1.0, -9.0]], requires_grad=True))
    tis.apply(first, p, torch.tensor([0, 1]))
    # weights: row 0 exp(0) = 1, exp(0.5) = 1.6487 -> 1.5; row 1 exp(-0.5) = 0.6065, padding -> 0
    w = torch.tensor([[1.0, 1.5], [math.exp(-0.5), 0.0]])
    torch.testing.assert_close(p.adv, torch.tensor([[2.0, 2.0], [-1.0, -1.0]]) * w, rtol=0, atol=1e-6)
    torch.testing.assert_close(p.old_logp, first.logp.detach(), rtol=0, atol=0)
    later = SimpleNamespace(logp=torch.zeros(2, 2))
    tis.apply(later, p, torch.tensor([1, 0]))  # epoch 2: already corrected
    torch.testing.assert_close(p.old_logp, first.logp.detach(), rtol=0, atol=0)
    st = tis.stats()  # over the 3 valid tokens: weights 1, 1.5, 0.6065; one capped; behav - prox = 0, -0.5, 0.5
    assert st["tis/weight_mean"] == pytest.approx((1 + 1.5 + math.exp(-0.5)) / 3, abs=1e-6)
    assert st["tis/capped_frac"] == pytest.approx(1 / 3) and st["tis/behav_kl"] == pytest.approx(0.0, abs=1e-7)


def test_tis_is_refused_where_the_loss_has_no_token_weights():
    """raft, raft_pp and rover ignore p.adv (ALGORITHMS' token_weights flag): a TIS cap there is a config error."""
    import pytest

    from rewardflow.recipes.config_loader import ConfigError, load_config

    for name in ("raft", "raft_pp", "rover"):
        with pytest.raises(ConfigError, match="no per-token advantage"):
            load_config(overrides=[f"algo.name={name}", "algo.tis_cap=2"])
    assert load_config(overrides=["algo.name=grpo", "algo.tis_cap=2"]).algo.tis_cap == 2
