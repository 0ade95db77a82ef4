"""OREO offline loop: policy and value train in the right direction on fixed trajectories; the saved value model
loads back as a Scorer with one score per step."""
import dataclasses
import math

import pytest
import torch

from rewardflow.recipes.config_loader import load_config
from rewardflow.data import Problem
from rewardflow.policy.hf import HFPolicy
from rewardflow.policy.tiny import TinyModelConfig, make_tiny_checkpoint
from rewardflow.rewards import load_scorer
from rewardflow.train.offline import save_value, train_oreo
from rewardflow.train.preference import sequence_logps


@pytest.fixture(scope="module")
def init(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), TinyModelConfig(hidden_size=32, layers=2, heads=2, intermediate_size=64))


def _trajs(policy):
    good, bad = "3 + 4 = 7\nAnswer: 7", "Answer: 2"
    ids = policy.completion_ids([good, bad])
    return [{"prompt": "3 + 4 =", "text": good, "token_ids": ids[0], "reward": 1.0},
            {"prompt": "3 + 4 =", "text": bad, "token_ids": ids[1], "reward": 0.0}] * 2


def test_oreo_policy_moves_towards_success_and_value_loads_as_a_scorer(init, tmp_path):
    """Soft Bellman consistency: the successful trajectory's log-likelihood rises relative to the failed one's (a flipped
    sign lowers it)."""
    policy, ref = HFPolicy.from_pretrained(init), HFPolicy.from_pretrained(init)
    trajs = _trajs(policy)
    oc = load_config(overrides=["offline.epochs=8", "offline.batch_size=4", "offline.lr=3e-3", "offline.beta=0.1"]).offline

    def margin():
        lp, _ = sequence_logps(policy, ["3 + 4 ="] * 2, [trajs[0]["text"], trajs[1]["text"]], grad=False)
        return (lp[0] - lp[1]).item()

    before = margin()
    value, history = train_oreo(policy, ref, trajs, oc)
    assert len(history) == 8 and all(math.isfinite(h["loss/policy"]) and math.isfinite(h["loss/value"]) for h in history)
    assert margin() > before + 1.0
    scorer_dir = save_value(value, policy.tokenizer, tmp_path / "value", beta=oc.beta)
    scores = load_scorer(str(scorer_dir)).score([Problem("0", "3 + 4 =", "7", "t")], [["3 + 4 = 7", "Answer: 7"]])
    assert len(scores[0].steps) == 2 and scores[0].outcome == scores[0].steps[-1] and all(math.isfinite(s) for s in scores[0].steps)


def test_oreo_value_fits_the_soft_return(init):
    """With the policy frozen (lr 0, so pi = pi_ref and every log-ratio is 0) the value target is the reward R itself:
    V(s_0), the prompt state both trajectories share, moves from 0 towards their mean 0.5 (a wrong sign in the
    target would drive it negative)."""
    policy, ref = HFPolicy.from_pretrained(init), HFPolicy.from_pretrained(init)
    trajs = _trajs(policy)
    oc = load_config(overrides=["offline.epochs=8", "offline.batch_size=4", "offline.value_lr=3e-2"]).offline
    oc = dataclasses.replace(oc, lr=0.0)  # the config refuses lr 0 (it trains nothing); here that is the point
    value, _ = train_oreo(policy, ref, trajs, oc)
    batch = policy.token_batch(policy.encode_prompts(["3 + 4 ="] * 2), [t["token_ids"] for t in trajs[:2]])
    with torch.no_grad():
        v = value.values(batch)  # [2, T]
    assert 0.3 < v[0, 0].item() < 0.75 and v[0, 0].item() == pytest.approx(v[1, 0].item())


def test_oreo_kl_term_is_the_exact_kl_over_the_vocabulary(init, tmp_path):
    """kl_alpha > 0 adds alpha * (mean over trajectories of the token-mean of sum_v pi(v) log(pi(v) / pi_ref(v))),
    the OREO recipe's regulariser: a sampled k3 estimate on the taken token would give another number."""
    from rewardflow.algos import kl_estimate
    from rewardflow.policy.forward import forward
    from rewardflow.train.offline import oreo_step
    from rewardflow.train.ppo import Critic

    policy = HFPolicy.from_pretrained(init)
    ref = HFPolicy.from_pretrained(make_tiny_checkpoint(tmp_path / "ref", TinyModelConfig(hidden_size=32, layers=2, heads=2,
                                                                                           intermediate_size=64, seed=1)))
    trajs = _trajs(policy)[:2]
    value = Critic(policy.model, mode="model")
    with_kl = load_config(overrides=["offline.kl_alpha=2.0"]).offline
    without = load_config(overrides=["offline.kl_alpha=0"]).offline
    p_kl, _, _ = oreo_step(policy, ref, value, trajs, with_kl, normalizer=2)
    p_0, _, _ = oreo_step(policy, ref, value, trajs, without, normalizer=2)
    batch = policy.token_batch(policy.encode_prompts([t["prompt"] for t in trajs]), [t["token_ids"] for t in trajs])
    mask = batch.completion_mask  # [2, T]
    with torch.no_grad():
        logits, ref_logits = forward(policy.model, batch, logits=True).logits, forward(ref.model, batch, logits=True).logits
        logp, ref_logp = logits.log_softmax(-1), ref_logits.log_softmax(-1)  # [2, T, V]
        kl = (logp.exp() * (logp - ref_logp)).sum(-1) * mask  # [2, T]
        expected = ((kl.sum(-1) / mask.sum(-1)).sum() / 2).item()  # seq-mean-token-mean over the 2 trajectories
        k3 = kl_estimate(logp.gather(-1, batch.completion_ids[..., None]).squeeze(-1),
                         ref_logp.gather(-1, batch.completion_ids[..., None]).squeeze(-1), "k3")
        k3_mean = (((k3 * mask).sum(-1) / mask.sum(-1)).sum() / 2).item()
    assert expected > 0 and abs(k3_mean - expected) > 1e-3  # the test tells the two apart
    assert (p_kl - p_0).item() / 2.0 == pytest.approx(expected, rel=1e-4)


def test_oreo_micro_batches_add_up_to_the_whole_batch(init):
    oc = load_config(overrides=["offline.epochs=2", "offline.batch_size=4", "offline.lr=3e-3", "offline.beta=0.1"]).offline
    whole, micro = HFPolicy.from_pretrained(init), HFPolicy.from_pretrained(init)
    ref = HFPolicy.from_pretrained(init)
    _, a = train_oreo(whole, ref, _trajs(whole), oc, seed=0)
    _, b = train_oreo(micro, ref, _trajs(micro), oc, seed=0, micro_batch_size=3)
    assert [h["loss/policy"] for h in b] == pytest.approx([h["loss/policy"] for h in a], abs=1e-5)
    assert {"train/grad_norm", "value/grad_norm"} <= set(a[0]) and "grad_norm" not in a[0]
    for p, q in zip(whole.model.parameters(), micro.model.parameters()):
        assert torch.allclose(p, q, atol=1e-5)
