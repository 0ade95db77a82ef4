"""recipes/bench/rm.py: the selection metrics by hand (the end-to-end run is the benchmark itself, see README). Best-of-N
and weighted voting are eval.metrics' one implementation, which search and reward-model evaluation use too."""
import json

import pytest

from rewardflow.eval.metrics import best_of_n, weighted_vote
from rewardflow.recipes.bench import rm as bench_rm


def test_best_of_n_picks_the_top_score_and_breaks_ties_early():
    assert best_of_n([0.1, 0.9, 0.3], [False, True, False]) == 1.0
    # a scorer that ranks backwards picks the wrong one: a sign error would flip these two
    assert best_of_n([0.9, 0.1, 0.3], [False, True, False]) == 0.0
    # a constant scorer is "take the first sample", not an oracle
    assert best_of_n([0.5, 0.5, 0.5], [False, True, True]) == 0.0
    with pytest.raises(ValueError):
        best_of_n([0.5], [True, False])


def test_weighted_vote_sums_scores_per_answer():
    answers = ["3", "4", "4", None]
    correct = [True, False, False, False]
    # "3": 0.9; "4": 0.2 + 0.3 = 0.5 -> "3" wins although plain majority picks "4"
    assert weighted_vote(answers, [0.9, 0.2, 0.3, 5.0], correct) == 1.0
    # "3": 0.4; "4": 0.3 + 0.3 = 0.6 -> "4"; the None sample never votes whatever its score
    assert weighted_vote(answers, [0.4, 0.3, 0.3, 5.0], correct) == 0.0
    assert weighted_vote([None, None], [1.0, 1.0], [False, False]) == 0.0


def test_selection_metrics_on_two_problems():
    cands = [{"answers": ["1", "2", "2", "1"], "correct": [True, False, False, True]},
             {"answers": ["5", "6", "6", "6"], "correct": [False, True, True, True]}]
    scores = {"orm": [[0.1, 0.8, 0.2, 0.3], [0.0, 0.5, 0.1, 0.1]]}
    m = bench_rm.selection_metrics(cands, scores, 4)
    # pass@1 = mean(2/4, 3/4) = 0.625; pass@4 = 1, 1; maj@4: problem 1 ties 1:2 vs 2:2 -> first seen "1" (correct),
    # problem 2 -> "6" (correct) = 1.0; orm@4: problem 1 picks sample 2 (wrong), problem 2 picks sample 2 (right) = 0.5
    assert m["pass@1"]["value"] == pytest.approx(0.625) and m["pass@1"]["n"] == 2
    assert m["pass@4"]["value"] == 1.0 and m["maj@4"]["value"] == 1.0
    assert m["orm@4"]["value"] == 0.5
    lo, hi = m["orm@4"]["ci95"]
    assert lo < 0.5 < hi
    # weighted: problem 1 "1": 0.4 vs "2": 1.0 -> wrong; problem 2 "6": 0.7 vs "5": 0 -> right
    assert m["orm_weighted_maj@4"]["value"] == 0.5


def test_bench_rm_end_to_end_at_toy_size(tmp_path):
    """Every stage runs (policy, labels, ORM, PRM, held-out selection) and a rerun resumes from the cache."""
    kw = dict(seed=0, sft_steps=4, model_size="small", train_problems=4, samples=2, rollouts=2, rm_epochs=1,
              eval_problems=3, n=4, synthetic=6, show_progress=False)
    res = bench_rm.run_bench(tmp_path, **kw)
    m = res["metrics"]
    for key in ("pass@1", "pass@4", "maj@4", "orm@4", "prm_min@4", "prm_prod@4", "prm_last@4", "prm_mean@4", "implicit@4", "implicit_min@4",
                "policy_min_p@4", "policy_mean_p@4"):
        assert 0.0 <= m[key]["value"] <= 1.0 and m[key]["n"] == 3, key
    # a selector never beats pass@n, and every selector's value is a count over the three problems
    assert all(m[k]["value"] <= m["pass@4"]["value"] + 1e-9 for k in m if k.endswith("@4") and k != "pass@4")
    assert res["labels"]["solutions"] == 4 * 2 and res["sizes"]["synthetic_rows"] == 6 * 4
    assert json.loads((tmp_path / "prm" / "scorer.json").read_text())["readout"] == "logprob"  # the default read-out
    for cached in ("sft/DONE", "labels.jsonl", "orm/scorer.json", "prm/scorer.json", "implicit/scorer.json", "candidates.json", "rm.json"):
        assert (tmp_path / cached).exists(), cached
    again = bench_rm.run_bench(tmp_path, **kw)
    assert again["metrics"] == res["metrics"] and again["cost"]["label_rollouts_this_run"] == 0
    with pytest.raises(ValueError, match="use a new --out"):  # a cached RM trained with other settings is not reused
        bench_rm.run_bench(tmp_path, **{**kw, "rm_epochs": 2})
    with pytest.raises(ValueError, match="use a new --out"):
        bench_rm.run_bench(tmp_path, **{**kw, "n": 2})


def test_auroc_and_within_problem_auroc_by_hand():
    # pairs (pos, neg): (0.9, 0.1) win, (0.9, 0.9) tie, (0.2, 0.1) win, (0.2, 0.9) loss -> (1 + 0.5 + 1 + 0) / 4
    assert bench_rm.auroc([0.9, 0.2], [0.1, 0.9]) == pytest.approx(0.625)
    # problem A ranks its right sample first (1.0), problem B last (0.0); all-correct C is left out. Over all
    # samples the scorer looks good: positives 0.9, 0.2, 0.8, 0.8 against negatives 0.1, 0.3 win 7 of 8 pairs
    # (only 0.2 < 0.3 loses) -> 0.875, although it picks the wrong sample in half the problems.
    cands = [{"correct": [True, False]}, {"correct": [True, False]}, {"correct": [True, True]}]
    d = bench_rm._rm_diagnostics(cands, {"s": [[0.9, 0.1], [0.2, 0.3], [0.8, 0.8]]})["s"]
    assert d["within_problem_auroc"] == pytest.approx(0.5) and d["problems_mixed"] == 2
    assert d["auroc"] == pytest.approx(7 / 8)


def test_fit_logistic_by_hand():
    import torch

    # a feature that carries nothing (all 0): only the intercept moves, to logit(mean label) = log(0.25 / 0.75)
    w, b = bench_rm.fit_logistic(torch.zeros(4, 1), torch.tensor([1.0, 0.0, 0.0, 0.0]))
    assert b == pytest.approx(-1.098612, abs=1e-4) and w.abs().max() < 1e-8
    # a feature that agrees with the label gets a positive weight; at the optimum the mean prediction is the mean label
    x, y = torch.tensor([[-2.0], [-1.0], [1.0], [0.5], [2.0]]), torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0])
    w, b = bench_rm.fit_logistic(x, y)
    assert w[0] > 0
    assert torch.sigmoid(x.double() @ w + b).mean().item() == pytest.approx(0.6, abs=1e-5)
