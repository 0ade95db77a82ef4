"""rewards/models.py readout="logprob": the reward model reads its backbone's own LM head. Untrained, its logit at a
step is the lowest log-probability the LM gave any solution token so far (checked against a plain transformers
forward); it saves as a causal-LM checkpoint and loads back with the same scores; training moves the LM itself."""
import json

import pytest
import torch

from rewardflow.data.problem import Problem
from rewardflow.rewards.models import RewardModel
from rewardflow.train.rm import RMTrainConfig, train_reward_model

PROMPTS = ["Compute: 3 + 4 + 12 =", "Compute: 1 + 1 ="]
SOLUTIONS = [["3 + 4 = 7", "7 + 12 = 19", "Answer: 19"], ["Answer: 2"]]


def test_untrained_logit_is_the_lowest_token_logprob_so_far(noisy_policy, tmp_path):
    from transformers import AutoModelForCausalLM

    noisy_policy().model.save_pretrained(tmp_path / "lm")  # large random weights: token probabilities far from uniform
    noisy_policy().tokenizer.save_pretrained(tmp_path / "lm")
    rm = RewardModel.new(tmp_path / "lm", "prm", readout="logprob")
    lm = AutoModelForCausalLM.from_pretrained(tmp_path / "lm", dtype=torch.float32).eval()
    enc = rm.encode(PROMPTS, SOLUTIONS)
    with torch.no_grad():
        outcome, steps = rm(enc)  # [2], [2, 3]
    for i in range(2):
        n = int(enc.attention_mask[i].sum())
        ids = enc.input_ids[i, :n]
        with torch.no_grad():
            logp = torch.log_softmax(lm(input_ids=ids[None]).logits[0], -1)  # [n, V]
        tok_lp = [logp[t - 1, ids[t]].item() for t in range(1, n)]  # log p(token t | tokens < t), t = 1..n-1
        first = int(enc.first[i])
        prefix_text = rm.tokenizer.decode(ids[:first])
        assert prefix_text.rstrip().endswith("<|assistant|>") or "Compute" in prefix_text  # the prompt part is not read
        for k, pos in enumerate(enc.step_pos[i].tolist()):
            if pos < 0:
                continue
            want = min(tok_lp[t - 1] for t in range(first, pos + 1))
            assert steps[i, k].item() == pytest.approx(want, abs=1e-4)
        assert outcome[i].item() == pytest.approx(min(tok_lp[first - 1 :]), abs=1e-4)
    assert (steps[0, 1:] <= steps[0, :-1] + 1e-6).all()  # a running minimum: never rises along the solution


def test_save_load_round_trip_and_plain_transformers(tiny_ckpt, tmp_path):
    from transformers import AutoModelForCausalLM

    rm = RewardModel.new(tiny_ckpt, "prm", readout="logprob")
    with torch.no_grad():
        rm.calibration.copy_(torch.tensor([2.5, 0.7]))
    problems = [Problem(f"p{i}", p, None, "") for i, p in enumerate(PROMPTS)]
    before = rm.score(problems, SOLUTIONS)
    rm.save(tmp_path / "prm")
    meta = json.loads((tmp_path / "prm" / "scorer.json").read_text())
    assert meta["readout"] == "logprob" and meta["scale"] == pytest.approx(2.5) and meta["bias"] == pytest.approx(0.7)
    AutoModelForCausalLM.from_pretrained(tmp_path / "prm")  # plain transformers reads the LM
    again = RewardModel.load(tmp_path / "prm").score(problems, SOLUTIONS)
    flat = lambda scores: [x for s in scores for x in s.steps]
    assert flat(again) == pytest.approx(flat(before), rel=1e-5) and len(flat(before)) == 4


def test_training_moves_the_language_model_and_the_calibration(tiny_ckpt, tmp_path):
    rows = [{"id": f"r{i}", "prompt": PROMPTS[0], "steps": SOLUTIONS[0], "labels": [1.0, float(i % 2), 0.0], "correct": False}
            for i in range(16)]
    rm, hist = train_reward_model(tiny_ckpt, rows, tmp_path / "prm", RMTrainConfig(kind="prm", epochs=1, lr=1e-2, val_frac=0.0, readout="logprob"))
    fresh = RewardModel.new(tiny_ckpt, "prm", readout="logprob")
    assert not torch.equal(rm.calibration.detach(), fresh.calibration.detach())
    moved = [n for (n, a), b in zip(rm.lm.named_parameters(), fresh.lm.parameters()) if not torch.equal(a.detach(), b)]
    assert any("embed" in n for n in moved) and any("layers" in n for n in moved)  # the LM head (tied) and the body
    orm, _ = train_reward_model(tiny_ckpt, rows, tmp_path / "orm", RMTrainConfig(kind="orm", epochs=1, val_frac=0.0, readout="logprob"))
    assert orm.readout == "logprob" and RewardModel.load(tmp_path / "orm").kind == "orm"


def test_unknown_readout_is_refused(tiny_ckpt):
    with pytest.raises(ValueError, match="readout"):
        RewardModel.new(tiny_ckpt, "prm", readout="mean")
