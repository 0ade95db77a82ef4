"""policy/decode.py: the fast decode step against the transformers forward (grouped-query attention, ragged prompts,
stop strings, greedy and sampled), the fused pick by hand, and the memory-bandwidth bound of eval/flops.py by hand."""
import math

import pytest
import torch

from rewardflow.eval.flops import decode_bound_tok_per_s, memory_bandwidth_gbs
from rewardflow.policy.base import SamplingParams
from rewardflow.policy.decode import _LlamaDecoder, _gumbel, _hash32, _M32, pick_next
from rewardflow.policy.hf import HFPolicy

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

PROMPTS = ["What is 2+3?", "x", "hello world", "Compute 4 - 1 - 7", "ab"]  # templated lengths all differ: left padding


@pytest.fixture(scope="module")
def gqa_policy(one_thread) -> HFPolicy:
    """A tiny Llama with grouped-query attention (4 query heads share 2 key/value heads), large random weights
    (std 0.5, seeded) so that greedy text varies and rows end on <eos> at different steps."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from rewardflow.policy.tiny import build_char_tokenizer

    tok = build_char_tokenizer()
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=256, pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id, bos_token_id=None, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    model.eval()
    return HFPolicy(model, tok)


def both_paths(policy: HFPolicy, prompts, params, monkeypatch):
    """(fast completions, reference completions, fast steps taken): the same call through our decode step and
    through the transformers forward and its DynamicCache."""
    steps = []
    step = _LlamaDecoder.step
    monkeypatch.setattr(_LlamaDecoder, "step", lambda self, *a: steps.append(1) or step(self, *a))
    fast = [c for g in policy.generate(prompts, params) for c in g]
    policy.fast_decode = False
    try:
        ref = [c for g in policy.generate(prompts, params) for c in g]
    finally:
        policy.fast_decode = True
    return fast, ref, len(steps)


@pytest.mark.parametrize("params", [
    SamplingParams(n=2, temperature=0.0, max_new_tokens=24),
    SamplingParams(n=3, temperature=1.0, max_new_tokens=24, seed=5),
    SamplingParams(n=2, temperature=0.7, top_k=8, top_p=0.9, max_new_tokens=24, seed=6),
    SamplingParams(n=3, temperature=1.0, max_new_tokens=24, seed=7, stop=("e", "\n")),
], ids=["greedy", "sampled", "top_k_top_p", "stop_strings"])
def test_fast_step_equals_transformers_forward_with_gqa(gqa_policy, params, monkeypatch):
    assert gqa_policy.model.config.num_key_value_heads < gqa_policy.model.config.num_attention_heads
    fast, ref, steps = both_paths(gqa_policy, PROMPTS, params, monkeypatch)
    assert steps > 0, "precondition: the fast decode step ran"
    lengths = [len(c.token_ids) for c in fast]
    assert len(set(lengths)) > 1, f"precondition: rows finish at different steps, got {lengths}"
    if params.stop:
        assert "stop" in {c.finish_reason for c in fast}, "precondition: some rows end on a stop string"
    assert [c.token_ids for c in fast] == [c.token_ids for c in ref]
    assert [(c.text, c.finish_reason) for c in fast] == [(c.text, c.finish_reason) for c in ref]
    for f, r in zip(fast, ref):
        torch.testing.assert_close(f.logprobs, r.logprobs, atol=2e-5, rtol=0)


def test_fast_step_logprobs_equal_teacher_forcing_with_gqa(gqa_policy):
    params = SamplingParams(n=2, temperature=0.8, max_new_tokens=20, seed=3)
    comps = [c for g in gqa_policy.generate(PROMPTS, params) for c in g]
    prompt_ids = gqa_policy.encode_prompts(PROMPTS)
    batch = gqa_policy.token_batch([p for p in prompt_ids for _ in range(2)], [c.token_ids for c in comps])
    teacher = gqa_policy.logprobs(batch, temperature=0.8).logprobs  # [N, T]
    for i, c in enumerate(comps):
        torch.testing.assert_close(teacher[i, : len(c.token_ids)], c.logprobs, atol=1e-4, rtol=0)  # as tests/test_sampler.py


# ----------------------------------------------------------------------------- the fused pick, by hand


def test_pick_next_greedy_and_temperature_by_hand():
    logits = torch.tensor([[0.0, math.log(3.0)], [math.log(4.0), 0.0]])  # softmax rows: [1/4, 3/4] and [4/5, 1/5]
    greedy = SamplingParams(temperature=0.0)
    tok, lp = pick_next(logits, greedy, torch.zeros(2, dtype=torch.long), 0)
    assert tok.tolist() == [1, 0]
    torch.testing.assert_close(lp, torch.tensor([math.log(3 / 4), math.log(4 / 5)]), atol=1e-6, rtol=0)
    # at temperature 1/2 the logits double: row 1 becomes [0, ln 9] -> p = [1/10, 9/10]; row 2 [ln 16, 0] -> [16/17, 1/17]
    cold = SamplingParams(temperature=0.5, top_k=1)  # top_k 1 makes the draw the argmax whatever the noise
    tok, lp = pick_next(logits, cold, torch.tensor([1, 2]), 0)
    assert tok.tolist() == [1, 0]
    torch.testing.assert_close(lp, torch.tensor([math.log(9 / 10), math.log(16 / 17)]), atol=1e-6, rtol=0)


def test_gumbel_noise_is_unchanged_by_the_cached_token_hash():
    keys, t, vocab = torch.tensor([0, 7, 2**32 - 1]), 3, 50
    # the expression before the per-vocabulary cache: every token's hash recomputed at every step
    step_key = _hash32((keys + (t + 1) * 0x2545F491) & _M32)
    token = torch.arange(vocab) * 0x1B873593
    bits = _hash32(step_key[:, None] ^ _hash32(token & _M32)[None, :])
    expected = (-torch.log(-torch.log((bits.double() + 0.5) / 2.0**32))).float()
    assert torch.equal(_gumbel(keys, t, vocab), expected)
    assert not torch.equal(_gumbel(keys, t + 1, vocab), expected)  # a new step draws new noise


# ----------------------------------------------------------------------------- the bandwidth bound, by hand


def test_decode_bound_by_hand():
    # 10 GB/s, 500 MB of weights, batch 1, no cache: 1e10 / 5e8 = 20 steps/s = 20 tokens/s
    assert decode_bound_tok_per_s(10.0, 5e8, 1) == pytest.approx(20.0, rel=1e-12)
    # batch 4 shares the weights: 4 * 1e10 / 5e8 = 80 tokens/s
    assert decode_bound_tok_per_s(10.0, 5e8, 4) == pytest.approx(80.0, rel=1e-12)
    # plus each row's cache: 4 rows * 250 tokens * 1000 B = 1e6 B more per step -> 4e10 / 5.01e8 = 79.8403...
    assert decode_bound_tok_per_s(10.0, 5e8, 4, kv_bytes_per_token=1000, context=250) == pytest.approx(4e10 / 5.01e8, rel=1e-12)
    assert decode_bound_tok_per_s(10.0, 5e8, 4, kv_bytes_per_token=1000, context=250) < 80.0
    with pytest.raises(ValueError, match="bandwidth"):
        decode_bound_tok_per_s(0.0, 5e8, 1)


def test_memory_bandwidth_is_measured():
    bw = memory_bandwidth_gbs(megabytes=16, reps=1)
    assert bw["read_gbs"] > 0.1 and bw["copy_gbs"] > 0.1  # any machine moves more than 100 MB/s
    assert bw["threads"] == torch.get_num_threads() == 1


def test_bench_model_bytes_by_hand(gqa_policy):
    from rewardflow.recipes.bench.sampler import model_bytes

    weights, kv = model_bytes(gqa_policy.model)
    assert weights == 4 * gqa_policy.num_params  # fp32; the tied embedding / lm_head matrix counted once
    assert kv == 2 * 2 * 2 * 16 * 4  # keys and values * 2 layers * 2 kv heads * head_dim 64/4 = 16 * 4 bytes = 512


def test_bench_sampler_rejects_unknown_dtype_before_loading_anything(capsys):
    from rewardflow.recipes.bench.sampler import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--dtype", "float32,float16", "--modes", "greedy"])
    assert exit_info.value.code == 2
    assert "float16" in capsys.readouterr().err
