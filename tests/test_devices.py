"""Devices and dtypes on every verb: the --device/--dtype flags of the inference verbs, policies and scorers
placed there, the training verbs' fp32 master weights under autocast, and a bad device as a clear error.
Runs on the CPU everywhere and also on CUDA where there is one."""
import json

import pytest
import torch

from rewardflow.recipes.cli import build_parser, main
from rewardflow.recipes.devices import load_policy, place_scorer

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
INFERENCE_VERBS = [["eval", "--model", "M"], ["search", "--strategy", "best_of_n", "--policy", "M", "--out", "O"],
                   ["rm", "label", "--policy", "M", "--out", "O"], ["rm", "score", "--model", "M", "--input", "I", "--out", "O"]]


@pytest.mark.parametrize("argv", INFERENCE_VERBS, ids=lambda a: " ".join(a[:2]))
def test_inference_verbs_take_device_and_dtype(argv):
    args = build_parser().parse_args(argv + ["--device", "cuda:1", "--dtype", "bfloat16"])
    assert (args.device, args.dtype) == ("cuda:1", "bfloat16")
    defaults = build_parser().parse_args(argv)
    assert (defaults.device, defaults.dtype) == ("cpu", "float32")


def test_bad_device_is_a_clear_error(tiny_ckpt, capsys):
    assert main(["eval", "--model", str(tiny_ckpt), "--device", "banana", "--limit", "1", "--n", "1", "--quiet"]) == 2
    assert "--device 'banana' is not a torch device" in capsys.readouterr().err


@pytest.mark.parametrize("device", DEVICES)
def test_eval_runs_in_bf16_on_the_device(tiny_ckpt, tmp_path, device):
    argv = ["eval", "--model", str(tiny_ckpt), "--limit", "2", "--n", "2", "--max-new-tokens", "4", "--quiet",
            "--device", device, "--dtype", "bfloat16", "--out", str(tmp_path)]
    assert main(argv) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert (res["n_problems"], res["n_samples"]) == (2, 2) and 0 <= res["pass@1"] <= 1


@pytest.mark.parametrize("device", DEVICES)
def test_load_policy_places_weights(tiny_ckpt, device):
    class Args:
        pass

    args = Args()
    args.device, args.dtype = device, "bfloat16"
    policy = load_policy(tiny_ckpt, args)
    p = next(policy.model.parameters())
    assert p.dtype == torch.bfloat16 and p.device.type == device and policy.device == device


@pytest.mark.parametrize("device", DEVICES)
def test_reward_model_scores_on_its_device(tiny_ckpt, device):
    from rewardflow.data.problem import Problem
    from rewardflow.rewards.models import RewardModel

    rm = RewardModel.new(tiny_ckpt, "prm")
    problems = [Problem(id="a", prompt="1+1?", answer="2", task="t", meta={})]
    before = rm.score(problems, [["1+1", "=2"]])[0]
    place_scorer(rm, device, "float32")
    assert next(rm.parameters()).device.type == device
    after = rm.score(problems, [["1+1", "=2"]])[0]  # encode() builds CPU tensors; forward moves them to the model
    assert len(after.steps) == 2
    torch.testing.assert_close(torch.tensor(after.steps), torch.tensor(before.steps), atol=1e-4, rtol=0)
    place_scorer(rm, device, "bfloat16")
    assert next(rm.parameters()).dtype == torch.bfloat16
    assert 0 < rm.score(problems, [["1+1", "=2"]])[0].outcome < 1


def test_place_scorer_moves_policies_inside_scorers_and_ensembles(tiny_ckpt):
    from rewardflow.policy.hf import HFPolicy
    from rewardflow.rewards.verifier import VerifierScorer

    class Judge:  # the shape of JudgeScorer / ImplicitPRM: HFPolicy attributes
        def __init__(self):
            self.policy = HFPolicy.from_pretrained(tiny_ckpt)
            self.head = torch.nn.Linear(2, 1)

    class Ensemble:
        def __init__(self, members):
            self.scorers = members

    judge = Judge()
    place_scorer(Ensemble([judge]), "cpu", "bfloat16")
    assert next(judge.policy.model.parameters()).dtype == torch.bfloat16
    assert judge.head.weight.dtype == torch.bfloat16 and judge.policy.device == "cpu"
    verifier = VerifierScorer()
    try:
        assert place_scorer(verifier, "cpu") is verifier  # nothing to move
    finally:
        verifier.verifier.close()
    with pytest.raises(ValueError, match="not a torch device"):
        place_scorer(judge, "banana")


def test_training_verbs_keep_fp32_master_weights_with_bf16_autocast(tiny_ckpt):
    from rewardflow.recipes.config_loader import load_config
    from rewardflow.recipes.pipeline import load_rl_models

    cfg = load_config(overrides=["model.dtype=bfloat16", "algo.kl_coef=0.1", "model.device=cpu"])
    policy, ref, autocast = load_rl_models(cfg, tiny_ckpt, "cpu")
    assert all(p.dtype == torch.float32 for p in policy.model.parameters())
    assert all(p.dtype == torch.float32 for p in ref.model.parameters())  # no LoRA: the reference is a second copy
    with autocast:
        out = policy.model.model.layers[0].mlp.down_proj(torch.ones(1, policy.model.config.intermediate_size))
    assert out.dtype == torch.bfloat16
