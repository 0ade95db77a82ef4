"""Online RL with verifiable rewards: rollout -> reward -> advantage -> policy loss -> AdamW.

The loop only wires parts together: rollouts (and DAPO's refill) live in rollout.py, each algorithm's
preparation and micro-batch loss in algorithms.py (registry ALGORITHMS, looked up by `algo.name`), PPO's
critic in ppo.py, and the mathematics in algos/. Every random choice of step s is seeded from (seed, s),
so a run resumed from a checkpoint repeats exactly what the straight run did.

Scale-out (distributed/): with dist.rollout_workers > 0, Ray actors holding policy replicas generate and score the
rollouts; launched under torchrun, every rank trains on its share of each batch's rows with gradients summed
across ranks, so the update equals the one-process update on the same global batch.
"""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import torch

from ..algos import aggregate_tokens, entropy_bonus, entropy_from_logits, kl_estimate
from ..config import Config
from ..distributed.ddp import ShardedGeneration, allreduce_gradients, allreduce_stats, broadcast_parameters, init_distributed, rank_world, shard_rows
from ..policy.forward import Forward, forward
from .algorithms import ALGORITHMS, prepare
from .checkpoint import latest_checkpoint, load_trainer_state, save_checkpoint
from ..optim import make_optimizer, optimizer_step
from .ppo import make_critic
from .reward import load_reward_scorers, update_scorers
from .tracking import SampleLog, with_trackers
from .overlap import OffPolicyCorrection, make_producer
from .rollout import Rollout, collect_rollout, step_seed

__all__ = ["Rollout", "collect_rollout", "optimise", "rollout_metrics", "start_fleet", "step_seed", "train_rl"]

# Statistics that are the same on every rank after the gradient all-reduce; every other statistic of
# `optimise` is a sum of per-row terms already divided by the global batch's size, so ranks add them up.
SAME_ON_EVERY_RANK = ("train/grad_norm", "value/grad_norm")


def microbatch_loss(policy, p, algo, mb: torch.Tensor, cfg: Config, ctx: dict) -> tuple[torch.Tensor, dict, dict]:
    """The loss of rows `mb` (the algorithm's loss, plus the KL and entropy terms when configured, each already
    divided by the global batch's normaliser), its terms as floats, and the algorithm's micro-batch stats."""
    a, critic = cfg.algo, ctx["critic"]
    need_logits = algo.logits or a.entropy_coef > 0
    sub = p.batch.select(mb)
    if need_logits or algo.hidden:
        fw = forward(policy.model, sub, cfg.rollout.temperature, logits=need_logits, hidden=algo.hidden and critic is not None and critic.shared)
    else:
        fw = Forward(policy.logprobs(sub, temperature=cfg.rollout.temperature).logprobs)
    if ctx.get("tis") is not None:  # truncated IS: this forward's logprobs are the proximal ones (train/overlap.py)
        ctx["tis"].apply(fw, p, mb)
    loss, st = algo.loss(fw, p, mb, cfg, ctx)
    terms = {"loss/policy": loss.item()}
    if a.kl_coef > 0 and a.kl_mode == "loss":
        kl = aggregate_tokens(kl_estimate(fw.logp, p.ref_logp[mb], a.kl_estimator), p.mask[mb], a.agg, p.norm)
        loss = loss + a.kl_coef * kl
        terms["kl/ref"] = kl.item()
    if a.entropy_coef > 0:
        ent_loss, _ = entropy_bonus(entropy_from_logits(fw.logits), p.mask[mb], coef=a.entropy_coef, agg=a.agg, normalizer=p.norm)
        loss = loss + ent_loss
        terms["entropy/bonus"] = ent_loss.item()
    return loss, terms, st


