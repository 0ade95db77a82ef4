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
    pol.auto_sync = False
    assert [c.token_ids for c in _flat(pol.generate(PROMPTS, params))] == [c.token_ids for c in before]  # stale until synced
    pol.load_weights()
    assert pol.llm.prefix_resets == 1
    engine_state = pol.llm.policy.model.state_dict()
    assert all(torch.equal(engine_state[k], v) for k, v in trainer.model.state_dict().items())
    assert [c.token_ids for c in _flat(pol.generate(PROMPTS, params))] == [c.token_ids for c in updated]


def test_module_imports_without_vllm():
    code = "import sys, rewardflow.policy.vllm; assert 'vllm' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_auto_sync_pushes_weights_changed_in_place_before_sampling(glue):
    """Loops that train the policy in place (online DPO, OREO) never call load_weights: the engine must follow."""
    pol, trainer = glue
    params = SamplingParams(n=2, max_new_tokens=10, seed=5)
    before = _flat(pol.generate(PROMPTS, params))
    assert pol.llm.prefix_resets == 0, "no push while the weights are unchanged"
    opt = torch.optim.SGD(trainer.model.parameters(), lr=1.0)
    for p in trainer.model.parameters():
        p.grad = torch.randn_like(p) * 0.2
    opt.step()  # an in-place update, as every optimiser makes
    updated = _flat(trainer.generate(PROMPTS, params))
    assert [c.token_ids for c in updated] != [c.token_ids for c in before], "precondition: the update matters"
    assert [c.token_ids for c in _flat(pol.generate(PROMPTS, params))] == [c.token_ids for c in updated]
    assert pol.llm.prefix_resets == 1
    pol.generate(PROMPTS, params)
    assert pol.llm.prefix_resets == 1, "pushed once per change, not once per call"


def test_load_weights_takes_a_state_dict_snapshot(glue):
    pol, trainer = glue
    snap = {k: v.clone() * 0.5 for k, v in trainer.model.state_dict().items()}
    pol.load_weights(snap)
    engine = pol.llm.policy.model.state_dict()
    assert all(torch.equal(engine[k], v) for k, v in snap.items())


def test_truncated_importance_sampling_corrects_the_engine_trainer_mismatch(glue):
    """Engine logprobs kept as the behaviour policy's (top-k 4 renormalised: the engine sampled from that); the
    trainer's recomputed logprobs become the clip's reference and each token is weighted by min(ratio, cap)."""
    from rewardflow.recipes.config_loader import load_config
    from rewardflow.train.algorithms import prepare
    from rewardflow.policy.forward import Forward
    from rewardflow.train.overlap import OffPolicyCorrection
    from rewardflow.train.rollout import Rollout

    pol, trainer = glue
    engine_pol = VLLMPolicy(pol.llm, trainer, logprob_source="engine")
    params = SamplingParams(n=2, temperature=0.7, top_k=4, max_new_tokens=12, seed=3)
    comps = _flat(engine_pol.generate(PROMPTS, params))
    prompt_ids = [ids for ids in trainer.encode_prompts(PROMPTS) for _ in range(2)]
    rewards = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])  # [B, G]
    rollout = Rollout([None] * 6, prompt_ids, comps, rewards, [[None, None]] * 3, correct=rewards)
    cfg = load_config(overrides=["rollout.temperature=0.7", "algo.tis_cap=1.5", "trainer.micro_batch_size=4"])
    p, _ = prepare(trainer, None, rollout, cfg)
    behav, adv = p.old_logp.clone(), p.adv.clone()  # [N, T], [N]
    tis = OffPolicyCorrection(p, cfg)
    for mb in torch.arange(len(p.mask)).split(4):  # as optimise does: the loss's forward, micro-batch by micro-batch
        tis.apply(Forward(trainer.logprobs(p.batch.select(mb), temperature=0.7).logprobs), p, mb)
    stats = tis.stats()
    teacher = trainer.logprobs(p.batch, temperature=0.7).logprobs  # [N, T] the trainer's untruncated policy
    m = p.mask.bool()
    torch.testing.assert_close(p.old_logp[m], teacher[m], atol=1e-5, rtol=0)  # micro-batched vs one pass: float noise only
    want = torch.exp(teacher - behav).clamp(max=1.5) * p.mask  # [N, T]
    torch.testing.assert_close(p.adv, adv[:, None] * want, atol=1e-5, rtol=0)
    # renormalising over the top 4 raises the sampled tokens' probability: the weights fall below 1 where mass was cut
    assert bool((want[m] <= 1 + 1e-5).all()) and want[m].min().item() < 0.99
    assert stats["tis/weight_mean"] < 1 and stats["tis/behav_kl"] > 0


