import math
import os
from pathlib import Path

import pytest

import rewardflow  # noqa: F401  first: it sets MKL_CBWR before any matrix product (reproducible fp32 on CPU)
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
def verifier():
    """A Verifier (its worker pool) per test module, closed at the end."""
    from rewardflow.verify import Verifier

    with Verifier() as v:
        yield v


@pytest.fixture(scope="module")
def one_thread():
    """Tiny matmuls: a second intra-op thread only adds synchronisation, and on a busy 2-core machine it makes each
    forward several times slower. Restored afterwards for the other test files."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------- hand-worked values (algos/ unit tests)

ATOL = 1e-6  # tolerance of the hand-worked checks: tight, never loose enough to pass a wrong sign or normaliser


def t(*rows):
    """A float64 tensor of the given rows: t([1, 2], [3, 4]) is 2 x 2."""
    return torch.tensor(rows, dtype=torch.float64)


def close(actual, expected, atol=ATOL):
    """actual equals the hand-worked expected value to atol, with no relative slack."""
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), atol=atol, rtol=0)


def toy_logits(seed: int = 0):
    """(logits, logp_of) for checking an update's direction: leaf float64 logits [N=2, T=3, V=4] that require grad,
    and logp_of(z) -> [N, T] logprobs under z of the fixed actions [[0, 1, 2], [3, 2, 1]]."""
    logits = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64, requires_grad=True)
    actions = torch.tensor([[0, 1, 2], [3, 2, 1]])

    def logp_of(z):
        return torch.log_softmax(z, -1).gather(-1, actions[..., None]).squeeze(-1)  # [N, T]

    return logits, logp_of


def softplus(x):  # -log sigmoid(-x) = log(1 + e^x)
    return math.log1p(math.exp(x))


# ---------------------------------------------------------------- the tiny model

# The one tiny checkpoint most tests share: a character tokenizer and a 2-layer, 32-wide Llama with the factory's
# default initialisation. A test that needs a different model builds its own and says why.
TINY = dict(hidden_size=32, layers=2, heads=2, intermediate_size=64)


def _snapshot(path: Path) -> dict[str, bytes]:
    return {str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file()}


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    """Path of the shared tiny checkpoint, built once per session. Read-only: a test that saves or trains writes
    under its own tmp_path (copy this directory there if the layout matters); writing into it fails the session."""
    from rewardflow.policy.tiny import TinyModelConfig, make_tiny_checkpoint

    path = make_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), TinyModelConfig(**TINY))
    before = _snapshot(path)
    yield path
    assert _snapshot(path) == before, f"a test wrote into the shared tiny checkpoint {path}"


@pytest.fixture(scope="session")
def noisy_policy(tiny_ckpt):
    """noisy_policy(**kw) -> a fresh HFPolicy of the tiny checkpoint with large random weights (std 0.3, seed 0).

    A freshly initialised tied-embedding model (std 0.02) greedily repeats its last input token forever, which
    would make greedy, stop and early-finish tests vacuous. Larger random weights give varied text with newlines
    and natural <eos> at different steps; the sampler must work for any causal LM, so this loses nothing. Two calls
    give identical weights; kw go to HFPolicy.from_pretrained (e.g. fast_decode)."""
    from rewardflow.policy.hf import HFPolicy

    def make(**kw):
        pol = HFPolicy.from_pretrained(tiny_ckpt, **kw)
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in pol.model.parameters():
                if p.dim() == 2:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        pol.model.eval()
        return pol

    return make