def optimise(policy, ref_policy, rollout: Rollout, cfg: Config, opt, sched, *, step: int = 0, critic=None, scorers=()) -> dict:
    """algo.epochs optimiser steps on one rollout batch, accumulating gradients over micro-batches.

    Under torchrun every rank holds the whole batch (advantages and the loss normaliser are the global batch's)
    and runs forward/backward on its contiguous share of the rows; the gradients are summed across ranks before
    clipping (distributed/ddp.py explains why not DistributedDataParallel), so every rank takes the one-process step.
    A non-finite loss or gradient norm raises NonFiniteError before the weights change."""
    a = cfg.algo
    stats = {"loss/policy": 0.0, "kl/ref": 0.0, "loss/clip_frac": 0.0, "train/grad_norm": 0.0, "train/tokens": 0}
    if len(rollout.completions) == 0:  # dynamic sampling found no informative group within its cap
        return stats
    p, algo = prepare(policy, ref_policy, rollout, cfg, step=step, critic=critic, scorers=scorers)
    # truncated IS / decoupled PPO (algo.tis_cap > 0): clip against the trainer's own logprobs, weight by pi_prox/pi_behav
    ctx = {"policy": policy, "critic": critic, "tis": OffPolicyCorrection(p, cfg) if a.tis_cap > 0 else None}
    rows = p.rows[shard_rows(len(p.rows), *rank_world())]  # this rank's rows; all of them in one process
    for _ in range(a.epochs):
        for mb in rows.split(cfg.trainer.micro_batch_size) if len(rows) else []:
            loss, terms, st = microbatch_loss(policy, p, algo, mb, cfg, ctx)
            for k, v in terms.items():
                stats[k] = stats.get(k, 0.0) + v / a.epochs
            for k, v in st.items():  # micro-batch stats, weighted by their share of the rows
                stats[k] = stats.get(k, 0.0) + v * len(mb) / len(p.rows) / a.epochs
            loss.backward()
            stats["train/tokens"] += int(p.mask[mb].sum().item())
        losses = {k: stats[k] for k in ("loss/policy", "kl/ref", "entropy/bonus") if k in stats}
        # `step` counts from 0 here; the log and the error name the 1-based step. The all-reduce sums the ranks'
        # gradients into the full batch's (a no-op in one process).
        stats["train/grad_norm"] += optimizer_step(policy.model, opt, sched, max_grad_norm=cfg.trainer.max_grad_norm, step=step + 1,
                                                   losses=losses, allreduce=allreduce_gradients) / a.epochs
        if critic is not None:
            stats["value/grad_norm"] = critic.step(step=step + 1, allreduce=allreduce_gradients)
    if ctx["tis"] is not None:
        p.extra.update(ctx["tis"].stats())
    stats.pop("ratio_mean", None)
    stats.update(allreduce_stats({k: v for k, v in stats.items() if k not in SAME_ON_EVERY_RANK}))
    stats.update({k: v for k, v in p.extra.items() if "/" in k})
    stats["train/rows"] = len(p.rows)
    return stats


def rollout_metrics(rollout: Rollout, gen_seconds: float) -> dict:
    r = rollout.rewards  # [B, G]
    lengths = torch.tensor([len(c.token_ids) for c in rollout.completions], dtype=torch.float)
    sampled_logp = torch.cat([c.logprobs for c in rollout.completions])
    return {
        "reward/mean": r.mean().item(),
        "reward/std": r.std().item(),
        "reward/correct": rollout.outcome.mean().item(),
        "reward/zero_var_frac": (rollout.outcome.std(dim=1) == 0).float().mean().item(),
        # -E[log pi(sampled token)] is an unbiased estimate of the per-token entropy
        "rollout/entropy": -sampled_logp.mean().item(),
        "rollout/len": lengths.mean().item(),
        "rollout/tokens": lengths.sum().item(),
        "rollout/truncated_frac": sum(c.finish_reason == "length" for c in rollout.completions) / len(rollout.completions),
        "perf/gen_tok_per_s": lengths.sum().item() / gen_seconds,
    }


