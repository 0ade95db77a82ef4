"""The vllm backend (optional extra `vllm`, GPU): vLLM samples, a transformers copy of the same weights
keeps the parts of the Policy contract vLLM does not serve (chat template, teacher-forced logprobs,
TokenBatch packing), and `load_weights` pushes the trainer's weights into the engine after each update.

Logprobs returned with each completion. Our contract is log pi(token) at the sampling temperature,
*before* top-k/top-p truncation. vLLM's sampler reports either the raw distribution (temperature 1, its
default `logprobs_mode="raw_logprobs"`) or the processed one (after temperature *and* truncation,
`"processed_logprobs"`). So:
- the engine is built with `logprobs_mode="processed_logprobs"` and asked for `logprobs=0` (the sampled
  token's logprob only); with no truncation (top_k 0, top_p 1) that is exactly our quantity;
- with truncation, or greedy decoding, the completions are rescored by teacher forcing through the
  transformers copy (`HFPolicy.logprobs`), one batched forward pass — exact, at the cost of that pass.
`logprob_source` in the constructor forces one path ("engine" | "teacher").

Behaviour logprobs and truncated importance sampling (algo.tis_cap > 0). Even untruncated, the engine's numbers
are not the trainer's: other kernels, other precision, other batching. Rather than hide that by teacher forcing,
RL can keep the engine's logprobs as the *behaviour* policy's (`logprob_source="engine"`, which
`policy.backends.load_policy` picks when algo.tis_cap > 0) and correct for the mismatch: the clipped surrogate
is taken against the trainer's recomputed logprobs and each token weighted by min(pi_trainer / pi_engine, cap)
(algos.losses.truncated_is_weights; train/overlap.py). Processed logprobs are then exactly right even under
top-k/top-p: they are the log-probability of the distribution the engine really sampled from. This mode is why
the extra needs vLLM >= 0.10.0, the first release with `logprobs_mode`.

Seeds are per request (vLLM's `SamplingParams.seed`): prompt i gets `derive_prompt_seeds(seed, B)[i]`, as
in the hf backend, so a request split over workers samples the same as one request. The two engines'
random streams differ, so hf and vllm samples for the same seed differ.

vLLM is imported inside the functions that need it; the tests drive this glue with a fake engine.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .base import Completion, LogprobOutput, SamplingParams, TokenBatch
from .hf import HFPolicy, derive_prompt_seeds


def to_vllm_params(params: SamplingParams, seed: int, sampling_params_cls):
    """Our SamplingParams as vLLM's, for one request seeded `seed` (top_k 0 -> -1: disabled in every vLLM version)."""
    return sampling_params_cls(
        n=params.n,
        temperature=params.temperature,
        top_p=params.top_p,
        top_k=params.top_k if params.top_k > 0 else -1,
        max_tokens=params.max_new_tokens,
        stop=list(params.stop) or None,
        include_stop_str_in_output=True,  # our texts keep the stop string
        logprobs=0,  # the sampled token's logprob only
        seed=seed,
        skip_special_tokens=True,
    )


def finish_reason(output) -> str:
    """vLLM's (finish_reason, stop_reason) as ours: length; stop with a string -> stop; stop on EOS -> eos."""
    if output.finish_reason == "length":
        return "length"
    return "stop" if isinstance(output.stop_reason, str) else "eos"


