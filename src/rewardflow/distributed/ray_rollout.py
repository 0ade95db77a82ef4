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
`token_batch` (which the RL loop also calls on the generating object) are answered locally. The contract itself
is fleet.Fleet's; dist.rollout_backend=process runs the same workers as child processes without Ray.

Ray is imported lazily; the worker class is plain Python, wrapped with `ray.remote` at start-up, so it
is also usable (and tested) in-process.
"""
from __future__ import annotations

from typing import Callable

from .fleet import Fleet, RolloutWorker, WorkerLost, split_evenly

__all__ = ["RayRollouts", "RolloutWorker", "WorkerLost", "split_evenly"]  # the worker and helpers live in fleet.py


class RayRollouts(Fleet):
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

    def _map(self, method: str, args_per_worker: list[tuple]) -> list:
        return self._get([getattr(w, method).remote(*a) for w, a in zip(self.workers, args_per_worker)])

    def _send_weights(self, state: dict) -> list[int]:
        ref = self.ray.put(state)  # one object-store copy, read by every worker
        return self._get([w.set_weights.remote(ref) for w in self.workers])

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
