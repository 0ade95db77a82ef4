"""Step labelling: the label math by hand, and every labeller on a fake policy whose success counts are known."""
import math
import random

import pytest
import torch

from rewardflow.data import DataError, Problem
from rewardflow.policy.base import Completion
from rewardflow.rewards.label import (
    FirstWrongSearch, LabelConfig, Solution, er_labels, hard_labels, label_solutions, omega_labels, prefix_text,
    read_labels, soft_labels,
)

# ---------------------------------------------------------------- pure label math


OUTCOMES = [[1, 0], [0, 0], [1, 1]]  # S=3 steps, K=2 completions each


def test_hard_and_soft_labels_by_hand():
    # hard: any correct -> [1, 0, 1]; soft: mean -> [1/2, 0/2, 2/2]
    assert hard_labels(OUTCOMES).tolist() == [1.0, 0.0, 1.0]
    assert soft_labels(OUTCOMES).tolist() == [0.5, 0.0, 1.0]


def test_er_labels_by_hand():
    # eta=1, r=[1,0]: log((e^1 + e^0)/2) = log((2.718281828 + 1)/2) = log(1.859140914) = 0.620114506
    # r=[0,0]: log((1+1)/2) = 0;  r=[1,1]: log((e+e)/2) = 1
    got = er_labels(OUTCOMES, 1.0)
    assert torch.allclose(got, torch.tensor([0.620114506, 0.0, 1.0], dtype=torch.float64), atol=1e-9)
    # eta=2, r=[1,0]: (1/2) * log((e^2 + 1)/2) = 0.5 * log(4.194528049) = 0.5 * 1.433780830 = 0.716890415
    assert er_labels([[1, 0]], 2.0).item() == pytest.approx(0.716890415, abs=1e-9)
    # a missing 1/K normaliser would give log(e + 1) = 1.3133 > 1, a missing 1/eta 1.4338: both caught above
    # soft <= ER <= hard, with the limits eta -> 0 (soft) and eta -> inf (hard)
    assert er_labels([[1, 0, 0, 0]], 1e-6).item() == pytest.approx(0.25, abs=1e-6)
    assert er_labels([[1, 0, 0, 0]], 1e4).item() == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ValueError, match="eta"):
        er_labels(OUTCOMES, 0.0)


def test_first_wrong_binary_search_visits_log_many_prefixes():
    # S=8, estimates positive for prefixes 1..4 and 0 from 5 on; the whole solution (8) is known wrong.
    # lo=1,hi=8: probe 4 (>0) -> lo=5; probe (5+8)//2=6 (0) -> hi=6; probe 5 (0) -> hi=5; done at 5.
    search, probes = FirstWrongSearch(1, 8), []
    while not search.done:
        t = search.probe()
        probes.append(t)
        search.update(t, 0.5 if t < 5 else 0.0)
    assert probes == [4, 6, 5] and search.lo == 5
    assert omega_labels(5, 8) == [1, 1, 1, 1, 0, 0, 0, 0]
    assert omega_labels(None, 3) == [1, 1, 1]
    assert omega_labels(1, 2) == [0, 0]


# ---------------------------------------------------------------- a fake policy with known success counts


class FakePolicy:
    """From the prefix s_1..s_t of problem p, exactly successes[p.prompt][t-1] of the n samples end in the gold
    answer; which ones is a seeded shuffle (the count is exact). Records every generate call."""

    num_params = 0

    def __init__(self, problems: dict[str, Problem], successes: dict[str, list[int]], fail_on_call: int | None = None):
        self.problems, self.successes, self.fail_on_call = problems, successes, fail_on_call
        self.calls: list[tuple[int, int]] = []  # (prompts, n) per call

    def generate(self, prompts, params, prefixes=None):
        if self.fail_on_call is not None and len(self.calls) == self.fail_on_call:
            raise KeyboardInterrupt("killed")
        self.calls.append((len(prompts), params.n))
        out = []
        for prompt, prefix in zip(prompts, prefixes):
            t = prefix.count("\n")  # prefix_text ends every step with a newline
            k = self.successes[prompt][t - 1]
            gold = int(self.problems[prompt].answer)
            order = list(range(params.n))
            random.Random(f"{params.seed}|{prompt}|{t}").shuffle(order)
            ok = set(order[:k])
            out.append([Completion(f"more work\nAnswer: {gold if i in ok else gold + 1000}", [], torch.zeros(0), "eos") for i in range(params.n)])
        return out


