"""Tiny, fast end-to-end smoke of `rewardflow bolt` and `rewardflow autocei` (seconds each, a 1-layer 32-wide model):
the verbs run all their stages and write what they promise. The measured comparisons are in docs/bolt_autocei.md."""
import json

import pytest

from rewardflow.recipes.cli import main

TINY = ["model.hidden_size=32", "model.layers=1", "model.heads=2", "model.intermediate_size=64", "data.eval_size=6"]


@pytest.fixture(autouse=True)
def _threads(one_thread):
    yield


def test_bolt_end_to_end(tmp_path):
    out = tmp_path / "bolt"
    rc = main(["bolt", "--out", str(out), "--quiet", *TINY, "bolt.prompts=12", "sft.steps=3", "sft.batch_size=4", "trainer.steps=2",
               "rollout.prompts_per_step=2", "rollout.group_size=2", "rollout.max_new_tokens=24", "eval.n_samples=2", "eval.ks=[1,2]",
               "eval.max_new_tokens=24"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    b = res["bootstrap"]
    # the synthetic traces are all correct and well formed, so every one is kept; about half backtrack (p = 0.5)
    assert b["completions"] == 12 and b["kept"] == 12 and b["kept_frac"] == 1.0 and b["kept_mean_thought_lines"] >= 3
    assert 0 < b["kept_backtracks_share"] < 1 and 0 < b["kept_reflects_share"] <= 1
    rows = [json.loads(x) for x in (out / "bootstrap.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and all(r["completion"].startswith("<thought>") for r in rows)
    assert set(res["arms"]) == {"short_sft", "short_rl", "bolt_sft", "bolt_rl"}
    for m in res["arms"].values():
        assert 0 <= m["greedy/accuracy"] <= 1 and m["sampled/mean_tokens"] > 0 and m["n_problems"] == 6
    for arm in ("short", "bolt"):
        assert (out / arm / "sft" / "DONE").exists() and any((out / arm / "rl").rglob("model.safetensors"))


def test_bolt_bad_examples_file_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "ex.jsonl"
    bad.write_text('{"question": "1 + 1"}\n')
    rc = main(["bolt", "--out", str(tmp_path / "b"), "--quiet", "--model", str(tmp_path / "nomodel"), f"bolt.examples={bad}", *TINY])
    assert rc == 2
    assert "ex.jsonl:1" in capsys.readouterr().err


def test_autocei_end_to_end(tmp_path):
    out = tmp_path / "acei"
    rc = main(["autocei", "--out", str(out), "--quiet", *TINY, "sft.steps=3", "autocei.iterations=2", "autocei.prompts_per_iter=4",
               "autocei.samples=2", "autocei.sft_steps=2", "autocei.init_prompts=8", "autocei.init_steps=2", "autocei.val_size=4",
               "autocei.batch_size=4", "autocei.max_new_tokens=24"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert list(res["methods"]) == ["base", "ei", "rtuning", "autocei"]
    assert len(res["methods"]["base"]["iterations"]) == 1  # the base policy is only evaluated
    for name in ("ei", "rtuning", "autocei"):
        m = res["methods"][name]
        assert [r["iteration"] for r in m["iterations"]] == [0, 1, 2] and 0 <= m["best_iteration"] <= 2
        t = m["test"]
        assert t["n"] == 6 and 0 <= t["precision"] <= 1 and abs(t["f"] - (0.8 * t["precision"] + 0.2 * (1 - t["refusal_rate"]))) < 1e-12
    cur = res["methods"]["autocei"]["curriculum"]
    assert cur["c2"] > 0 and cur["step"] <= 0.5 and cur["direction"] in (1, -1)
    assert (out / "base" / "DONE").exists()
