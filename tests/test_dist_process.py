"""distributed/process_rollout.py: rollout workers as spawned child processes (dist.rollout_backend=process) return
what one process returns for the same seeds, before and after a weight push; a worker's error and a dead worker are
reported in the trainer; and asynchronous RL at zero staleness with one process worker trains as the in-process
synchronous loop does (the tolerances of tests/test_dist_ray.py)."""
import os

import pytest
import torch

from rewardflow.data.problem import Problem
from rewardflow.distributed.fleet import WorkerLost
from rewardflow.distributed.process_rollout import ProcessRollouts
from scorers import DigitScorer
from test_dist_ray import PARAMS, PROMPTS, _policy, _tokens, assert_same_training, check_weight_push

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def test_two_process_workers_equal_in_process_rollouts():
    pol = _policy()
    fleet = ProcessRollouts(pol, 2, DigitScorer())
    try:
        pids = fleet._map("pid", [(), ()])
        assert len(set(pids)) == 2 and os.getpid() not in pids  # two separate processes
        remote, local = fleet.generate(PROMPTS, PARAMS), pol.generate(PROMPTS, PARAMS)
        assert _tokens(remote) == _tokens(local)
        for a, b in zip([c for g in remote for c in g], [c for g in local for c in g]):
            assert a.text == b.text and a.finish_reason == b.finish_reason
            torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-5, rtol=0)  # batch composition changes fp32 sums
        problems = [Problem(id=str(i), prompt=p, answer="3", task="t") for i, p in enumerate(PROMPTS) for _ in range(3)]
        texts = [c.text for g in local for c in g]
        assert fleet.score_texts(problems, texts) == DigitScorer().score_texts(problems, texts)
        updated = check_weight_push(fleet, pol, local)
        with pytest.raises(RuntimeError, match="in a rollout worker process"):  # the worker's traceback comes back
            fleet._map("set_weights", [({"no.such.weight": torch.zeros(1)},)])
        assert _tokens(fleet.generate(PROMPTS, PARAMS)) == _tokens(updated)  # and the worker keeps serving
        fleet.procs[0].kill()
        fleet.procs[0].join()
        with pytest.raises(WorkerLost, match="--resume"):
            fleet.generate(PROMPTS, PARAMS)
    finally:
        fleet.shutdown()
    assert fleet.procs == []


def test_async_rl_with_a_process_worker_equals_in_process_sync(tmp_path):
    from ddp_check import run_loop

    local = run_loop(tmp_path / "local")
    fleet = run_loop(tmp_path / "fleet", ["dist.rollout_workers=1", "dist.rollout_backend=process", "trainer.async=true",
                                          "trainer.max_staleness=0"])
    assert [r["async/staleness"] for r in fleet["metrics"]] == [0, 0]
    assert_same_training(local, fleet)


def test_config_refuses_an_unknown_backend_and_gpu_process_workers():
    from rewardflow.recipes.config_loader import ConfigError, load_config

    with pytest.raises(ConfigError, match="rollout_backend"):
        load_config(overrides=["dist.rollout_backend=threads"])
    with pytest.raises(ConfigError, match="worker_gpus"):
        load_config(overrides=["dist.rollout_backend=process", "dist.worker_gpus=1"])
