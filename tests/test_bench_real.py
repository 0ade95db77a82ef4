"""bench real's arithmetic (recipes/bench/real.py) on hand-worked groups; the run itself needs the 93 MB model."""
import pytest

from rewardflow.eval.metrics import paired_delta
from rewardflow.recipes.bench.real import compute_curve, group_metrics


def _groups():
    # two problems, three samples each
    #   problem A: answers 5, 5, 7, correct T, T, F -> pass@1 2/3, maj@3 picks 5 (right), greedy right
    #   problem B: answers 1, 2, 2, correct T, F, F -> pass@1 1/3, maj@3 picks 2 (wrong), greedy wrong
    return [{"prompt": "A", "greedy": True, "answers": ["5", "5", "7"], "correct": [True, True, False], "tokens": [10, 20, 30]},
            {"prompt": "B", "greedy": False, "answers": ["1", "2", "2"], "correct": [True, False, False], "tokens": [4, 4, 4]}]


def test_group_metrics_by_hand():
    m = group_metrics(_groups(), 3)
    assert m["pass@1_per_problem"] == pytest.approx([2 / 3, 1 / 3], abs=1e-12)
    assert m["pass@1"] == pytest.approx(0.5, abs=1e-12)  # (2/3 + 1/3) / 2
    assert m["maj@3"] == pytest.approx(0.5, abs=1e-12)  # A right, B wrong
    assert m["greedy"] == pytest.approx(0.5, abs=1e-12)
    lo, hi = m["pass@1_ci95"]
    assert lo < 0.5 < hi


def test_compute_curve_by_hand():
    # P = 10 params, 2 prompt tokens per sample. N=1: A 10+2, B 4+2 -> mean 9 tokens -> 2*10*9 = 180 FLOPs;
    # best-of-1 = both first samples right = 1.0; majority of one sample = the same = 1.0.
    # N=2: A 30+4, B 8+4 -> mean 23 -> 460 FLOPs; best-of-2 1.0; vote A {5,5} right, B {1,2} tie -> first, 1 (right) = 1.0
    # N=3: A 60+6, B 12+6 -> mean 42 -> 840 FLOPs; best-of-3 1.0; vote A 5 right, B 2 wrong = 0.5
    rows = compute_curve(_groups(), params=10, prompt_tokens_per_sample=2)
    assert [r["n"] for r in rows] == [1, 2, 3]
    assert [r["flops_per_problem"] for r in rows] == pytest.approx([180, 460, 840], abs=1e-9)
    assert [r["best_of_n_verifier"] for r in rows] == [1.0, 1.0, 1.0]
    assert [r["majority_vote"] for r in rows] == [1.0, 1.0, 0.5]


def test_paired_delta_by_hand():
    # differences 0.5, 0, 0.25, 0.25: mean 0.25; the interval is centred on it and excludes nothing by construction
    d = paired_delta([[0.5, 0.5, 0.5, 0.75]], [[0.0, 0.5, 0.25, 0.5]])  # after, before
    assert d["mean"] == pytest.approx(0.25, abs=1e-12) and d["n"] == 4
    lo, hi = d["ci95"]
    assert lo < 0.25 < hi and hi - 0.25 == pytest.approx(0.25 - lo, abs=1e-12)
    with pytest.raises(ValueError, match="same problems"):
        paired_delta([[0.0, 1.0]], [[0.0]])
