"""Asynchronous RL (train/overlap.py): zero staleness is synchronous RL bit for bit; one step of staleness really
samples with the previous weights; the producer's errors reach the trainer; the truncated-IS hook of optimise."""
import threading

import pytest
import torch

from rewardflow.data import GymSource
from rewardflow.policy.hf import HFPolicy
from rewardflow.recipes.config_loader import ConfigError, load_config
from rewardflow.train.metrics import MetricsLog
from rewardflow.train.overlap import AsyncRollouts, make_producer
from rewardflow.train.rl import train_rl
from scorers import DigitScorer as _DigitScorer

OVERRIDES = ["rollout.prompts_per_step=4", "rollout.group_size=4", "rollout.max_new_tokens=10", "trainer.save_every=0",
             "trainer.eval_every=0", "trainer.micro_batch_size=8", "trainer.lr=1e-2", "trainer.warmup_steps=0", "trainer.steps=3"]


def _noisy(path):
    policy = HFPolicy.from_pretrained(path)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # varied completions (a fresh tiny model repeats one token), so rewards differ within groups
        for p in policy.model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return policy


def _run(tmp, init, extra, run):
    torch.set_num_threads(1)
    cfg = load_config(overrides=OVERRIDES + extra)
    policy = _noisy(init)
    source = GymSource("chain_sum", seed=0, eval_size=8, min_terms=2, max_terms=2, min_digits=1, max_digits=1)
    log = MetricsLog(tmp / run / "metrics.jsonl")
    train_rl(cfg, policy, None, source, _DigitScorer(), tmp / run, log=log)
    return policy, log.read()


def _same_weights(a, b) -> bool:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("tis", ["0", "2"])
def test_zero_staleness_async_equals_sync_exactly(tmp_path, tiny_ckpt, tis):
    sync, sync_rows = _run(tmp_path, tiny_ckpt, [f"algo.tis_cap={tis}"], "sync")
    asyn, async_rows = _run(tmp_path, tiny_ckpt, [f"algo.tis_cap={tis}", "trainer.async=true", "trainer.max_staleness=0"], "async")
    assert not _same_weights(sync, _noisy(tiny_ckpt)), "precondition: training moved the weights"
    assert _same_weights(sync, asyn), "zero-staleness asynchronous RL differs from synchronous RL"
    assert [r["reward/mean"] for r in sync_rows] == [r["reward/mean"] for r in async_rows]
    assert [r["loss/policy"] for r in sync_rows] == [r["loss/policy"] for r in async_rows]
    assert [r["async/staleness"] for r in async_rows] == [0, 0, 0]
    if tis != "0":  # on-policy, the trainer's recomputed logprobs equal the sampler's up to batching: weights ~ 1
        assert all(abs(r["tis/weight_mean"] - 1) < 1e-3 for r in sync_rows)


def test_one_step_staleness_samples_with_the_previous_weights(tmp_path, tiny_ckpt):
    sync, sync_rows = _run(tmp_path, tiny_ckpt, [], "sync")
    asyn, async_rows = _run(tmp_path, tiny_ckpt, ["trainer.async=true", "trainer.max_staleness=1", "algo.tis_cap=2"], "async")
    # step 1 is sampled with the initial weights either way; step 2 may be sampled before update 1 lands
    assert async_rows[0]["reward/mean"] == sync_rows[0]["reward/mean"]
    assert [r["async/staleness"] for r in async_rows][0] == 0
    assert all(0 <= r["async/staleness"] <= 1 for r in async_rows)
    # the producer starts step 2 the moment step 1 is handed over, long before update 1 is published
    assert async_rows[1]["async/staleness"] == 1
    # stale samples: the behaviour logprobs differ from the trainer's, so the weights move off 1
    assert abs(async_rows[1]["tis/weight_mean"] - 1) > 1e-3 and async_rows[1]["tis/behav_kl"] != 0
    assert not _same_weights(sync, asyn)


