"""dist/ddp.py: 2 processes under torchrun (gloo, CPU) take the same step as 1 process on the same global batch, both
for the bare step (tests/ddp_check.py) and for the real RL loop (train_rl, rank 0 alone logging and checkpointing)."""
import os
import subprocess
import sys
from pathlib import Path

import torch

from rewardflow.distributed.ddp import allreduce_gradients, data_parallel_step, rank_world, shard_rows
from ddp_check import build, run


def test_shard_rows_cover_the_batch_once():
    assert [shard_rows(7, r, 2).tolist() for r in range(2)] == [[0, 1, 2], [3, 4, 5, 6]]
    assert [shard_rows(8, r, 3).tolist() for r in range(3)] == [[0, 1], [2, 3, 4], [5, 6, 7]]
    assert shard_rows(5, 0, 1).tolist() == [0, 1, 2, 3, 4]


def test_single_process_step_is_plain_accumulation():
    # w = [1, 2]; rows' losses l_i = x_i . w / 2 with x = [[1, 0], [0, 1], [1, 1]]; the summed gradient is
    # (x_0 + x_1 + x_2) / 2 = [1, 1]; SGD lr .5 -> w = [0.5, 1.5]; total loss (1 + 2 + 3) / 2 = 3
    assert rank_world() == (0, 1)
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0]]))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    stats = data_parallel_step(model, opt, None, lambda idx: model(x[idx]).sum() / 2, 3, micro_batch_size=2, max_grad_norm=100.0)
    assert stats["loss"] == 3.0 and stats["train/rows"] == 3
    assert abs(stats["train/grad_norm"] - 2**0.5) < 1e-7
    assert model.weight.tolist() == [[0.5, 1.5]]
    allreduce_gradients(model)  # a no-op without a process group


def _torchrun_and_single(out: Path, args: list[str], single):
    """ddp_check on 2 ranks under torchrun (1 thread each), then `single()` in this process on 1 thread."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(Path(__file__).with_name("ddp_check.py")), *args, "--out", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return torch.load(out), single()
    finally:
        torch.set_num_threads(before)


def test_two_ranks_under_torchrun_equal_one_process(tmp_path: Path):
    two, one = _torchrun_and_single(tmp_path / "ddp.pt", [], run)
    assert two["world"] == 2
    # the ranks sampled 2 and 3 of the 5 prompts; gathered, they equal one process sampling all 5
    assert two["sampled"] == one["sampled"] and len(one["sampled"]) == 5
    # Losses are sums of per-row terms over the global normaliser: a rank averaging (DDP's default) or a
    # per-rank normaliser would halve or change them, and the gradient norm with them.
    assert abs(two["rl_loss"] - one["rl_loss"]) < 1e-6
    assert abs(two["sft_loss"] - one["sft_loss"]) < 1e-6
    assert abs(two["rl_grad_norm"] - one["rl_grad_norm"]) < 1e-6
    assert abs(two["sft_grad_norm"] - one["sft_grad_norm"]) < 1e-6
    for name, w in one["state"].items():
        torch.testing.assert_close(two["state"][name], w, atol=1e-6, rtol=0)
    init = build().model.state_dict()
    moved = max((one["state"][k] - init[k]).abs().max().item() for k in init)
    assert moved > 1e-3, "precondition: the steps changed the weights"


def test_rl_loop_under_torchrun_equals_one_process(tmp_path: Path):
    # The real RL loop (train_rl: rollouts, GRPO + KL, 2 epochs, 2 steps) on 2 ranks under torchrun against one
    # process on the same global batches. Tolerances as in tests/test_dist_ray.py (METRIC_ATOL, WEIGHT_ATOL): the
    # ranks sample 2 of the 4 prompts each (fp32 logprobs depend on the batch), and the fp32 gradient sum
    # associates differently ((g0+g1)+(g2+g3) over ranks vs ((g0+g1)+g2)+g3), which AdamW magnifies in
    # coordinates with near-zero gradients. A per-rank normaliser or averaged gradients would change the
    # losses or the gradient norm by a factor of 2.
    from ddp_check import loop_differences, run_loop

    two, one = _torchrun_and_single(tmp_path / "two.pt", ["--loop", str(tmp_path / "two")], lambda: run_loop(tmp_path / "one"))
    assert two["world"] == 2
    # rank 1 ran with log=None, so only rank 0 logged; it also wrote the final checkpoint
    assert [r["step"] for r in two["metrics"]] == [1, 2]
    assert (tmp_path / "two" / "checkpoints" / "step_000002" / "trainer_state.pt").exists()
    diffs, weights = loop_differences(one, two)
    exact = ("reward/mean", "reward/std", "reward/correct", "rollout/len", "rollout/tokens", "train/lr", "train/rows")
    assert all(diffs[k] == 0 for k in exact), {k: diffs[k] for k in exact}
    assert max(diffs.values()) < 1e-6, diffs  # METRIC_ATOL
    assert weights < 2e-5, weights  # WEIGHT_ATOL
    assert all(r["train/rows"] == 16 for r in one["metrics"]), "precondition: both ranks train 8 rows each"
