"""rewardflow/__init__.py: fp32 matrix products on CPU do not depend on where their operands sit in memory."""
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
