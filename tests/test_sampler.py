"""policy/hf.py: the batched KV-cache sampler against teacher forcing, cache-free greedy decoding and hand-made logits."""
from contextlib import contextmanager

import pytest
import torch

from rewardflow.policy.base import Completion, SamplingParams
from rewardflow.policy.hf import HFPolicy, _filter_logits, derive_prompt_seeds, row_keys
from rewardflow.policy.prefill import length_groups

# Four prompts whose templated encodings all have different lengths (left padding is exercised).
PROMPTS = ["What is 2+3?", "x", "hello world", "Compute 4 - 1 - 7"]
GREEDY = SamplingParams(temperature=0.0, max_new_tokens=12)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

@pytest.fixture(scope="module")
def policy(one_thread, noisy_policy) -> HFPolicy:
    return noisy_policy()  # conftest.py: large random weights, so greedy, stop and early-finish tests are not vacuous


@contextmanager
def logit_override(policy: HFPolicy, token_id: int, value: float):
    """Set one token's logit to `value` on every forward (to force or forbid <eos>)."""

    def hook(module, args, output):
        output = output.clone()
        output[..., token_id] = value
        return output

    handle = policy.model.lm_head.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def forward_batch_sizes(policy: HFPolicy):
    sizes: list[int] = []
    handle = policy.model.register_forward_pre_hook(lambda m, a, kw: sizes.append(kw["input_ids"].shape[0]), with_kwargs=True)
    try:
        yield sizes
    finally:
        handle.remove()


def prefill_forwards(policy: HFPolicy, prompts: list[str]) -> int:
    """How many forwards the prefill of these prompts takes: one per length group of the distinct prompts."""
    return len(length_groups([len(ids) for ids in {tuple(x): 0 for x in policy.encode_prompts(prompts)}]))


def flat(groups: list[list[Completion]]) -> list[Completion]:
    return [c for g in groups for c in g]


def greedy_by_hand(policy: HFPolicy, prompt_ids: list[int], max_new: int) -> list[int]:
    """Argmax decoding with a full forward pass over the whole sequence at every step: no cache, no padding."""
    out: list[int] = []
    for _ in range(max_new):
        with torch.no_grad():
            logits = policy.model(input_ids=torch.tensor([prompt_ids + out])).logits[0, -1]  # [V]
        out.append(int(logits.argmax()))
        if out[-1] == policy.eos_id:
            break
    return out


def test_prompts_have_distinct_lengths(policy):
    lengths = [len(ids) for ids in policy.encode_prompts(PROMPTS)]
    assert len(set(lengths)) == len(PROMPTS), lengths


# ----------------------------------------------------------------------------- logprobs vs teacher forcing


@pytest.mark.parametrize(
    "temperature, top_k, top_p",
    [(1.0, 0, 1.0), (0.7, 0, 1.0), (0.7, 5, 0.9)],  # the last: logprobs are before truncation, so unchanged
)
def test_sampled_logprobs_equal_teacher_forced(policy, temperature, top_k, top_p):
    params = SamplingParams(n=2, temperature=temperature, top_k=top_k, top_p=top_p, max_new_tokens=24, seed=1)
    groups = policy.generate(PROMPTS, params)
    prompt_ids = policy.encode_prompts(PROMPTS)
    comps = flat(groups)
    batch = policy.token_batch([p for p in prompt_ids for _ in range(2)], [c.token_ids for c in comps])
    teacher = policy.logprobs(batch, temperature=temperature).logprobs  # [N, T]
    lengths = [len(c.token_ids) for c in comps]
    assert len(set(lengths)) > 1, "precondition: completions of different lengths (right padding)"
    assert batch.completion_mask.sum(1).tolist() == lengths
    for i, c in enumerate(comps):
        assert c.logprobs.shape == (lengths[i],)
        torch.testing.assert_close(teacher[i, : lengths[i]], c.logprobs, atol=1e-4, rtol=0)
    # the temperature really enters: at T=1 the same tokens score differently
    at_one = policy.logprobs(batch, temperature=1.0).logprobs
    if temperature != 1.0:
        assert (at_one - teacher).abs().max() > 1e-2


