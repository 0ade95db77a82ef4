"""Rollout and scoring fan-out over Ray actors, each holding a replica of the policy.

    fleet = RayRollouts(policy, num_workers=2)          # ray.init(num_cpus=...) if no cluster is running
    groups = fleet.generate(prompts, params)            # the Policy.generate contract, sharded over workers
    verdicts = fleet.score_texts(problems, texts)       # the scorer contract, sharded over workers
    ...optimiser step on the trainer's policy...
    fleet.push_weights(policy.model)                    # one ray.put, every worker loads it (a state dict works too)
    fleet.shutdown()                                    # and ray.shutdown() if the fleet started Ray

Sampling is seeded per prompt (`policy.hf.derive_prompt_seeds`): prompt i of a request seeded s draws
from a stream that depends only on (s, i), so the fleet returns exactly what `policy.generate` returns in
one process, for any number of workers. The driver keeps the trainer's policy; `encode_prompts` and
`token_batch` (which the RL loop also calls on the generating object) are answered locally.

Ray is imported lazily; the worker class is plain Python, wrapped with `ray.remote` at start-up, so it
is also usable (and tested) in-process.
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


class RayRollouts:
    """Fan generation and scoring out to `num_workers` Ray actors holding replicas of `policy`."""

    def __init__(self, policy, num_workers: int, scorer_factory: Callable | None = None, *, num_cpus_per_worker: float = 1,
                 num_gpus_per_worker: float = 0, threads_per_worker: int = 1, ray_init: dict | None = None):
        import ray

        if num_workers < 1:
            raise ValueError(f"dist.rollout_workers={num_workers}: need at least 1 worker")
        self.started_ray = not ray.is_initialized()  # then shutdown() stops the local cluster it started too
        if self.started_ray:
            kw = {"num_cpus": max(1, int(num_workers * num_cpus_per_worker)), "include_dashboard": False, "log_to_driver": False}
            ray.init(**{**kw, **(ray_init or {})})
        self.ray = ray
        self.policy = policy  # the trainer's copy: prompts are encoded here, and its weights are pushed
        actor = ray.remote(num_cpus=num_cpus_per_worker, num_gpus=num_gpus_per_worker)(RolloutWorker)
        policy_ref = ray.put(policy)  # one serialised copy in the object store, shared by every worker
        self.workers = [actor.remote(policy_ref, scorer_factory, threads_per_worker) for _ in range(num_workers)]
        self.num_params = policy.num_params

    # -- the Policy-side contract -------------------------------------------------------------------
    def generate(self, prompts: list[str], params, prefixes: list[str] | None = None, *, prompt_seeds: list[int] | None = None):
        from ..policy.hf import derive_prompt_seeds

        seeds = prompt_seeds if prompt_seeds is not None else derive_prompt_seeds(params.seed, len(prompts))
        parts = split_evenly(len(prompts), len(self.workers))
        futures = [w.generate.remote(prompts[s], params, prefixes[s] if prefixes else None, seeds[s]) for w, s in zip(self.workers, parts)]
        return [group for part in self._get(futures) for group in part]

    def encode_prompts(self, prompts: list[str], prefixes: list[str] | None = None) -> list[list[int]]:
        return self.policy.encode_prompts(prompts, prefixes)

    def token_batch(self, prompt_ids, completion_ids):
        return self.policy.token_batch(prompt_ids, completion_ids)

    # -- the scorer-side contract -------------------------------------------------------------------
    def score_texts(self, problems: list, texts: list[str]):
        parts = split_evenly(len(texts), len(self.workers))
        futures = [w.score_texts.remote(problems[s], texts[s]) for w, s in zip(self.workers, parts)]
        return [v for part in self._get(futures) for v in part]

    def score(self, problems: list, solutions: list[list[str]]):
        """The Scorer contract (step scores), sharded over workers."""
        parts = split_evenly(len(solutions), len(self.workers))
        futures = [w.score.remote(problems[s], solutions[s]) for w, s in zip(self.workers, parts)]
        return [v for part in self._get(futures) for v in part]

    # -- weights ------------------------------------------------------------------------------------
    def push_weights(self, model: torch.nn.Module | dict | None = None) -> int:
        """Send weights to every worker (one object-store copy); returns the version. `model`: a module, a state
        dict (the asynchronous trainer's snapshot, train/overlap.py), or by default the trainer's policy."""
        source = model if isinstance(model, dict) else (model if model is not None else self.policy.model).state_dict()
        state = {k: v.detach().to("cpu") for k, v in source.items()}
        ref = self.ray.put(state)
        versions = self._get([w.set_weights.remote(ref) for w in self.workers])
        return versions[0]

    def _get(self, futures):
        """ray.get, with a dead worker reported in one line that says how to continue (not Ray's long traceback)."""
        try:
            return self.ray.get(futures)
        except self.ray.exceptions.RayError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise WorkerLost(f"a Ray rollout worker died ({type(e).__name__}: {first[:200]}); the last checkpoint is intact: "
                             "rerun the same command with --resume to continue from it") from e

    def shutdown(self) -> None:
        """Stop the workers, and the local Ray cluster when this fleet started it (one it joined keeps running)."""
        for w in self.workers:
            self.ray.kill(w)
        self.workers = []
        if self.started_ray and self.ray.is_initialized():
            self.ray.shutdown()
