"""Sample/token selection (DAPO dynamic sampling, D3S, RAFT filters) and the RAFT-family losses."""
import itertools
import math

import pytest
import torch

from rewardflow.algos import (
    d3s_keep_ratio,
    d3s_sample_mask,
    d3s_token_mask,
    dynamic_sampling_keep,
    keep_correct,
    max_variance_subset,
    raft_keep_best,
    raft_loss,
    raft_pp_loss,
    refill_batch,
    reinforce_rej_keep,
    reinforce_rej_loss,
)

from conftest import close, t  # hand-worked checks at ATOL = 1e-6, rtol 0

LOG = math.log


def test_dynamic_sampling_and_refill():
    assert dynamic_sampling_keep(t([1, 1], [0, 1], [0, 0])).tolist() == [False, True, False]
    # pool groups b, c, d are informative; one slot left after "x" -> batch [x, b], leftover [c, d]
    batch, leftover = refill_batch(["a", "b", "c", "d"], t([1, 1], [0, 1], [1, 0], [0, 1]), 2, ["x"])
    assert batch == ["x", "b"] and leftover == ["c", "d"]


def test_max_variance_subset_hand_and_bruteforce():
    # k=2 of [0, 1, 2, 10]: {0,1} var .25, {0,10} var 25, {2,10} var 16 -> {0, 10}
    assert max_variance_subset(torch.tensor([0.0, 1.0, 2.0, 10.0]), 2).tolist() == [True, False, False, True]
    # k=3: {0,1,2} 2/3, {0,1,10} 546/27, {0,2,10} 56/3, {1,2,10} 438/27 -> {0, 1, 10}
    assert max_variance_subset(torch.tensor([0.0, 1.0, 2.0, 10.0]), 3).tolist() == [True, True, False, True]
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        v = torch.randn(6, generator=g, dtype=torch.float64)
        for k in (2, 3, 4):
            best = max(v[list(c)].var(unbiased=False).item() for c in itertools.combinations(range(6), k))
            assert v[max_variance_subset(v, k)].var(unbiased=False).item() == pytest.approx(best, abs=1e-12)


def test_d3s_sample_mask_group_and_batch():
    # per group, keep 2 of [1.2, -.1, -.4, -.7]: {-.7,-.4} var .0225, {-.7,1.2} .9025, {1.2,-.1} .4225
    assert d3s_sample_mask(t([1.2, -0.1, -0.4, -0.7]), 0.5, scope="group").tolist() == [[True, False, False, True]]
    # across the batch, keep 2 of [1, 0, .2, -3]: {-3,0} 2.25, {-3,1} 4, {.2,1} .16 -> {1, -3}
    assert d3s_sample_mask(t([1, 0], [0.2, -3]), 0.5, scope="batch").tolist() == [[True, False], [False, True]]


def test_d3s_scopes_differ_and_batch_is_the_default():
    adv = t([1, 0.5, -0.5, -1], [0.1, 0.05, -0.05, -0.1])
    # group (D3S-I): 2 of 4 per group -> {1, -1} (var 1) and {.1, -.1} (var .01)
    assert d3s_sample_mask(adv, 0.5, scope="group").tolist() == [[True, False, False, True]] * 2
    # batch (the paper's cross-group method): 4 of 8, sorted -1 -.5 -.1 -.05 .05 .1 .5 1; j largest + 4-j smallest:
    # j=0 {-1,-.5,-.1,-.05} var .1455; j=1 {-1,-.5,-.1,1} mean -.15, var (.7225+.1225+.0025+1.3225)/4 = .5425;
    # j=2 {-1,-.5,.5,1} var (1+.25+.25+1)/4 = .625 (best); j=3 .5425; j=4 .1455 -> all of group 0, none of group 1
    batch = [[True] * 4, [False] * 4]
    assert d3s_sample_mask(adv, 0.5, scope="batch").tolist() == batch
    assert d3s_sample_mask(adv, 0.5).tolist() == batch
    with pytest.raises(ValueError, match="scope"):
        d3s_sample_mask(adv, 0.5, scope="nope")