def test_greedy_logprobs_are_at_temperature_one(policy):
    comps = flat(policy.generate(PROMPTS, GREEDY))
    batch = policy.token_batch(policy.encode_prompts(PROMPTS), [c.token_ids for c in comps])
    teacher = policy.logprobs(batch, temperature=1.0).logprobs
    for i, c in enumerate(comps):
        torch.testing.assert_close(teacher[i, : len(c.token_ids)], c.logprobs, atol=1e-4, rtol=0)
        assert bool((c.logprobs <= 0).all())


def test_token_batch_layout(policy):
    # prompts [7, 8] and [9]; completions [1, 2, 3] and [4]: P = 2, T = 3, left-padded prompts, right-padded completions
    b = policy.token_batch([[7, 8], [9]], [[1, 2, 3], [4]])
    pad = policy.pad_id
    assert b.prompt_len == 2
    assert b.input_ids.tolist() == [[7, 8, 1, 2, 3], [pad, 9, 4, pad, pad]]
    assert b.attention_mask.tolist() == [[1, 1, 1, 1, 1], [0, 1, 1, 0, 0]]
    assert b.completion_mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert b.completion_ids.tolist() == [[1, 2, 3], [4, pad, pad]]
    assert b.select(torch.tensor([1])).input_ids.tolist() == [[pad, 9, 4, pad, pad]]