class VLLMPolicy:
    """A Policy whose `generate` runs on a vLLM engine (`llm`: a `vllm.LLM` or anything with its API)."""

    def __init__(self, llm, hf: HFPolicy, *, logprob_source: str = "auto", auto_sync: bool = True):
        if logprob_source not in {"auto", "engine", "teacher"}:
            raise ValueError(f"logprob_source={logprob_source!r}: choose auto | engine | teacher")
        self.llm = llm
        self.hf = hf
        self.logprob_source = logprob_source
        self.tokenizer = hf.tokenizer
        self.eos_id = hf.eos_id
        # auto_sync: before sampling, push the transformers copy's weights if they changed since the last push, so
        # every loop that trains this policy in place (RL, online DPO, OREO) samples its current weights without
        # knowing about the engine. The asynchronous trainer turns it off and pushes its own snapshots instead.
        self.auto_sync = auto_sync
        self._pushed = self._weights_version()

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: str = "cuda", dtype: torch.dtype | None = None,
                        gpu_memory_utilization: float = 0.3, logprob_source: str = "auto", hf_kwargs: dict | None = None,
                        **llm_kwargs) -> "VLLMPolicy":
        """Both engines from one local checkpoint; vLLM shares the GPU with the trainer (`gpu_memory_utilization`).
        `hf_kwargs` go to the transformers copy (e.g. use_chat_template), `llm_kwargs` to `vllm.LLM`."""
        from vllm import LLM

        hf = HFPolicy.from_pretrained(path, device=device, dtype=dtype, **(hf_kwargs or {}))
        dtype_name = str(dtype or torch.float32).replace("torch.", "")
        llm = LLM(model=str(path), dtype=dtype_name, gpu_memory_utilization=gpu_memory_utilization,
                  logprobs_mode="processed_logprobs", enable_prefix_caching=True, **llm_kwargs)
        return cls(llm, hf, logprob_source=logprob_source)

    @property
    def num_params(self) -> int:
        return self.hf.num_params

    def __getattr__(self, name: str):
        """Anything else of the Policy's surface (device, render, pad_id, ...) is the transformers copy's, so the
        verbs take either backend unchanged."""
        if name in ("hf", "llm") or name.startswith("__"):  # not set yet (unpickling, copying): no recursion
            raise AttributeError(name)
        return getattr(self.hf, name)

    @property
    def model(self) -> torch.nn.Module:
        """The transformers copy: the weights the trainer updates (and pushes into the engine with load_weights)."""
        return self.hf.model

    # -- the parts served by the transformers copy ---------------------------------------------------
    def encode_prompts(self, prompts: list[str], prefixes: list[str] | None = None) -> list[list[int]]:
        return self.hf.encode_prompts(prompts, prefixes)

    def token_batch(self, prompt_ids: list[list[int]], completion_ids: list[list[int]]) -> TokenBatch:
        return self.hf.token_batch(prompt_ids, completion_ids)

    def logprobs(self, batch: TokenBatch, *, temperature: float = 1.0, with_entropy: bool = False) -> LogprobOutput:
        return self.hf.logprobs(batch, temperature=temperature, with_entropy=with_entropy)

    # -- sampling ------------------------------------------------------------------------------------
    def _engine_logprobs_match(self, params: SamplingParams) -> bool:
        if self.logprob_source != "auto":
            return self.logprob_source == "engine"
        return params.temperature > 0 and params.top_k == 0 and params.top_p >= 1.0

    @torch.no_grad()
    def generate(self, prompts: list[str], params: SamplingParams, prefixes: list[str] | None = None, *,
                 prompt_seeds: list[int] | None = None) -> list[list[Completion]]:
        from vllm import SamplingParams as VSamplingParams

        if self.auto_sync and self._weights_version() != self._pushed:
            self.load_weights()
        prompt_ids = self.encode_prompts(prompts, prefixes)
        seeds = prompt_seeds if prompt_seeds is not None else derive_prompt_seeds(params.seed, len(prompts))
        requests = [{"prompt_token_ids": ids} for ids in prompt_ids]
        outputs = self.llm.generate(requests, [to_vllm_params(params, s, VSamplingParams) for s in seeds], use_tqdm=False)
        groups = []
        for ids, out in zip(prompt_ids, outputs):
            group = []
            # vLLM reads a request's prompt once for all its n samples, minus what its prefix cache held
            reused = min(len(ids), getattr(out, "num_cached_tokens", None) or 0)
            for j, o in enumerate(out.outputs):
                tokens = list(o.token_ids)
                engine_lp = [step[t].logprob for step, t in zip(o.logprobs or [], tokens)]
                group.append(Completion(text=o.text, token_ids=tokens, logprobs=torch.tensor(engine_lp, dtype=torch.float32),
                                        finish_reason=finish_reason(o), prompt_tokens=len(ids), cached_tokens=reused if j == 0 else len(ids)))
            groups.append(group)
        if not self._engine_logprobs_match(params):
            self._teacher_force(prompt_ids, groups, params)
        return groups

    def _teacher_force(self, prompt_ids: list[list[int]], groups: list[list[Completion]], params: SamplingParams) -> None:
        """Replace each completion's logprobs with log pi(token) at the sampling temperature, untruncated."""
        comps = [c for g in groups for c in g]
        rows = [ids for ids, g in zip(prompt_ids, groups) for _ in g]
        if not comps:
            return
        batch = self.hf.token_batch(rows, [c.token_ids or [self.eos_id] for c in comps])
        temperature = params.temperature if params.temperature > 0 else 1.0  # greedy reports T=1, as the hf backend
        logp = self.hf.logprobs(batch, temperature=temperature).logprobs.float().cpu()  # [N, T]
        for i, c in enumerate(comps):
            c.logprobs = logp[i, : len(c.token_ids)].clone()

    # -- weights -------------------------------------------------------------------------------------
    def load_weights(self, model: torch.nn.Module | dict | None = None) -> None:
        """Push weights (a module, a state dict such as the asynchronous trainer's snapshot, or by default the
        transformers copy's, which the trainer updates) into the engine, and drop the engine's prefix cache: its
        keys/values were computed with the old weights."""
        state = model if isinstance(model, dict) else (model if model is not None else self.hf.model).state_dict()
        weights = [(name, t.detach()) for name, t in state.items()]
        if hasattr(self.llm, "apply_model"):  # vLLM >= 0.9: runs the function on the model in every worker
            self.llm.apply_model(lambda m: m.load_weights(weights))
        else:  # older in-process engines
            self.llm.llm_engine.model_executor.driver_worker.model_runner.model.load_weights(weights)
        if hasattr(self.llm, "reset_prefix_cache"):
            self.llm.reset_prefix_cache()
        if not isinstance(model, dict) and (model is None or model is self.hf.model):
            self._pushed = self._weights_version()

    def _weights_version(self) -> int:
        """Changes whenever a parameter of the transformers copy is modified in place (optimiser steps,
        load_state_dict): torch counts in-place writes per tensor."""
        return sum(p._version for p in self.hf.model.parameters())
