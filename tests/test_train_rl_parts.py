"""The parts the RL loop wires together: split-batch aggregation, PPO returns, KL folded into the reward, the
dense per-step hook and step boundaries, DAPO dynamic sampling with refill and overlong shaping, and the
unknown-name error."""
import pytest
import torch

from rewardflow.algos import overlong_penalty
from rewardflow.recipes.config_loader import ConfigError, load_config
from rewardflow.data import Problem
from rewardflow.policy.base import Completion, SamplingParams
from rewardflow.policy.hf import HFPolicy
from rewardflow.policy.tiny import TinyModelConfig, make_tiny_checkpoint
from rewardflow.train.algorithms import prepare
from rewardflow.policy.forward import forward, step_token_ends
from rewardflow.train.ppo import make_critic
from rewardflow.train.rollout import EXTRA_OFFSET, Rollout, collect_batch

TINY = dict(hidden_size=32, layers=2, heads=2, intermediate_size=64)


@pytest.fixture(scope="module")
def policies(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    policy = HFPolicy.from_pretrained(make_tiny_checkpoint(root / "a", TinyModelConfig(**TINY)))
    ref = HFPolicy.from_pretrained(make_tiny_checkpoint(root / "b", TinyModelConfig(**TINY, seed=1)))  # a different reference
    return policy, ref


def _rollout(policy, rewards):
    B, G = rewards.shape
    prompts = ["1 + 2 =", "7 - 3 ="][:B]
    groups = policy.generate(prompts, SamplingParams(n=G, max_new_tokens=8, seed=0))
    probs = [Problem(str(i), p, None, "t") for i, p in enumerate(prompts) for _ in range(G)]
    return Rollout(probs, [ids for ids in policy.encode_prompts(prompts) for _ in range(G)], [c for g in groups for c in g],
                   rewards.clone(), [["1"] * G for _ in range(B)], correct=rewards.clone())


REWARDS = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, 0.0]])  # [B, G]


@pytest.mark.parametrize("overrides", [
    ["algo.agg=token-mean"], ["algo.agg=seq-mean-token-mean"], ["algo.name=dr_grpo", "algo.agg=seq-mean-token-sum"],
    ["algo.name=ppo"], ["algo.name=rover"], ["algo.name=raft"], ["algo.name=reinforce_rej", "algo.agg=seq-mean-token-mean"],
    ["algo.loss=gspo", "algo.agg=seq-mean-token-mean"], ["algo.d3s.mode=both", "algo.d3s.start=0.5"],
])
def test_two_ranks_add_up_to_the_whole_batch(policies, overrides):
    """Each half computed with the whole batch's normaliser (as 2 data-parallel ranks would) sums to the loss of the
    whole batch: a per-half normaliser would give each half's mean, and their sum would be about twice as large."""
    policy, ref = policies
    cfg = load_config(overrides=overrides + ["rollout.group_size=4", "rollout.max_new_tokens=8"])
    critic = make_critic(policy, cfg) if cfg.algo.name == "ppo" else None
    if critic is not None:
        torch.nn.init.normal_(critic.head.weight, std=0.1)  # non-zero values, so the value loss is non-trivial
    p, algo = prepare(policy, ref, _rollout(policy, REWARDS), cfg, critic=critic)
    ctx = {"policy": policy, "critic": critic}
    # On-policy (ratio 1) a group-centred surrogate sums to ~0; move the old logprobs so the loss has a value.
    p.old_logp = p.old_logp + 0.1 * torch.randn(p.old_logp.shape, generator=torch.Generator().manual_seed(0))

    def loss(mb):
        fw = forward(policy.model, p.batch.select(mb), cfg.rollout.temperature, logits=algo.logits, hidden=critic is not None)
        return algo.loss(fw, p, mb, cfg, ctx)[0]

    rows = torch.arange(len(p.mask))
    whole = loss(rows)
    halves = loss(rows[:4]) + loss(rows[4:])
    assert whole.abs() > 1e-4
    torch.testing.assert_close(halves, whole, rtol=1e-5, atol=1e-6)


def test_ppo_returns_are_gae_of_the_outcome(policies):
    """Fresh critic (V = 0 everywhere), gamma = 1, lambda = 0.9: delta_t = r_t, so A_t = sum_k 0.9^k r_{t+k} = 0.9^(last-t) R
    and R_t = A_t + V_t = 0.9^(last-t) R: a row with outcome 1 and 3 tokens gets returns [0.81, 0.9, 1]."""
    policy, _ = policies
    cfg = load_config(overrides=["algo.name=ppo", "algo.ppo.lam=0.9", "rollout.group_size=4"])
    p, _ = prepare(policy, None, _rollout(policy, REWARDS), cfg, critic=make_critic(policy, cfg))
    R = REWARDS.reshape(-1)
    for n in range(len(R)):
        L = int(p.mask[n].sum())
        expected = torch.tensor([0.9 ** (L - 1 - t) for t in range(L)]) * R[n]
        torch.testing.assert_close(p.extra["returns"][n, :L], expected, rtol=1e-6, atol=1e-7)
        assert torch.all(p.extra["returns"][n, L:] == 0)
    assert abs(p.adv[p.mask.bool()].mean().item()) < 1e-5  # whitened


