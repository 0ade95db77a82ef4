"""Preference loops: pairs JSONL validation, best-vs-worst pairing, every PREFERENCE_LOSSES entry training on a tiny
model in the right direction, online iterative DPO with and without reference refresh, the CLI verbs."""
import argparse
import json

import pytest
import torch

from rewardflow.algos import PREFERENCE_LOSSES
from rewardflow.recipes.config_loader import load_config
from rewardflow.data import DataError, GymSource, Problem
from rewardflow.policy.hf import HFPolicy
from rewardflow.policy.tiny import TinyModelConfig, make_tiny_checkpoint
from rewardflow.rewards import StepScores
from rewardflow.recipes.train_cli import register, register_bench
from rewardflow.train.preference import Pair, best_worst_pairs, load_pairs, online_iterative_dpo, sequence_logps, train_pairs


@pytest.fixture(scope="module")
def init(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), TinyModelConfig(hidden_size=32, layers=2, heads=2, intermediate_size=64))


def test_load_pairs_names_file_and_line(tmp_path):
    good = {"prompt": "1 + 2 =", "chosen": "Answer: 3", "rejected": "Answer: 4"}
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(good) + "\n")
    assert load_pairs(path) == [Pair("1 + 2 =", "Answer: 3", "Answer: 4")] * 2
    for bad, what in [({"prompt": "p", "chosen": "c"}, "rejected"), ({"prompt": "p", "chosen": "", "rejected": "r"}, "non-empty"), ([1, 2], "object")]:
        path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
        with pytest.raises(DataError, match=f"pairs.jsonl:2: .*{what}"):
            load_pairs(path)
    path.write_text(json.dumps(good) + "\n{oops\n")
    with pytest.raises(DataError, match="pairs.jsonl:2"):
        load_pairs(path)


def test_best_worst_pairs_skip_ties():
    probs = [Problem(str(i), f"q{i}", "1", "t") for i in range(3)]
    texts = [["a", "b", "c"], ["d", "e", "f"], ["g", "h", "i"]]
    rewards = torch.tensor([[0.0, 1.0, 0.5], [1.0, 1.0, 1.0], [0.2, 0.1, 0.9]])  # row 1 is a tie: no pair
    assert best_worst_pairs(probs, texts, rewards) == [Pair("q0", "b", "a"), Pair("q2", "i", "h")]


PAIRS = [Pair("1 + 2 =", "1 + 2 = 3\nAnswer: 3", "Answer: 5"), Pair("4 + 4 =", "4 + 4 = 8\nAnswer: 8", "Answer: 1"),
         Pair("2 + 5 =", "2 + 5 = 7\nAnswer: 7", "Answer: 2"), Pair("9 - 3 =", "9 - 3 = 6\nAnswer: 6", "Answer: 0")]


@pytest.mark.parametrize("loss", sorted(PREFERENCE_LOSSES))
def test_every_preference_loss_widens_the_margin(init, loss):
    """After a few steps, log pi(chosen) - log pi(rejected) grows relative to its start: a flipped sign shrinks it."""
    policy, ref = HFPolicy.from_pretrained(init), HFPolicy.from_pretrained(init)
    pc = load_config(overrides=[f"preference.loss={loss}", "preference.epochs=4", "preference.batch_size=4", "preference.lr=1e-2",
                                f"preference.beta={2.0 if loss == 'simpo' else 0.1}"]).preference

    def margin():
        c, _ = sequence_logps(policy, [p.prompt for p in PAIRS], [p.chosen for p in PAIRS], grad=False)
        r, _ = sequence_logps(policy, [p.prompt for p in PAIRS], [p.rejected for p in PAIRS], grad=False)
        return (c - r).mean().item()

    before = margin()
    history = train_pairs(policy, ref, PAIRS, pc, micro_batch_size=2)
    assert len(history) == 4 and all(torch.isfinite(torch.tensor(h["loss/pref"])) for h in history)
    assert margin() > before + 1.0


class _DigitScorer:
    def score(self, problems, solutions):
        return [StepScores(outcome=float(any(ch.isdigit() for s in steps for ch in s))) for steps in solutions]


@pytest.mark.parametrize("refresh", [True, False])
def test_online_iterative_dpo(init, refresh):
    cfg = load_config(overrides=["preference.iterations=2", "preference.prompts_per_iter=6", "preference.group_size=4",
                                 "preference.batch_size=8", "rollout.max_new_tokens=6", f"preference.refresh_ref={refresh}"])
    policy, ref = HFPolicy.from_pretrained(init), HFPolicy.from_pretrained(init)
    source = GymSource("chain_sum", seed=0, eval_size=4, min_terms=2, max_terms=2, min_digits=1, max_digits=1)
    history = online_iterative_dpo(policy, ref, source, _DigitScorer(), cfg)
    assert [h["iteration"] for h in history] == [1, 2] and sum(h["pref/pairs"] for h in history) > 0
    same = all(torch.equal(a, b) for a, b in zip(policy.model.state_dict().values(), ref.model.state_dict().values()))
    assert same == refresh  # refreshed: the reference is the trained policy; otherwise it stays the start


def _parser():
    p = argparse.ArgumentParser(prog="rewardflow")
    sub = p.add_subparsers(dest="verb", required=True)
    register(sub)
    bench = sub.add_parser("bench").add_subparsers(dest="bench_verb", required=True)
    register_bench(bench)
    return p


def test_help_pages_teach(capsys):
    for argv, words in [(["preference", "--help"], "pairs"), (["oreo", "--help"], "value model"), (["bench", "algos", "--help"], "algos.json")]:
        with pytest.raises(SystemExit) as e:
            _parser().parse_args(argv)
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert words in out and "example" in out


def test_preference_verb_end_to_end(init, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}) + "\n" for p in PAIRS))
    args = _parser().parse_args(["preference", "--out", str(tmp_path / "run"), "--quiet", f"model.path={init}", f"preference.pairs={pairs}",
                                 "preference.loss=ipo", "data.eval_size=4", "eval.n_samples=2", "eval.ks=[1,2]", "eval.max_new_tokens=6"])
    assert args.func(args) == 0
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["mode"] == "offline" and res["loss"] == "ipo" and 0 <= res["after"]["pass@1"] <= 1 and len(res["history"]) == 1
    assert (tmp_path / "run" / "policy" / "config.json").exists()