def _setup(fail_on_call=None):
    # p0: a wrong 3-step solution (answer 9, gold 7); from prefix 1, 3 of 4 rollouts succeed, from prefix 2 none.
    # p1: a correct 2-step solution; from prefix 1, 1 of 4 succeeds.
    # p2: a wrong 5-step solution; prefixes 1..3 succeed 2, 4, 1 of 4 times, prefix 4 never.
    probs = [Problem("p0", "q0", "7", "t"), Problem("p1", "q1", "5", "t"), Problem("p2", "q2", "3", "t")]
    sols = [Solution("s0", probs[0], ["3 + 2 = 5", "5 + 4 = 9", "Answer: 9"]),
            Solution("s1", probs[1], ["1 + 4 = 5", "Answer: 5"]),
            Solution("s2", probs[2], ["a", "b", "c", "d", "Answer: 4"])]
    policy = FakePolicy({p.prompt: p for p in probs}, {"q0": [3, 0], "q1": [1], "q2": [2, 4, 1, 0]}, fail_on_call)
    return policy, sols


def _run(tmp_path, verifier, method, chunk=8, **kw):
    policy, sols = _setup()
    stats = label_solutions(policy, verifier, sols, LabelConfig(method=method, rollouts=4, chunk=chunk, **kw), tmp_path / f"{method}.jsonl")
    return policy, stats, {r["id"]: r for r in read_labels(tmp_path / f"{method}.jsonl")}


def test_prefix_text_ends_in_newline():
    assert prefix_text(["a", "b", "c"], 2) == "a\nb\n"


def test_mc_hard_soft_and_er_labels_on_fake_policy(tmp_path, verifier):
    policy, stats, rows = _run(tmp_path, verifier, "mc-soft")
    # all 2 + 1 + 4 = 7 prefixes in ONE generate call with n=K=4; the last step of each is verified, not rolled out
    assert policy.calls == [(7, 4)]
    assert stats["rollouts"] == 28 and stats["prefixes"] == 7 and stats["labelled"] == 3
    assert rows["s0"]["mc"] == [0.75, 0.0, 0.0] and rows["s0"]["labels"] == [0.75, 0.0, 0.0]
    assert rows["s1"]["labels"] == [0.25, 1.0] and rows["s1"]["correct"] is True
    assert rows["s2"]["labels"] == [0.5, 1.0, 0.25, 0.0, 0.0] and rows["s2"]["correct"] is False
    assert rows["s0"]["label_kind"] == "mc-soft" and rows["s0"]["rollouts"] == 4 and rows["s0"]["rollouts_used"] == 8
    assert rows["s0"]["prompt"] == "q0" and rows["s0"]["answer"] == "7" and rows["s0"]["pred"] == "9"

    _, _, rows = _run(tmp_path, verifier, "mc-hard")
    assert [rows[s]["labels"] for s in ("s0", "s1", "s2")] == [[1, 0, 0], [1, 1], [1, 1, 1, 0, 0]]

    _, _, rows = _run(tmp_path, verifier, "er", eta=1.0)
    # 3 of 4: log((3e + 1)/4) = log(2.288711371) = 0.827989; 1 of 4: log((e + 3)/4) = log(1.429570457) = 0.357374
    # 2 of 4: log((2e + 2)/4) = log(1.859140914) = 0.620115; all 4: 1; none: 0
    assert rows["s0"]["labels"] == pytest.approx([0.827989, 0.0, 0.0], abs=1e-6)
    assert rows["s1"]["labels"] == pytest.approx([0.357374, 1.0], abs=1e-6)
    assert rows["s2"]["labels"] == pytest.approx([0.620115, 1.0, 0.357374, 0.0, 0.0], abs=1e-6)


def test_omega_binary_search_on_fake_policy_saves_rollouts(tmp_path, verifier):
    policy, stats, rows = _run(tmp_path, verifier, "omega")
    # s1 is correct: labels all 1 with no rollouts. s0 (S=3): lo=1,hi=3 -> probe 2 (0 of 4) -> hi=2 -> probe 1 (3/4)
    # -> lo=2: first wrong step 2. s2 (S=5): probe 3 (1/4 > 0) -> lo=4 -> probe 4 (0) -> hi=4: first wrong step 4.
    assert rows["s0"]["labels"] == [1, 0, 0] and rows["s0"]["mc"] == [0.75, 0.0, 0.0]
    assert rows["s1"]["labels"] == [1, 1] and rows["s1"]["rollouts_used"] == 0
    assert rows["s2"]["labels"] == [1, 1, 1, 0, 0] and rows["s2"]["mc"] == [None, None, 0.25, 0.0, 0.0]
    # two batched rounds of one generate call each (one probe per unfinished solution per round)
    assert policy.calls == [(2, 4), (2, 4)]
    # 4 prefixes rolled out instead of Math-Shepherd's 7: 16 rollouts instead of 28
    assert stats["rollouts"] == 16 and stats["full_mc_rollouts"] == 28
    # on these solutions the binary search finds the same first error as the hard MC labels
    _, _, hard = _run(tmp_path, verifier, "mc-hard")
    for sid in rows:
        assert rows[sid]["labels"] == hard[sid]["labels"]


