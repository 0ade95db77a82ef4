"""policy/prefill.py: prompts prefilled in length groups give what one padded forward gives."""
import itertools
import random

import pytest
import torch

import rewardflow.policy.prefill as prefill
from rewardflow.policy.base import SamplingParams
from rewardflow.policy.prefill import grouped_prefill, left_padded, length_groups

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

# templated encodings of 8 to ~70 tokens: several length groups at the default call cost
PROMPTS = ["x", "What is 2+3?", "Compute 4 - 1 - 7 and then explain every step of it, slowly and carefully.", "a", "hello world",
           "Why? " * 12, "2 + 2 =", "bb"]


@pytest.fixture(scope="module")
def policy(one_thread, noisy_policy):
    return noisy_policy()


def cost(groups, lengths, call_cost):
    return sum(len(g) * max(lengths[r] for r in g) + call_cost for g in groups)


def test_length_groups_by_hand():
    # one group: 3 x 100 + 10 = 310; two: 2 x 5 + 10 + 100 + 10 = 130
    assert length_groups([5, 100, 5], call_cost=10) == [[0, 2], [1]]
    # cutting off the 6s saves 2 x (7 - 6) = 2 tokens of padding, less than a call: one group
    assert length_groups([7, 6, 6], call_cost=10) == [[1, 2, 0]]
    assert length_groups([4, 4, 4], call_cost=0) == [[0, 1, 2]]  # equal lengths never split


def test_length_groups_are_the_cheapest_cut_of_the_sorted_rows():
    rng = random.Random(0)
    for _ in range(200):
        lengths = [rng.randint(1, 40) for _ in range(rng.randint(1, 7))]
        call_cost = rng.choice([0, 3, 20, 200])
        groups = length_groups(lengths, call_cost)
        assert sorted(r for g in groups for r in g) == list(range(len(lengths)))  # every row once
        order = sorted(range(len(lengths)), key=lengths.__getitem__)
        best = min(cost([order[a:b] for a, b in zip((0,) + cuts, cuts + (len(order),))], lengths, call_cost)
                   for k in range(len(order)) for cuts in itertools.combinations(range(1, len(order)), k))
        assert cost(groups, lengths, call_cost) == best


@torch.no_grad()
def test_grouped_prefill_equals_one_padded_forward(policy):
    from transformers import DynamicCache

    input_ids, attn, pos = left_padded(policy.encode_prompts(PROMPTS), policy.pad_id)
    assert len(length_groups(attn.sum(1).tolist())) >= 2, "precondition: several groups"
    cache = DynamicCache()
    want = policy.model(input_ids=input_ids, attention_mask=attn, position_ids=pos, use_cache=True, logits_to_keep=1, **{policy._cache_kw: cache}).logits[:, -1]
    logits, got = grouped_prefill(policy.model, input_ids, attn, pos, policy._cache_kw)
    torch.testing.assert_close(logits, want, atol=1e-5, rtol=0)
    real = attn.bool()[:, None, :, None]  # [U, 1, P, 1]: the columns a later token attends to
    lengths, P = attn.sum(1).tolist(), attn.shape[1]
    outside = torch.zeros_like(real)  # [U, 1, P, 1]: left of the longest prompt in the row's group: never computed
    for g in length_groups(lengths):
        outside[g, :, : P - max(lengths[r] for r in g)] = True
    assert outside.any(), "precondition: a group narrower than the batch"
    for mine, theirs in zip(got.layers, cache.layers):
        for a, b in ((mine.keys, theirs.keys), (mine.values, theirs.values)):
            assert a.shape == b.shape
            torch.testing.assert_close(a * real, b * real, atol=1e-5, rtol=0)
            assert not (a * outside).any()  # padding columns nobody computed stay zero


@pytest.mark.parametrize("params", [SamplingParams(temperature=0.0, max_new_tokens=16),
                                    SamplingParams(n=3, temperature=1.0, top_k=20, max_new_tokens=16, seed=5)])
def test_generate_samples_the_same_with_grouped_and_single_prefill(policy, monkeypatch, params):
    calls = []
    forward = policy.model.forward
    monkeypatch.setattr(policy.model, "forward", lambda *a, **kw: calls.append(kw["input_ids"].shape) or forward(*a, **kw))
    grouped = [c for g in policy.generate(PROMPTS, params) for c in g]
    assert len([s for s in calls if s[1] > 1]) >= 2, "precondition: the prefill ran in several groups"
    monkeypatch.setattr(prefill, "CALL_COST_TOKENS", 1 << 40)  # one group: the padded forward of before
    calls.clear()
    single = [c for g in policy.generate(PROMPTS, params) for c in g]
    assert len([s for s in calls if s[1] > 1]) == 1
    for a, b in zip(grouped, single):
        assert (a.token_ids, a.text, a.finish_reason, a.cached_tokens) == (b.token_ids, b.text, b.finish_reason, b.cached_tokens)
        torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-5, rtol=0)
    assert len({tuple(c.token_ids) for c in grouped}) > len(PROMPTS) // 2, "precondition: samples differ"
