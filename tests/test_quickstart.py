"""A reduced quickstart through the real CLI: every stage runs and writes what the README promises."""
import json

from rewardflow.recipes.cli import main


def test_reduced_quickstart_end_to_end(tmp_path):
    out = tmp_path / "qs"
    overrides = ["sft.steps=30", "sft.batch_size=16", "trainer.steps=4", "trainer.eval_every=2", "trainer.eval_problems=8",
                 "rollout.prompts_per_step=4", "rollout.group_size=4", "rollout.max_new_tokens=24", "eval.max_new_tokens=24",
                 "data.eval_size=16", "model.hidden_size=32", "model.layers=2", "model.heads=2", "model.intermediate_size=64"]
    assert main(["quickstart", "--out", str(out), "--quiet", *overrides, "logging.trackers=[tensorboard]"]) == 0
    results = json.loads((out / "results.json").read_text())
    for phase in ("sft", "rl"):
        for key in ("pass@1", "pass@8", "maj@8", "greedy"):
            assert 0.0 <= results[phase][key] <= 1.0
        assert results[phase]["n_problems"] == 16
    assert results["model"]["params"] > 0 and results["wall_seconds"] > 0 and results["task"] == "chain_sum"
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    rl_steps = [r["step"] for r in rows if r["phase"] == "rl" and "reward/mean" in r]
    assert rl_steps == [1, 2, 3, 4]
    assert {"reward/mean", "reward/zero_var_frac", "rollout/entropy", "loss/clip_frac", "rollout/len", "perf/gen_tok_per_s"} <= set(rows[-1])
    assert [r["step"] for r in rows if "eval/pass@1" in r] == [0, 2, 4]
    for name in ("rl_curves.png", "pass_at_k.png", "report.html"):
        assert (out / name).stat().st_size > 1000
    # the periodic evals' completions reach samples.jsonl, and the whole run (SFT rows too) reaches TensorBoard
    samples = [json.loads(l) for l in (out / "samples.jsonl").read_text().splitlines()]
    assert {r["step"] for r in samples if r["phase"] == "eval"} == {2, 4}
    assert all(r["completion"] is not None and isinstance(r["correct"], bool) for r in samples)
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    # a finished run resumed is a no-op for training and rewrites the same report
    assert main(["quickstart", "--out", str(out), "--quiet", "--resume", *overrides]) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["sft"] == results["sft"]


def test_cli_rejects_unknown_field_by_name(tmp_path, capsys):
    assert main(["quickstart", "--out", str(tmp_path), "--quiet", "algo.nmae=grpo"]) == 2
    assert "algo.nmae" in capsys.readouterr().err


def test_every_help_page_renders(capsys):
    """Walks the parser tree, so every verb a room registers (search, bench *, rm *, preference, ...) is covered."""
    import argparse

    import pytest

    from rewardflow.recipes.cli import build_parser

    def verbs(parser, prefix):
        yield prefix
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    yield from verbs(child, prefix + [name])

    pages = list(verbs(build_parser(), []))
    names = {" ".join(v) for v in pages}
    assert {"quickstart", "train", "eval", "search", "preference", "oreo", "rm eval", "rm label", "bench search", "bench trl",
            "bench sampler", "bench algos", "bench rm"} <= names
    for argv in pages:
        with pytest.raises(SystemExit) as exit_info:
            main(argv + ["--help"])
        assert exit_info.value.code == 0
        assert "usage: rewardflow" in capsys.readouterr().out
