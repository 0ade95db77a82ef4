"""algos.ragged.pad_ragged: the one padding of ragged per-step values into [N, S] + valid mask, and the three places that
go through it (rewards.shaping's list inputs, algos.dense's list inputs, policy.forward.pad_ends) keep their layouts."""
import pytest
import torch

from rewardflow.algos.dense import dense_advantages
from rewardflow.algos.ragged import pad_ragged
from rewardflow.policy.forward import pad_ends
from rewardflow.rewards.shaping import delta_rewards


def test_pad_ragged_by_hand():
    padded, valid = pad_ragged([[0.5, 0.25], [], [1.0]])
    assert padded.tolist() == [[0.5, 0.25], [0.0, 0.0], [1.0, 0.0]]
    assert valid.tolist() == [[True, True], [False, False], [True, False]]
    assert padded.dtype == torch.get_default_dtype()
    padded, valid = pad_ragged([torch.tensor([3, 4]), [5]], fill=-1, dtype=torch.long, width=3)
    assert padded.tolist() == [[3, 4, -1], [5, -1, -1]] and padded.dtype == torch.long
    assert valid.tolist() == [[True, True, False], [True, False, False]]
    assert pad_ragged([])[0].shape == (0, 0) and pad_ragged([[], []])[0].shape == (2, 0)
    with pytest.raises(ValueError, match="width 1"):  # never cut a row silently
        pad_ragged([[1.0, 2.0]], width=1)


def test_users_keep_their_layouts():
    # pad_ends: -1 past each row, at least one column
    assert pad_ends([[2, 5], [3]]).tolist() == [[2, 5], [3, -1]]
    assert pad_ends([[]]).tolist() == [[-1]] and pad_ends([]).shape == (0, 1)
    # shaping on a list returns a list of the original lengths: delta r = [0.5 - 0.25, 0.25], [1.0]
    out = delta_rewards([torch.tensor([0.5, 0.25]), torch.tensor([1.0])])
    assert [o.tolist() for o in out] == [[0.25, 0.25], [1.0]]
    # dense on a list: row 0 has steps ending at tokens 2 and 4, row 1 one step ending at 3 (end -1 pads)
    ends = torch.tensor([[2, 4], [3, -1]])
    adv = dense_advantages([[1.0, 2.0], [5.0]], ends, 4, mode="step")
    assert adv.tolist() == [[1.0, 1.0, 2.0, 2.0], [5.0, 5.0, 5.0, 0.0]]
    # a list row longer than the step axis is an error, not a silent cut
    with pytest.raises(ValueError):
        dense_advantages([[1.0, 2.0, 3.0], [5.0]], ends, 4, mode="step")