def test_max_variance_subset_ties_are_stable():
    # 20 values, 1 at even indices, 0 at odd; k = 4: j=2 (two 0s, two 1s) has var .25 > j=1 or 3 (.1875) > j=0 or 4 (0).
    # A stable ascending sort lists the 0s as 1, 3, ..., 19 then the 1s as 0, 2, ..., 18: the two smallest are
    # indices 1, 3 and the two largest 16, 18 (torch's default sort is unstable past 16 elements)
    v = torch.zeros(20, dtype=torch.float64)
    v[::2] = 1
    assert max_variance_subset(v, 4).nonzero().flatten().tolist() == [1, 3, 16, 18]


def test_d3s_token_mask_uses_abs_adv_times_entropy():
    # scores |A| * H: row0 (A 2) [.2, 1.0, .6], row1 (A -1) [1.0, .2, padded 9.0]; keep ceil(.4 * 5) = 2
    adv = torch.tensor([2.0, -1.0], dtype=torch.float64)
    out = d3s_token_mask(adv, t([0.1, 0.5, 0.3], [1.0, 0.2, 9.0]), t([1, 1, 1], [1, 1, 0]), 0.4)
    assert out.tolist() == [[False, True, False], [True, False, False]]


def test_d3s_schedule_relaxes():
    assert d3s_keep_ratio(0, 100) == pytest.approx(0.25)
    assert d3s_keep_ratio(50, 100) == pytest.approx(0.625)  # .25 + .75 * .5
    # cosine at 1/4: .25 + .75 * .5 * (1 - cos(pi/4))
    assert d3s_keep_ratio(25, 100, schedule="cosine") == pytest.approx(0.25 + 0.75 * 0.5 * (1 - math.cos(math.pi / 4)))
    assert d3s_keep_ratio(500, 100) == pytest.approx(1.0)


def test_raft_filters():
    r = t([0.1, 0.9, 0.5], [0, 0, 0])
    assert raft_keep_best(r).tolist() == [[False, True, False], [True, False, False]]
    assert raft_keep_best(r, min_reward=0.5).tolist() == [[False, True, False], [False, False, False]]
    assert keep_correct(t([1, 0, 1])).tolist() == [[True, False, True]]
    assert reinforce_rej_keep(t([1, 1], [1, 0], [0, 0])).tolist() == [[False, False], [True, True], [False, False]]


def test_raft_losses_values():
    keep = torch.tensor([True, False])
    # RAFT: NLL on the kept row only: (1 + 2)/2 = 1.5
    close(raft_loss(t([-1, -2], [-3, -4]), t([1, 1], [1, 1]), keep)[0], 1.5)
    # RAFT++: A = 1 on kept tokens, ratios [1.5, .9]: -(min(1.5, 1.2) + .9)/2 = -1.05 ; row1 ignored
    logp, old = t([LOG(1.5), LOG(0.9)], [LOG(3.0), 0.0]), t([0, 0], [0, 0])
    close(raft_pp_loss(logp, old, t([1, 1], [1, 1]), keep)[0], -1.05)
    # Reinforce-Rej: A = reward, ratio 1: kept tokens -1, -1 (r=+1), +1 (r=-1) -> -1/3 (row2 dropped)
    z = torch.zeros(3, 2, dtype=torch.float64)
    rewards, keep = torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64), torch.tensor([True, True, False])
    loss, _ = reinforce_rej_loss(z, z, rewards, t([1, 1], [1, 0], [1, 1]), keep)
    close(loss, -1 / 3)


def test_raft_pp_raises_kept_logp_and_splits():
    logits = torch.zeros(2, 2, 3, dtype=torch.float64, requires_grad=True)
    actions = torch.tensor([[0, 1], [2, 0]])
    logp = torch.log_softmax(logits, -1).gather(-1, actions[..., None]).squeeze(-1)  # [N, T]
    keep, mask = torch.tensor([True, False]), torch.ones(2, 2, dtype=torch.float64)
    raft_pp_loss(logp, logp.detach(), mask, keep)[0].backward()
    after = torch.log_softmax(logits.detach() - logits.grad, -1).gather(-1, actions[..., None]).squeeze(-1)
    assert (after[0] > logp[0]).all() and torch.equal(logits.grad[1], torch.zeros(2, 3, dtype=torch.float64))
    # two halves with the full-batch normaliser add up
    full = raft_loss(logp.detach(), mask, keep, normalizer=4)[0]
    halves = sum(raft_loss(logp.detach()[s], mask[s], keep[s], normalizer=4)[0] for s in (slice(0, 1), slice(1, 2)))
    close(halves, full.item())
