"""policy/hf.py's own decode step (_LlamaDecoder, preallocated K/V) against the transformers forward it replaces."""
import pytest
import torch

from rewardflow.policy.base import SamplingParams
from rewardflow.policy.hf import HFPolicy, _LlamaDecoder
from rewardflow.policy.prefill import length_groups
from rewardflow.policy.tiny import build_tokenizer

PROMPTS = ["What is 2+3?", "x", "hello world", "Compute 4 - 1 - 7", "a", "bb", "ccc", "2 + 2 =", "Why?"]


@pytest.fixture(scope="module")
def policy():
    from transformers import AutoModelForCausalLM, LlamaConfig

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    tok = build_tokenizer(None)
    # grouped-query attention (4 query heads share 2 key/value heads) exercises the head grouping
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=128, pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id, bos_token_id=None, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # varied text and <eos> at different steps (as in test_sampler)
        for p in model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    pol = HFPolicy(model.eval(), tok)
    yield pol
    torch.set_num_threads(before)


def _run(policy, params, fast: bool, monkeypatch):
    calls = []
    step = _LlamaDecoder.step
    monkeypatch.setattr(_LlamaDecoder, "step", lambda self, *a: calls.append(self.compiled) or step(self, *a))
    policy.fast_decode = fast
    try:
        return [c for g in policy.generate(PROMPTS, params) for c in g], calls  # per step: was it the compiled one
    finally:
        policy.fast_decode = True
        monkeypatch.setattr(_LlamaDecoder, "step", step)


CASES = [
    SamplingParams(temperature=0.0, max_new_tokens=20, stop=("e", "3", "a")),  # greedy rows here end mostly by stop strings
    SamplingParams(n=3, temperature=0.8, top_k=20, max_new_tokens=20, seed=3),
    SamplingParams(n=2, temperature=1.0, max_new_tokens=20, stop=("a",), seed=4),
]


@pytest.mark.parametrize("params", CASES)
def test_fast_decode_equals_the_transformers_forward(policy, params, monkeypatch):
    fast, fast_calls = _run(policy, params, True, monkeypatch)
    slow, slow_calls = _run(policy, params, False, monkeypatch)
    assert len(fast_calls) > 0 and len(slow_calls) == 0  # the fast path really ran, and only when asked
    early = sum(len(c.token_ids) < params.max_new_tokens for c in fast)
    assert 2 <= early < len(fast), "precondition: >= 2 of the rows finish early, so finished rows are dropped (>= 1/8 of 9+)"
    assert [c.token_ids for c in fast] == [c.token_ids for c in slow]
    assert [(c.text, c.finish_reason) for c in fast] == [(c.text, c.finish_reason) for c in slow]
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_compiled_step_equals_the_eager_step(policy, monkeypatch):
    # torch.compile of the decode step (whole buffers, finished rows kept, attention by SDPA with grouped-query heads):
    # the same tokens and logprobs as the eager step; two calls with different shapes (9 greedy rows, then 27
    # sampled, past the default row limit, lifted here) exercise the recompile to dynamic sizes
    limit = policy.compile_max_rows
    for params in CASES[:2]:
        eager, eager_calls = _run(policy, params, True, monkeypatch)
        policy.compile_decode, policy.compile_max_rows = True, 64
        try:
            compiled, calls = _run(policy, params, True, monkeypatch)
        finally:
            policy.compile_decode, policy.compile_max_rows = False, limit
        assert calls and all(calls) and not any(eager_calls)
        assert [(c.token_ids, c.finish_reason) for c in compiled] == [(c.token_ids, c.finish_reason) for c in eager]
        for a, b in zip(compiled, eager):
            torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-5, rtol=0)

def test_a_failing_compile_warns_once_and_decodes_the_same_tokens_eagerly(policy, monkeypatch):
    # e.g. no C++ compiler for inductor: generation must go on, with the eager step's tokens and logprobs
    from rewardflow.policy import decode

    def broken():
        def step(*args):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore lines")
        return step

    params = CASES[1]
    eager, _ = _run(policy, params, True, monkeypatch)
    monkeypatch.setattr(decode, "_compiled_layers", broken)
    monkeypatch.setattr(decode, "_COMPILE_FAILED", [])
    policy.compile_decode = True
    try:
        with pytest.warns(RuntimeWarning, match="InvalidCxxCompiler: No working C.. compiler found\\); decoding without it") as seen:
            first, calls = _run(policy, params, True, monkeypatch)
        again, calls_again = _run(policy, params, True, monkeypatch)  # no second attempt, no second warning
    finally:
        policy.compile_decode = False
    assert len(seen) == 1 and calls[0] is True and not any(calls[1:]) and not any(calls_again)
    for out in (first, again):
        assert [(c.token_ids, c.finish_reason) for c in out] == [(c.token_ids, c.finish_reason) for c in eager]
        for a, b in zip(out, eager):
            torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-6, rtol=0)


