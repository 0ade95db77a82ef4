"""Rollout workers as child processes on this machine (`dist.rollout_backend=process`): the Ray fleet's contract
(fleet.Fleet) without Ray. Each worker is a spawned Python process holding a replica of the policy and a scorer,
so its generation and verification run outside the trainer's interpreter: with `trainer.async=true` the producer
thread only waits on a pipe (no GIL held) while the trainer thread trains, which is what a producer *thread*
cannot do for a small model whose generation is mostly Python (docs/async_and_vllm.md).

    fleet = ProcessRollouts(policy, 1, scorer)    # spawns the worker; the policy and scorer are pickled to it
    groups = fleet.generate(prompts, params)       # the Policy.generate contract, sharded over workers
    fleet.push_weights(policy.model)               # the state dict goes down each pipe, by value
    fleet.shutdown()
"""
from __future__ import annotations

import multiprocessing as mp
import pickle
import traceback
from functools import partial

from .fleet import Fleet, RolloutWorker, WorkerLost


def _given(value):
    return value


# Every message is pickled by value with plain pickle. A Connection's own send() pickles tensors through torch's
# multiprocessing reductions, which move them into shared memory: the worker's replica would then *share* the
# trainer's weights and sample with them mid-update (a test caught this).
def _send(conn, obj) -> None:
    conn.send_bytes(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def _receive(conn):
    return pickle.loads(conn.recv_bytes())


def _serve(conn, payload: bytes, threads: int) -> None:
    """A worker's loop: (method, args) in, ("ok", result) or ("error", traceback text) out; None stops it.
    `payload` is the pickled (policy, scorer): the worker's own copy."""
    try:
        policy, scorer = pickle.loads(payload)
        worker = RolloutWorker(policy, partial(_given, scorer), threads)
        _send(conn, ("ok", None))
    except BaseException:
        _send(conn, ("error", traceback.format_exc()))
        return
    while True:
        try:
            msg = _receive(conn)
        except EOFError:  # the trainer went away
            break
        if msg is None:
            break
        method, args = msg
        try:
            _send(conn, ("ok", getattr(worker, method)(*args)))
        except BaseException:
            _send(conn, ("error", traceback.format_exc()))
    if hasattr(worker.scorer, "close"):
        worker.scorer.close()


class ProcessRollouts(Fleet):
    """`num_workers` spawned worker processes, each with `threads_per_worker` torch threads."""

    def __init__(self, policy, num_workers: int, scorer, *, threads_per_worker: int = 1):
        if num_workers < 1:
            raise ValueError(f"dist.rollout_workers={num_workers}: need at least 1 worker")
        ctx = mp.get_context("spawn")  # a fresh interpreter: no forked copy of the trainer's threads or locks
        self.policy, self.num_params = policy, policy.num_params
        self.workers, self.procs = [], []
        payload = pickle.dumps((policy, scorer), protocol=pickle.HIGHEST_PROTOCOL)
        for _ in range(num_workers):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(child, payload, threads_per_worker), daemon=True, name="rollout-worker")
            proc.start()
            child.close()
            self.workers.append(parent)
            self.procs.append(proc)
        try:
            for conn in self.workers:  # every worker built its replica (or the error says why not)
                self._recv(conn)
        except BaseException:
            self.shutdown()  # the workers that did start do not outlive the failed fleet
            raise

    @staticmethod
    def _lost(e: BaseException) -> WorkerLost:
        return WorkerLost(f"a rollout worker process died ({type(e).__name__}); the last checkpoint is intact: rerun the "
                          "same command with --resume to continue from it")

    def _recv(self, conn):
        try:
            status, value = _receive(conn)
        except (EOFError, OSError) as e:
            raise self._lost(e) from e
        if status == "error":
            raise RuntimeError(f"in a rollout worker process:\n{value}")
        return value

    def _map(self, method: str, args_per_worker: list[tuple]) -> list:
        used = self.workers[: len(args_per_worker)]  # split_evenly drops empty shards
        for conn, args in zip(used, args_per_worker):
            try:
                _send(conn, (method, args))
            except OSError as e:  # BrokenPipeError: the worker is gone
                raise self._lost(e) from e
        return [self._recv(conn) for conn in used]

    def _send_weights(self, state: dict) -> list[int]:
        return self._map("set_weights", [(state,)] * len(self.workers))

    def shutdown(self) -> None:
        for conn in self.workers:
            try:
                _send(conn, None)
            except (BrokenPipeError, OSError):
                pass
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
        self.workers, self.procs = [], []
