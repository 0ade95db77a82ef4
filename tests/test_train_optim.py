"""The one optimiser step (train/optim.py): clip -> step -> schedule -> zero-grad, worked by hand; a nan/inf loss or
gradient norm stops before the weights change (in the step itself, the RL loop and reward-model training); a
max_grad_norm that is not a positive finite number is refused."""
import math

import pytest
import torch

from rewardflow.data import GymSource
from rewardflow.policy.hf import HFPolicy
from rewardflow.policy.tiny import TinyModelConfig, make_tiny_checkpoint
from rewardflow.recipes.config_loader import load_config
from rewardflow.train.checkpoint import latest_checkpoint
from rewardflow.train.metrics import MetricsLog
from rewardflow.optim import NonFiniteError, make_optimizer, optimizer_step
from rewardflow.train.rl import train_rl
from rewardflow.train.rm import RMTrainConfig, train_reward_model
from rewardflow.verify.verifier import VerifyResult

TINY = TinyModelConfig(hidden_size=32, layers=2, heads=2, intermediate_size=64)


def _linear(grad):
    """A bias-free 1x2 linear layer at weights [1, 1] whose gradient is `grad` (loss = grad . w)."""
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    (model.weight * torch.tensor([grad])).sum().backward()
    return model


def test_step_clips_by_the_total_norm_steps_schedules_and_zeroes():
    # gradient [3, 4]: norm 5, clipped to norm 1 -> [0.6, 0.8]. Plain SGD at lr 0.1 (schedule factor 1 at step 0):
    # w = [1, 1] - 0.1 * [0.6, 0.8] = [0.94, 0.92]; the scheduler then halves the lr for the next step.
    model = _linear([3.0, 4.0])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5**s)
    norm = optimizer_step(model, opt, sched, max_grad_norm=1.0)
    assert norm == pytest.approx(5.0, abs=1e-6)  # the norm before clipping
    assert model.weight.tolist()[0] == pytest.approx([0.94, 0.92], abs=1e-6)
    assert sched.get_last_lr() == [pytest.approx(0.05)]
    assert model.weight.grad is None  # zero_grad(set_to_none=True)


def test_step_is_the_inline_sequence_it_replaced():
    """Bit for bit: clip_grad_norm_ -> AdamW.step -> sched.step -> zero_grad, as every loop did inline."""
    torch.manual_seed(0)
    a = torch.nn.Linear(4, 3)
    b = torch.nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    (opt_a, sched_a), (opt_b, sched_b) = make_optimizer(a, 1e-2, 0.1, 2, 5, "cosine"), make_optimizer(b, 1e-2, 0.1, 2, 5, "cosine")
    x = torch.randn(6, 4)
    for _ in range(3):
        a(x).pow(2).sum().backward()
        b(x).pow(2).sum().backward()
        norm_a = optimizer_step(a, opt_a, sched_a, max_grad_norm=0.5)
        norm_b = torch.nn.utils.clip_grad_norm_(b.parameters(), 0.5).item()
        opt_b.step()
        sched_b.step()
        opt_b.zero_grad(set_to_none=True)
        assert norm_a == norm_b
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_gradient_stops_before_the_step(bad):
    model = _linear([bad, 1.0])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    with pytest.raises(NonFiniteError, match=r"step 7: gradient norm is (nan|inf) \(train/grad_norm\); no checkpoint written"):
        optimizer_step(model, opt, sched, max_grad_norm=1.0, step=7)
    assert model.weight.tolist()[0] == [1.0, 1.0]  # untouched
    assert sched.last_epoch == 0  # not scheduled either


def test_nonfinite_loss_is_named():
    model = _linear([1.0, 1.0])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(NonFiniteError, match=r"step 12: loss is nan \(loss/policy\); no checkpoint written — lower the learning rate"):
        optimizer_step(model, opt, None, max_grad_norm=1.0, step=12, losses={"loss/policy": float("nan")})
    assert model.weight.tolist()[0] == [1.0, 1.0]
    assert issubclass(NonFiniteError, ValueError)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0.0, -1.0])
def test_max_grad_norm_must_be_positive_and_finite(bad):
    model = _linear([1.0, 1.0])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="max_grad_norm"):
        optimizer_step(model, opt, None, max_grad_norm=bad)
    assert model.weight.tolist()[0] == [1.0, 1.0]
    with pytest.raises(ValueError, match="max_grad_norm"):
        RMTrainConfig(max_grad_norm=bad).validate()


