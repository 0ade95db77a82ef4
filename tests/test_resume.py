"""Checkpoints: N RL steps straight equal k steps, stop, resume to N — weights, optimizer, metrics."""
import json

import torch

from rewardflow.recipes.config_loader import load_config
from rewardflow.data import GymSource
from rewardflow.policy.hf import HFPolicy
from rewardflow.policy.tiny import TinyModelConfig, make_tiny_checkpoint
from rewardflow.train.checkpoint import latest_checkpoint
from rewardflow.train.metrics import MetricsLog
from rewardflow.train.rl import train_rl
from scorers import DigitScorer as _DigitScorer

OVERRIDES = ["rollout.prompts_per_step=4", "rollout.group_size=4", "rollout.max_new_tokens=12", "trainer.save_every=2",
             "trainer.eval_every=0", "trainer.micro_batch_size=8", "algo.kl_coef=0.05", "algo.epochs=2", "trainer.lr=1e-2"]


def _run(tmp, init, steps, resume=False, run="run"):
    cfg = load_config(overrides=OVERRIDES + [f"trainer.steps={steps}"])
    policy = HFPolicy.from_pretrained(init)
    ref = HFPolicy.from_pretrained(init)
    source = GymSource("chain_sum", seed=0, eval_size=8, min_terms=2, max_terms=2, min_digits=1, max_digits=1)
    # A random tiny model is rarely right, so reward "answered with a digit" instead: non-zero advantages.
    scorer = _DigitScorer()
    ckpt = latest_checkpoint(tmp / run) if resume else None
    log = MetricsLog(tmp / run / "metrics.jsonl", resume_after=int(ckpt.name.split("_")[-1]) if ckpt else None)
    train_rl(cfg, policy, ref, source, scorer, tmp / run, log=log, resume=resume)
    return policy, log.read()


def test_resume_is_exact(tmp_path):
    init = make_tiny_checkpoint(tmp_path / "init", TinyModelConfig(hidden_size=32, layers=2, heads=2, intermediate_size=64))
    straight, straight_rows = _run(tmp_path, init, steps=4, run="straight")
    # the same run, stopped after 2 steps, then resumed with a fresh process state
    _run(tmp_path, init, steps=2, run="split")
    torch.manual_seed(12345)  # a resumed process starts with different global RNG state
    resumed, resumed_rows = _run(tmp_path, init, steps=4, resume=True, run="split")
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the straight run"
    assert latest_checkpoint(tmp_path / "split").name == "step_000004"
    moved = any(not torch.equal(a[k], HFPolicy.from_pretrained(init).model.state_dict()[k]) for k in a)
    assert moved, "training did not change the weights, so the comparison proves nothing"
    # metrics.jsonl of the resumed run holds each step once, with the straight run's rewards
    steps = [r["step"] for r in resumed_rows]
    assert steps == [1, 2, 3, 4]
    assert [r["reward/mean"] for r in resumed_rows] == [r["reward/mean"] for r in straight_rows]
    state = json.loads((latest_checkpoint(tmp_path / "split") / "run_config.json").read_text())
    assert state["trainer"]["steps"] == 4


def test_checkpoint_dir_is_loadable_by_transformers(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    init = make_tiny_checkpoint(tmp_path / "init", TinyModelConfig(hidden_size=32, layers=2, heads=2, intermediate_size=64))
    _run(tmp_path, init, steps=2, run="r")
    ckpt = latest_checkpoint(tmp_path / "r")
    AutoTokenizer.from_pretrained(ckpt)
    model = AutoModelForCausalLM.from_pretrained(ckpt)
    assert sum(p.numel() for p in model.parameters()) > 0
    assert not list((tmp_path / "r" / "checkpoints").glob(".*tmp*")), "temporary checkpoint directories left behind"
