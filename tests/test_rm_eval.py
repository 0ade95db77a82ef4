"""Reward-model evaluation metrics on hand-checked inputs (no benchmark data needed)."""
import pytest

from rewardflow.eval.rm import (best_threshold, critic_prompt, evaluate_prmbench, evaluate_processbench,
                                critic_predictions, evaluate_critic, first_error_step, one_vs_many, pairwise_accuracy, pairwise_metrics,
                                parse_critic_index, pass_at_k, prm_score, processbench_f1,
                                rewardmath_metrics, selection_metrics, step_confusion)
from rewardflow.rewards.base import StepScores, aggregate

TOL = dict(abs=1e-12)


# ---- ProcessBench -------------------------------------------------------------------------------------

def test_first_error_step_is_strictly_below_threshold():
    assert first_error_step([0.9, 0.4, 0.8], 0.5) == 1
    assert first_error_step([0.9, 0.4, 0.8], 0.4) == -1  # 0.4 is not < 0.4: a <= rule would say 1
    assert first_error_step([0.9, 0.4, 0.8], 0.95) == 0


def test_processbench_f1_is_harmonic_mean_of_the_two_accuracies():
    # erroneous (labels 1, 0, 2): preds 1 ok, 2 wrong, -1 wrong -> 1/3; correct (label -1): -1 ok, 0 wrong -> 1/2
    # F1 = 2 * (1/3) * (1/2) / (1/3 + 1/2) = (1/3) / (5/6) = 0.4 (an arithmetic mean would give 0.41667)
    res = processbench_f1([1, 2, -1, -1, 0], [1, 0, -1, 2, -1])
    assert res["acc_erroneous"] == pytest.approx(1 / 3, **TOL)
    assert res["acc_correct"] == pytest.approx(1 / 2, **TOL)
    assert res["f1"] == pytest.approx(0.4, **TOL)
    assert processbench_f1([0, -1], [1, -1])["f1"] == 0.0  # one accuracy 0 -> F1 0


def test_best_threshold_sweeps_every_split():
    steps, labels = [[0.9, 0.2], [0.8, 0.7], [0.3]], [1, -1, 0]
    # t=0.3: preds [1, -1, -1] -> err 1/2, cor 1 -> F1 2/3; t=0.7: preds [1, -1, 0] -> F1 1 (0.7 is not < 0.7);
    # t=0.8: item 2 flags step 1 -> correct acc 0 -> F1 0
    t, f1, tried = best_threshold(steps, labels)
    assert (t, f1, tried) == (0.7, 1.0, 6)


def test_evaluate_processbench_tunes_on_gsm8k_and_averages_subset_f1():
    row = lambda i, label, n: {"id": f"x-{i}", "problem": "p", "steps": ["s"] * n, "label": label, "generator": "g"}
    data = {"gsm8k": [row(0, 1, 2), row(1, -1, 2)], "math": [row(2, 0, 2), row(3, -1, 1)]}
    scores = {"x-0": StepScores([0.9, 0.1]), "x-1": StepScores([0.9, 0.8]),
              "x-2": StepScores([0.6, 0.9]), "x-3": StepScores([0.95])}
    res = evaluate_processbench(data, scores)  # gsm8k: any t in (0.1, 0.8] is perfect; first candidate 0.8
    assert res["threshold"] == 0.8 and res["threshold_source"].startswith("best F1 on the gsm8k subset")
    # math at 0.8: x-2 -> 0 (ok), x-3 -> -1 (ok) -> F1 1; average (1 + 1) / 2
    assert res["average_f1"] == 1.0
    res = evaluate_processbench(data, scores, threshold=0.5)  # math: x-2 -> -1 wrong -> err acc 0 -> F1 0
    assert res["threshold_source"] == "given" and res["subsets"]["math"]["f1"] == 0.0
    assert res["average_f1"] == pytest.approx(0.5, **TOL)