def test_entropy_of_teacher_forcing_matches_definition(policy):
    prompt_ids = policy.encode_prompts(PROMPTS[:2])
    batch = policy.token_batch(prompt_ids, [[10, 20, 30], [40]])
    out = policy.logprobs(batch, temperature=0.7, with_entropy=True)
    with torch.no_grad():
        pos = (batch.attention_mask.cumsum(-1) - 1).clamp(min=0)
        logits = policy.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=pos).logits
    logp_all = (logits[:, batch.prompt_len - 1 : -1] / 0.7).log_softmax(-1)  # [N, T, V]
    expected = -(logp_all.exp() * logp_all).sum(-1)  # H = -sum p log p
    torch.testing.assert_close(out.entropy[0], expected[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(out.entropy[1, :1], expected[1, :1], atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------- grouping and seeds


def test_n_samples_grouped_per_prompt(policy):
    groups = policy.generate(PROMPTS[:3], SamplingParams(n=4, max_new_tokens=8, seed=0))
    prompt_ids = policy.encode_prompts(PROMPTS[:3])
    assert [len(g) for g in groups] == [4, 4, 4]
    for ids, g in zip(prompt_ids, groups):
        # prompt-major: group i holds prompt i's samples (the prompts' lengths all differ)
        assert [c.prompt_tokens for c in g] == [len(ids)] * 4
        assert len({tuple(c.token_ids) for c in g}) > 1  # the n samples are independent draws


def test_same_seed_same_samples_different_seed_different(policy):
    a = flat(policy.generate(PROMPTS, SamplingParams(n=2, max_new_tokens=16, seed=7)))
    b = flat(policy.generate(PROMPTS, SamplingParams(n=2, max_new_tokens=16, seed=7)))
    c = flat(policy.generate(PROMPTS, SamplingParams(n=2, max_new_tokens=16, seed=8)))
    assert [x.token_ids for x in a] == [x.token_ids for x in b]
    assert all(torch.equal(x.logprobs, y.logprobs) for x, y in zip(a, b))
    assert [x.text for x in a] == [x.text for x in b]
    assert [x.token_ids for x in a] != [x.token_ids for x in c]


def test_seeded_sampling_leaves_global_rng_alone_and_unseeded_uses_it(policy):
    state = torch.get_rng_state()
    policy.generate(PROMPTS, SamplingParams(max_new_tokens=8, seed=3))
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(11)
    a = flat(policy.generate(PROMPTS, SamplingParams(max_new_tokens=8)))
    torch.manual_seed(11)
    b = flat(policy.generate(PROMPTS, SamplingParams(max_new_tokens=8)))
    assert [x.token_ids for x in a] == [x.token_ids for x in b]


# ----------------------------------------------------------------------------- greedy


def test_greedy_equals_cache_free_argmax_decoding(policy):
    groups = policy.generate(PROMPTS, GREEDY)
    comps = flat(groups)
    assert {c.finish_reason for c in comps} == {"eos", "length"}, "precondition: rows end both ways"
    for ids, c in zip(policy.encode_prompts(PROMPTS), comps):
        assert c.token_ids == greedy_by_hand(policy, ids, GREEDY.max_new_tokens)


def test_greedy_n_copies_are_identical(policy):
    (g,) = policy.generate(PROMPTS[:1], SamplingParams(n=3, temperature=0.0, max_new_tokens=12))
    assert g[0].token_ids == g[1].token_ids == g[2].token_ids


def test_top_k_one_and_tiny_top_p_equal_greedy(policy):
    greedy = flat(policy.generate(PROMPTS, GREEDY))
    for params in [
        SamplingParams(temperature=1.0, top_k=1, max_new_tokens=12, seed=5),
        SamplingParams(temperature=1.0, top_p=1e-6, max_new_tokens=12, seed=6),  # nucleus = the top token only
    ]:
        sampled = flat(policy.generate(PROMPTS, params))
        assert [c.token_ids for c in sampled] == [c.token_ids for c in greedy]
        for s, g in zip(sampled, greedy):  # both at temperature 1
            torch.testing.assert_close(s.logprobs, g.logprobs, atol=1e-5, rtol=0)
    # at temperature .5 top_k=1 picks the same tokens; the logprobs are at T=.5, so higher than greedy's
    cold = flat(policy.generate(PROMPTS, SamplingParams(temperature=0.5, top_k=1, max_new_tokens=12, seed=5)))
    assert [c.token_ids for c in cold] == [c.token_ids for c in greedy]
    assert all(bool((c.logprobs > g.logprobs).all()) for c, g in zip(cold, greedy))


# ----------------------------------------------------------------------------- stopping


def test_max_new_tokens_and_length_finish(policy):
    with logit_override(policy, policy.eos_id, -1e9):  # <eos> never sampled: every row runs to the budget
        comps = flat(policy.generate(PROMPTS, SamplingParams(n=2, max_new_tokens=5, seed=0)))
    for c in comps:
        assert c.finish_reason == "length"
        assert len(c.token_ids) == 5 and c.logprobs.shape == (5,)
        assert policy.eos_id not in c.token_ids
        assert c.text == policy.tokenizer.decode(c.token_ids, skip_special_tokens=True)
    # without the override some rows end early on <eos>, none runs past the budget
    comps = flat(policy.generate(PROMPTS, SamplingParams(n=4, max_new_tokens=5, seed=0)))
    assert all(len(c.token_ids) <= 5 for c in comps)
    assert all(c.finish_reason == "length" for c in comps if len(c.token_ids) == 5 and c.token_ids[-1] != policy.eos_id)
    one = flat(policy.generate(PROMPTS, SamplingParams(max_new_tokens=1, seed=0)))
    assert [len(c.token_ids) for c in one] == [1, 1, 1, 1]


def test_eos_finish_strips_eos_from_text(policy):
    comps = flat(policy.generate(PROMPTS, SamplingParams(n=4, max_new_tokens=30, seed=0)))
    eos = [c for c in comps if c.finish_reason == "eos"]
    assert eos, "precondition: some samples end on <eos>"
    for c in eos:
        assert c.token_ids[-1] == policy.eos_id and policy.eos_id not in c.token_ids[:-1]
        assert c.logprobs.shape == (len(c.token_ids),)
        assert c.text == policy.tokenizer.decode(c.token_ids[:-1], skip_special_tokens=True)
        assert "<eos>" not in c.text
    for c in comps:
        if c.finish_reason != "eos":
            assert policy.eos_id not in c.token_ids


def test_forced_eos_gives_empty_completions(policy):
    with logit_override(policy, policy.eos_id, 1e9):
        comps = flat(policy.generate(PROMPTS, SamplingParams(n=2, max_new_tokens=10, seed=0)))
    for c in comps:
        assert (c.token_ids, c.text, c.finish_reason) == ([policy.eos_id], "", "eos")
        assert c.logprobs.tolist() == pytest.approx([0.0], abs=1e-6)  # log p(eos) = log 1


def test_stop_string_cuts_at_first_occurrence(policy):
    params = SamplingParams(max_new_tokens=30, seed=4)  # a draw of 30 ordinary characters (precondition below)
    with logit_override(policy, policy.eos_id, -1e9):
        (full,) = flat(policy.generate(PROMPTS[:1], params))
        text = full.text
        assert len(text) == 30, "precondition: 30 single-character, non-special tokens"
        cases = [
            ((text[5],), text.index(text[5]) + 1),  # one character
            ((text[6:8],), text.find(text[6:8]) + 2),  # two characters, spanning two tokens
            ((text[9], text[4]), min(text.index(text[9]), text.index(text[4])) + 1),  # the earlier of two
        ]
        for stop, end in cases:
            (c,) = flat(policy.generate(PROMPTS[:1], SamplingParams(max_new_tokens=30, seed=4, stop=stop)))
            assert c.finish_reason == "stop"
            assert c.text == text[:end] and any(c.text.endswith(s) for s in stop)
            assert c.token_ids == full.token_ids[:end]
            torch.testing.assert_close(c.logprobs, full.logprobs[:end], atol=1e-6, rtol=0)
        missing = "~" * 5
        assert missing not in text
        (c,) = flat(policy.generate(PROMPTS[:1], SamplingParams(max_new_tokens=30, seed=4, stop=(missing,))))
        assert (c.text, c.finish_reason) == (text, "length")


def test_stop_strings_in_a_batch(policy):
    stop = ("a", "e", "3")
    comps = flat(policy.generate(PROMPTS, SamplingParams(n=4, max_new_tokens=30, seed=0, stop=stop)))
    stopped = [c for c in comps if c.finish_reason == "stop"]
    assert len(stopped) >= 4, "precondition: several rows stop"
    for c in stopped:
        # the first occurrence of any stop string ends exactly at the end of the text
        assert min(c.text.find(s) + len(s) for s in stop if s in c.text) == len(c.text)
    for c in comps:
        if c.finish_reason != "stop":
            assert not any(s in c.text for s in stop)


def test_stop_string_never_matches_inside_a_special_token(policy):
    with logit_override(policy, policy.pad_id, 1e9):  # the model emits <pad> first
        (c,) = flat(policy.generate(PROMPTS[:1], SamplingParams(max_new_tokens=3, seed=0, stop=(">",))))
    assert c.finish_reason != "stop" or c.text.endswith(">")


# ----------------------------------------------------------------------------- finished rows leave the batch


def test_finished_rows_are_removed_and_rows_are_independent(policy):
    params = SamplingParams(temperature=0.0, max_new_tokens=20)
    with forward_batch_sizes(policy) as sizes:
        batch = flat(policy.generate(PROMPTS, params))
    lengths = [len(c.token_ids) for c in batch]
    assert len(set(lengths)) >= 3, f"precondition: rows finish at different steps, got {lengths}"
    # prefill with all 4 rows, then the forward for step s holds the rows still running: len > s
    # (with 4 rows any finished row is >= 1/8 of the batch, so it is dropped at once)
    pre = prefill_forwards(policy, PROMPTS)
    assert [sum(sizes[:pre])] + sizes[pre:] == [4] + [sum(n > s for n in lengths) for s in range(1, max(lengths))]
    for prompt, c in zip(PROMPTS, batch):
        (alone,) = flat(policy.generate([prompt], params))
        assert (c.token_ids, c.text, c.finish_reason) == (alone.token_ids, alone.text, alone.finish_reason)
        torch.testing.assert_close(c.logprobs, alone.logprobs, atol=1e-5, rtol=0)


def test_rows_stay_independent_while_finished_rows_wait_for_compaction(policy):
    # 10 rows: one finished row is < 1/8 of the batch, so it keeps riding along (fed <pad>) for a while
    prompts = PROMPTS + ["a", "bb", "ccc", "2 + 2 =", "Why?", "0"]
    params = SamplingParams(temperature=0.0, max_new_tokens=16)
    with forward_batch_sizes(policy) as sizes:
        batch = flat(policy.generate(prompts, params))
    lengths, pre = [len(c.token_ids) for c in batch], prefill_forwards(policy, prompts)
    assert pre > 1, "precondition: prompts of several lengths, prefilled in groups"
    sizes = [sum(sizes[:pre])] + sizes[pre:]  # the prefill's groups together, then one forward per decode step
    assert sizes[0] == 10 and sizes[-1] < 10
    assert all(a >= b for a, b in zip(sizes, sizes[1:]))
    assert all(size >= sum(n > s for n in lengths) for s, size in enumerate(sizes) if s > 0)  # live rows never dropped
    for prompt, c in zip(prompts, batch):
        (alone,) = flat(policy.generate([prompt], params))
        assert c.token_ids == alone.token_ids
        torch.testing.assert_close(c.logprobs, alone.logprobs, atol=1e-5, rtol=0)


def test_repeated_prompts_are_read_once_and_sample_as_if_alone(policy):
    # 3 prompts x 4 samples, the first prompt also asked twice: the prefill forward sees each distinct prompt once
    prompts = [PROMPTS[0], PROMPTS[1], PROMPTS[0], PROMPTS[2]]
    params = SamplingParams(n=4, temperature=1.0, max_new_tokens=12, seed=3)
    with forward_batch_sizes(policy) as sizes:
        groups = policy.generate(prompts, params)
    assert sum(sizes[: prefill_forwards(policy, prompts)]) == 3
    seeds = derive_prompt_seeds(params.seed, len(prompts))
    for i, group in enumerate(groups):
        ids, keys = policy.encode_prompts([prompts[i]])[0], row_keys([seeds[i]], params.n)
        for key, c in zip(keys, group):  # each row alone, with its own random stream: nothing to share
            out_ids, out_lp, lengths, _, computed = policy._sample([ids], [key], params)
            assert c.token_ids == out_ids[0, : lengths[0]].tolist() and computed == [len(ids)]
            torch.testing.assert_close(c.logprobs, out_lp[0, : lengths[0]], atol=1e-5, rtol=0)
        # the prompt's compute is booked once: to its first row in the whole call
        first = prompts.index(prompts[i]) == i
        assert [c.prompt_tokens - c.cached_tokens for c in group] == [len(ids) if first else 0] + [0] * 3
    assert len({tuple(c.token_ids) for g in groups for c in g}) > 8, "precondition: samples differ"


# ----------------------------------------------------------------------------- answer prefixes


def test_prefix_continues_the_answer(policy):
    prompt = PROMPTS[0]
    (full,) = flat(policy.generate([prompt], GREEDY))
    k = 3
    prefix_ids = full.token_ids[:k]
    assert all(t >= 5 for t in prefix_ids), "precondition: the prefix is ordinary characters"
    prefix = policy.tokenizer.decode(prefix_ids)
    assert len(prefix) == k
    assert policy.render(prompt, prefix) == policy.render(prompt) + prefix
    assert policy.encode_prompts([prompt], [prefix])[0] == policy.encode_prompts([prompt])[0] + prefix_ids
    params = SamplingParams(temperature=0.0, max_new_tokens=GREEDY.max_new_tokens - k)
    cont, plain = flat(policy.generate([prompt, PROMPTS[1]], params, prefixes=[prefix, ""]))
    # the continuation is the rest of the unprefixed greedy answer, without the prefix itself
    assert cont.token_ids == full.token_ids[k:]
    assert cont.text == policy.tokenizer.decode(full.token_ids[k:], skip_special_tokens=True)
    assert cont.prompt_tokens == len(policy.encode_prompts([prompt])[0]) + k
    assert plain.token_ids == flat(policy.generate([PROMPTS[1]], params))[0].token_ids


def test_render_uses_chat_template(policy):
    assert policy.render("2+2?") == "<|user|>2+2?\n<|assistant|>"
    ids = policy.encode_prompts(["hi"])[0]
    tok = policy.tokenizer
    assert ids == [tok.convert_tokens_to_ids("<|user|>"), *tok("hi\n", add_special_tokens=False)["input_ids"], tok.convert_tokens_to_ids("<|assistant|>")]


def test_completion_steps_split_text():
    c = Completion(text="a = 1\nb = 2\n\nAnswer: 3", token_ids=[], logprobs=torch.zeros(0), finish_reason="eos")
    assert c.steps == ["a = 1\nb = 2", "Answer: 3"]  # blank lines separate steps when present


# ----------------------------------------------------------------------------- top-k / top-p by hand


def kept(logits: torch.Tensor) -> list[list[int]]:
    return [torch.nonzero(torch.isfinite(row)).flatten().tolist() for row in logits]


def test_filter_logits_top_k():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.5], [0.0, -1.0, 5.0, 4.0]])
    assert kept(_filter_logits(logits, 2, 1.0)) == [[1, 2], [2, 3]]  # the two largest of each row
    assert kept(_filter_logits(logits, 1, 1.0)) == [[1], [2]]
    assert kept(_filter_logits(logits, 4, 1.0)) == [[0, 1, 2, 3]] * 2  # k = V: nothing dropped
    assert kept(_filter_logits(logits, 0, 1.0)) == [[0, 1, 2, 3]] * 2  # 0 disables
    out = _filter_logits(logits, 2, 1.0)
    assert out[0, 1] == 3.0 and out[0, 2] == 2.0  # kept logits are unchanged


