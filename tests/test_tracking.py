"""logging.trackers and samples.jsonl: TensorBoard event files read back, metrics.jsonl unchanged by trackers, W&B
offline without a key, sample completions every Nth RL step and at evals, and the HTML report showing a few."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rewardflow.data import GymSource, Problem
from rewardflow.eval.report import samples_html, write_html
from rewardflow.eval.runner import evaluate_policy
from rewardflow.policy.base import Completion
from rewardflow.policy.hf import HFPolicy
from rewardflow.recipes.config_loader import ConfigError, load_config
from rewardflow.rewards.verifier import VerifierScorer
from rewardflow.train.metrics import MetricsLog
from rewardflow.train.rl import train_rl
from rewardflow.train.rollout import Rollout
from rewardflow.train.tracking import SampleLog, read_samples, with_trackers

ROWS = [(1, {"reward/mean": 0.25, "loss/policy": -0.5, "note": "text", "flag": True}), (2, {"reward/mean": 0.75, "loss/policy": 0.125})]


def _scalars(event_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(event_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_events_read_back_and_metrics_jsonl_is_unchanged(tmp_path):
    pytest.importorskip("tensorboard")
    plain = MetricsLog(tmp_path / "plain" / "metrics.jsonl")
    tracked = with_trackers(MetricsLog(tmp_path / "run" / "metrics.jsonl"), ["tensorboard"])
    for step, m in ROWS:
        plain.log(step, m)
        tracked.log(step, m)
    tracked.log(0, {"loss/sft": 2.0}, phase="sft")
    plain.log(0, {"loss/sft": 2.0}, phase="sft")
    tracked.close()
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == (tmp_path / "plain" / "metrics.jsonl").read_text()
    got = _scalars(tmp_path / "run" / "tensorboard")
    # the numbers only (text and bools have no scalar plot); RL keys as they are, other phases prefixed
    assert got == {"reward/mean": [(1, 0.25), (2, 0.75)], "loss/policy": [(1, -0.5), (2, 0.125)], "sft/loss/sft": [(0, 2.0)]}


def test_no_trackers_is_the_log_itself(tmp_path):
    log = MetricsLog(tmp_path / "m.jsonl")
    assert with_trackers(log, []) is log and with_trackers(None, ["tensorboard"]) is None


def test_wandb_runs_offline_without_a_key(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for var in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    tracked = with_trackers(MetricsLog(tmp_path / "metrics.jsonl"), ["wandb"])
    assert tracked.sinks[0].run.settings.mode == "offline"
    for step, m in ROWS:
        tracked.log(step, m)
    tracked.close()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))  # the run's records, to `wandb sync` later


def test_tracker_names_are_checked():
    with pytest.raises(ConfigError, match="'mlflow' is not a tracker"):
        load_config(overrides=["logging.trackers=[mlflow]"])
    with pytest.raises(ConfigError, match="logging.samples_per_write"):
        load_config(overrides=["logging.samples_per_write=0"])


def _rollout(step: int) -> Rollout:
    """B = 3 prompts x G = 2 samples with known texts and rewards."""
    problems = [Problem(f"t/{b}", f"q{b}?", str(b), "t") for b in range(3) for _ in range(2)]
    completions = [Completion(text=f"s{step} c{i}", token_ids=[1], logprobs=torch.zeros(1), finish_reason="stop") for i in range(6)]
    rewards = torch.tensor([[1.0, 0.0], [0.5, 0.0], [0.0, 1.0]])
    return Rollout(problems, [[1]] * 6, completions, rewards, [["0", "9"], ["7", None], [None, "2"]], correct=(rewards == 1.0).float())


def test_samples_every_nth_step_capped_and_resumed(tmp_path):
    path = tmp_path / "samples.jsonl"
    log = SampleLog(path, every=2, per_write=2)
    for step in range(1, 5):
        log.rl_step(step, _rollout(step))
    log.write(4, "eval", [{"prompt": "p", "completion": "c", "reward": 1.0}] * 5)
    rows = read_samples(path)
    assert [(r["phase"], r["step"]) for r in rows] == [("rl", 2), ("rl", 2), ("rl", 4), ("rl", 4), ("eval", 4), ("eval", 4)]
    # each prompt's first sample: prompt 0 -> text c0, reward 1, correct; prompt 1 -> c2, reward 0.5, not correct
    assert [(r["completion"], r["reward"], r["correct"], r["pred"], r["answer"]) for r in rows[2:4]] == [
        ("s4 c0", 1.0, True, "0", "0"), ("s4 c2", 0.5, False, "7", "1")]
    SampleLog(path, every=2, per_write=2, resume_after=2)  # a resume from the step-2 checkpoint
    assert [(r["phase"], r["step"]) for r in read_samples(path)] == [("rl", 2), ("rl", 2), ("eval", 4), ("eval", 4)]


def test_report_shows_a_few_samples_escaped(tmp_path):
    SampleLog(tmp_path / "samples.jsonl", every=1, per_write=1).rl_step(7, _rollout(7))
    results = {"task": "t", "model": {"params": 1}, "wall_seconds": 1.0, "sft": {"greedy": 0.5, "samples": [
        {"prompt": "What is <b>1+1</b>?", "completion": "It is 2", "answer": "2", "pred": "2", "reward": 1.0}]}}
    page = write_html(results, [], tmp_path / "report.html").read_text()
    assert "<h2>Samples</h2>" in page and "What is &lt;b&gt;1+1&lt;/b&gt;?" in page and "It is 2" in page
    assert "RL step 7" in page and "s7 c0" in page
    assert samples_html({}, tmp_path / "none.jsonl") == ""


def test_rl_run_writes_samples_and_tensorboard_matching_metrics(tiny_ckpt, tmp_path):
    pytest.importorskip("tensorboard")
    cfg = load_config(overrides=["rollout.prompts_per_step=2", "rollout.group_size=2", "rollout.max_new_tokens=6", "trainer.steps=3",
                                 "trainer.save_every=0", "trainer.eval_every=2", "logging.trackers=[tensorboard]", "logging.samples_every=1",
                                 "logging.samples_per_write=2"])
    source = GymSource("chain_sum", seed=0, eval_size=3, min_terms=2, max_terms=2, min_digits=1, max_digits=1)
    scorer = VerifierScorer()
    policy = HFPolicy.from_pretrained(tiny_ckpt)

    def evaluate(step):
        res = evaluate_policy(policy, scorer.verifier, source.eval_problems, n_samples=2, ks=[1], max_new_tokens=6, greedy=False, samples=2)
        return {"pass@1": res["pass@1"], "samples": res["samples"]}

    train_rl(cfg, policy, None, source, scorer, tmp_path / "run" / "rl", log=MetricsLog(tmp_path / "run" / "metrics.jsonl"), evaluate=evaluate)
    scorer.verifier.close()
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert not any("samples" in k for r in rows for k in r)  # the samples went to samples.jsonl, not into the metrics
    samples = read_samples(tmp_path / "run" / "samples.jsonl")
    assert [(r["phase"], r["step"]) for r in samples] == [("rl", 1)] * 2 + [("rl", 2)] * 2 + [("eval", 2)] * 2 + [("rl", 3)] * 2 + [("eval", 3)] * 2
    assert all(isinstance(r["completion"], str) and r["prompt"] for r in samples)
    assert [r["prompt"] for r in samples if r["phase"] == "eval"][:2] == [p.prompt for p in source.eval_problems[:2]]
    tb = _scalars(tmp_path / "run" / "tensorboard")
    assert tb["reward/mean"] == [(r["step"], pytest.approx(r["reward/mean"], rel=1e-6)) for r in rows]
    assert [s for s, _ in tb["eval/pass@1"]] == [2, 3]


def test_a_log_that_already_tracks_is_passed_on_and_left_open(tmp_path):
    pytest.importorskip("tensorboard")
    tracked = with_trackers(MetricsLog(tmp_path / "metrics.jsonl"), ["tensorboard"])
    assert with_trackers(tracked, ["tensorboard"]) is tracked  # no second writer for the same run
    tracked.log(1, {"reward/mean": 0.5})
    tracked.close()
    assert _scalars(tmp_path / "tensorboard") == {"reward/mean": [(1, 0.5)]}


def test_no_samples_no_file(tmp_path):
    log = SampleLog(tmp_path / "samples.jsonl", every=0)
    log.rl_step(5, _rollout(5))  # every=0: RL samples off
    log.write(5, "eval", [])
    assert not (tmp_path / "samples.jsonl").exists()