def test_a_hook_on_the_model_gets_every_forward(policy, monkeypatch):
    seen = []
    handle = policy.model.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["input_ids"].shape), with_kwargs=True)
    try:
        comps, calls = _run(policy, SamplingParams(temperature=0.0, max_new_tokens=6), True, monkeypatch)
    finally:
        handle.remove()
    prefill = len(length_groups([len(ids) for ids in policy.encode_prompts(PROMPTS)]))  # one forward per length group
    assert calls == [] and len(seen) == prefill + max(len(c.token_ids) for c in comps) - 1  # + one forward per later step


def test_training_mode_uses_the_fast_step_unless_attention_dropout_is_on(policy, monkeypatch):
    policy.model.train()  # the RL loop samples in training mode; Llama has no dropout by default
    try:
        _, calls = _run(policy, SamplingParams(temperature=0.0, max_new_tokens=4), True, monkeypatch)
        assert len(calls) > 0
        monkeypatch.setattr(policy.model.config, "attention_dropout", 0.1)
        _, calls = _run(policy, SamplingParams(temperature=0.0, max_new_tokens=4), True, monkeypatch)
        assert calls == []  # dropout must be applied: only the transformers forward does
    finally:
        policy.model.eval()


def test_chunked_trimmed_teacher_forcing_equals_one_padded_pass(policy):
    # 9 rows, prompts and completions of different lengths; chunks of 2 rows, each trimmed to its own longest row
    prompt_ids = policy.encode_prompts(PROMPTS)
    completions = [list(range(5, 5 + 1 + (3 * i) % 7)) for i in range(len(PROMPTS))]
    batch = policy.token_batch(prompt_ids, completions)
    mask = batch.completion_mask

    def run(chunk):
        policy.logprob_chunk_rows = chunk
        policy.model.zero_grad()
        out = policy.logprobs(batch, temperature=0.7, with_entropy=True)
        (out.logprobs * mask).sum().backward()
        grads = {n: p.grad.clone() for n, p in policy.model.named_parameters()}
        return out, grads

    try:
        one, g_one = run(0)
        chunked, g_chunked = run(2)
    finally:
        policy.logprob_chunk_rows = 32
        policy.model.zero_grad()
    assert len({len(c) for c in completions}) > 3 and len({len(p) for p in prompt_ids}) > 3, "precondition: ragged rows"
    torch.testing.assert_close(chunked.logprobs * mask, one.logprobs * mask, atol=1e-5, rtol=0)
    torch.testing.assert_close(chunked.entropy * mask, one.entropy * mask, atol=1e-5, rtol=0)
    for name, g in g_one.items():
        # fp32 sums in another order agree to ~1e-6 of each tensor's scale (these gradients reach ~70)
        torch.testing.assert_close(g_chunked[name], g, atol=1e-5 * g.abs().max().item(), rtol=1e-5)


def test_teacher_forcing_reads_each_prompt_once_with_the_same_logprobs_and_gradients(policy):
    # an RL-shaped batch: 3 prompts x 4 completions of different lengths, plus one lone prompt; chunks of 8 rows
    prompt_ids = policy.encode_prompts(PROMPTS[:4])
    rows = [prompt_ids[g] for g in range(3) for _ in range(4)] + [prompt_ids[3]]
    completions = [list(range(5, 5 + 1 + (3 * i) % 7)) for i in range(len(rows))]
    batch = policy.token_batch(rows, completions)
    mask = batch.completion_mask

    def run(share):
        policy.share_prompts, policy.logprob_chunk_rows = share, 8
        policy.model.zero_grad()
        fed = []
        handle = policy.model.register_forward_pre_hook(lambda m, a, kw: fed.append(tuple(kw["input_ids"].shape)), with_kwargs=True)
        try:
            out = policy.logprobs(batch, temperature=0.7, with_entropy=True)
        finally:
            handle.remove()
        (out.logprobs * mask).sum().backward()
        return out, {n: p.grad.clone() for n, p in policy.model.named_parameters()}, fed

    try:
        plain, g_plain, fed_plain = run(False)
        shared, g_shared, fed_shared = run(True)
    finally:
        policy.share_prompts, policy.logprob_chunk_rows = True, 32
        policy.model.zero_grad()
    # plain: each chunk one forward over its rows; shared: whole groups packed into chunks (the lone row's and one
    # group, then two groups), per chunk a forward over its distinct prompts, then one over its rows' completions
    assert [n for n, _ in fed_plain] == [8, 5]
    assert [n for n, _ in fed_shared] == [2, 5, 2, 8]
    assert sum(n * w for n, w in fed_shared) < 0.6 * sum(n * w for n, w in fed_plain)
    torch.testing.assert_close(shared.logprobs * mask, plain.logprobs * mask, atol=1e-5, rtol=0)
    torch.testing.assert_close(shared.entropy * mask, plain.entropy * mask, atol=1e-5, rtol=0)
    for name, g in g_plain.items():
        torch.testing.assert_close(g_shared[name], g, atol=1e-5 * g.abs().max().item(), rtol=1e-5)
