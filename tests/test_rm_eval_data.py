"""Reward-model evaluation on the real benchmark data in ../shared/data, checked against independent
computations (plain loops over the raw files) and hand-derivable cases."""
import json
import math
import time
from collections import Counter

import pytest

from rewardflow.eval.rm import (ScoresFileError, load_prmbench, load_processbench, prmbench_oracle_scores,
                                processbench_items, processbench_oracle_scores, run_rm_eval, write_scores)
from rewardflow.eval.rm.rewardmath import sample_items
from rewardflow.rewards.base import StepScores

TOL = dict(abs=1e-12)


def test_rewardbench_math_shepherd_reproduces_the_stored_results(shared_data, tmp_path):
    res = run_rm_eval("rewardbench", tmp_path, data_root=shared_data)["aggregations"]
    # pinned: correct pairs out of 447 per aggregation
    assert {h: round(r["accuracy"] * 447) for h, r in res.items()} == {"min": 371, "prod": 422, "last": 294, "mean": 363}
    # independent: the RewardMATH repository's own RewardBench file for Math-Shepherd (one row per solution)
    rows = json.loads((shared_data / "rewardmath/results/Rewardbench/rewardbench_Math_Shepherd.json").read_text())
    side = {(r["problem_id"], r["solution_type"]): r["output"]["step_scores"] for r in rows}
    reduce = {"min": min, "prod": math.prod, "last": lambda s: s[-1], "mean": lambda s: sum(s) / len(s)}
    ids = sorted({pid for pid, _ in side})
    for how, f in reduce.items():
        wins = sum(f(side[(i, "chosen")]) > f(side[(i, "rejected")]) for i in ids)
        assert res[how]["accuracy"] == pytest.approx(wins / len(ids), **TOL)
    assert (tmp_path / "results.json").exists() and "| prod |" in (tmp_path / "results.md").read_text()


def test_rewardmath_table_matches_a_plain_recomputation(shared_data, tmp_path):
    table = run_rm_eval("rewardmath", tmp_path, data_root=shared_data)["models"]
    by = {(r["model"], r["aggregation"]): r for r in table}
    assert round(by[("internlm2_20b", "score")]["accuracy"] * 483) == 164
    assert round(by[("Math_Shepherd", "prod")]["accuracy"] * 483) == 83
    reducers = {"score": lambda s: s, "prod": math.prod, "min": min, "last": lambda s: s[-1],
                "mean": lambda s: sum(s) / len(s), "geo_mean": lambda s: math.prod(s) ** (1 / len(s))}
    for (model, how), row in by.items():
        raw = json.loads((shared_data / f"rewardmath/results/RewardMATH/{model}_reward.json").read_text())
        firsts = list({r["problem"]: r for r in reversed(raw)}.values())  # one row per problem
        assert len(firsts) == 483 == row["n"]
        if how == "pairwise":  # all nine verdicts must name the correct solution's position
            losses = [sum(s != p for s, p in zip(r["score"], r["chosen_position"])) for r in firsts]
            acc, mrr = sum(n == 0 for n in losses) / 483, sum(1 / (1 + n) for n in losses) / 483
        else:  # index 0 is the correct solution
            vals = [[reducers[how](s) for s in r["score"]] for r in firsts]
            acc = sum(v[0] > max(v[1:]) for v in vals) / 483
            mrr = sum(1 / (1 + sum(x >= v[0] for x in v[1:])) for v in vals) / 483
        assert row["accuracy"] == pytest.approx(acc, abs=1e-9), (model, how)
        assert row["mrr"] == pytest.approx(mrr, abs=1e-9), (model, how)


def test_selection_on_math_cot_100(shared_data, tmp_path):
    res = run_rm_eval("selection", tmp_path, data_root=shared_data)["curves"]
    rows = [json.loads(line) for line in (shared_data / "qwen25_math_eval/eval_rm_maj_example/math_cot_100.jsonl").open()]
    mean_score = sum(sum(r["score"]) for r in rows) / sum(len(r["score"]) for r in rows)
    assert mean_score == 0.91
    for mode in ("subsets", "first"):
        for k in ("1", "2", "4", "8"):
            assert res[mode][k]["mean_acc"] == pytest.approx(mean_score, **TOL)
    sub = res["subsets"]
    assert sub["1"]["pass@k"] == sub["1"]["maj@k"] == sub["1"]["rm@k"] == pytest.approx(mean_score, **TOL)
    assert sub["8"]["pass@k"] == pytest.approx(sum(any(r["score"]) for r in rows) / 100, **TOL)
    # first mode at k=8 is Qwen2.5-Math's rm_maj_eval.py: argmax (first on ties), Counter majority
    rm8 = sum(r["score"][[s[0] for s in r["pred_score"]].index(max(s[0] for s in r["pred_score"]))] for r in rows) / 100
    maj8 = sum(r["score"][r["pred"].index(Counter(r["pred"]).most_common(1)[0][0])] for r in rows) / 100
    assert (res["first"]["8"]["rm@k"], res["first"]["8"]["maj@k"]) == (pytest.approx(rm8, **TOL), pytest.approx(maj8, **TOL))
    assert (tmp_path / "selection_accuracy_vs_k.png").stat().st_size > 1000


