"""recipes/bench_cli.py: `rewardflow bench ...` parsers, and a tiny end-to-end run of the sampler benchmark and the peak."""
import argparse
import json

import pytest

from rewardflow.recipes.bench.sampler import load_policy
from rewardflow.recipes.bench_cli import register_bench


@pytest.fixture
def parser():
    ap = argparse.ArgumentParser(prog="rewardflow")
    bench = ap.add_subparsers(dest="verb").add_parser("bench").add_subparsers(dest="bench")
    register_bench(bench)
    return ap


def test_parsers_and_defaults(parser):
    a = parser.parse_args(["bench", "trl", "--out", "x"])
    assert (a.out, a.sizes, a.reps, a.steps, a.threads) == ("x", "1m,20m", 3, 0, 1)
    a = parser.parse_args(["bench", "sampler"])
    assert (a.out, a.batches, a.reps, a.max_new_tokens) == ("runs/bench_sampler.json", "1,16,64,256", 3, 48)
    assert callable(a.func)


def test_help_teaches_with_an_example(parser, capsys):
    for verb in ("trl", "sampler", "mfu"):
        with pytest.raises(SystemExit):
            parser.parse_args(["bench", verb, "--help"])
        assert "example: rewardflow bench " + verb in capsys.readouterr().out


def test_sampler_benchmark_writes_throughput_with_mfu(parser, tmp_path, one_thread):
    out = tmp_path / "s.json"
    a = parser.parse_args(["bench", "sampler", "--out", str(out), "--batches", "2", "--reps", "1", "--max-new-tokens", "3",
                              "--peak-sizes", "64,128"])
    assert a.func(a) == 0
    res = json.loads(out.read_text())
    assert res["peak"]["peak_gflops"] > 0 and res["model_params"] > 0
    assert [(r["batch"], r["mode"]) for r in res["rows"]] == [(2, "greedy"), (2, "sampled")]
    for r in res["rows"]:
        for k in ("ours", "ours_hf_forward", "hf_generate"):
            # MFU = tokens/s * 2P / peak
            assert r[f"{k}_mfu"] == pytest.approx(r[f"{k}_tok_per_s"] * 2 * res["model_params"] / (res["peak"]["peak_gflops"] * 1e9), rel=1e-9)
    assert res["profile_ours_sampled"]["top_ops"], "the profile names what dominates"
    (pre,) = res["prefill"]  # batch 2: prompts of 17 and 42 tokens, padded to 42 in one forward
    # one group: cutting the 17-token prompt off would save 25 padded positions, less than a call costs (64)
    assert (pre["batch"], pre["prompt_tokens"], pre["padded_tokens"], pre["groups"]) == (2, 17 + 42, 2 * 42, 1)
    assert pre["one_forward_s"] > 0 and pre["grouped_s"] > 0
    (step,) = res["decode_step"]  # one decode step alone, eager and compiled, at the one batch size
    assert (step["batch"], step["columns"]) == (2, 128) and step["eager_ms"] > 0 and step["compiled_ms"] > 0
    assert step["speedup"] == pytest.approx(step["eager_ms"] / step["compiled_ms"])


def test_sampler_benchmark_reads_prompts_from_a_problem_file(parser, tmp_path, one_thread):
    data = tmp_path / "q.jsonl"
    questions = ["What is 1 + 1?", "Add 3 and 4, then explain every step of it to me slowly, please."]
    data.write_text("".join(json.dumps({"question": q, "answer": "2"}) + "\n" for q in questions))
    out = tmp_path / "s.json"
    a = parser.parse_args(["bench", "sampler", "--out", str(out), "--batches", "3", "--reps", "1", "--max-new-tokens", "2", "--modes", "greedy",
                           "--contestants", "ours,hf_generate", "--peak-sizes", "64", "--no-profile", "--no-decode-step", "--prompts", str(data)])
    assert a.func(a) == 0
    res = json.loads(out.read_text())
    (pre,) = res["prefill"]
    assert res["prompts"] == str(data) and pre["batch"] == 3 and res["decode_step"] == []
    short, long = map(len, load_policy("tiny").encode_prompts(questions))
    assert pre["prompt_tokens"] == 2 * short + long and pre["padded_tokens"] == 3 * long  # the file's two prompts, cycled to 3 rows


def test_decode_step_timing_without_a_working_compile_times_the_eager_step(monkeypatch, one_thread):
    from rewardflow.policy import decode
    from rewardflow.recipes.bench.sampler import time_decode_step

    def broken():
        def step(*args):
            raise RuntimeError("InvalidCxxCompiler")
        return step

    monkeypatch.setattr(decode, "_compiled_layers", broken)
    t = time_decode_step(load_policy("tiny"), 2, 1)
    assert t["eager_ms"] > 0 and t["compiled_ms"] is None and t["speedup"] is None