def test_kl_folded_into_the_reward(policies):
    """kl_mode=reward: A_t = A - beta * sum_{i >= t} KL_i with KL_i = k1 = log pi_old - log pi_ref (REINFORCE++ shaping);
    dr_grpo's A = r - group mean, e.g. row 0: 1 - 0.5 = 0.5."""
    policy, ref = policies
    cfg = load_config(overrides=["algo.name=dr_grpo", "algo.kl_coef=0.5", "algo.kl_mode=reward", "algo.kl_estimator=k1", "rollout.group_size=4"])
    p, _ = prepare(policy, ref, _rollout(policy, REWARDS), cfg)
    A = (REWARDS - REWARDS.mean(1, keepdim=True)).reshape(-1)
    kl = (p.old_logp - p.ref_logp) * p.mask
    for n in range(len(A)):
        L = int(p.mask[n].sum())
        expected = torch.tensor([A[n] - 0.5 * kl[n, t:L].sum() for t in range(L)])
        torch.testing.assert_close(p.adv[n, :L], expected, rtol=1e-5, atol=1e-6)
    assert kl.abs().sum() > 0.1  # the two models differ, so the check is not trivially 0 = 0


def test_step_boundaries_and_the_dense_hook(policies):
    """Three lines -> three steps; with all-equal outcomes (group advantage 0) and dense_mode=step, every token of
    step s carries dense_coef * r_s: [0.5*0.2, 0.5*(-1), 0.5*0.6]."""
    policy, _ = policies
    text = "1 + 2 = 3\n3 + 4 = 7\nAnswer: 7"
    ids = policy.completion_ids([text])[0]
    ends = step_token_ends(policy.tokenizer, ids, text)
    assert len(ends) == 3 and ends[-1] == len(ids)
    assert policy.tokenizer.decode(ids[: ends[0]]).strip() == "1 + 2 = 3"
    assert policy.tokenizer.decode(ids[: ends[1]]).strip() == "1 + 2 = 3\n3 + 4 = 7"
    comp = Completion(text, ids, torch.zeros(len(ids)), "eos")
    G = 2
    ro = Rollout([Problem("0", "1 + 2 + 4 =", "7", "t")] * G, policy.encode_prompts(["1 + 2 + 4 ="]) * G, [comp] * G,
                 torch.ones(1, G), [["7"] * G], correct=torch.ones(1, G), step_rewards=[torch.tensor([0.2, -1.0, 0.6])] * G)
    cfg = load_config(overrides=["algo.name=dr_grpo", "algo.dense.coef=0.5", "algo.dense.mode=step", f"rollout.group_size={G}"])
    p, _ = prepare(policy, None, ro, cfg)
    starts = [0] + ends[:-1]
    for s, (a, b) in enumerate(zip(starts, ends)):
        torch.testing.assert_close(p.adv[0, a:b], torch.full((b - a,), 0.5 * [0.2, -1.0, 0.6][s]))


class _Alternating:
    """Prompts whose index is divisible by 3 get alternating verdicts (mixed group); the rest are all wrong."""

    def __init__(self):
        self.calls = {}

    def score_texts(self, problems, texts):
        out = []
        for p in problems:
            k = self.calls[p.id] = self.calls.get(p.id, -1) + 1
            ok = int(p.id) % 3 == 0 and k % 2 == 0
            out.append(type("V", (), {"correct": ok, "pred": None})())
        return out


class _Source:
    def train_problems(self, indices):
        return [Problem(str(i), f"{i % 7} + 1 =", "0", "t") for i in indices]


@pytest.mark.parametrize("max_rounds, kept, drawn", [(0, 2, 4), (1, 3, 8), (3, 4, 12)])
def test_dynamic_sampling_refills_up_to_the_cap(policies, max_rounds, kept, drawn):
    """Step 1, B = 4: prompts 0..3 keep 0 and 3 (2 groups). Extra round 1 draws EXTRA_OFFSET + 0..3, whose residues
    mod 3 are 2, 0, 1, 2: one more. Round 2 (EXTRA_OFFSET + 4..7: 0, 1, 2, 0) has 2 but room for 1."""
    policy, _ = policies
    assert EXTRA_OFFSET % 3 == 2
    cfg = load_config(overrides=["algo.dapo.dynamic_sampling=true", f"algo.dapo.max_rounds={max_rounds}", "rollout.prompts_per_step=4",
                                 "rollout.group_size=4", "rollout.max_new_tokens=6", "algo.dapo.overlong_cache=2"])
    ro, sampled, _, info = collect_batch(policy, _Alternating(), _Source(), cfg, step=1)
    assert info["rollout/kept_groups"] == kept and info["rollout/prompts_drawn"] == drawn
    assert ro.rewards.shape == (kept, 4) and len(ro.completions) == kept * 4 and len(sampled.completions) == drawn * 4
    assert torch.all(ro.correct.max(1).values != ro.correct.min(1).values)  # no all-equal group is kept
    assert all(int(p.id) % 3 == 0 for p in ro.problems)
    lengths = torch.tensor([len(c.token_ids) for c in ro.completions])
    shaped = ro.correct.reshape(-1) + overlong_penalty(lengths, max_len=6, cache_len=2)
    torch.testing.assert_close(ro.rewards.reshape(-1), shaped)  # DAPO eq. 13 added to the verdicts


def test_unknown_algorithm_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="algo.name='nope'.*grpo.*ppo.*raft.*rover"):
        load_config(overrides=["algo.name=nope"])
    with pytest.raises(ConfigError, match="preference.loss='xpo'.*cdpo.*dpo.*ipo.*rpo.*simpo"):
        load_config(overrides=["preference.loss=xpo"])
    with pytest.raises(ConfigError, match="algo.ppo.critic"):
        load_config(overrides=["algo.name=ppo", "algo.ppo.critic=tree"])
