"""dist/ray_rollout.py: a local Ray cluster with 2 rollout workers returns what one process returns, for the same
seeds, before and after a weight push; the per-request seeding that makes this possible; and train_rl with
dist.rollout_workers=2 trains as the in-process loop does, stopping its fleet even when a step fails."""
import os

import pytest
import torch

from rewardflow.data.problem import Problem
from ddp_check import build
from rewardflow.distributed.ray_rollout import RolloutWorker, split_evenly
from rewardflow.policy.base import SamplingParams
from rewardflow.policy.hf import _gumbel, derive_prompt_seeds

PROMPTS = [f"What is {i} + {2 * i}?" + "!" * (i % 3) for i in range(5)]  # 5 prompts over 2 workers: shards 2 and 3
PARAMS = SamplingParams(n=3, temperature=1.0, max_new_tokens=10, seed=11)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

def _ray():
    try:
        import ray
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("ray is not installed (it is in the `test` extra; CI is set, so this is an error)")
        pytest.skip("ray is not installed: pip install -e '.[test]'")
    return ray


def _policy():
    pol = build(seed=1)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # larger random weights: varied text and <eos> at different steps (as in test_sampler)
        for p in pol.model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    pol.model.eval()
    return pol


def _tokens(groups):
    return [c.token_ids for g in groups for c in g]


class ExactScorer:
    """Reward 1 when the completion's text has an even number of characters: cheap, deterministic, checkable."""

    def score_texts(self, problems, texts):
        return [(p.id, len(t) % 2 == 0) for p, t in zip(problems, texts)]

    def score(self, problems, solutions):
        return [(p.id, len(s)) for p, s in zip(problems, solutions)]


def check_weight_push(fleet, pol, local) -> list:
    """An update on the trainer's policy: the fleet keeps sampling the old weights (`local`'s samples) until the push,
    then samples the new ones. Returns the updated policy's samples."""
    with torch.no_grad():
        for p in pol.model.parameters():
            p.mul_(1.5)
    updated = pol.generate(PROMPTS, PARAMS)
    assert _tokens(updated) != _tokens(local), "precondition: the update changes the samples"
    assert _tokens(fleet.generate(PROMPTS, PARAMS)) == _tokens(local)
    assert fleet.push_weights(pol.model) == 1
    assert _tokens(fleet.generate(PROMPTS, PARAMS)) == _tokens(updated)
    return updated


def assert_same_training(local: dict, fleet: dict) -> None:
    """Two ddp_check.run_loop results trained alike: identical rewards and lengths, metrics and weights within the
    tolerances below."""
    from ddp_check import loop_differences

    diffs, weights = loop_differences(local, fleet)
    assert all(diffs[k] == 0 for k in EXACT), {k: diffs[k] for k in EXACT}
    assert max(diffs.values()) < METRIC_ATOL, diffs
    assert weights < WEIGHT_ATOL, weights
    assert any(r["loss/policy"] != 0 for r in local["metrics"]), "precondition: non-zero advantages"


def test_split_evenly():
    assert split_evenly(5, 2) == [slice(0, 2), slice(2, 5)]
    assert split_evenly(2, 3) == [slice(0, 1), slice(1, 2)]  # no empty shards


def test_prompt_samples_do_not_depend_on_the_rest_of_the_batch():
    pol = _policy()
    seeds = derive_prompt_seeds(PARAMS.seed, len(PROMPTS))
    whole = pol.generate(PROMPTS, PARAMS)
    for i in (0, 3):
        (alone,) = pol.generate([PROMPTS[i]], PARAMS, prompt_seeds=[seeds[i]])
        assert _tokens([alone]) == _tokens([whole[i]])
        for a, b in zip(alone, whole[i]):
            torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-5, rtol=0)
    assert len(set(map(tuple, _tokens(whole)))) > 5, "precondition: the samples differ"
    other = pol.generate(PROMPTS, SamplingParams(n=3, max_new_tokens=10, seed=12))
    assert _tokens(other) != _tokens(whole)


def test_gumbel_max_draws_follow_the_softmax():
    # P = [.5, .3, .15, .05]; 40,000 independent rows (keys) at one step; the argmax of log P + G is a draw from
    # P, so each frequency is within 4 standard errors (sqrt(p(1-p)/n) <= .0025) of p. The noise is a pure
    # function of (key, step, token), so this is deterministic, not flaky.
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    keys = torch.arange(40_000)
    draws = (probs.log()[None, :] + _gumbel(keys, 0, 4)).argmax(-1)
    freq = torch.bincount(draws, minlength=4).double() / len(keys)
    assert (freq - probs.double()).abs().max() < 0.01, freq
    again = (probs.log()[None, :] + _gumbel(keys, 1, 4)).argmax(-1)  # the next step draws afresh
    assert (again != draws).float().mean() > 0.3