class _RecordingReplica:
    """Stands in for a policy replica: records the weight version it held at each rollout."""

    def __init__(self):
        self.version, self.seen = None, []


def test_producer_bounds_staleness_and_loads_published_weights(monkeypatch):
    import rewardflow.train.overlap as overlap

    cfg = load_config(overrides=OVERRIDES + ["trainer.steps=5", "trainer.async=true", "trainer.max_staleness=1"])
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    policy = type("P", (), {"model": model})()
    replica = _RecordingReplica()
    gate = threading.Semaphore(0)

    def fake_collect(gen, judge, source, cfg, step, scorers):
        gate.acquire()  # the test decides when each rollout finishes
        gen.seen.append((step, gen.version))
        return f"rollout{step}", None, 0.0, {}

    monkeypatch.setattr(overlap, "collect_batch", fake_collect)
    load = lambda w: setattr(replica, "version", int(w["weight"].item()))
    prod = AsyncRollouts(replica, load, None, None, cfg, [], policy, start=0)
    gate.release()
    gate.release()  # rollouts 1 and 2 may both finish before any update: 2 needs only version >= 0
    assert prod.get(1)[0] == "rollout1"
    for step in range(1, 5):
        with torch.no_grad():
            model.weight.fill_(step)  # "update" `step`
        prod.publish(step)
        gate.release()
        rollout, _, _, info = prod.get(step + 1)
        assert rollout == f"rollout{step + 1}" and 0 <= info["async/staleness"] <= 1
    prod.close()
    # rollout s was sampled with weights of version >= s - 2 (staleness <= 1), never newer than published
    assert all(step - 2 <= version <= step - 1 for step, version in replica.seen), replica.seen


def test_producer_error_reaches_the_trainer(monkeypatch):
    import rewardflow.train.overlap as overlap

    def boom(*a, **k):
        raise ValueError("verifier exploded")

    monkeypatch.setattr(overlap, "collect_batch", boom)
    cfg = load_config(overrides=OVERRIDES + ["trainer.async=true"])
    policy = type("P", (), {"model": torch.nn.Linear(1, 1)})()
    prod = AsyncRollouts(_RecordingReplica(), lambda w: None, None, None, cfg, [], policy, start=0)
    with pytest.raises(RuntimeError, match="verifier exploded"):
        prod.get(1)
    prod.close()


def test_async_replica_is_a_separate_copy(tiny_ckpt):
    cfg = load_config(overrides=OVERRIDES + ["trainer.async=true", "trainer.steps=1"])
    policy = HFPolicy.from_pretrained(tiny_ckpt)
    prod = make_producer(policy, policy, _DigitScorer(), None, None, cfg, [], start=1)  # steps=1, start=1: nothing to sample
    prod.close()
    assert prod.replica is not policy and prod.replica.model is not policy.model
    assert prod.replica.tokenizer is not policy.tokenizer  # fast tokenizers must not be shared between threads


def test_in_process_producer_splits_the_torch_threads(tiny_ckpt):
    cfg = load_config(overrides=OVERRIDES + ["trainer.async=true", "trainer.steps=1"])
    policy = HFPolicy.from_pretrained(tiny_ckpt)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        prod = make_producer(policy, policy, _DigitScorer(), None, None, cfg, [], start=1)
        assert torch.get_num_threads() == 1  # producer thread + trainer thread: 1 + 1 on 2 cores, not 2 + 2
        prod.close()
        assert torch.get_num_threads() == 2  # restored for what follows (evaluation)
        fleet = type("F", (), {"push_weights": lambda self, w: 0})()
        prod = make_producer(policy, fleet, _DigitScorer(), fleet, None, cfg, [], start=1)  # workers: no thread split
        assert torch.get_num_threads() == 2
        prod.close()
    finally:
        torch.set_num_threads(before)


