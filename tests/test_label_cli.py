"""`rm label` through a throwaway parser: a tiny untrained checkpoint labels its own samples, then resumes."""
import argparse
import json

import pytest

from rewardflow.recipes.label_cli import register_bench, register_rm


def _parser():
    p = argparse.ArgumentParser(prog="rewardflow")
    sub = p.add_subparsers(dest="verb", required=True)
    rm_sub = sub.add_parser("rm").add_subparsers(dest="rm_verb", required=True)
    register_rm(rm_sub)
    register_bench(sub.add_parser("bench").add_subparsers(dest="bench_verb", required=True))
    return p


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """Not conftest's tiny_ckpt: this tokenizer is trained on a chain_sum-like corpus, so the 12 tokens each sample
    gets are whole words and newlines rather than 12 characters, and the samples have steps to label."""
    from rewardflow.policy.tiny import TinyModelConfig, make_tiny_checkpoint

    corpus = ["What is 1 + 2 + 3?", "1 + 2 = 3\n3 + 3 = 6\nAnswer: 6"]
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), TinyModelConfig(32, 2, 2, 64, 256, 0), corpus)


def test_help_pages_teach(capsys):
    for argv in (["rm", "label", "--help"], ["bench", "rm", "--help"]):
        with pytest.raises(SystemExit) as e:
            _parser().parse_args(argv)
        assert e.value.code == 0
        text = capsys.readouterr().out
        assert "example" in text and "--out" in text
    with pytest.raises(SystemExit):
        _parser().parse_args(["rm", "label", "--policy", "x", "--out", "y", "--method", "nope"])


def test_rm_label_writes_rows_and_resumes(tmp_path, tiny_checkpoint):
    out = tmp_path / "labels.jsonl"
    argv = ["rm", "label", "--policy", str(tiny_checkpoint), "--data", "chain_sum", "--problems", "3", "--samples", "2",
            "--rollouts", "2", "--max-new-tokens", "12", "--method", "mc-hard", "--chunk", "2", "--out", str(out), "--quiet"]
    args = _parser().parse_args(argv)
    assert args.func(args) == 0
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    assert rows and len({r["id"] for r in rows}) == len(rows) <= 6
    for r in rows:
        assert r["id"].startswith("chain_sum/train/") and r["label_kind"] == "mc-hard" and r["rollouts"] == 2
        assert len(r["labels"]) == len(r["steps"]) == len(r["mc"]) >= 1
        assert set(r["labels"]) <= {0.0, 1.0}
        # the last step is the whole solution: its label is the verdict on it
        assert r["labels"][-1] == float(r["correct"])
        assert r["rollouts_used"] == 2 * (len(r["steps"]) - 1)
    before = out.read_text()
    args = _parser().parse_args(argv)  # the same command again: everything is already there
    assert args.func(args) == 0
    assert out.read_text() == before


def test_bad_task_kwargs_is_a_clear_error(tmp_path, tiny_checkpoint):
    args = _parser().parse_args(["rm", "label", "--policy", str(tiny_checkpoint), "--task-kwargs", "{min_terms: 3",
                                 "--out", str(tmp_path / "x.jsonl"), "--quiet"])
    with pytest.raises(ValueError, match="--task-kwargs"):
        args.func(args)