def test_processbench_oracle_file_gives_f1_one_within_30s(shared_data, tmp_path):
    data = load_processbench(shared_data)
    path = write_scores(tmp_path / "oracle.jsonl", processbench_oracle_scores(data))
    start = time.perf_counter()
    res = run_rm_eval("processbench", tmp_path / "out", scores=path, data_root=shared_data)
    elapsed = time.perf_counter() - start
    assert res["n_items"] == 3400 and elapsed < 30, elapsed
    assert res["average_f1"] == 1.0 and all(r["f1"] == 1.0 for r in res["subsets"].values())
    assert res["threshold"] == 1.0 and "gsm8k" in res["threshold_source"]
    assert "threshold" in (tmp_path / "out/results.md").read_text()


class ConstantScorer:
    def score(self, problems, solutions):
        return [StepScores([0.3] * len(s), 0.3) for s in solutions]


def test_processbench_constant_scorer_is_hand_derivable(shared_data, tmp_path):
    raw = {s: json.loads((shared_data / f"processbench/{s}.json").read_text()) for s in ("gsm8k", "math")}
    # threshold 0.5 > 0.3: every sample is predicted wrong at step 0 -> error acc = share of label 0, correct acc 0
    res = run_rm_eval("processbench", tmp_path, scorer=ConstantScorer(), data_root=shared_data, threshold=0.5)
    for s, rows in raw.items():
        errs = [r["label"] for r in rows if r["label"] != -1]
        assert res["subsets"][s]["acc_erroneous"] == pytest.approx(errs.count(0) / len(errs), **TOL)
        assert res["subsets"][s]["acc_correct"] == 0.0 and res["subsets"][s]["f1"] == 0.0
    # threshold 0.3: nothing is below it -> everything predicted -1: correct acc 1, error acc 0, F1 0
    res = run_rm_eval("processbench", tmp_path, scorer=ConstantScorer(), data_root=shared_data, threshold=0.3)
    assert all((r["acc_correct"], r["acc_erroneous"], r["f1"]) == (1.0, 0.0, 0.0) for r in res["subsets"].values())


def test_processbench_generative_critic_mode(shared_data, tmp_path):
    seen = []

    def always_correct(prompt):  # says "no error" to everything
        seen.append(prompt)
        return r"The solution is right. \boxed{-1}"

    res = run_rm_eval("processbench", tmp_path, critic=always_correct, data_root=shared_data)
    assert len(seen) == 3400 and res["threshold"] is None and res["source"].startswith("generative critic")
    assert all((r["acc_correct"], r["acc_erroneous"], r["f1"], r["unparsed"]) == (1.0, 0.0, 0.0, 0)
               for r in res["subsets"].values())


def test_processbench_bad_rows_name_the_line(shared_data, tmp_path):
    items = processbench_items(load_processbench(shared_data))
    good = json.dumps({"id": items[0].id, "step_scores": [0.5] * len(items[0].steps)})
    short = json.dumps({"id": items[1].id, "step_scores": [0.5]})
    path = tmp_path / "bad.jsonl"
    path.write_text(f"{good}\n{short}\n")
    with pytest.raises(ScoresFileError, match=rf"^{path}:2: id '{items[1].id}' has 1 step scores, expected {len(items[1].steps)}"):
        run_rm_eval("processbench", tmp_path / "out", scores=path, data_root=shared_data)
    path.write_text(f'{good}\n{{"id": "gsm8k-99999", "step_scores": [1]}}\n')
    with pytest.raises(ScoresFileError, match=rf"^{path}:2: unknown id 'gsm8k-99999'"):
        run_rm_eval("processbench", tmp_path / "out", scores=path, data_root=shared_data)


def test_prmbench_oracle_and_all_correct(shared_data, tmp_path):
    raw = [json.loads(line) for f in sorted((shared_data / "prmbench").glob("*.jsonl")) for line in f.open()]
    # the paper's statistics: 6,216 problems and 83,456 step labels
    assert (len(raw), sum(len(r["modified_process"]) for r in raw)) == (6216, 83456)
    samples = load_prmbench(shared_data)
    path = write_scores(tmp_path / "oracle.jsonl", prmbench_oracle_scores(samples))
    res = run_rm_eval("prmbench", tmp_path / "oracle", scores=path, data_root=shared_data)
    assert res["overall"]["prm_score"] == 1.0 and all(c["prm_score"] == 1.0 for c in res["classes"].values())
    # every step called correct: F1- is 0, so PRM-Score = 0.5 * 2TP / (2TP + FP), counted from the raw files
    write_scores(path, {s["id"]: StepScores([1.0] * len(s["steps"])) for s in samples})
    res = run_rm_eval("prmbench", tmp_path / "ones", scores=path, data_root=shared_data)
    unique = {(r["classification"], r["idx"]): r for r in reversed(raw)}.values()
    fp = sum(sum(1 for e in set(r["error_steps"]) if 1 <= e <= len(r["modified_process"])) for r in unique)
    tp = sum(len(r["modified_process"]) for r in unique) - fp
    assert res["overall"]["prm_score"] == pytest.approx(0.5 * 2 * tp / (2 * tp + fp), **TOL)


