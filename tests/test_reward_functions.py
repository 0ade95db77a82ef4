"""Plain-Python reward functions (reward.functions): weighted sum, None as 0, file and module specs, and clear errors
for a function that hangs, raises or returns the wrong thing, in a worker process."""
from __future__ import annotations

import textwrap
import time

import pytest
import torch

from rewardflow.config import Config
from rewardflow.data.problem import Problem
from rewardflow.recipes.config_loader import ConfigError, validate
from rewardflow.rewards.functions import FunctionWorker, RewardFunctionError, RewardFunctions
from rewardflow.train.reward import RewardScorers, function_metrics, score_samples

USER = textwrap.dedent('''
    import time

    def length(prompts, completions, **columns):
        return [float(len(c)) for c in completions]

    def exact(prompts, completions, answer, task, id, **kw):
        return [None if a is None else float(c == a) for c, a in zip(completions, answer)]

    def slow(prompts, completions, **kw):
        time.sleep(60)

    def boom(prompts, completions, **kw):
        raise KeyError("no such column")

    def short(prompts, completions, **kw):
        return [1.0]

    def words(prompts, completions, **kw):
        return ["yes"] * len(completions)
''')

MODULE = "def tagged(prompts, completions, task, **kw):\n    return [1.0 if t == 'math' else 0.5 for t in task]\n"

# B = 2 prompts x G = 2 samples, prompt-major
PROBLEMS = [Problem("p0", "1+1?", "2", "math")] * 2 + [Problem("p1", "say hi", None, "chat")] * 2
TEXTS = ["2", "three", "hi", "2"]


@pytest.fixture(scope="module")
def worker():
    w = FunctionWorker()  # one spawned process for the whole module (spawning is the slow part)
    yield w
    w.close()


@pytest.fixture(scope="module")
def user_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("user")
    (d / "my_rewards.py").write_text(USER)
    (d / "my_module_rewards.py").write_text(MODULE)
    return d


def test_weighted_sum_with_none_as_zero(worker, user_file):
    f = user_file / "my_rewards.py"
    fns = RewardFunctions([f"{f}:length", f"{f}:exact"], [0.5, 2.0], timeout=10, worker=worker)
    # length: [1, 5, 2, 1]; exact: [1, 0, None, None] (no gold answer for p1)
    got = fns.rewards(PROBLEMS, TEXTS, (2, 2))
    expected = torch.tensor([[0.5 * 1 + 2.0 * 1, 0.5 * 5 + 0.0], [0.5 * 2 + 0.0, 0.5 * 1 + 0.0]])
    assert torch.allclose(got, expected)
    # through score_samples: verifier_weight * verdict is added
    cfg = Config()
    cfg.reward.verifier_weight = 3.0
    correct = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    rewards, steps = score_samples([], PROBLEMS, TEXTS, correct, cfg.reward, dense=False, functions=fns)
    assert steps is None and torch.allclose(rewards, 3.0 * correct + expected)
    # per-function means (raw values, None left out), reset after each pop; both calls above counted
    holder = RewardScorers()
    holder.functions = fns
    assert function_metrics(holder) == {"reward/fn/length": pytest.approx(9 / 4), "reward/fn/exact": pytest.approx(0.5)}
    assert function_metrics(holder) == {}
    assert function_metrics([]) == {}


def test_module_spec(worker, user_file, monkeypatch):
    monkeypatch.syspath_prepend(str(user_file))
    fns = RewardFunctions(["my_module_rewards:tagged"], [1.0], timeout=10, worker=worker)
    assert torch.allclose(fns.rewards(PROBLEMS, TEXTS, (2, 2)), torch.tensor([[1.0, 1.0], [0.5, 0.5]]))


@pytest.mark.parametrize("name, message", [
    ("boom", r"reward function .*my_rewards.py:boom raised KeyError: 'no such column'"),
    ("short", r"returned 1 values for 4 completions"),
    ("words", r"returned 'yes' \(str\) at index 0; each value must be a number or None"),
])
def test_bad_function_is_a_clear_error(worker, user_file, name, message):
    fns = RewardFunctions([f"{user_file / 'my_rewards.py'}:{name}"], [1.0], timeout=10, worker=worker)
    with pytest.raises(RewardFunctionError, match=message) as e:
        fns.rewards(PROBLEMS, TEXTS, (2, 2))
    assert "\n" not in str(e.value)


def test_missing_name_at_setup(worker, user_file):
    with pytest.raises(RewardFunctionError, match=r"my_rewards.py:nope.*has no 'nope'"):
        RewardFunctions([f"{user_file / 'my_rewards.py'}:nope"], [1.0], timeout=10, worker=worker)


def test_hanging_function_times_out(user_file):
    w = FunctionWorker()
    try:
        fns = RewardFunctions([f"{user_file / 'my_rewards.py'}:slow"], [1.0], timeout=2, worker=w)
        t0 = time.perf_counter()
        with pytest.raises(RewardFunctionError, match=r"my_rewards.py:slow took longer than 2 s on a batch of 4 completions; .*function_timeout"):
            fns.rewards(PROBLEMS, TEXTS, (2, 2))
        assert time.perf_counter() - t0 < 6
        assert w._pool is None  # the hung worker was killed
    finally:
        w.close()


def test_config_validation(user_file):
    f = user_file / "my_rewards.py"
    cfg = Config()
    cfg.reward.functions, cfg.reward.function_weights = [f"{f}:length"], [1.0]
    validate(cfg)
    cfg.reward.function_weights = [1.0, 2.0]
    with pytest.raises(ConfigError, match="reward.function_weights=.*needs one weight per entry of reward.functions"):
        validate(cfg)
    cfg.reward.functions, cfg.reward.function_weights = [f"{user_file}/missing.py:length"], [1.0]
    with pytest.raises(ConfigError, match="missing.py:length.*no file"):
        validate(cfg)
    cfg.reward.functions = ["no_such_module_xyz:fn"]
    with pytest.raises(ConfigError, match="no_such_module_xyz:fn.*no module"):
        validate(cfg)
    cfg.reward.functions = [f"{f}"]
    with pytest.raises(ConfigError, match="must be 'path/to/file.py:name'"):
        validate(cfg)
    cfg.reward.functions = [f"{f}:length"]
    cfg.reward.function_timeout = 0
    with pytest.raises(ConfigError, match="function_timeout"):
        validate(cfg)


def test_reward_functions_without_weights_weigh_one_each(tmp_path):
    """As TRL: reward.functions alone gives every function weight 1 (a count mismatch stays an error)."""
    from rewardflow.recipes.config_loader import load_config

    (tmp_path / "a.py").write_text("def f(prompts, completions, **kw):\n    return [0.0] * len(completions)\n")
    cfg = load_config(None, [f"reward.functions=[{tmp_path}/a.py:f,{tmp_path}/a.py:f]"])
    assert cfg.reward.function_weights == [1.0, 1.0]
