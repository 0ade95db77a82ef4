"""search/ on a real (untrained) tiny HFPolicy: the plumbing of compute counts and self-certainty; the CLI."""
from __future__ import annotations

import argparse
import dataclasses
import json

import pytest
import torch

from rewardflow.data.problem import Problem
from rewardflow.policy.base import SamplingParams
from rewardflow.rewards.base import StepScores
from rewardflow.search import NEEDS_DRAFT, STRATEGIES, SearchConfig, self_certainty_from_logprobs, token_distributions
from rewardflow.recipes.search_cli import register, register_bench

PROBLEMS = [Problem("p0", "What is 2 + 3?", "5", "t"), Problem("p1", "Compute 4 - 1", "3", "t")]


@pytest.fixture(scope="module")
def policy(one_thread, noisy_policy):
    return noisy_policy()  # conftest.py: varied text with newlines and <eos>


class LengthScorer:
    """Scores by length (no num_params attribute: 0 FLOPs); step k's score = 1 / (1 + len(step k))."""

    def score(self, problems, solutions):
        return [StepScores([1 / (1 + len(s)) for s in steps], 1 / (1 + len("".join(steps)))) for steps in solutions]


def test_majority_and_beam_on_hf_policy(policy):
    cfg = SearchConfig(n=2, beam_width=2, max_steps=2, max_step_tokens=6, max_new_tokens=10, seed=3)
    results = STRATEGIES["majority"](PROBLEMS, policy, None, cfg)
    prompt_len = [len(ids) for ids in policy.encode_prompts([p.prompt for p in PROBLEMS])]
    for r, plen in zip(results, prompt_len):
        c = r.compute["policy"]
        assert len(r.candidates) == 2
        assert c.tokens_prefill == plen + 1  # the prompt is read once; the second sample feeds only its last token
        assert 2 <= c.tokens_generated <= 2 * 10
        assert c.flops_decode == 2 * policy.num_params * c.tokens_generated
        assert c.flops_prefill == 2 * policy.num_params * c.tokens_prefill
    # the same seed reproduces the same samples, with or without the prefix cache; without it the prompt is read once
    # in full (its two samples share it) and no token is fed twice
    again = STRATEGIES["majority"](PROBLEMS, policy, None, cfg)
    assert [[c.steps for c in r.candidates] for r in again] == [[c.steps for c in r.candidates] for r in results]
    uncached = STRATEGIES["majority"](PROBLEMS, policy, None, dataclasses.replace(cfg, prefix_cache=False))
    assert [[c.steps for c in r.candidates] for r in uncached] == [[c.steps for c in r.candidates] for r in results]
    assert [r.compute["policy"].tokens_prefill for r in uncached] == prompt_len

    results = STRATEGIES["beam"](PROBLEMS, policy, LengthScorer(), cfg)
    for r in results:
        assert 2 <= len(r.candidates) <= 4 and all(len(c.steps) <= 2 for c in r.candidates)
        assert r.chosen is not None and r.text == r.candidates[r.chosen].text()
        s = r.compute["scorer"]
        assert s.tokens_scored > 0 and s.flops == 0.0  # a scorer without num_params costs no FLOPs
        # at most 2 steps of at most 6 tokens for each of N=2 then keep*M=2 rows
        assert 0 < r.compute["policy"].tokens_generated <= 4 * 6
    # step-wise search re-reads prompt + steps so far at every expansion unless the prefix cache keeps them
    uncached = STRATEGIES["beam"](PROBLEMS, policy, LengthScorer(), dataclasses.replace(cfg, prefix_cache=False))
    assert [[c.steps for c in r.candidates] for r in uncached] == [[c.steps for c in r.candidates] for r in results]
    for r, u in zip(results, uncached):
        assert r.compute["policy"].tokens_generated == u.compute["policy"].tokens_generated
        assert r.compute["policy"].tokens_prefill < u.compute["policy"].tokens_prefill


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_runs_on_the_tiny_policy(policy, name):
    """Each registered strategy (one added later included) runs once on a real HFPolicy: a result per problem, in
    order, with the policy's compute booked. (tests/test_search.py checks the choices on a scripted fake.)"""
    cfg = SearchConfig(n=2, beam_width=2, max_steps=2, max_step_tokens=4, max_new_tokens=8, seed=0)
    draft = policy if name in NEEDS_DRAFT else None  # the policy drafting for itself: the plumbing is the same
    results = STRATEGIES[name](PROBLEMS, policy, LengthScorer(), cfg, draft=draft)
    assert [r.problem_id for r in results] == [p.id for p in PROBLEMS]
    for r in results:
        assert r.candidates and r.total().tokens_generated > 0 and r.total().flops > 0 and r.total().seconds >= 0


