"""OREO's value model as a Scorer (rewards/oreo_value.py): saved by train/offline.save_value, loaded by
rewards.load_scorer, one V per step at the right token, clamped to [0, 1] (FLOPs: tests/test_scorer_flops.py); `rewardflow oreo` then
`rewardflow search --scorer OUT/value` end to end; and every scorer kind a command saves loads back."""
import json
import re
from pathlib import Path

import pytest
import torch

from rewardflow.data.problem import Problem
from rewardflow.policy.hf import HFPolicy
from rewardflow.recipes.cli import main
from rewardflow.rewards import SCORER_KINDS, load_scorer
from rewardflow.rewards.implicit import ImplicitPRM
from rewardflow.rewards.models import RewardModel
from rewardflow.rewards.oreo_value import OREOValueScorer
from rewardflow.train.offline import save_value
from rewardflow.train.ppo import Critic

PROBLEMS = [Problem("0", "3 + 4 =", "7", "add"), Problem("1", "1 + 1 =", "2", "add"), Problem("2", "2 + 2 =", "4", "add")]
SOLUTIONS = [["3 + 4 = 7", "Answer: 7"], ["1 + 1 = 3", "3 - 1 = 2", "Answer: 2"], []]

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _value_model(tiny_ckpt, path: Path) -> tuple[Critic, Path]:
    """A separate value model as `rewardflow oreo` trains it (train/offline.train_oreo: Critic mode "model"), with a
    random head so that values differ per token and some fall outside [0, 1]."""
    policy = HFPolicy.from_pretrained(tiny_ckpt)
    value = Critic(policy.model, mode="model")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        value.head.weight.copy_(torch.randn(value.head.weight.shape, generator=gen) * 2.0)
        value.head.bias.fill_(0.5)
    return value, save_value(value, policy.tokenizer, path, beta=0.1)


def test_saved_value_model_scores_each_step_with_v_after_it(tiny_ckpt, tmp_path):
    value, path = _value_model(tiny_ckpt, tmp_path / "value")
    scorer = load_scorer(str(path))
    assert isinstance(scorer, OREOValueScorer) and scorer.beta == 0.1
    scores = scorer.score(PROBLEMS, SOLUTIONS)
    assert [len(s.steps) for s in scores] == [2, 3, 0]

    # by hand for problem 0: the completion is "3 + 4 = 7\nAnswer: 7" + EOS; step 0 ends after the token holding its
    # newline (character 9), the last step at the state before EOS; V(s_t) is the value model's head at the state
    # before token t, clamped to [0, 1]
    pol = HFPolicy.from_pretrained(tiny_ckpt)
    text = "3 + 4 = 7\nAnswer: 7"
    enc = pol.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"] + [pol.eos_id]
    end0 = sum(a < len("3 + 4 = 7") + 1 for a, _ in enc["offset_mapping"])
    batch = pol.token_batch(pol.encode_prompts(["3 + 4 ="]), [ids])
    with torch.no_grad():
        v = value.values(batch)[0]  # [T]
    assert 0 < end0 < len(ids) - 1
    want = [v[end0].clamp(0, 1).item(), v[len(ids) - 1].clamp(0, 1).item()]
    assert scores[0].steps == pytest.approx(want, abs=1e-5)
    assert scores[0].outcome == scores[0].steps[-1]
    raw = v[: len(ids)]
    assert (raw < 0).any() or (raw > 1).any()  # the clamp is exercised, not vacuous
    assert all(0.0 <= x <= 1.0 for s in scores for x in [*s.steps, s.outcome])
    # no steps: the value of the prompt state, before the EOS
    empty = pol.token_batch(pol.encode_prompts(["2 + 2 ="]), [[pol.eos_id]])
    with torch.no_grad():
        assert scores[2].outcome == pytest.approx(value.values(empty)[0, 0].clamp(0, 1).item(), abs=1e-5)


def test_oreo_value_refuses_a_directory_without_its_head(tiny_ckpt, tmp_path):
    _, path = _value_model(tiny_ckpt, tmp_path / "value")
    (path / "head.pt").unlink()
    with pytest.raises(ValueError, match="head.pt"):
        load_scorer(str(path))


def test_every_saved_scorer_kind_loads_back(tiny_ckpt, tmp_path):
    """Each kind a command writes (rm train: orm, prm, implicit_prm; oreo: oreo_value) goes through load_scorer and
    scores; and every kind named anywhere in the source has a loader in the one registry."""
    src = Path(__file__).resolve().parents[1] / "src" / "rewardflow"
    named = set()
    for f in src.rglob("*.py"):
        text = f.read_text(encoding="utf-8")
        named |= set(re.findall(r'"kind":\s*"(\w+)"', text)) | set(re.findall(r'^KIND = "(\w+)"', text, re.M))
    assert {"orm", "implicit_prm", "oreo_value", "pav", "judge", "ensemble"} <= named
    assert named <= set(SCORER_KINDS), named - set(SCORER_KINDS)

    saved = {"orm": RewardModel.new(tiny_ckpt, "orm").save(tmp_path / "orm"), "prm": RewardModel.new(tiny_ckpt, "prm").save(tmp_path / "prm"),
             "implicit_prm": ImplicitPRM.from_pretrained(tiny_ckpt).save(tmp_path / "implicit"),
             "oreo_value": _value_model(tiny_ckpt, tmp_path / "value")[1]}
    for kind, path in saved.items():
        assert json.loads((Path(path) / "scorer.json").read_text())["kind"] == kind
        scores = load_scorer(str(path)).score(PROBLEMS[:2], SOLUTIONS[:2])
        assert len(scores) == 2, kind
        if kind != "orm":  # process scorers give one score per step
            assert [len(s.steps) for s in scores] == [2, 3], kind


def test_oreo_then_search_with_its_value_model(tiny_ckpt, tmp_path):
    """`rewardflow oreo` on a tiny policy writes OUT/value; `rewardflow search --scorer OUT/value` uses it."""
    run = tmp_path / "oreo"
    assert main(["oreo", "--out", str(run), "--quiet", f"model.path={tiny_ckpt}", "offline.prompts=2", "offline.group_size=2",
                 "offline.batch_size=4", "rollout.max_new_tokens=6", "data.eval_size=2", "eval.n_samples=1", "eval.ks=[1]",
                 "eval.max_new_tokens=6"]) == 0
    assert json.loads((run / "value" / "scorer.json").read_text())["kind"] == "oreo_value"
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"question": p.prompt, "answer": p.answer}) + "\n" for p in PROBLEMS[:2]))
    out = tmp_path / "search"
    assert main(["search", "--strategy", "best_of_n", "--policy", str(run / "policy"), "--scorer", str(run / "value"), "--n", "2",
                 "--max-new-tokens", "6", "--data", str(data), "--out", str(out), "--quiet"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["n_problems"] == 2 and res["oracle"] is False and res["scorer"] == str(run / "value")
    assert res["compute"]["scorer"]["flops"] > 0  # the value model's forwards are booked