def start_fleet(policy, scorer, cfg: Config):
    """Rollout workers, each with a replica of `policy` at its current weights and its own unpickled copy of
    `scorer`: Ray actors (distributed/ray_rollout.py) or, with dist.rollout_backend=process, child processes
    (distributed/process_rollout.py). Sampling is seeded per prompt, so the fleet samples what `policy` would."""
    d = cfg.dist
    if d.rollout_backend == "process":
        from ..distributed.process_rollout import ProcessRollouts

        return ProcessRollouts(policy, d.rollout_workers, scorer, threads_per_worker=max(1, int(d.worker_cpus)))
    from ..distributed.ray_rollout import RayRollouts  # imports ray itself, only now

    return RayRollouts(policy, d.rollout_workers, lambda: scorer, num_cpus_per_worker=d.worker_cpus, num_gpus_per_worker=d.worker_gpus,
                       threads_per_worker=max(1, int(d.worker_cpus)))


def resume_state(run_dir: Path, policy, opt, sched, critic) -> tuple[int, dict]:
    """Load the latest checkpoint of run_dir into the policy, optimiser, scheduler and critic: (its step, the
    saved states of online-learning reward scorers). (0, {}) when there is none."""
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        return 0, {}
    from ..policy.lora import load_weights

    load_weights(policy, ckpt)  # the adapter of a LoRA policy, else the full model
    state = load_trainer_state(ckpt, opt, sched)
    if critic is not None:
        critic.load_state(state["extra"]["critic"])
    return state["step"], state["extra"].get("scorers", {})


def step_metrics(sampled: Rollout, stats: dict, info: dict, verifier, *, lr: float, gen_seconds: float, train_seconds: float,
                 t0: float) -> dict:
    """One RL step's log row: rollout and reward metrics, the optimiser's stats, the verifier's counts of this step."""
    metrics = {**rollout_metrics(sampled, gen_seconds), **info}
    metrics["perf/train_tok_per_s"] = stats.pop("train/tokens") / max(train_seconds, 1e-9)
    metrics.update(stats)
    if verifier is not None:  # verify/timeout, verify/error, ...: counts since the previous step
        metrics.update(verifier.take_stats())
    metrics.update({"train/lr": lr, "time/step_s": time.perf_counter() - t0})
    return metrics


def save_rl_checkpoint(run_dir: Path, step: int, policy, opt, sched, cfg: Config, critic, reward_scorers: list) -> None:
    extra = {"scorers": {i: s.state() for i, s in enumerate(reward_scorers) if hasattr(s, "state")}}
    if critic is not None:
        extra["critic"] = critic.state()
    save_checkpoint(run_dir, step, policy, opt, sched, asdict(cfg), extra=extra)


def start_rl(cfg: Config, policy, scorer, run_dir: Path, resume: bool):
    """Everything the loop holds: rank, optimiser, scheduler, critic, first step, reward scorers, the generator
    and judge of rollouts (the Ray fleet, sharded generation under torchrun, or the policy and scorer themselves)."""
    tr = cfg.trainer
    rank, world = init_distributed(cfg.model.device)
    if world > 1 and cfg.dist.rollout_workers > 0:
        raise ValueError(f"dist.rollout_workers={cfg.dist.rollout_workers} under torchrun (WORLD_SIZE={world}): every rank would start its own "
                         "Ray fleet; use one of the two (dist.rollout_workers=0 with torchrun)")
    opt, sched = make_optimizer(policy.model, tr.lr, tr.weight_decay, tr.warmup_steps, tr.steps * cfg.algo.epochs, tr.lr_schedule)
    critic = make_critic(policy, cfg) if ALGORITHMS[cfg.algo.name].critic else None
    start, saved_scorers = resume_state(run_dir, policy, opt, sched, critic) if resume else (0, {})
    # Replicas must start identical; every rank loaded the same files, this makes it a guarantee (no-op in one process).
    broadcast_parameters(policy.model)
    if critic is not None:
        broadcast_parameters(critic)
    policy.model.train()
    # config `reward:`: learned scorers beside the verifier (train/reward.py); they score in this process, not in the fleet.
    # Scorers that learn online (PRIME) keep their state in the checkpoint, so a resumed run continues them exactly.
    reward_scorers = load_reward_scorers(cfg.reward)
    for i, scorer_state in saved_scorers.items():
        reward_scorers[i].load_state(scorer_state)
    fleet = start_fleet(policy, scorer, cfg) if cfg.dist.rollout_workers > 0 else None
    # Under torchrun each rank samples its share of the prompts and all-gathers the groups (ShardedGeneration)
    # rather than every rank sampling the whole batch: generation is the dominant cost, so it splits K ways,
    # and per-prompt seeding makes the gathered batch the one a single process samples, identical on all ranks.
    gen = fleet if fleet is not None else ShardedGeneration(policy) if world > 1 else policy
    judge = fleet if fleet is not None else scorer
    return rank, opt, sched, critic, start, reward_scorers, fleet, gen, judge


