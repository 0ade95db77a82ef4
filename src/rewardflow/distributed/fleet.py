"""What a rollout fleet is, whatever runs its workers: each worker holds a replica of the policy and a scorer; the
fleet answers the Policy contract (generate, encode_prompts, token_batch), the scorer contract (score_texts, score)
and takes weight pushes. Generation and scoring are sharded over the workers in contiguous slices; sampling is
seeded per prompt (`policy.hf.derive_prompt_seeds`), so any number of workers returns exactly what `policy.generate`
returns in one process. Subclasses say how a call reaches the workers: Ray actors (ray_rollout.RayRollouts) or
child processes on this machine (process_rollout.ProcessRollouts).
"""
from __future__ import annotations

import os
from typing import Callable

import torch


def _default_scorer():
    from ..rewards.verifier import VerifierScorer

    return VerifierScorer()


class RolloutWorker:
    """One policy replica and one scorer (a Ray actor once wrapped by `ray.remote`)."""

    def __init__(self, policy, scorer_factory: Callable | None = None, num_threads: int = 1):
        torch.set_num_threads(num_threads)
        self.policy = policy
        self.policy.model.eval()
        self.scorer = (scorer_factory or _default_scorer)()
        self.version = 0  # weight pushes received

    def set_weights(self, state_dict: dict) -> int:
        self.policy.model.load_state_dict(state_dict)
        self.version += 1
        return self.version

    def generate(self, prompts: list[str], params, prefixes: list[str] | None, prompt_seeds: list[int]):
        return self.policy.generate(prompts, params, prefixes, prompt_seeds=prompt_seeds)

    def score_texts(self, problems: list, texts: list[str]):
        return self.scorer.score_texts(problems, texts)

    def score(self, problems: list, solutions: list[list[str]]):
        return self.scorer.score(problems, solutions)

    def pid(self) -> int:
        return os.getpid()


def split_evenly(n: int, k: int) -> list[slice]:
    """k contiguous slices covering range(n), sizes differing by at most one (empty ones dropped)."""
    bounds = [n * i // k for i in range(k + 1)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


class WorkerLost(RuntimeError):
    """A rollout worker died (killed, out of memory, its node gone): the run stops, its checkpoints stay intact."""


class Fleet:
    """The rollout contract on top of two primitives a subclass provides: `_map(method, args_per_worker)` (call
    `method` on worker i with args_per_worker[i], return the results in order) and `_send_weights(state)`."""

    policy = None  # the trainer's copy: prompts are encoded here, and its weights are pushed
    workers: list = []

    def _map(self, method: str, args_per_worker: list[tuple]) -> list:
        raise NotImplementedError

    def _send_weights(self, state: dict) -> list[int]:
        raise NotImplementedError

    # -- the Policy-side contract -------------------------------------------------------------------
    def generate(self, prompts: list[str], params, prefixes: list[str] | None = None, *, prompt_seeds: list[int] | None = None):
        from ..policy.hf import derive_prompt_seeds

        seeds = prompt_seeds if prompt_seeds is not None else derive_prompt_seeds(params.seed, len(prompts))
        parts = split_evenly(len(prompts), len(self.workers))
        return [group for part in self._map("generate", [(prompts[s], params, prefixes[s] if prefixes else None, seeds[s]) for s in parts]) for group in part]

    def encode_prompts(self, prompts: list[str], prefixes: list[str] | None = None) -> list[list[int]]:
        return self.policy.encode_prompts(prompts, prefixes)

    def token_batch(self, prompt_ids, completion_ids):
        return self.policy.token_batch(prompt_ids, completion_ids)

    # -- the scorer-side contract -------------------------------------------------------------------
    def score_texts(self, problems: list, texts: list[str]):
        parts = split_evenly(len(texts), len(self.workers))
        return [v for part in self._map("score_texts", [(problems[s], texts[s]) for s in parts]) for v in part]

    def score(self, problems: list, solutions: list[list[str]]):
        """The Scorer contract (step scores), sharded over workers."""
        parts = split_evenly(len(solutions), len(self.workers))
        return [v for part in self._map("score", [(problems[s], solutions[s]) for s in parts]) for v in part]

    # -- weights ------------------------------------------------------------------------------------
    def push_weights(self, model: torch.nn.Module | dict | None = None) -> int:
        """Send weights to every worker (one object-store copy); returns the version. `model`: a module, a state
        dict (the asynchronous trainer's snapshot, train/overlap.py), or by default the trainer's policy."""
        source = model if isinstance(model, dict) else (model if model is not None else self.policy.model).state_dict()
        state = {k: v.detach().to("cpu") for k, v in source.items()}
        return self._send_weights(state)[0]
