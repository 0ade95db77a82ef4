"""policy/vllm.py against a fake engine with vLLM's API (`LLM.generate(prompts, sampling_params, use_tqdm)`,
`SamplingParams(...)`, RequestOutput/CompletionOutput/Logprob, `apply_model`, `reset_prefix_cache`).

The fake samples with the hf backend's own sampler on its own copy of the weights, and reports vLLM's
"processed" logprobs (after temperature and top-k/top-p truncation, renormalised), so the glue's choice
between engine logprobs and teacher forcing is checked against a quantity that really differs."""
import copy
import subprocess
import sys
import types
from dataclasses import dataclass

import pytest
import torch

from ddp_check import build
from rewardflow.policy.base import SamplingParams
from rewardflow.policy.hf import _filter_logits, _mix32, derive_prompt_seeds
from rewardflow.policy.vllm import VLLMPolicy, finish_reason

PROMPTS = ["What is 2+3?", "x", "hello world"]


@dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list
    cumulative_logprob: float | None
    logprobs: list | None
    finish_reason: str | None
    stop_reason: object = None


@dataclass
class RequestOutput:
    request_id: str
    prompt_token_ids: list
    outputs: list


class FakeSamplingParams:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class FakeModel:
    def __init__(self, hf_model):
        self.hf_model = hf_model

    def load_weights(self, weights):
        state = dict(weights)
        self.hf_model.load_state_dict(state)
        return set(state)


class FakeLLM:
    """vLLM's offline API, sampling with rewardflow's hf sampler on its own weights."""

    def __init__(self, policy):
        self.policy = policy
        self.model = FakeModel(policy.model)
        self.calls, self.prefix_resets = [], 0

    def generate(self, prompts, sampling_params, use_tqdm=True):
        self.calls.append(sampling_params)
        outputs = []
        for i, (prompt, sp) in enumerate(zip(prompts, sampling_params)):
            ids = prompt["prompt_token_ids"]
            ours = SamplingParams(n=sp.n, temperature=sp.temperature, top_p=sp.top_p, top_k=max(0, sp.top_k),
                                  max_new_tokens=sp.max_tokens, stop=tuple(sp.stop or ()))
            out_ids, _, lengths, reasons, _ = self.policy._sample([ids] * sp.n, [_mix32(sp.seed, j) for j in range(sp.n)], ours)
            comps = []
            for j in range(sp.n):
                toks = out_ids[j, : lengths[j]].tolist()
                processed = self._processed_logprobs(ids, toks, ours)
                stop_reason = None
                text_ids = toks[:-1] if reasons[j] == "eos" else toks
                text = self.policy.tokenizer.decode(text_ids, skip_special_tokens=True)
                if reasons[j] == "stop":
                    stop_reason = next(s for s in ours.stop if text.endswith(s))
                comps.append(CompletionOutput(j, text, toks, None, [{t: Logprob(lp)} for t, lp in zip(toks, processed)],
                                              "length" if reasons[j] == "length" else "stop", stop_reason))
            outputs.append(RequestOutput(str(i), ids, comps))
        return outputs

    def _processed_logprobs(self, prompt_ids, toks, params):
        with torch.no_grad():
            logits = self.policy.model(input_ids=torch.tensor([prompt_ids + toks])).logits[0, len(prompt_ids) - 1 : -1]  # [T, V]
        scaled = logits / (params.temperature if params.temperature > 0 else 1.0)
        logp = _filter_logits(scaled, params.top_k, params.top_p).log_softmax(-1)  # [T, V] renormalised after truncation
        return logp.gather(-1, torch.tensor(toks)[:, None]).squeeze(-1).tolist()

    def apply_model(self, fn):
        return [fn(self.model)]

    def reset_prefix_cache(self):
        self.prefix_resets += 1


@pytest.fixture
def glue(monkeypatch):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: a second thread only adds synchronisation on a busy 2-core machine
    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(SamplingParams=FakeSamplingParams))
    trainer = build(seed=2)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # varied text and <eos> at different steps (as in test_sampler)
        for p in trainer.model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    trainer.model.eval()
    engine = copy.deepcopy(trainer)
    yield VLLMPolicy(FakeLLM(engine), trainer), trainer
    torch.set_num_threads(threads)


def _flat(groups):
    return [c for g in groups for c in g]