def test_critic_parse_and_evaluate():
    assert parse_critic_index(r"first \boxed{2} then \boxed{-1}", 3) == -1  # the last box counts
    assert parse_critic_index(r"\boxed{ 1 }", 3) == 1
    assert parse_critic_index(r"\boxed{5}", 3) is None  # no such step
    assert parse_critic_index("no box", 3) is None
    prompt = critic_prompt("What is 1+1?", ["a", "b"])
    assert "<paragraph_0>\na\n</paragraph_0>" in prompt and "<paragraph_1>" in prompt and r"\boxed{}" in prompt

    def critic(text):  # names the first paragraph holding BAD; gives up on GIVEUP
        if "GIVEUP" in text:
            return "I cannot tell."
        bad = [i for i in range(10) if f"<paragraph_{i}>\nBAD" in text]
        return rf"\boxed{{{bad[0] if bad else -1}}}"

    row = lambda steps, label: {"problem": "q", "steps": steps, "label": label}
    data = {"gsm8k": [row(["ok", "BAD"], 1), row(["ok", "ok"], -1), row(["GIVEUP"], -1)]}
    res = evaluate_critic(critic_predictions(critic, data), data)["subsets"]["gsm8k"]
    # erroneous 1/1; correct 1/2 (the unparsed one is wrong) -> F1 = 2 * 1 * 0.5 / 1.5 = 2/3
    assert res["unparsed"] == 1 and res["f1"] == pytest.approx(2 / 3, **TOL)


# ---- RewardBench and RewardMATH -----------------------------------------------------------------------

def test_pairwise_accuracy_ties_count_zero():
    # pair 1 wins, pair 2 ties (0, not 0.5), pair 3 loses -> 1/3 (ties as half: 1/2, ties as wins: 2/3)
    assert pairwise_accuracy([1.0, 0.5, 0.3], [0.5, 0.5, 0.4]) == pytest.approx(1 / 3, **TOL)


def test_aggregate_serves_every_step_reduction():
    """rewards.base.aggregate is the one reduction of step scores (RL rewards, search and these benchmarks)."""
    s = StepScores([0.5, 0.8, 0.2], outcome=7.0)
    # min 0.2; prod 0.5 * 0.8 * 0.2 = 0.08; last 0.2; outcome 7.0 (the steps are ignored)
    assert [aggregate(s, h) for h in ("min", "prod", "last", "outcome")] == [0.2, pytest.approx(0.08, **TOL), 0.2, 7.0]
    assert aggregate(s, "mean") == pytest.approx(0.5, **TOL)  # (0.5 + 0.8 + 0.2) / 3
    assert aggregate(s, "geo_mean") == pytest.approx(0.08 ** (1 / 3), **TOL)  # 0.430887
    assert aggregate(StepScores([0.5, 0.0], outcome=1.0), "geo_mean") == 0.0  # a zero step: log undefined, the mean is 0
    assert aggregate(StepScores([], outcome=3.0), "min") == 3.0  # outcome-only rows keep their outcome
    with pytest.raises(ValueError, match="valid: outcome, min"):
        aggregate(s, "median")
    with pytest.raises(ValueError, match="median"):  # a typo is an error even on a row without steps
        aggregate(StepScores([], outcome=3.0), "median")


def test_rewardmath_ties_rank_the_correct_solution_last():
    # 0.7 vs [0.7, 0.2, 0.9]: two incorrect at or above it -> rank 3 (an optimistic tie rule gives 2)
    assert one_vs_many(0.7, [0.7, 0.2, 0.9]) == (False, pytest.approx(1 / 3, **TOL))
    assert one_vs_many(0.95, [0.7, 0.9]) == (True, 1.0)
    res = rewardmath_metrics([0.7, 0.95], [[0.7, 0.2, 0.9], [0.7, 0.9]])
    assert res["accuracy"] == 0.5 and res["mrr"] == pytest.approx((1 / 3 + 1) / 2, **TOL)
    assert res["accuracy_ties_as_wins"] == 0.5  # 0.7 >= 0.9 fails anyway
    # pairwise judges: all nine won -> rank 1; two losses -> rank 3
    res = pairwise_metrics([[True] * 9, [True] * 7 + [False, False]])
    assert res["accuracy"] == 0.5 and res["mrr"] == pytest.approx(2 / 3, **TOL)


# ---- PRMBench -----------------------------------------------------------------------------------------