def test_probes_and_rewardmath_sample_run_end_to_end(shared_data, tmp_path):
    class Half:
        def score(self, problems, solutions):
            return [StepScores([0.5 + 0.01 * len(p.prompt) % 0.4] * len(s)) for p, s in zip(problems, solutions)]

    res = run_rm_eval("probes", tmp_path / "probes", scorer=Half(), data_root=shared_data)
    assert [r["perturbation"] for r in res["perturbations"]][0] == "question_removed"
    assert res["n_solutions"] == 894 and (tmp_path / "probes/results.md").exists()
    with pytest.raises(ValueError, match="need a model"):
        run_rm_eval("probes", tmp_path / "p2", data_root=shared_data)
    items, _ = sample_items(shared_data)  # 2 problems x 10 solutions; ids 0-9 and 3990-3999, correct ones end in 0
    oracle = {it.id: StepScores([1.0 if int(it.id) % 10 == 0 else 0.5] * len(it.steps)) for it in items}
    path = write_scores(tmp_path / "rm.jsonl", oracle)
    res = run_rm_eval("rewardmath", tmp_path / "rm", scores=path, data_root=shared_data)
    assert res["sample"]["outcome"]["accuracy"] == 0.0  # outcome 0 for all -> ties -> the correct one ranks last
    assert res["sample"]["prod"] == {"accuracy": 1.0, "mrr": 1.0, "accuracy_ties_as_wins": 1.0, "n": 2}


class _LengthScorer:
    """Step score = step length / 100: perturbations that change the text change its scores."""

    def score(self, problems, solutions):
        return [StepScores([len(s) / 100 for s in steps], 0.0) for steps in solutions]


def test_cli_rm_eval_runs_a_saved_scorer_and_limits_items(shared_data, tmp_path, monkeypatch, capsys):
    from rewardflow.recipes.cli import main
    from rewardflow.rewards import SCORER_KINDS

    monkeypatch.setitem(SCORER_KINDS, "test-length", lambda path: _LengthScorer())
    (tmp_path / "rm").mkdir()
    (tmp_path / "rm" / "scorer.json").write_text('{"kind": "test-length"}')
    code = main(["rm", "eval", "--bench", "probes", "--model", str(tmp_path / "rm"), "--limit", "3", "--data-root", str(shared_data),
                 "--out", str(tmp_path / "p")])
    assert code == 0
    res = json.loads((tmp_path / "p" / "results.json").read_text())
    # 3 pairs -> 6 solutions; every perturbation gets a row, each over at most those 6 solutions
    assert res["n_solutions"] == 6
    assert [r["perturbation"] for r in res["perturbations"]] == ["question_removed", "numbers_changed", "steps_shuffled",
                                                                 "first_step_truncated", "last_step_truncated"]
    assert all(r["n"] <= 6 for r in res["perturbations"])
    truncated = next(r for r in res["perturbations"] if r["perturbation"] == "last_step_truncated")
    assert truncated["mean_abs_change"] > 0  # min step length moves when a step goes
    # the math-prm pairs have no gold answers, so the verifier is refused rather than scoring everything 0
    assert main(["rm", "eval", "--bench", "probes", "--model", "verifier", "--limit", "3", "--data-root", str(shared_data),
                 "--out", str(tmp_path / "v")]) == 2
    assert "no gold answers" in capsys.readouterr().err


def test_cli_rm_eval_rejects_conflicting_sources_and_misplaced_limit(shared_data, tmp_path, capsys):
    from rewardflow.recipes.cli import main

    root = ["--data-root", str(shared_data), "--out", str(tmp_path)]
    assert main(["rm", "eval", "--bench", "probes", "--model", "verifier", "--scores", "x.jsonl", *root]) == 2
    assert "at most one" in capsys.readouterr().err
    assert main(["rm", "eval", "--bench", "rewardmath", "--limit", "3", *root]) == 2
    assert "limit applies to processbench and probes" in capsys.readouterr().err
    assert main(["rm", "eval", "--bench", "probes", "--model", "no/such/dir", *root]) == 2
    assert "scorer.json" in capsys.readouterr().err


def test_processbench_limit_keeps_evenly_spaced_items_of_both_kinds(shared_data, tmp_path):
    seen = []

    def critic(prompt: str) -> str:
        seen.append(prompt)
        return "-1"

    res = run_rm_eval("processbench", tmp_path, critic=critic, data_root=shared_data, limit=10)
    assert len(seen) == 40 and res["n_items"] == 40  # 4 subsets x 10
    for subset in res["subsets"].values():  # the files list erroneous solutions first: the first 10 would all be
        assert subset["n_erroneous"] > 0 and subset["n_correct"] > 0