def test_worker_in_process_matches_policy():
    pol = _policy()
    worker = RolloutWorker(_policy(), scorer_factory=ExactScorer)
    seeds = derive_prompt_seeds(PARAMS.seed, len(PROMPTS))
    assert _tokens(worker.generate(PROMPTS, PARAMS, None, seeds)) == _tokens(pol.generate(PROMPTS, PARAMS))


def test_two_ray_workers_equal_in_process_rollouts():
    ray = _ray()
    from rewardflow.distributed.ray_rollout import RayRollouts

    import sys

    # ExactScorer lives in this test module, which the workers cannot import: ship it by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    pol = _policy()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        fleet = RayRollouts(pol, num_workers=2, scorer_factory=ExactScorer)
        assert len(set(ray.get([w.pid.remote() for w in fleet.workers]))) == 2  # two separate processes
        remote = fleet.generate(PROMPTS, PARAMS)
        local = pol.generate(PROMPTS, PARAMS)
        assert _tokens(remote) == _tokens(local)
        assert [c.text for g in remote for c in g] == [c.text for g in local for c in g]
        for a, b in zip([c for g in remote for c in g], [c for g in local for c in g]):
            assert a.finish_reason == b.finish_reason
            torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-5, rtol=0)  # batch composition changes fp32 sums
        problems = [Problem(id=str(i), prompt=p, answer=None, task="t") for i, p in enumerate(PROMPTS) for _ in range(3)]
        texts = [c.text for g in local for c in g]
        assert fleet.score_texts(problems, texts) == ExactScorer().score_texts(problems, texts)
        steps = [c.steps for g in local for c in g]
        assert fleet.score(problems, steps) == ExactScorer().score(problems, steps)
        assert fleet.encode_prompts(PROMPTS) == pol.encode_prompts(PROMPTS)

        check_weight_push(fleet, pol, local)
        fleet.shutdown()
    finally:
        ray.shutdown()


# Run-level tolerances shared with tests/test_dist_ddp.py's loop test. Rollout tokens and verdicts are identical
# (per-prompt seeding), so rewards, lengths and lr must match exactly. The sampling logprobs (the ratio's old
# logprobs, and the `entropy` metric) come from batches of 2 prompts per worker instead of 4 in one process,
# and fp32 rounding of the padded batched forward depends on the batch (measured <= 5e-7): losses and norms
# then differ by ~1e-8, hence METRIC_ATOL. AdamW divides each gradient coordinate by its own running magnitude,
# which magnifies rounding in coordinates whose gradient is near zero: after 4 updates at lr 1e-2 the weights
# differ by <= 5e-6 (measured), so WEIGHT_ATOL = 2e-5 is 0.2% of one update (~lr per coordinate), where a
# stale worker policy or a missed gradient all-reduce moves weights by a sizeable fraction of lr.
METRIC_ATOL = 1e-6
WEIGHT_ATOL = 2e-5
EXACT = ("reward/mean", "reward/std", "reward/correct", "rollout/len", "rollout/tokens", "rollout/truncated_frac", "train/lr", "train/rows")


def test_train_rl_with_two_ray_workers_equals_in_process(tmp_path):
    ray = _ray()
    from ddp_check import run_loop

    local = run_loop(tmp_path / "local")
    started_here = not ray.is_initialized()
    # train_rl starts a local Ray cluster (2 workers x 1 CPU), pushes weights after every update, stops it at the end
    fleet = run_loop(tmp_path / "fleet", ["dist.rollout_workers=2"])
    if started_here:
        assert not ray.is_initialized(), "the fleet did not stop the Ray cluster it started"
    assert [r["step"] for r in fleet["metrics"]] == [1, 2]
    assert_same_training(local, fleet)
    init = build(seed=1, max_positions=128).model.state_dict()
    assert max((local["state"][k] - init[k]).abs().max().item() for k in init) > 1e-2, "precondition: training moved the weights"


def test_fleet_is_shut_down_when_training_fails(tmp_path, monkeypatch):
    # no Ray needed: a stand-in fleet whose generation fails, as a dead worker would
    import rewardflow.train.rl as rl
    from ddp_check import run_loop

    stopped = []

    class BrokenFleet:
        def __init__(self, policy, scorer, cfg):
            pass

        def generate(self, prompts, params, prefixes=None):
            raise RuntimeError("worker died")

        def shutdown(self):
            stopped.append(True)

    monkeypatch.setattr(rl, "start_fleet", BrokenFleet)
    with pytest.raises(RuntimeError, match="worker died"):
        run_loop(tmp_path, ["dist.rollout_workers=1"])
    assert stopped == [True]