def test_filter_logits_top_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    # mass before each token (sorted): 0, .5, .8, .95; a token is dropped when that mass already reaches top_p
    assert kept(_filter_logits(logits, 0, 0.8)) == [[0, 1]]  # .8 >= .8 drops the third
    assert kept(_filter_logits(logits, 0, 0.81)) == [[0, 1, 2]]
    assert kept(_filter_logits(logits, 0, 0.5)) == [[0]]
    assert kept(_filter_logits(logits, 0, 0.51)) == [[0, 1]]
    assert kept(_filter_logits(logits, 0, 0.96)) == [[0, 1, 2, 3]]
    assert kept(_filter_logits(logits, 0, 1e-9)) == [[0]]  # the top token always stays
    # the same distribution in shuffled order, in a batch with another row: masks land on the right ids
    shuffled = torch.tensor([[0.15, 0.5, 0.05, 0.3], [0.25, 0.25, 0.25, 0.25]]).log()
    # row 2: mass before = 0, .25, .5, .75 -> top_p .6 keeps three (ties sorted in some order: count only)
    out = kept(_filter_logits(shuffled, 0, 0.6))
    assert out[0] == [1, 3] and len(out[1]) == 3


def test_filter_logits_top_k_then_top_p_on_renormalised_mass():
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    # top_p .6 alone: mass before the 2nd token .5 < .6 -> keeps two
    assert kept(_filter_logits(logits, 0, 0.6)) == [[0, 1]]
    # top_k 2 first renormalises to [.5/.8, .3/.8] = [.625, .375]: mass before the 2nd .625 >= .6 -> keeps one
    assert kept(_filter_logits(logits, 2, 0.6)) == [[0]]