def test_resume_after_a_crash_writes_the_same_file(tmp_path, verifier):
    full = tmp_path / "full.jsonl"
    policy, sols = _setup()
    label_solutions(policy, verifier, sols, LabelConfig(method="mc-soft", rollouts=4, chunk=1), full)
    assert len(policy.calls) == 3  # chunk=1: one generate call per solution

    part = tmp_path / "part.jsonl"
    crashing, _ = _setup(fail_on_call=1)  # killed during the second chunk
    with pytest.raises(KeyboardInterrupt):
        label_solutions(crashing, verifier, sols, LabelConfig(method="mc-soft", rollouts=4, chunk=1), part)
    assert [r["id"] for r in read_labels(part)] == ["s0"]  # the first chunk survived
    with part.open("a") as f:
        f.write('{"id": "s1", "prompt": "q1", "ste')  # a row torn mid-write is cut off on resume
    policy, _ = _setup()
    stats = label_solutions(policy, verifier, sols, LabelConfig(method="mc-soft", rollouts=4, chunk=1), part)
    assert stats["skipped"] == 1 and stats["labelled"] == 2 and len(policy.calls) == 2
    assert part.read_text() == full.read_text()
    # a finished file is a no-op
    policy, _ = _setup()
    assert label_solutions(policy, verifier, sols, LabelConfig(method="mc-soft", rollouts=4, chunk=1), part)["labelled"] == 0
    assert policy.calls == [] and part.read_text() == full.read_text()


def test_bad_rows_and_bad_config_are_clear_errors(tmp_path, verifier):
    policy, sols = _setup()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "s0"}\nnot json\n{"id": "s2"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2"):
        label_solutions(policy, verifier, sols, LabelConfig(), bad)
    with pytest.raises(ValueError, match="unknown labelling method"):
        label_solutions(policy, verifier, sols, LabelConfig(method="nope"), tmp_path / "x.jsonl")
    with pytest.raises(ValueError, match="unique"):
        label_solutions(policy, verifier, sols + sols[:1], LabelConfig(), tmp_path / "x.jsonl")


def test_er_limits_match_soft_and_hard_on_the_same_rollouts(tmp_path, verifier):
    _, _, soft = _run(tmp_path, verifier, "mc-soft")
    _, _, er = _run(tmp_path, verifier, "er", eta=1e-6)
    for sid in soft:
        assert er[sid]["labels"] == pytest.approx(soft[sid]["labels"], abs=1e-5)
    assert math.isclose(er["s0"]["labels"][0], 0.75, abs_tol=1e-5)


# ---------------------------------------------------------------- the step oracle (exact labels, no rollouts)


def test_chain_oracle_labels_by_hand():
    from rewardflow.rewards.label import chain_oracle_labels

    gold = ["3 + 4 = 7", "7 + 5 = 12", "Answer: 12"]  # worked solution of 3 + 4 + 5
    assert chain_oracle_labels(gold, gold) == [1.0, 1.0, 1.0]
    # wrong sum at step 2: it and everything after it are 0, even a final line that repeats the gold answer
    assert chain_oracle_labels(gold, ["3 + 4 = 7", "7 + 5 = 13", "Answer: 12"]) == [1.0, 0.0, 0.0]
    # a direct answer (no working) is right when it names the gold answer, wrong otherwise
    assert chain_oracle_labels(gold, ["Answer: 12"]) == [1.0]
    assert chain_oracle_labels(gold, ["Answer: 13"]) == [0.0]
    # extra spaces do not matter; a line past the worked solution is wrong
    assert chain_oracle_labels(gold, [" 3 +  4 = 7", "7 + 5 = 12", "Answer: 12", "Answer: 12"]) == [1.0, 1.0, 1.0, 0.0]
    # a wrong first step: all 0 although step 2 repeats a gold line
    assert chain_oracle_labels(gold, ["3 + 4 = 8", "7 + 5 = 12"]) == [0.0, 0.0]


def test_oracle_method_labels_without_rollouts(tmp_path, verifier):
    # worked solution of 3 + 4 + 5: "3 + 4 = 7", "7 + 5 = 12", "Answer: 12"
    prob = Problem("c0", "Compute: 3 + 4 + 5 =", "12", "chain_sum")
    sols = [Solution("right", prob, ["3 + 4 = 7", "7 + 5 = 12", "Answer: 12"]),
            Solution("slip", prob, ["3 + 4 = 7", "7 + 5 = 11", "Answer: 11"]),
            Solution("direct", prob, ["Answer: 12"])]
    policy = FakePolicy({}, {})
    stats = label_solutions(policy, verifier, sols, LabelConfig(method="oracle", rollouts=4), tmp_path / "o.jsonl")
    rows = {r["id"]: r for r in read_labels(tmp_path / "o.jsonl")}
    assert policy.calls == [] and stats["rollouts"] == 0  # no policy call at all
    assert rows["right"]["labels"] == [1.0, 1.0, 1.0] and rows["right"]["correct"] is True
    assert rows["slip"]["labels"] == [1.0, 0.0, 0.0] and rows["slip"]["correct"] is False
    assert rows["direct"]["labels"] == [1.0] and rows["direct"]["label_kind"] == "oracle"
