"""Two runs of one seed repeat bit for bit: fp32 matrix products on CPU do not depend on where their operands sit in
memory (rewardflow/__init__.py), and the training pass adds gradients in a fixed order (policy/hf.py, _select_rows)."""
import json
import os
import subprocess
import sys

import pytest
import torch

# In a fresh interpreter: the largest difference of F.linear over 16 memory offsets of the same [M, 128] input.
PROBE = """
import json, sys
if sys.argv[1] == "rewardflow":
    import rewardflow  # noqa: F401
import torch
torch.manual_seed(0)
torch.set_num_threads(2)
W = torch.randn(512, 128)
worst = 0.0
for M in (3, 5, 7, 9, 13):
    x = torch.randn(M, 128)
    outs = []
    for off in range(16):
        buf = torch.empty(M * 128 + 16)
        view = buf[off : off + M * 128].view(M, 128)
        view.copy_(x)
        outs.append(torch.nn.functional.linear(view, W))
    worst = max([worst] + [float((o - outs[0]).abs().max()) for o in outs])
import os
print(json.dumps({"worst": worst, "cbwr": os.environ.get("MKL_CBWR")}))
"""


def probe(first: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    out = subprocess.run([sys.executable, "-c", PROBE, first], env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif("BLAS_INFO=mkl" not in torch.__config__.show(), reason="torch's BLAS here is not MKL")
def test_importing_rewardflow_makes_small_products_alignment_independent():
    mine = probe("rewardflow")
    assert mine == {"worst": 0.0, "cbwr": "AUTO"}
    # What the setting prevents: without it, MKL's default kernels on the 2-core AMD EPYC (AVX2) give the same
    # product with differences of ~8e-6 across offsets (probe("torch") there); a machine whose default kernels do
    # not differ passes either way.


def test_shared_prompt_backward_adds_in_a_fixed_order(tmp_path):
    # An RL step's batch: 4 prompts x 4 completions, each prompt's keys/values read once and gathered per row
    # (HFPolicy.share_prompts). Gathering with `x[rows]` has index_put_(accumulate=True) as its backward, which
    # torch's CPU kernel runs in parallel with atomic float adds: the rows' gradients are summed in whatever order
    # the threads reach them, and two runs of the quickstart drifted apart after ~45 RL steps (when a thread was
    # held up). The order cannot be forced in a test, so this checks the mechanism: no such op in the backward.
    from torch.utils._python_dispatch import TorchDispatchMode

    from rewardflow.policy.hf import HFPolicy
    from rewardflow.policy.tiny import TinyModelConfig, make_tiny_checkpoint

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.accumulating = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if "index_put" in func.__name__ and (kwargs.get("accumulate") or (len(args) > 3 and args[3])):
                self.accumulating.append(func.__name__)
            return func(*args, **kwargs)

    policy = HFPolicy.from_pretrained(make_tiny_checkpoint(tmp_path, TinyModelConfig(hidden_size=32, layers=2, heads=2, intermediate_size=64)))
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, 40, (int(n),), generator=gen).tolist() for n in (5, 7, 9, 6)]
    completions = [torch.randint(3, 40, (1 + i % 5,), generator=gen).tolist() for i in range(16)]
    batch = policy.token_batch([p for p in prompts for _ in range(4)], completions)
    assert policy._prompt_groups(batch) is not None, "precondition: prompts are read once"
    loss = policy.logprobs(batch).logprobs.sum()
    with Ops() as ops:
        loss.backward()
    assert all(p.grad is not None for p in policy.model.parameters())
    assert ops.accumulating == []