def test_config_spells_async_and_rejects_what_cannot_work(tmp_path):
    assert load_config(overrides=["trainer.async=true"]).trainer.async_rl is True
    yaml = tmp_path / "a.yaml"
    yaml.write_text("trainer:\n  async: true\n  max_staleness: 2\n")
    cfg = load_config(yaml)
    assert (cfg.trainer.async_rl, cfg.trainer.max_staleness) == (True, 2)
    with pytest.raises(ConfigError, match="trainer.max_staleness"):
        load_config(overrides=["trainer.max_staleness=-1"])
    with pytest.raises(ConfigError, match="online_update"):
        load_config(overrides=["trainer.async=true", "reward.online_update=true", "reward.scorers=[x]", "reward.weights=[1]"])
    with pytest.raises(ConfigError, match="tis_cap"):
        load_config(overrides=["trainer.async=true", "model.backend=vllm"])


def test_ray_rollout_workers_run_asynchronously(tmp_path):
    """trainer.async with Ray rollout workers: the fleet is the replica (snapshots pushed from the producer thread).
    At zero staleness it trains as the in-process synchronous loop does (the tolerances of tests/test_dist_ray.py)."""
    pytest.importorskip("ray")
    from ddp_check import run_loop
    from test_dist_ray import assert_same_training

    local = run_loop(tmp_path / "local")
    fleet = run_loop(tmp_path / "fleet", ["dist.rollout_workers=1", "trainer.async=true", "trainer.max_staleness=0"])
    assert [r["async/staleness"] for r in fleet["metrics"]] == [0, 0]
    assert_same_training(local, fleet)


def test_bench_summary_pairs_repetitions_and_problems():
    from rewardflow.recipes.bench.async_bench import summarise

    def run(mode, sps, per_problem):
        return {"mode": mode, "samples_per_s": sps, "samples_per_cpu_s": 1.0, "cpu_busy": 1.0,
                "pass@1": sum(per_problem) / len(per_problem), "pass@1_per_problem": per_problem}

    runs = [run("sync", 10.0, [0.5, 1.0, 0.0]), run("async", 15.0, [0.75, 1.0, 0.0]),
            run("async", 12.0, [0.25, 1.0, 0.5]), run("sync", 8.0, [0.5, 0.5, 0.0])]
    s = summarise(runs)
    # ratios repetition by repetition: 15 / 10 = 1.5 and 12 / 8 = 1.5 (not 13.5 / 9 of the medians by luck: same here)
    assert s["speedup_async_vs_sync"]["per_rep"] == [1.5, 1.5]
    assert s["sync"]["samples_per_s"] == {"median": 9.0, "min": 8.0, "max": 10.0}
    # per problem, averaged over reps: async [0.5, 1, 0.25], sync [0.5, 0.75, 0] -> differences [0, 0.25, 0.25], mean 1/6
    d = s["delta_pass@1_async_minus_sync"]
    assert d["mean"] == pytest.approx(1 / 6, abs=1e-12) and d["ci95"][0] < 1 / 6 < d["ci95"][1]
    assert "speedup_async_vs_sync_2threads" not in s


def test_producer_thread_samples_under_the_trainers_autocast(monkeypatch):
    """Autocast is per thread: model.dtype=bfloat16 must sample in bf16 in the producer thread too."""
    import rewardflow.train.overlap as overlap

    seen = []

    def fake_collect(gen, judge, source, cfg, step, scorers):
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return None, None, 0.0, {}

    monkeypatch.setattr(overlap, "collect_batch", fake_collect)
    cfg = load_config(overrides=OVERRIDES + ["trainer.async=true", "trainer.steps=1"])
    policy = type("P", (), {"model": torch.nn.Linear(1, 1)})()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        prod = AsyncRollouts(_RecordingReplica(), lambda w: None, None, None, cfg, [], policy, start=0)
    prod.get(1)
    prod.close()
    assert seen == [(True, torch.bfloat16)]
