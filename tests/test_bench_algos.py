"""train/compare.py: `rewardflow bench algos` on a toy budget: rows per algorithm over seeds, the worker pool gives
the runs one process gives, finished runs are reused on restart and never when the settings changed."""
import json

import pytest

from rewardflow.eval.metrics import Z95
from rewardflow.recipes.bench.algos import paired_delta, run_bench

TOY = ["model.hidden_size=32", "model.layers=1", "model.heads=2", "model.intermediate_size=64", "sft.steps=3", "sft.batch_size=4",
       "trainer.steps=2", "rollout.prompts_per_step=2", "rollout.group_size=2", "rollout.max_new_tokens=8", "eval.max_new_tokens=8"]


def _strip(res: dict) -> dict:
    """What a run measured, without its timings."""
    return {name: {k: row[k] for k in ("pass@1", "pass@2", "maj@2", "distinct_answers", "reward_curves", "tokens_generated")}
            for name, row in res["algos"].items()}


def test_pool_equals_one_process_and_restart_reuses_runs(tmp_path, one_thread):
    kw = dict(algos=["grpo", "rloo"], seeds=[0, 1], overrides=TOY, n_eval=2, eval_size=4, show_progress=False)
    one = run_bench(tmp_path / "a", workers=1, **kw)
    assert list(one["algos"]) == ["grpo", "rloo"]
    row = one["algos"]["grpo"]
    # every seed trains on the bench's problems and is evaluated on the SFT start's: seeds vary sampling only
    saved = [json.loads((tmp_path / "a" / "runs" / f"grpo_s{s}" / "result.json").read_text()) for s in (0, 1)]
    assert [r["eval_set"] for r in saved] == [one["eval"]["set"]] * 2
    assert len(row["pass@1"]["values"]) == 2 and len(row["reward_curves"]) == 2 and all(len(c) == 2 for c in row["reward_curves"])
    assert row["pass@1"]["mean"] == pytest.approx(sum(row["pass@1"]["values"]) / 2)
    # the paired change is the difference of the means (its interval is over problems)
    assert row["delta_pass@1"]["mean"] == pytest.approx(row["pass@1"]["mean"] - one["sft"]["pass@1"], abs=1e-12)
    assert json.loads((tmp_path / "a" / "algos.json").read_text())["algos"].keys() == {"grpo", "rloo"}
    assert (tmp_path / "a" / "algos.png").stat().st_size > 0

    pooled = run_bench(tmp_path / "b", workers=2, **kw)
    assert pooled["workers"] == 2
    assert _strip(pooled) == _strip(one)

    # restart: every run's result.json is reused untouched; changed settings rerun
    saved = {p: p.stat().st_mtime_ns for p in (tmp_path / "a" / "runs").glob("*/result.json")}
    assert len(saved) == 4
    again = run_bench(tmp_path / "a", workers=1, **kw)
    assert _strip(again) == _strip(one)
    assert (one["runs_reused"], again["runs_reused"]) == (0, 4)
    assert {p: p.stat().st_mtime_ns for p in saved} == saved
    run_bench(tmp_path / "a", workers=1, **{**kw, "algos": ["grpo"], "seeds": [0], "n_eval": 1})
    with pytest.raises(ValueError, match="other model/sft/data settings"):  # never a stale SFT start for another model
        run_bench(tmp_path / "a", workers=1, **{**kw, "overrides": TOY + ["model.hidden_size=16"]})
    assert (tmp_path / "a" / "runs" / "grpo_s0" / "result.json").stat().st_mtime_ns != saved[tmp_path / "a" / "runs" / "grpo_s0" / "result.json"]


def test_unknown_algorithm_lists_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="valid: grpo, dr_grpo"):
        run_bench(tmp_path, algos=["grpo", "nope"], seeds=[0], overrides=TOY, show_progress=False)


def test_paired_delta_by_hand():
    base = {"pass@1_per_problem": [0.5, 0.0]}
    # per problem, mean over the two runs: [0.75, 0.25] - [0.5, 0.0] = [0.25, 0.25]: no spread, no width
    same = paired_delta([{"pass@1_per_problem": [1.0, 0.0]}, {"pass@1_per_problem": [0.5, 0.5]}], base)
    assert same["mean"] == pytest.approx(0.25) and same["ci95"] == pytest.approx([0.25, 0.25])
    # d = [0.1 - 0.5, 0.3 - 0.0] = [-0.4, 0.3]: mean -0.05, sd sqrt(0.245) = 0.494975, half z * 0.494975 / sqrt(2) = z * 0.35
    d = paired_delta([{"pass@1_per_problem": [0.1, 0.3]}], base)
    assert d["mean"] == pytest.approx(-0.05) and d["ci95"] == pytest.approx([-0.05 - Z95 * 0.35, -0.05 + Z95 * 0.35])
    assert paired_delta([{"pass@1": 0.3}], base) is None  # runs saved before per-problem values were kept
