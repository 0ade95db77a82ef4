import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# tests/ddp_check.py (the data-parallel self-check) is imported by tests, by torchrun and by Ray workers, which
# start from this environment: put this folder on their import path.
TESTS = str(Path(__file__).resolve().parent)
os.environ["PYTHONPATH"] = os.pathsep.join([TESTS, *filter(None, [os.environ.get("PYTHONPATH")])])

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """../shared/data; skipped with a reason on a fresh clone, but a failure when CI is set."""
    if not SHARED_DATA.is_dir():
        msg = f"real benchmark data not found at {SHARED_DATA}"
        if os.environ.get("CI"):
            pytest.fail(msg + " (CI is set, so this is an error, not a skip)")
        pytest.skip(msg)
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_thread():
    """Tiny matmuls: a second intra-op thread only adds synchronisation, and on a busy 2-core machine it makes each
    forward several times slower. Restored afterwards for the other test files."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
