"""Who generates step s's rollouts, with which weights, and the off-policy correction for the difference.

Synchronous RL (the default) samples step s with the weights after update s-1, then trains on it. Asynchronous RL
(`trainer.async=true`) samples in a background thread on a replica of the policy while the trainer updates:
the producer may start step s once update s-1-k is published (k = trainer.max_staleness), so generation of
step s+1 overlaps training of step s, and a rollout is at most k updates old. This is verl's one-step-off-policy
pipeline and AReaL's bounded staleness (Fu et al. 2025, sec. 4). With k = 0 the producer waits for every update
and samples exactly what the synchronous loop samples: the same seeds, the same weights (a bitwise copy).

The replica is what the generating object already provides: the Ray fleet (push_weights), the vLLM engine
(load_weights), or else a deep copy of the in-process policy (twice the policy's memory). The trainer publishes a
snapshot of its weights after each update; the producer loads the newest snapshot before each rollout it starts.

The behaviour policy's logprobs travel with every completion (Completion.logprobs, as sampled). With algo.tis_cap
> 0, `OffPolicyCorrection` takes the clip against the trainer's proximal logprobs (read from the loss's own first
forward pass) and weights each token by min(pi_prox / pi_behav, tis_cap) (algos.losses.truncated_is_weights:
decoupled PPO / truncated IS).
A resumed asynchronous run restarts the pipeline: its first rollout after the checkpoint is on-policy.
"""
from __future__ import annotations

import contextlib
import copy
import threading
import time

import torch

from ..algos.losses import importance_weighted_advantages, truncated_is_weights
from ..optim import autocast
from .rollout import collect_batch


def snapshot(model: torch.nn.Module) -> dict:
    """A copy of the weights that the next optimiser step cannot change under the producer's feet."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def autocast_state() -> list[tuple[str, torch.dtype]]:
    """The calling thread's enabled autocast contexts (device type, dtype): autocast state is per thread, so the
    producer re-enters the trainer's (model.dtype=bfloat16 samples in bf16 in both loops)."""
    return [(d, torch.get_autocast_dtype(d)) for d in ("cpu", "cuda") if torch.is_autocast_enabled(d)]


class OffPolicyCorrection:
    """Truncated importance sampling on a prepared batch `p` (train/algorithms.Prepared), fused into the loss's own
    forward pass: within an optimiser step the weights do not change until every micro-batch has run, so the first
    epoch's forward of a row gives exactly the proximal logprobs (pi before this update). `apply(fw, p, mb)`, called
    between that forward and the loss, makes them the clip's old logprobs and weights the row's advantages by
    min(pi_prox / pi_behav, tis_cap); later epochs find the rows done. No extra forward pass.
    Rows without a forward pass (zero advantage) keep their values."""

    def __init__(self, p, cfg):
        self.cap = cfg.algo.tis_cap
        self.behav = p.old_logp.clone()  # [N, T] the sampler's logprobs
        self.done = torch.zeros(len(p.mask), dtype=torch.bool, device=p.mask.device)  # [N] rows already corrected (mb's device)
        p.adv = (p.adv[:, None] if p.adv.dim() == 1 else p.adv).expand_as(p.mask).clone()  # [N, T]: each token its own weight
        self.totals = {"tis/weight_mean": 0.0, "tis/capped_frac": 0.0, "tis/behav_kl": 0.0}
        self.tokens = 0

    def apply(self, fw, p, mb: torch.Tensor) -> None:
        todo = ~self.done[mb]  # [n]
        if not todo.any():
            return
        rows = mb[todo]
        prox = fw.logp.detach()[todo].to(p.old_logp.dtype)  # [r, T] pi before this update
        weight, stats = truncated_is_weights(prox, self.behav[rows], p.mask[rows], cap=self.cap)  # [r, T]
        p.old_logp[rows] = prox.to(p.old_logp.device)
        p.adv[rows] = importance_weighted_advantages(p.adv[rows], weight)
        self.done[rows] = True
        tokens = int(p.mask[rows].sum().item())
        for k in self.totals:  # token-weighted, so the batch's statistic is the mean over all its tokens
            self.totals[k] += stats[k] * tokens
        self.tokens += tokens

    def stats(self) -> dict:
        if self.tokens == 0:
            return {"tis/weight_mean": 1.0, "tis/capped_frac": 0.0, "tis/behav_kl": 0.0}
        return {k: v / self.tokens for k, v in self.totals.items()}


class SyncRollouts:
    """Step s sampled when asked, with the current weights; after each update the generator gets them."""

    def __init__(self, gen, judge, source, cfg, reward_scorers, policy, fleet):
        self.gen, self.judge, self.source, self.cfg, self.reward_scorers = gen, judge, source, cfg, reward_scorers
        self.policy, self.fleet = policy, fleet

    def get(self, step: int):
        return collect_batch(self.gen, self.judge, self.source, self.cfg, step, self.reward_scorers)

    def publish(self, step: int) -> None:
        if self.fleet is not None:
            self.fleet.push_weights(self.policy.model)  # the next step's rollouts sample the updated policy
        elif hasattr(self.gen, "load_weights"):  # a vLLM engine beside the trained transformers copy
            self.gen.load_weights()

    def close(self) -> None:
        pass