def test_backend_registry_loads_each_backend(tiny_ckpt, monkeypatch):
    from rewardflow.policy.backends import BACKENDS, load_policy
    from rewardflow.policy.hf import HFPolicy
    from rewardflow.recipes.config_loader import load_config

    assert set(BACKENDS) == {"hf", "vllm"}
    assert type(load_policy(tiny_ckpt)) is HFPolicy
    built = []

    class FakeLLMCtor:
        def __init__(self, model, **kw):
            built.append(kw)
            self.policy = HFPolicy.from_pretrained(model)

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=FakeLLMCtor, SamplingParams=FakeSamplingParams))
    cfg = load_config(overrides=[f"model.path={tiny_ckpt}", "model.backend=vllm", "algo.tis_cap=2"])
    pol = load_policy(cfg)
    assert isinstance(pol, VLLMPolicy) and pol.logprob_source == "engine"  # TIS on: the engine's logprobs are the behaviour's
    assert built[-1]["logprobs_mode"] == "processed_logprobs"
    assert load_policy(tiny_ckpt, "vllm").logprob_source == "auto"  # TIS off: made exact by teacher forcing when needed
    assert pol.model is pol.hf.model  # the trainer updates the transformers copy
    with pytest.raises(ValueError, match="backend='tpu'"):
        load_policy(tiny_ckpt, "tpu")


def _engine_run(tmp, extra, monkeypatch):
    from ddp_check import DigitScorer
    from rewardflow.data import GymSource
    from rewardflow.recipes.config_loader import load_config
    from rewardflow.train.metrics import MetricsLog
    from rewardflow.train.rl import train_rl

    torch.set_num_threads(1)
    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(SamplingParams=FakeSamplingParams))
    trainer = build(seed=2, max_positions=128)
    pol = VLLMPolicy(FakeLLM(copy.deepcopy(trainer)), trainer, logprob_source="engine")
    cfg = load_config(overrides=["rollout.prompts_per_step=3", "rollout.group_size=4", "rollout.max_new_tokens=8", "trainer.steps=3",
                                 "trainer.save_every=0", "trainer.eval_every=0", "trainer.lr=1e-2", "trainer.warmup_steps=0",
                                 "algo.tis_cap=2", "model.backend=vllm", *extra])
    source = GymSource("chain_sum", seed=0, eval_size=8, min_terms=2, max_terms=2, min_digits=1, max_digits=2)
    log = MetricsLog(tmp / "metrics.jsonl")
    train_rl(cfg, pol, None, source, DigitScorer(), tmp, log=log)
    return pol, log.read()


def test_rl_on_the_engine_sync_and_zero_staleness_async_agree(tmp_path, monkeypatch):
    """model.backend=vllm through train_rl: the engine receives every update (synchronous), and the asynchronous
    producer at zero staleness trains bit for bit the same weights."""
    sync, sync_rows = _engine_run(tmp_path / "sync", [], monkeypatch)
    asyn, async_rows = _engine_run(tmp_path / "async", ["trainer.async=true", "trainer.max_staleness=0"], monkeypatch)
    s, a = sync.hf.model.state_dict(), asyn.hf.model.state_dict()
    assert all(torch.equal(s[k], a[k]) for k in s), "zero-staleness async differs from sync on the engine"
    assert [r["reward/mean"] for r in sync_rows] == [r["reward/mean"] for r in async_rows]
    assert any(r["loss/policy"] != 0 for r in sync_rows), "precondition: non-zero advantages"
    init = build(seed=2, max_positions=128).model.state_dict()
    assert any(not torch.equal(s[k], init[k]) for k in s), "precondition: training moved the weights"
    engine = sync.llm.policy.model.state_dict()  # synchronous: the engine was pushed the last update
    assert all(torch.equal(engine[k], v) for k, v in s.items())
    # engine and trainer hold the same weights when sampling: the TIS weights are ~1 (float noise of two code paths)
    assert all(abs(r["tis/weight_mean"] - 1) < 1e-3 for r in sync_rows)
    assert asyn.auto_sync, "the final eval after an async run must push the final weights"


def test_eval_verb_samples_on_the_vllm_backend(tmp_path, tiny_ckpt, monkeypatch):
    """`rewardflow eval --backend vllm` goes through policy/backends.load_policy to a VLLMPolicy."""
    import json

    from rewardflow.policy.hf import HFPolicy
    from rewardflow.recipes.cli import main

    made = []

    class FakeLLMCtor(FakeLLM):
        def __init__(self, model, **kw):
            super().__init__(HFPolicy.from_pretrained(model))
            made.append(self)

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=FakeLLMCtor, SamplingParams=FakeSamplingParams))
    out = tmp_path / "ev"
    assert main(["eval", "--model", str(tiny_ckpt), "--backend", "vllm", "--data", "chain_sum", "--limit", "3", "--n", "2",
                 "--max-new-tokens", "4", "--out", str(out), "--quiet"]) == 0
    assert made and made[0].calls, "the engine sampled"
    assert json.loads((out / "results.json").read_text())["n_problems"] == 3
