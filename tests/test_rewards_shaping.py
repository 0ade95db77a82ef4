"""rewards/shaping.py against values worked out by hand: Clip and Delta (Gao et al. 2024), the log-sigmoid transform
and its weighted sum (Wang et al. 2024), the group-quantile reference, and PAV progress (Setlur et al. 2024)."""
import math

import pytest
import torch

from rewardflow.algos.dense import step_returns
from rewardflow.rewards.shaping import clip_rewards, combine_transformed, delta_rewards, group_quantile, logsigmoid_transform, pav_progress

# Two solutions: 3 steps, and 2 steps + one padded slot holding junk (5.0) that must never leak into the output.
PADDED = torch.tensor([[0.9, 0.3, 0.6], [0.2, 0.8, 5.0]])  # [N=2, S=3]
VALID = torch.tensor([[True, True, True], [True, True, False]])
LISTS = [torch.tensor([0.9, 0.3, 0.6]), torch.tensor([0.2, 0.8])]


def test_clip_by_hand():
    # eta = 0.5: min(0.9-0.5, 0) = 0, min(0.3-0.5, 0) = -0.2, min(0.6-0.5, 0) = 0; row 2: min(-0.3, 0) = -0.3, min(0.3, 0) = 0
    want = torch.tensor([[0.0, -0.2, 0.0], [-0.3, 0.0, 0.0]])
    torch.testing.assert_close(clip_rewards(PADDED, VALID, eta=0.5), want)
    for got, w in zip(clip_rewards(LISTS, eta=0.5), [want[0], want[1, :2]]):
        torch.testing.assert_close(got, w)
    # bounded above by 0: an extra step can only lower the return (a sign error, max instead of min, gives 0.4 here)
    assert clip_rewards(torch.tensor([[0.9]]), eta=0.5).item() == 0.0
    # eta = 0 keeps min(r, 0): PRM scores in (0, 1) all map to 0, a negative one stays
    torch.testing.assert_close(clip_rewards(torch.tensor([[0.7, -0.4]]), eta=0.0), torch.tensor([[0.0, -0.4]]))


def test_delta_by_hand_and_its_returns_telescope():
    # row 1: 0.9-0.3 = 0.6, 0.3-0.6 = -0.3, last step keeps 0.6; row 2: 0.2-0.8 = -0.6, last valid keeps 0.8, pad 0
    want = torch.tensor([[0.6, -0.3, 0.6], [-0.6, 0.8, 0.0]])
    torch.testing.assert_close(delta_rewards(PADDED, VALID), want)
    for got, w in zip(delta_rewards(LISTS), [want[0], want[1, :2]]):
        torch.testing.assert_close(got, w)
    # the return-to-go from step k is r_k itself (bounded by one step score): [0.9, 0.3, 0.6] and [0.2, 0.8]
    torch.testing.assert_close(step_returns(delta_rewards(PADDED, VALID), VALID), PADDED * VALID)
    # a single step keeps its score
    torch.testing.assert_close(delta_rewards([torch.tensor([0.4])])[0], torch.tensor([0.4]))


def test_delta_without_mask_treats_every_slot_as_a_step():
    torch.testing.assert_close(delta_rewards(torch.tensor([[1.0, 0.25]])), torch.tensor([[0.75, 0.25]]))


def test_logsigmoid_transform_by_hand():
    # log sigmoid(0 - 1) = -log(1 + e) = -1.3132616875; log sigmoid(2 - 1) = -log(1 + e^-1) = -0.3132616875
    got = logsigmoid_transform(torch.tensor([[0.0, 2.0]]), torch.tensor([1.0]))
    torch.testing.assert_close(got, torch.tensor([[-1.3132616875182228, -0.3132616875182228]]))
    # the reference is per prompt (row): prompt 2's reference 3 gives log sigmoid(3 - 3) = -log 2
    two = logsigmoid_transform(torch.tensor([[1.0], [3.0]]), torch.tensor([1.0, 3.0]))
    torch.testing.assert_close(two, torch.full((2, 1), -math.log(2.0)))


def test_combine_transformed_sums_weighted_terms():
    # r1 = [0, 2] vs ref 1 -> [-1.31326, -0.31326]; r2 = [1, 1] vs ref 1 -> [-log 2, -log 2]; weights 1 and 0.5
    r1, r2 = torch.tensor([[0.0, 2.0]]), torch.tensor([[1.0, 1.0]])
    got = combine_transformed([r1, r2], [torch.tensor([1.0]), torch.tensor([1.0])], [1.0, 0.5])
    want = torch.tensor([[-1.3132616875182228 - 0.5 * math.log(2), -0.3132616875182228 - 0.5 * math.log(2)]])
    torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="2 rewards, 1 references"):
        combine_transformed([r1, r2], [torch.tensor([1.0])])


def test_group_quantile_by_hand():
    r = torch.tensor([[0.0, 1.0, 2.0, 3.0], [4.0, 4.0, 0.0, 8.0]])
    # linear interpolation: median of 0,1,2,3 = 1.5; of 0,4,4,8 = 4; 75% of 0,1,2,3 = 2.25, of 0,4,4,8 = 5
    torch.testing.assert_close(group_quantile(r, 0.5), torch.tensor([1.5, 4.0]))
    torch.testing.assert_close(group_quantile(r, 0.75), torch.tensor([2.25, 5.0]))


def test_pav_progress_by_hand():
    # Q_0 = 0.4, Q = [0.5, 0.8, 0.2] -> A = [0.1, 0.3, -0.6]; row 2: Q_0 = 0.9, Q = [0.3, 0.3, pad] -> [-0.6, 0.0, 0]
    q = torch.tensor([[0.5, 0.8, 0.2], [0.3, 0.3, 7.0]])
    valid = torch.tensor([[True, True, True], [True, True, False]])
    want = torch.tensor([[0.1, 0.3, -0.6], [-0.6, 0.0, 0.0]])
    torch.testing.assert_close(pav_progress(q, torch.tensor([0.4, 0.9]), valid), want)
    lists = pav_progress([q[0], q[1, :2]], torch.tensor([0.4, 0.9]))
    torch.testing.assert_close(lists[0], want[0])
    torch.testing.assert_close(lists[1], want[1, :2])
    # progress telescopes: sum_k A_k = Q_K - Q_0 = 0.2 - 0.4
    assert pav_progress(q, torch.tensor([0.4, 0.9]), valid)[0].sum().item() == pytest.approx(-0.2, abs=1e-6)
