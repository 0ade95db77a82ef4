"""policy/prefix_cache.py and the sampler's cached path: same samples as the uncached sampler, only the tokens it
did not have computed, reuse across calls (prompt + steps so far, as step-wise search calls), invalidation on
any weight change, and the store's own lookup / eviction rules."""
import pytest
import torch

from rewardflow.policy.base import SamplingParams
from rewardflow.policy.prefix_cache import PrefixCache

PROMPTS = ["What is 2+3?", "x", "hello world", "Compute 4 - 1 - 7"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

@pytest.fixture(scope="module", params=[True, False], ids=["fast-decode", "hf-forward"])
def pair(request, noisy_policy):
    """(uncached, cached) policies with the same random weights (large, so the text varies and ends at different steps)."""
    plain, cached = (noisy_policy(fast_decode=request.param) for _ in range(2))
    cached.enable_prefix_cache()
    return plain, cached


def _same(a, b):
    assert [c.token_ids for c in a] == [c.token_ids for c in b]
    assert [c.finish_reason for c in a] == [c.finish_reason for c in b]
    for x, y in zip(a, b):
        assert torch.allclose(x.logprobs, y.logprobs, atol=1e-5)


def _lcp(a: list[int], b: list[int]) -> int:
    return next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def test_same_samples_and_each_prompt_read_once(pair):
    plain, cached = pair
    cached.enable_prefix_cache()  # empty
    params = SamplingParams(n=3, temperature=1.0, max_new_tokens=10, seed=7)
    a = [c for g in plain.generate(PROMPTS, params) for c in g]
    b = [c for g in cached.generate(PROMPTS, params) for c in g]
    _same(a, b)
    lengths = [len(ids) for ids in plain.encode_prompts(PROMPTS)]
    # without the cache a prompt is read once too, in full, and its other samples share its keys and logits
    assert [c.prompt_tokens - c.cached_tokens for c in a] == [x for n in lengths for x in (n, 0, 0)]
    # with it, each prompt is read once and its other samples feed only its last token (whose logits start the sample)
    assert [c.prompt_tokens - c.cached_tokens for c in b] == [x for n in lengths for x in (n, 1, 1)]
    # a later call reuses what the cache holds: the same prompts cost one token a row, a new prompt reads from
    # where it leaves the longest cached prompt (the chat template's opening and "What is 2+" here)
    new = "What is 2+4?"
    c = [x for g in cached.generate(PROMPTS + [new], SamplingParams(n=2, temperature=1.0, max_new_tokens=10, seed=8)) for x in g]
    _same(c, [x for g in plain.generate(PROMPTS + [new], SamplingParams(n=2, temperature=1.0, max_new_tokens=10, seed=8)) for x in g])
    ids = plain.encode_prompts(PROMPTS + [new])
    shared = max(_lcp(ids[-1], other) for other in ids[:-1])
    assert shared > 5, "precondition: the new prompt shares a prefix with a cached one"
    assert [x.prompt_tokens - x.cached_tokens for x in c] == [1] * 8 + [len(ids[-1]) - shared, 1]


def test_next_step_reads_only_what_is_new(pair):
    plain, cached = pair
    cached.enable_prefix_cache()
    step = SamplingParams(temperature=0.0, max_new_tokens=6)
    (first,) = cached.generate([PROMPTS[0]], step)[0]
    prefix = cached.tokenizer.decode(first.token_ids, skip_special_tokens=True)
    assume = cached.encode_prompts([PROMPTS[0]], [prefix])[0]
    assert assume == cached.encode_prompts([PROMPTS[0]])[0] + first.token_ids, "precondition: the text re-encodes to the same ids"
    (second,) = cached.generate([PROMPTS[0]], step, prefixes=[prefix])[0]
    (expect,) = plain.generate([PROMPTS[0]], step, prefixes=[prefix])[0]
    _same([second], [expect])
    # the first call stored prompt + its tokens but the last (whose keys it never computed); that last token is
    # exactly the one every row feeds to start sampling, so the whole prefix was reused
    assert second.prompt_tokens == len(assume)
    assert second.prompt_tokens - second.cached_tokens == 1


def test_weight_change_empties_the_cache(pair):
    plain, cached = pair
    cached.enable_prefix_cache()
    params = SamplingParams(n=2, temperature=1.0, max_new_tokens=8, seed=3)
    cached.generate(PROMPTS, params)
    assert cached.prefix_cache.tokens > 0
    with torch.no_grad():  # an in-place update, as an optimiser step makes
        for p, q in zip(plain.model.parameters(), cached.model.parameters()):
            p.mul_(0.9)
            q.mul_(0.9)
    a = [c for g in plain.generate(PROMPTS, params) for c in g]
    b = [c for g in cached.generate(PROMPTS, params) for c in g]
    _same(a, b)
    assert b[0].cached_tokens == 0


def test_store_lookup_and_eviction():
    K = torch.arange(2 * 3 * 5 * 4, dtype=torch.float).view(2, 3, 5, 4)  # [layers, H, T, Dh]
    store = PrefixCache(max_tokens=8)
    store.store([1, 2, 3, 4, 5], K, -K)
    c, k, v = store.lookup([1, 2, 3, 9])
    assert c == 3 and torch.equal(k, K[:, :, :3]) and torch.equal(v, -K[:, :, :3])
    assert store.lookup([7, 1, 2])[0] == 0
    assert store.lookup([1, 2, 3, 4, 5, 6])[0] == 5
    store.store([1, 2, 8], K[:, :, :3], K[:, :, :3])  # 8 tokens held: at the cap
    assert store.lookup([1, 2, 8, 0])[0] == 3 and store.tokens == 8
    store.store([6, 6], K[:, :, :2], K[:, :, :2])  # over the cap: the least recently used entry ([1..5]) goes
    assert store.tokens == 5
    assert store.lookup([1, 2, 3, 4])[0] == 2  # only what [1, 2, 8] still holds
    assert store.lookup([6, 6])[0] == 2