class _NanScorer:
    """Scores the first completion of every batch nan (a broken reward), the rest 'has a digit'."""

    def score_texts(self, problems, texts):
        return [VerifyResult(float("nan") if i == 0 else any(ch.isdigit() for ch in t), None, "ok") for i, t in enumerate(texts)]


RL = ["rollout.prompts_per_step=2", "rollout.group_size=4", "rollout.max_new_tokens=8", "trainer.micro_batch_size=8",
      "trainer.steps=2", "trainer.save_every=1", "trainer.eval_every=0"]


def _source():
    return GymSource("chain_sum", seed=0, eval_size=8, min_terms=2, max_terms=2, min_digits=1, max_digits=1)


def test_rl_loop_stops_on_a_nan_reward_and_writes_no_checkpoint(tmp_path):
    init = make_tiny_checkpoint(tmp_path / "init", TINY)
    policy, ref = HFPolicy.from_pretrained(init), HFPolicy.from_pretrained(init)
    before = {k: v.clone() for k, v in policy.model.state_dict().items()}
    log = MetricsLog(tmp_path / "run" / "metrics.jsonl")
    with pytest.raises(NonFiniteError, match=r"step 1: loss is nan \(loss/policy\); no checkpoint written"):
        train_rl(load_config(overrides=RL), policy, ref, _source(), _NanScorer(), tmp_path / "run", log=log)
    assert latest_checkpoint(tmp_path / "run") is None and log.read() == []
    assert all(torch.equal(v, before[k]) for k, v in policy.model.state_dict().items())


class _CountingVerifier:
    """Counts one timeout per verified batch; take_stats reports the counts since its previous call."""

    def __init__(self, already: int):
        self.timeouts, self.reported = already, 0

    def take_stats(self):
        delta, self.reported = self.timeouts - self.reported, self.timeouts
        return {"verify/timeout": delta}


class _DigitScorerWithVerifier:
    def __init__(self):
        self.verifier = _CountingVerifier(already=5)  # a verifier that has worked before this run

    def score_texts(self, problems, texts):
        self.verifier.timeouts += 1
        return [VerifyResult(any(ch.isdigit() for ch in t), None, "ok") for t in texts]


def test_rl_loop_logs_the_verifiers_counts_of_each_step(tmp_path):
    """One scoring call per step -> verify/timeout 1 at every step; the 5 from before the run are not counted."""
    init = make_tiny_checkpoint(tmp_path / "init", TINY)
    policy, ref = HFPolicy.from_pretrained(init), HFPolicy.from_pretrained(init)
    log = MetricsLog(tmp_path / "run" / "metrics.jsonl")
    train_rl(load_config(overrides=RL + ["trainer.save_every=0"]), policy, ref, _source(), _DigitScorerWithVerifier(), tmp_path / "run", log=log)
    rows = log.read()
    assert [r["verify/timeout"] for r in rows] == [1, 1]
    assert {"train/grad_norm", "train/lr", "loss/policy", "rollout/entropy"} <= set(rows[0]) and "grad_norm" not in rows[0]
    assert all(math.isfinite(r["train/grad_norm"]) for r in rows)


def test_reward_model_training_stops_on_a_nan_label_and_saves_nothing(tmp_path, monkeypatch):
    import rewardflow.train.rm as rm

    init = make_tiny_checkpoint(tmp_path / "init", TINY)
    rows = [{"prompt": f"q{i}", "steps": [f"{i} + 1 = {i + 1}"], "correct": i % 2 == 0} for i in range(8)]
    cfg = RMTrainConfig(kind="orm", epochs=1, batch_size=8, val_frac=0.0, seed=0)
    # a NaN label is refused with the rows, before any model loads
    bad = [dict(r) for r in rows]
    bad[3]["correct"] = float("nan")
    with pytest.raises(ValueError, match=r"row 4: labels must be finite numbers"):
        train_reward_model(init, bad, tmp_path / "orm", cfg)
    # and a loss that turns non-finite anyway stops before the optimiser step: nothing is saved
    real = rm.pointwise_bce_loss
    monkeypatch.setattr(rm, "pointwise_bce_loss", lambda outcome, labels: real(outcome * float("nan"), labels))
    with pytest.raises(NonFiniteError, match=r"step 1: loss is nan \(loss/rm\)"):
        train_reward_model(init, rows, tmp_path / "orm", cfg)
    assert not (tmp_path / "orm").exists()