def test_prmbench_confusion_and_prm_score():
    # error step 2 (1-based) kept -> FP; steps 1, 4 kept -> TP 2; step 3 flagged but correct -> FN
    assert step_confusion([2], [True, True, False, True]) == {"TP": 2, "FN": 1, "TN": 0, "FP": 1}
    # F1+ : P = 3/5, R = 3/4 -> 2/3; F1- : P = 2/3, R = 2/4 -> 4/7; PRM-Score = (2/3 + 4/7) / 2 = 13/21
    res = prm_score({"TP": 3, "FN": 1, "TN": 2, "FP": 2})
    assert (res["f1"], res["f1_negative"]) == (pytest.approx(2 / 3, **TOL), pytest.approx(4 / 7, **TOL))
    assert res["prm_score"] == pytest.approx(13 / 21, **TOL)
    assert prm_score({"TP": 3, "FN": 1, "TN": 2, "FP": 2}, negatives=False)["prm_score"] == pytest.approx(2 / 3, **TOL)
    # no erroneous step caught: F1- undefined (-1) -> 0.5 * 2/3 - 0.5 < 0 -> clipped to 0
    assert prm_score({"TP": 2, "FN": 1, "TN": 0, "FP": 1})["prm_score"] == 0.0


def test_evaluate_prmbench_threshold_is_strict_and_correct_class_is_not_pooled():
    samples = [
        {"id": "circular_a", "classification": "circular", "steps": ["s"] * 3, "error_steps": [2, 9]},  # 9: out of range
        {"id": "correct_a", "classification": "correct", "steps": ["s"] * 2, "error_steps": []},
    ]
    # step scores 0.9, 0.5, 0.2: 0.5 is not > 0.5, so flagged; step 2 is the error -> TN 1, FN 1 (step 3), TP 1
    scores = {"circular_a": StepScores([0.9, 0.5, 0.2]), "correct_a": StepScores([0.1, 0.1])}
    res = evaluate_prmbench(samples, scores)
    assert {k: res["overall"][k] for k in ("TP", "FN", "TN", "FP")} == {"TP": 1, "FN": 1, "TN": 1, "FP": 0}
    # F1+ : P 1, R 1/2 -> 2/3; F1- : P 1/2, R 1 -> 2/3 -> PRM-Score 2/3
    assert res["overall"]["prm_score"] == pytest.approx(2 / 3, **TOL)
    assert res["classes"]["correct"]["FN"] == 2  # scored, but kept out of the overall counts


# ---- selection ----------------------------------------------------------------------------------------

def test_pass_at_k_unbiased():
    assert pass_at_k(8, 2, 4) == pytest.approx(1 - 15 / 70, **TOL)  # 1 - C(6,4)/C(8,4)
    assert pass_at_k(5, 0, 2) == 0.0 and pass_at_k(5, 4, 2) == 1.0


def test_selection_averages_over_subsets_and_shares_ties():
    preds, correct, scores = ["x", "y", "x"], [True, False, True], [0.3, 0.9, 0.6]
    res = selection_metrics(preds, correct, scores, 2)
    # rm@2: {0,1} -> 1 wrong, {0,2} -> 2 right, {1,2} -> 1 wrong = 1/3
    # maj@2: {0,1} tie x/y -> 1/2, {0,2} x -> 1, {1,2} tie -> 1/2 = 2/3 (a first-wins tie rule gives 2/3 too,
    # so the next case separates the rules)
    assert res["rm@k"] == pytest.approx(1 / 3, **TOL) and res["maj@k"] == pytest.approx(2 / 3, **TOL)
    assert res["pass@k"] == 1.0 and res["mean_acc"] == pytest.approx(2 / 3, **TOL)
    tie = (["a", "b", "a", "b"], [True, False, True, False], [0.0] * 4)
    assert selection_metrics(*tie, 4)["maj@k"] == 0.5  # tied groups share the credit
    assert selection_metrics(*tie, 4, mode="first")["maj@k"] == 1.0  # earliest group wins, as rm_maj_eval.py
    assert selection_metrics(*tie, 4)["rm@k"] == 0.5 and selection_metrics(*tie, 4, mode="first")["rm@k"] == 1.0


def test_weighted_majority_maps_negative_scores_to_positive_weights():
    preds, correct, scores = ["x", "y", "y"], [True, False, False], [2.0, -1.0, -1.0]
    # sigmoid: x 0.8808 vs y 2 * 0.2689 = 0.5379 -> x (right); plain majority picks y (wrong)
    res = selection_metrics(preds, correct, scores, 3)
    assert res["weighted_maj@k"] == 1.0 and res["maj@k"] == 0.0
    assert selection_metrics(preds, correct, scores, 3, weights="exp")["weighted_maj@k"] == 1.0  # e^2 vs 2/e
    with pytest.raises(ValueError, match="negative"):
        selection_metrics(preds, correct, scores, 3, weights="raw")