def train_rl(cfg: Config, policy, ref_policy, source, scorer, run_dir: Path, *, log, resume: bool = False, evaluate=None, progress=None) -> int:
    """Run cfg.trainer.steps RL steps; `source.train_problems(indices)` supplies prompts; `evaluate(step)`
    (optional) returns held-out metrics to log. Returns the number of steps run in this call.

    Under torchrun every rank calls this with the same arguments; rank 0 alone evaluates, logs (`log` may be
    None elsewhere), reports progress and writes checkpoints."""
    tr = cfg.trainer
    rank, opt, sched, critic, start, reward_scorers, fleet, gen, judge = start_rl(cfg, policy, scorer, run_dir, resume)
    # the verifier's counts are logged per step; with a fleet the workers' own copies verify, so there are none here
    verifier = getattr(scorer, "verifier", None) if fleet is None else None
    if verifier is not None:
        verifier.take_stats()  # a resumed (or reused) verifier starts this run's counts at zero
    # config `logging:`: TensorBoard / W&B beside metrics.jsonl, and sample completions in samples.jsonl next to it
    given_log, log = log, with_trackers(log, cfg.logging.trackers, asdict(cfg))
    samples = SampleLog(Path(log.path).parent / "samples.jsonl", every=cfg.logging.samples_every, per_write=cfg.logging.samples_per_write,
                        resume_after=start) if log is not None else None
    producer = None
    try:
        # synchronous, or with trainer.async a background thread sampling ahead on a replica (train/overlap.py)
        producer = make_producer(policy, gen, judge, fleet, source, cfg, reward_scorers, start)
        for step in range(start + 1, tr.steps + 1):
            t0 = time.perf_counter()
            rollout, sampled, gen_seconds, info = producer.get(step)
            if cfg.reward.online_update:  # PRIME: the scorers learn from this step's verdicts after scoring its samples
                info = {**info, **update_scorers(reward_scorers, rollout)}
            t1 = time.perf_counter()
            stats = optimise(policy, ref_policy, rollout, cfg, opt, sched, step=step - 1, critic=critic, scorers=reward_scorers)
            train_seconds = time.perf_counter() - t1
            producer.publish(step)  # the updated weights go to the generator (fleet, vLLM engine, or the async replica)
            if rank > 0:  # after the all-reduced update every rank holds rank 0's weights: it alone reports
                continue
            metrics = step_metrics(sampled, stats, info, verifier, lr=sched.get_last_lr()[0], gen_seconds=gen_seconds,
                                   train_seconds=train_seconds, t0=t0)
            samples.rl_step(step, sampled)
            if evaluate is not None and tr.eval_every and (step % tr.eval_every == 0 or step == tr.steps):
                policy.model.eval()
                evaluated = dict(evaluate(step))
                samples.write(step, "eval", evaluated.pop("samples", None) or [])
                metrics.update({f"eval/{k}": v for k, v in evaluated.items()})
                policy.model.train()
            log.log(step, metrics)
            if (tr.save_every and step % tr.save_every == 0) or step == tr.steps:
                save_rl_checkpoint(run_dir, step, policy, opt, sched, cfg, critic, reward_scorers)
            if progress is not None:
                progress(1, reward=metrics["reward/mean"])
    finally:
        if producer is not None:
            producer.close()
        if reward_scorers.functions is not None:  # the user's reward-function worker process
            reward_scorers.functions.close()
        if fleet is not None:
            fleet.shutdown()
        if log is not given_log:  # trackers opened here: their files (TensorBoard events, the W&B run) are complete
            log.close()
    policy.model.eval()
    return tr.steps - start
