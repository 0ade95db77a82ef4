"""SFT: one loss (algos.sft_nll_loss) serves the SFT loop and the data-parallel SFT step; micro-batches add up to
the whole batch; max_grad_norm is honoured; metrics are namespaced."""
import pytest
import torch

from rewardflow.distributed.ddp import sft_loss_of_rows
from rewardflow.policy.hf import HFPolicy
from rewardflow.policy.tiny import TinyModelConfig, make_tiny_checkpoint
from rewardflow.train.metrics import MetricsLog
from rewardflow.train.sft import run_sft, sft_loss

PAIRS = [("1 + 2 =", "3"), ("4 + 4 =", "so 8"), ("2 + 5 =", "it is 7"), ("9 - 3 =", "6")]


@pytest.fixture(scope="module")
def init(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), TinyModelConfig(hidden_size=32, layers=2, heads=2, intermediate_size=64))


def _ids(policy, pairs):
    return policy.encode_prompts([p for p, _ in pairs]), policy.completion_ids([c for _, c in pairs])


def test_sft_loss_is_the_token_mean_nll_and_the_ddp_rows_loss_is_the_same(init):
    policy = HFPolicy.from_pretrained(init)
    prompt_ids, completion_ids = _ids(policy, PAIRS)
    loss, n_tokens = sft_loss(policy, prompt_ids, completion_ids)
    batch = policy.token_batch(prompt_ids, completion_ids)
    with torch.no_grad():
        logp = policy.logprobs(batch).logprobs  # [N, T]
    # the mean over the completion tokens of -log pi (padding left out): a sum over rows would be ~4x larger
    assert n_tokens == sum(len(c) for c in completion_ids)
    assert loss.item() == pytest.approx((-(logp * batch.completion_mask).sum() / n_tokens).item(), abs=1e-6)
    halves = sum(sft_loss_of_rows(policy, batch)(idx).item() for idx in torch.arange(4).split(2))
    assert halves == pytest.approx(loss.item(), abs=1e-6)


def test_micro_batches_add_up_to_the_whole_batch(init, tmp_path):
    whole, micro = HFPolicy.from_pretrained(init), HFPolicy.from_pretrained(init)
    log = MetricsLog(tmp_path / "m.jsonl")
    a = run_sft(whole, lambda step: PAIRS, steps=3, lr=1e-2, log=log)
    b = run_sft(micro, lambda step: PAIRS, steps=3, lr=1e-2, micro_batch_size=3)  # rows 3 + 1
    assert b == pytest.approx(a, abs=1e-5)
    for p, q in zip(whole.model.parameters(), micro.model.parameters()):
        assert torch.allclose(p, q, atol=1e-5)
    row = log.read()[0]
    assert {"loss/sft", "train/grad_norm", "train/lr"} <= set(row) and "grad_norm" not in row and "lr" not in row


def test_max_grad_norm_is_honoured(init):
    """AdamW's first step moves every weight by about lr whatever the gradient's scale, but the second depends on
    the ratio of the two steps' gradients: clipped both times to norm 1e-3 that ratio is |g1| / |g2| times the
    unclipped one, so a clip that was ignored would leave the weights equal to the unclipped run's."""
    tight, loose = HFPolicy.from_pretrained(init), HFPolicy.from_pretrained(init)
    run_sft(tight, lambda step: PAIRS[step % 2 :: 2], steps=2, lr=1e-2, max_grad_norm=1e-3)
    run_sft(loose, lambda step: PAIRS[step % 2 :: 2], steps=2, lr=1e-2, max_grad_norm=1e6)
    assert any(not torch.allclose(p, q, atol=1e-6) for p, q in zip(tight.model.parameters(), loose.model.parameters()))
    with pytest.raises(ValueError, match="max_grad_norm"):
        run_sft(HFPolicy.from_pretrained(init), lambda step: PAIRS, steps=1, lr=1e-2, max_grad_norm=float("nan"))