class AsyncRollouts:
    """Rollouts of steps start+1 .. last made in a background thread, each from weights at most `max_staleness`
    updates old. `get(s)` blocks until step s's rollout is ready; `publish(s)` hands over the weights after update s."""

    def __init__(self, replica, load_weights, judge, source, cfg, reward_scorers, policy, start: int, *, split_threads: bool = False):
        self.replica, self.load_weights, self.judge, self.source = replica, load_weights, judge, source
        # an in-process producer thread and the trainer thread each run torch's intra-op pool: split the threads
        # between them (2 cores: 1 + 1) rather than run 2 x 2 on 2 cores; restored by close()
        self.threads = torch.get_num_threads()
        if split_threads:
            torch.set_num_threads(max(1, self.threads // 2))
        self.cfg, self.reward_scorers, self.policy = cfg, reward_scorers, policy
        self.cond = threading.Condition()
        self.published, self.weights = start, snapshot(policy.model)  # version = updates applied
        self.ready: dict[int, tuple] = {}
        self.error: BaseException | None = None
        self.stopped = False
        self.autocast = autocast_state()  # the trainer thread's, entered again in the producer thread
        self.thread = threading.Thread(target=self._produce, args=(start + 1, cfg.trainer.steps), name="rollout-producer", daemon=True)
        self.thread.start()

    def _produce(self, first: int, last: int) -> None:
        try:
            with contextlib.ExitStack() as stack:
                for device_type, dtype in self.autocast:
                    stack.enter_context(autocast(device_type, dtype))
                self._loop(first, last)
        except BaseException as e:  # handed to the trainer's next get(), which raises it in the main thread
            with self.cond:
                self.error = e
                self.cond.notify_all()

    def _loop(self, first: int, last: int) -> None:
        loaded = None  # the replica's weight version; loaded before the first rollout (a resumed run's replica is older)
        for step in range(first, last + 1):
            need = step - 1 - self.cfg.trainer.max_staleness  # the oldest weights this step may be sampled with
            with self.cond:
                self.cond.wait_for(lambda: self.stopped or self.published >= need)
                if self.stopped:
                    return
                version, weights = self.published, self.weights
            if version != loaded:
                self.load_weights(weights)
                loaded = version
            cpu0 = time.thread_time()
            result = collect_batch(self.replica, self.judge, self.source, self.cfg, step, self.reward_scorers)
            with self.cond:
                self.ready[step] = (result, version, time.thread_time() - cpu0)
                self.cond.notify_all()

    def get(self, step: int):
        t0 = time.perf_counter()
        with self.cond:
            self.cond.wait_for(lambda: step in self.ready or self.error is not None)
            if step not in self.ready:
                raise RuntimeError(f"the rollout producer failed before step {step}: {self.error}") from self.error
            (rollout, sampled, gen_seconds, info), version, cpu = self.ready.pop(step)
        # staleness: updates between the weights that sampled the batch and the ones it trains (step - 1 applied);
        # producer_cpu_s: CPU time of the producer thread on this rollout (generation, scoring), not its wall time
        info = {**info, "async/staleness": step - 1 - version, "perf/rollout_wait_s": time.perf_counter() - t0, "perf/producer_cpu_s": cpu}
        return rollout, sampled, gen_seconds, info

    def publish(self, step: int) -> None:
        weights = snapshot(self.policy.model)  # copied outside the lock: the producer may read the previous one meanwhile
        with self.cond:
            self.published, self.weights = step, weights
            self.cond.notify_all()

    def close(self) -> None:
        """Stop after the rollout in progress (its result is dropped)."""
        with self.cond:
            self.stopped = True
            self.cond.notify_all()
        self.thread.join()
        torch.set_num_threads(self.threads)
        if hasattr(self.replica, "auto_sync"):  # a vLLM engine: later sampling (the final eval) pushes the final weights
            self.replica.auto_sync = True


def make_producer(policy, gen, judge, fleet, source, cfg, reward_scorers, start: int):
    """The rollout producer train_rl pulls from: SyncRollouts, or with trainer.async an AsyncRollouts whose replica
    is the fleet, the vLLM engine, or a deep copy of the in-process policy."""
    if not cfg.trainer.async_rl:
        return SyncRollouts(gen, judge, source, cfg, reward_scorers, policy, fleet)
    if fleet is not None:
        replica, load = fleet, fleet.push_weights
    elif gen is policy and hasattr(policy, "load_weights"):  # vLLM: the engine samples, the transformers copy trains
        if policy.logprob_source != "engine":  # teacher forcing would read the transformers copy mid-update
            raise ValueError("trainer.async with model.backend=vllm keeps the engine's logprobs as the behaviour policy's: set algo.tis_cap > 0")
        policy.auto_sync = False  # the engine gets the published snapshots, never the weights mid-update
        replica, load = policy, policy.load_weights
    elif gen is policy:
        replica = copy.deepcopy(policy)  # its own weights and tokenizer: nothing is shared with the training thread
        load = lambda weights: replica.model.load_state_dict(weights)
    else:
        raise ValueError("trainer.async needs one process (or Ray rollout workers); under torchrun the ranks already share generation")
    in_process = fleet is None and replica is not policy  # a producer thread on a deep copy, in this process
    return AsyncRollouts(replica, load, judge, source, cfg, reward_scorers, policy, start, split_threads=in_process)