def test_token_distributions_match_an_unpadded_forward(policy):
    groups = policy.generate([p.prompt for p in PROBLEMS], SamplingParams(n=1, max_new_tokens=6, seed=1))
    comps = [g[0] for g in groups]
    [(rows, logp, mask)] = list(token_distributions(policy, [p.prompt for p in PROBLEMS], comps))
    sc = self_certainty_from_logprobs(logp, mask)
    for r, comp in enumerate(comps):
        prompt_ids = policy.encode_prompts([PROBLEMS[r].prompt])[0]
        ids = torch.tensor([prompt_ids + comp.token_ids])
        with torch.no_grad():
            logits = policy.model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1]  # [T, V] predicts each completion token
        lp = logits.log_softmax(-1)
        expected = (-torch.log(torch.tensor(float(lp.shape[-1]))) - lp.mean(-1)).mean()
        assert sc[r].item() == pytest.approx(expected.item(), abs=1e-5)
        # the teacher-forced logprobs of the sampled tokens match what the sampler reported (temperature 1)
        assert logp[r, : len(comp.token_ids)].gather(-1, torch.tensor(comp.token_ids)[:, None]).squeeze(-1) == \
            pytest.approx(comp.logprobs, abs=1e-4)


def _parser():
    p = argparse.ArgumentParser(prog="rewardflow")
    sub = p.add_subparsers(dest="verb", required=True)
    register(sub)
    bench = sub.add_parser("bench").add_subparsers(dest="bench_verb", required=True)
    register_bench(bench)
    return p


def test_help_pages_render():
    p = _parser()
    text = p._subparsers._group_actions[0].choices["search"].format_help()
    assert "--strategy" in text and "ORACLE" in text and "example" in text and "its 95%" in text and "%%" not in text
    bench = p._subparsers._group_actions[0].choices["bench"]
    assert "--max-n" in bench._subparsers._group_actions[0].choices["search"].format_help()


def test_search_cli_writes_results(tiny_ckpt, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps({"question": p.prompt, "answer": p.answer}) for p in PROBLEMS) + "\n")
    out = tmp_path / "out"
    args = _parser().parse_args(["search", "--strategy", "best_of_n", "--policy", str(tiny_ckpt), "--scorer", "verifier", "--n", "2",
                                 "--max-new-tokens", "6", "--data", str(data), "--out", str(out), "--quiet", "--set", "puct_c=2"])
    assert args.func(args) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["oracle"] is True and "ORACLE" in res["scorer"] and res["config"]["puct_c"] == 2.0
    assert res["n_problems"] == 2 and 0.0 <= res["accuracy_ci95"][0] <= res["accuracy"] <= res["accuracy_ci95"][1] <= 1.0
    assert set(res["compute"]) == {"policy", "scorer"} and res["compute"]["scorer"]["flops"] == 0.0
    assert res["total"]["flops"] == pytest.approx(res["compute"]["policy"]["flops"])
    assert (out / "compute.png").stat().st_size > 0


def test_search_cli_errors(tiny_ckpt, tmp_path):
    p = _parser()
    args = p.parse_args(["search", "--strategy", "speculative", "--policy", str(tiny_ckpt), "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="--draft"):
        args.func(args)
    args = p.parse_args(["search", "--strategy", "nope", "--policy", str(tiny_ckpt), "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="unknown search strategy"):
        args.func(args)
    args = p.parse_args(["search", "--strategy", "beam", "--policy", str(tiny_ckpt), "--out", str(tmp_path), "--set", "bogus=1"])
    with pytest.raises(ValueError, match="bogus"):
        args.func(args)
    args = p.parse_args(["search", "--strategy", "beam", "--policy", str(tiny_ckpt), "--out", str(tmp_path), "--set", "prefix_cache=maybe"])
    with pytest.raises(ValueError, match="true or false"):
        args.func(args)


def test_set_reads_booleans_as_words():
    from rewardflow.recipes.search_cli import _parse_sets

    assert _parse_sets(["prefix_cache=false", "puct_c=2"]) == {"prefix_cache": False, "puct_c": 2.0}
    assert _parse_sets(["prefix_cache=True"]) == {"prefix_cache": True}


def _bench_module():
    from rewardflow.recipes.bench import search

    return search


def test_bench_helpers():
    bench = _bench_module()
    p = Problem("c", "State the final answer to the following arithmetic problem: 0 - 4 - 8 =", "-12", "chain_sum",
                {"expression": "0 - 4 - 8"})
    right = ["0 - 4 = -4", "-4 - 8 = -12", "Answer: -12"]
    wrong = ["0 - 4 = -4", "-4 - 8 = -11", "Answer: -11"]
    [a, b, c] = bench.ChainStepOracle().score([p] * 3, [right, wrong, right[:1]])
    assert (a.steps, a.outcome) == ([1.0, 1.0, 1.0], 1.0)
    assert (b.steps, b.outcome) == ([1.0, 0.0, 0.0], 0.0)  # once wrong, every later step is wrong
    assert (c.steps, c.outcome) == ([1.0], 0.0)  # a correct but unfinished prefix
    # log-linear interpolation: at 1e3 between (1e2, 0.2) and (1e4, 0.6): halfway in log -> 0.4
    pts = [{"flops_per_problem": 1e2, "accuracy": 0.2}, {"flops_per_problem": 1e4, "accuracy": 0.6}]
    assert bench.interpolate_log(pts, 1e3) == pytest.approx(0.4, abs=1e-12)
    assert bench.interpolate_log(pts, 1e5) is None
    curves = {"beam": [{"n": 2, "flops_per_problem": 1e3, "accuracy": 0.5, "accuracy_ci95": [0.4, 0.6]}], "best_of_n": pts}
    [row] = bench.beam_vs_best_of_n(curves)
    assert row["difference"] == pytest.approx(0.1, abs=1e-12)