def test_sampling_params_and_per_request_seeds(glue):
    pol, _ = glue
    pol.generate(PROMPTS, SamplingParams(n=2, temperature=0.7, top_p=0.9, top_k=0, max_new_tokens=9, stop=("a",), seed=4))
    (sps,) = pol.llm.calls
    assert [sp.seed for sp in sps] == derive_prompt_seeds(4, 3)
    sp = sps[0]
    assert (sp.n, sp.temperature, sp.top_p, sp.top_k, sp.max_tokens, sp.stop) == (2, 0.7, 0.9, -1, 9, ["a"])
    assert (sp.include_stop_str_in_output, sp.logprobs) == (True, 0)
    pol.generate(PROMPTS, SamplingParams(top_k=5, max_new_tokens=3, seed=4))
    assert pol.llm.calls[-1][0].top_k == 5 and pol.llm.calls[-1][0].stop is None


def test_completions_match_the_hf_backend_and_engine_logprobs_are_used_untruncated(glue):
    pol, trainer = glue
    params = SamplingParams(n=3, temperature=0.8, max_new_tokens=16, seed=1)
    got, want = _flat(pol.generate(PROMPTS, params)), _flat(trainer.generate(PROMPTS, params))
    assert [c.token_ids for c in got] == [c.token_ids for c in want]
    assert [(c.text, c.finish_reason, c.prompt_tokens) for c in got] == [(c.text, c.finish_reason, c.prompt_tokens) for c in want]
    assert {c.finish_reason for c in got} == {"eos", "length"}, "precondition: both endings occur"
    for a, b in zip(got, want):
        torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-4, rtol=0)


def test_truncated_sampling_is_rescored_by_teacher_forcing(glue):
    pol, trainer = glue
    params = SamplingParams(n=2, temperature=0.7, top_k=4, max_new_tokens=12, seed=3)
    comps = _flat(pol.generate(PROMPTS, params))
    prompt_ids = [ids for ids in trainer.encode_prompts(PROMPTS) for _ in range(2)]
    teacher = trainer.logprobs(trainer.token_batch(prompt_ids, [c.token_ids for c in comps]), temperature=0.7).logprobs
    raw_engine = _flat(VLLMPolicy(pol.llm, trainer, logprob_source="engine").generate(PROMPTS, params))
    differs = 0.0
    for i, (c, e) in enumerate(zip(comps, raw_engine)):
        torch.testing.assert_close(c.logprobs, teacher[i, : len(c.token_ids)], atol=1e-5, rtol=0)
        # vLLM's processed logprobs are renormalised over the top 4: higher than ours wherever mass was cut
        assert bool((e.logprobs >= c.logprobs - 1e-5).all())
        differs = max(differs, (e.logprobs - c.logprobs).abs().max().item())
    assert differs > 0.01, "precondition: truncation changes the engine's logprobs"


def test_finish_reasons_map_stop_strings_eos_and_length(glue):
    pol, _ = glue
    comps = _flat(pol.generate(PROMPTS, SamplingParams(n=4, max_new_tokens=20, stop=("a", "e"), seed=0)))
    assert {c.finish_reason for c in comps} >= {"stop", "eos"}, "precondition"
    for c in comps:
        if c.finish_reason == "stop":
            assert c.text.endswith(("a", "e"))
    assert finish_reason(CompletionOutput(0, "", [], None, None, "stop", None)) == "eos"
    assert finish_reason(CompletionOutput(0, "", [], None, None, "stop", "\n\n")) == "stop"
    assert finish_reason(CompletionOutput(0, "", [], None, None, "length", None)) == "length"
    assert finish_reason(CompletionOutput(0, "", [], None, None, "stop", 7)) == "eos"  # a stop token id


def test_load_weights_syncs_the_engine_and_drops_its_prefix_cache(glue):
    pol, trainer = glue
    params = SamplingParams(n=2, max_new_tokens=10, seed=5)
    before = _flat(pol.generate(PROMPTS, params))
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.mul_(1.5)
    updated = _flat(trainer.generate(PROMPTS, params))
    assert [c.token_ids for c in updated] != [c.token_ids for c in before], "precondition: the update matters"
    assert [c.token_ids for c in _flat(pol.generate(PROMPTS, params))] == [c.token_ids for c in before]  # stale until synced
    pol.load_weights()
    assert pol.llm.prefix_resets == 1
    engine_state = pol.llm.policy.model.state_dict()
    assert all(torch.equal(engine_state[k], v) for k, v in trainer.model.state_dict().items())
    assert [c.token_ids for c in _flat(pol.generate(PROMPTS, params))] == [c.token_ids for c in updated]


def test_module_imports_without_vllm():
    code = "import sys, rewardflow.policy.vllm; assert 'vllm' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
