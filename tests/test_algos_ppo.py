"""GAE and the clipped value loss against hand-worked values."""

from rewardflow.algos import clipped_value_loss, gae

from conftest import close, t  # hand-worked checks at ATOL = 1e-6, rtol 0


def test_gae_hand_values_with_padding():
    # row0 (gamma 1, lam .5): delta2 = 1 - .7 = .3 -> A2 = .3 ; delta1 = .7 - .6 = .1 -> A1 = .1 + .5*.3 = .25
    #   delta0 = .6 - .5 = .1 -> A0 = .1 + .5*.25 = .225 ; returns A + V = [.725, .85, 1.0]
    # row1, last position padded (its value 9.9 must not leak): A1 = 1 + 0 - .6 = .4, A0 = .1 + .5*.4 = .3
    rewards, values = t([0, 0, 1], [0, 1, 0]), t([0.5, 0.6, 0.7], [0.5, 0.6, 9.9])
    adv, ret = gae(rewards, values, t([1, 1, 1], [1, 1, 0]), gamma=1.0, lam=0.5)
    close(adv, [[0.225, 0.25, 0.3], [0.3, 0.4, 0.0]])
    close(ret, [[0.725, 0.85, 1.0], [0.8, 1.0, 0.0]])


def test_gae_discount_and_masked_hole():
    # gamma .9, lam 1, zero values: Monte-Carlo return, A0 = 0 + .9 * 1 = .9
    adv, _ = gae(t([0, 1]), t([0, 0]), t([1, 1]), gamma=0.9, lam=1.0)
    close(adv, [[0.9, 1.0]])
    # a masked token between two valid ones is skipped (its reward 7 and value 9 are ignored):
    # A2 = 1 - .7 = .3 ; A0 = (0 + .7 - .5) + .3 = .5
    adv, _ = gae(t([0, 7, 1]), t([0.5, 9, 0.7]), t([1, 0, 1]), gamma=1.0, lam=1.0)
    close(adv, [[0.5, 0.0, 0.3]])


def test_clipped_value_loss():
    # token0: V 1, V_old .5 -> clipped .7; (1-2)^2 = 1 < (.7-2)^2 = 1.69 -> .5 * 1.69 = .845
    # token1: V 0 -> clipped .3; 0 < .09 -> .045 ; token-mean (.845 + .045)/2 = .445
    loss, stats = clipped_value_loss(t([1.0, 0.0]), t([0.5, 0.5]), t([2.0, 0.0]), t([1, 1]), clip_eps=0.2)
    close(loss, 0.445)
    assert stats["value/clip_frac"] == 1.0
    # inside the clip range the loss is the plain .5 * (V - R)^2 = .5 * 1.96
    close(clipped_value_loss(t([0.6]), t([0.5]), t([2.0]), t([1]))[0], 0.98)


def test_value_loss_split_batch_and_gradient():
    values = t([0.1, 0.2, 0.3], [0.4, 0.5, 0.6]).requires_grad_(True)
    old, ret, mask = t([0.0, 0.2, 0.3], [0.4, 0.4, 0.6]), t([1.0, 0.0, 0.5], [0.0, 1.0, 0.2]), t([1, 1, 1], [1, 1, 0])
    full = clipped_value_loss(values, old, ret, mask, normalizer=5)[0]
    halves = sum(clipped_value_loss(values[s], old[s], ret[s], mask[s], normalizer=5)[0] for s in (slice(0, 1), slice(1, 2)))
    close(halves, full.item())
    full.backward()
    # gradient descent moves each value towards its return: V < R -> negative gradient
    assert values.grad[0, 0] < 0 and values.grad[0, 1] > 0 and values.grad[1, 2] == 0
