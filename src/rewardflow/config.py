"""Typed configuration. Defaults are the quickstart recipe; YAML files and dotted CLI overrides only
override fields. Parsing and type checking are OmegaConf's (structured configs); an unknown field or a
wrong type is an error that names it, and `validate` rejects invalid combinations by field name."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    pass


@dataclass
class ModelConfig:
    path: str | None = None  # a local transformers checkpoint; None builds the tiny model below
    hidden_size: int = 128  # tiny model: residual width
    layers: int = 4  # tiny model: transformer blocks
    heads: int = 4  # tiny model: attention heads
    intermediate_size: int = 512  # tiny model: MLP width
    max_positions: int = 512  # tiny model: longest prompt + completion
    device: str = "cpu"  # torch device for the policy
    dtype: str = "float32"  # float32 | bfloat16 | float16


@dataclass
class DataConfig:
    task: str = "chain_sum"  # a reasoning-gym task name, or a .jsonl path (GSM8K / MATH-500 format)
    task_kwargs: dict[str, Any] = field(default_factory=lambda: {"min_terms": 3, "max_terms": 3, "min_digits": 1, "max_digits": 1})  # reasoning-gym task options
    eval_size: int = 200  # held-out problems (reasoning-gym) or rows used from the eval file
    eval_path: str | None = None  # a JSONL eval file instead of the reasoning-gym eval split


@dataclass
class SFTConfig:
    steps: int = 400  # optimiser steps of supervised warm-start on worked solutions
    batch_size: int = 32  # examples per step
    lr: float = 3e-3  # peak learning rate
    warmup_steps: int = 20  # linear warm-up
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    direct_frac: float = 0.0  # share of warm-start examples that state the answer without steps (see README)


@dataclass
class RolloutConfig:
    prompts_per_step: int = 32  # B: prompts sampled per RL step
    group_size: int = 8  # G: completions per prompt
    temperature: float = 1.0  # sampling temperature (the ratio uses logprobs at this temperature)
    top_p: float = 1.0  # nucleus sampling
    top_k: int = 0  # 0 disables
    max_new_tokens: int = 64  # completion budget per sample


@dataclass
class AlgoConfig:
    name: str = "grpo"  # advantage estimator (algos.ADVANTAGES)
    scale: str = "group"  # GRPO std scaling: group | batch | none
    loss: str = "clip"  # policy loss (algos.POLICY_LOSSES)
    eps_low: float = 0.2  # lower clip range
    eps_high: float = 0.2  # upper clip range (DAPO clip-higher: > eps_low)
    agg: str = "token-mean"  # token-mean | seq-mean-token-mean | seq-mean-token-sum
    kl_coef: float = 0.0  # weight of KL(pi || pi_ref) in the loss; 0 skips the reference model
    kl_estimator: str = "k3"  # k1 | k2 | k3
    epochs: int = 1  # optimisation passes over each rollout batch (against the old logprobs)
    kl_mode: str = "loss"  # loss: kl_coef * KL added to the loss | reward: -kl_coef * KL_t folded into token rewards (REINFORCE++)
    entropy_coef: float = 0.0  # entropy bonus weight (PPO eq. 9); > 0 needs full logits in the forward pass
    dynamic_sampling: bool = False  # DAPO: drop groups whose samples are all right or all wrong, refill with new prompts
    dynamic_sampling_max_rounds: int = 3  # DAPO: at most this many extra sampling rounds per step to refill the batch
    overlong_cache: int = 0  # DAPO soft overlong punishment: L_cache tokens before rollout.max_new_tokens (0: off)
    overlong_filter: bool = False  # DAPO overlong filtering: truncated samples get no loss
    d3s: str = "none"  # D3S down-sampling: none | sample | token | both
    d3s_start: float = 0.25  # D3S keep ratio at step 0 (aggressive early)
    d3s_end: float = 1.0  # D3S keep ratio at the last step (relaxed)
    d3s_schedule: str = "linear"  # D3S schedule of the keep ratio: linear | cosine
    dense_coef: float = 0.0  # weight of dense per-step advantages (Rollout.step_rewards, e.g. PRM steps); 0: off
    dense_mode: str = "return"  # how step rewards become token advantages (algos.dense_advantages): return | step
    critic: str = "head"  # ppo: value head on the policy backbone (head) or a separate value model (model)
    critic_lr: float = 1e-3  # ppo: learning rate of the value head / value model
    vf_coef: float = 0.5  # ppo: weight of the clipped value loss
    value_clip: float = 0.2  # ppo: clip range of the value loss
    gamma: float = 1.0  # ppo: GAE discount
    lam: float = 0.95  # ppo: GAE lambda
    raft_keep: str = "correct"  # raft / raft_pp: keep every correct sample (correct) or each prompt's best (best)
    rover_rho: float = 1.0  # rover: temperature rho of Q = rho * log(pi / pi_old)


@dataclass
class TrainerConfig:
    steps: int = 450  # RL steps
    lr: float = 1e-4  # peak learning rate; cosine decay to 0 lets the tiny model take big early steps without collapsing (5e-4 collapses)
    lr_schedule: str = "cosine"  # constant | linear | cosine (decay after warm-up)
    warmup_steps: int = 10  # linear warm-up steps
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    max_grad_norm: float = 1.0  # gradient clipping
    micro_batch_size: int = 64  # sequences per forward/backward (gradient accumulation over the batch)
    save_every: int = 20  # checkpoint period in steps (0: only at the end)
    eval_every: int = 50  # held-out eval period in steps (0: never during training)
    eval_problems: int = 64  # problems in the periodic eval
    seed: int = 0  # everything random derives from this


@dataclass
class EvalConfig:
    n_samples: int = 8  # samples per problem for pass@k / maj@k
    ks: list[int] = field(default_factory=lambda: [1, 2, 4, 8])  # k values reported
    temperature: float = 1.0  # sampling temperature for pass@k
    max_new_tokens: int = 64  # completion budget
    greedy: bool = True  # also report greedy accuracy


@dataclass
class PreferenceConfig:
    loss: str = "dpo"  # algos.PREFERENCE_LOSSES: dpo | ipo | cdpo | simpo | rpo
    pairs: str | None = None  # offline: JSONL of {"prompt", "chosen", "rejected"}; None runs online iterative DPO
    beta: float = 0.1  # DPO beta (IPO tau; SimPO wants ~2)
    label_smoothing: float = 0.1  # cDPO: probability that a label is flipped
    simpo_gamma: float = 1.0  # SimPO target reward margin
    rpo_alpha: float = 1.0  # RPO weight of the chosen NLL
    epochs: int = 1  # passes over the pairs (per iteration, online)
    batch_size: int = 16  # pairs per optimiser step
    lr: float = 1e-4  # learning rate
    iterations: int = 3  # online: sample -> score -> pair -> DPO rounds
    prompts_per_iter: int = 64  # online: prompts sampled per iteration
    samples_per_prompt: int = 8  # online: K completions per prompt, best vs worst is the pair
    refresh_ref: bool = True  # online: the reference becomes the current policy after each iteration
    scorer: str = "verifier"  # online: rewards.load_scorer spec (verifier or a saved reward-model directory)


@dataclass
class OfflineConfig:
    samples_per_prompt: int = 8  # OREO: trajectories sampled from the SFT policy per prompt
    prompts: int = 128  # OREO: prompts to sample trajectories for
    beta: float = 0.03  # OREO: KL-regularisation strength in the soft Bellman equation
    kl_alpha: float = 0.0  # OREO: weight of the extra KL regulariser in the policy loss
    epochs: int = 1  # passes over the trajectories
    batch_size: int = 16  # trajectories per optimiser step
    lr: float = 1e-5  # policy learning rate
    value_lr: float = 1e-4  # value model learning rate


@dataclass
class DistConfig:
    rollout_workers: int = 0  # Ray actors that generate and score rollouts with policy replicas (0: in-process, no Ray)
    worker_cpus: float = 1.0  # CPUs Ray reserves for each rollout worker (also its torch threads, at least 1)
    worker_gpus: float = 0.0  # GPUs Ray reserves for each rollout worker (fractions share one GPU)


@dataclass
class RewardConfig:
    scorers: list[str] = field(default_factory=list)  # learned scorers added to the verifier: rewards.load_scorer specs (saved PRM/ORM directories)
    weights: list[float] = field(default_factory=list)  # one per scorer: reward = verifier_weight * verdict + sum_i weights[i] * r_i
    verifier_weight: float = 1.0  # weight of the verifier's 0/1 verdict in the sample reward
    aggregation: str = "min"  # r_i from scorer i's step scores: min | prod | last | mean, or outcome (its outcome score)
    shaping: str = "none"  # dense per-step rewards (algo.dense_coef > 0) from the first process scorer: none | clip | delta (Gao et al. 2024)
    clip_eta: float = 0.5  # clip shaping: step reward r_k -> min(r_k - clip_eta, 0)
    transform: str = "none"  # r_i before weighting: none | logsigmoid (Wang et al. 2024: log sigmoid(r_i - r_ref))
    transform_quantile: float = 0.5  # logsigmoid: r_ref = this quantile of r_i over the prompt's group of samples
    online_update: bool = False  # after each rollout, call update(problems, solutions, correct) on scorers that have it (PRIME)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    preference: PreferenceConfig = field(default_factory=PreferenceConfig)
    offline: OfflineConfig = field(default_factory=OfflineConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)


def _choices(name: str, value: str, valid) -> None:
    if value not in valid:
        raise ConfigError(f"{name}={value!r} is not valid; choose one of: {', '.join(sorted(valid))}")


def validate(cfg: Config) -> Config:
    from .algos import POLICY_LOSSES, PREFERENCE_LOSSES
    from .train.algorithms import ALGORITHMS

    _choices("algo.name", cfg.algo.name, ALGORITHMS)
    _choices("algo.kl_mode", cfg.algo.kl_mode, {"loss", "reward"})
    _choices("algo.d3s", cfg.algo.d3s, {"none", "sample", "token", "both"})
    _choices("algo.d3s_schedule", cfg.algo.d3s_schedule, {"linear", "cosine"})
    _choices("algo.dense_mode", cfg.algo.dense_mode, {"return", "step"})
    _choices("algo.critic", cfg.algo.critic, {"head", "model"})
    _choices("algo.raft_keep", cfg.algo.raft_keep, {"correct", "best"})
    _choices("preference.loss", cfg.preference.loss, PREFERENCE_LOSSES)
    if not (0 < cfg.algo.d3s_start <= 1 and 0 < cfg.algo.d3s_end <= 1):
        raise ConfigError(f"algo.d3s_start={cfg.algo.d3s_start} and algo.d3s_end={cfg.algo.d3s_end} must lie in (0, 1]")
    if not 0 <= cfg.algo.overlong_cache < cfg.rollout.max_new_tokens:
        raise ConfigError(f"algo.overlong_cache={cfg.algo.overlong_cache} must lie in [0, rollout.max_new_tokens={cfg.rollout.max_new_tokens})")
    if cfg.preference.samples_per_prompt < 2:
        raise ConfigError(f"preference.samples_per_prompt={cfg.preference.samples_per_prompt}: pairing best vs worst needs >= 2")
    if cfg.algo.dynamic_sampling_max_rounds < 0:
        raise ConfigError(f"algo.dynamic_sampling_max_rounds={cfg.algo.dynamic_sampling_max_rounds} must be >= 0")
    _choices("algo.loss", cfg.algo.loss, POLICY_LOSSES)
    _choices("algo.scale", cfg.algo.scale, {"group", "batch", "none"})
    _choices("algo.agg", cfg.algo.agg, {"token-mean", "seq-mean-token-mean", "seq-mean-token-sum"})
    _choices("algo.kl_estimator", cfg.algo.kl_estimator, {"k1", "k2", "k3"})
    _choices("trainer.lr_schedule", cfg.trainer.lr_schedule, {"constant", "linear", "cosine"})
    _choices("model.dtype", cfg.model.dtype, {"float32", "bfloat16", "float16"})
    if cfg.rollout.group_size < 2 and cfg.algo.name in {"grpo", "rloo"}:
        raise ConfigError(f"rollout.group_size={cfg.rollout.group_size}: {cfg.algo.name} needs >= 2 samples per prompt")
    if not cfg.eval.ks or min(cfg.eval.ks) < 1:
        raise ConfigError(f"eval.ks={list(cfg.eval.ks)} must be a non-empty list of k >= 1")
    if not 0.0 <= cfg.sft.direct_frac <= 1.0:
        raise ConfigError(f"sft.direct_frac={cfg.sft.direct_frac} must lie in [0, 1]")
    if max(cfg.eval.ks) > cfg.eval.n_samples:
        raise ConfigError(f"eval.ks={list(cfg.eval.ks)} has k > eval.n_samples={cfg.eval.n_samples}")
    for name, value in [("trainer.steps", cfg.trainer.steps), ("trainer.micro_batch_size", cfg.trainer.micro_batch_size), ("algo.epochs", cfg.algo.epochs)]:
        if value < 1:
            raise ConfigError(f"{name}={value} must be >= 1")
    if cfg.algo.eps_low < 0 or cfg.algo.eps_high < 0:
        raise ConfigError("algo.eps_low and algo.eps_high must be >= 0")
    if cfg.dist.rollout_workers < 0:
        raise ConfigError(f"dist.rollout_workers={cfg.dist.rollout_workers} must be >= 0 (0: generate in-process)")
    if cfg.dist.rollout_workers > 0 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # checked here, before rank 0 spends its time on SFT: each torchrun rank would start its own Ray fleet
        raise ConfigError(f"dist.rollout_workers={cfg.dist.rollout_workers} cannot be combined with torchrun (WORLD_SIZE="
                          f"{os.environ['WORLD_SIZE']}): ranks already split generation; set dist.rollout_workers=0")
    if cfg.dist.worker_cpus <= 0 or cfg.dist.worker_gpus < 0:
        raise ConfigError(f"dist.worker_cpus={cfg.dist.worker_cpus} must be > 0 and dist.worker_gpus={cfg.dist.worker_gpus} >= 0")
    _validate_reward(cfg)
    return cfg


def _validate_reward(cfg: Config) -> None:
    from .rewards.base import AGGREGATIONS
    from .train.reward import SHAPINGS, TRANSFORMS

    rw = cfg.reward
    _choices("reward.aggregation", rw.aggregation, {"outcome", *AGGREGATIONS})
    _choices("reward.shaping", rw.shaping, SHAPINGS)
    _choices("reward.transform", rw.transform, TRANSFORMS)
    if len(rw.weights) != len(rw.scorers):
        raise ConfigError(f"reward.weights={list(rw.weights)} needs one weight per entry of reward.scorers={list(rw.scorers)}")
    if not 0.0 <= rw.transform_quantile <= 1.0:
        raise ConfigError(f"reward.transform_quantile={rw.transform_quantile} must lie in [0, 1]")
    # options that would do nothing are errors, not silently ignored
    unused = [(f"reward.transform={rw.transform!r}", rw.transform != "none"), (f"reward.online_update={rw.online_update}", rw.online_update),
              (f"reward.shaping={rw.shaping!r}", rw.shaping != "none")]
    for name, on in unused:
        if on and not rw.scorers:
            raise ConfigError(f"{name} acts on learned scorers, but reward.scorers is empty")
    if rw.shaping != "none" and cfg.algo.dense_coef <= 0:
        raise ConfigError(f"reward.shaping={rw.shaping!r} shapes the dense per-step rewards, which need algo.dense_coef > 0 (got {cfg.algo.dense_coef})")
    if rw.scorers and cfg.algo.name == "remax":
        raise ConfigError("algo.name='remax' scores its greedy baseline with the verifier alone; it cannot be combined with reward.scorers")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults <- YAML file <- dotted overrides (`algo.name=rloo`), type-checked, then validated."""
    try:
        merged = OmegaConf.structured(Config)
        layers = [OmegaConf.load(path)] if path is not None else []
        layers += [OmegaConf.from_dotlist(list(overrides))] if overrides else []
        for layer in layers:
            # task_kwargs are options of one task: a layer that switches task must not inherit the previous
            # task's options (OmegaConf merges dicts key by key), only keep the ones it gives itself.
            new_task = OmegaConf.select(layer, "data.task")
            if new_task is not None and new_task != merged.data.task:
                merged.data.task_kwargs = {}
            merged = OmegaConf.merge(merged, layer)
        cfg: Config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        where = f" in {path}" if path else ""
        raise ConfigError(f"config error{where}: {e}".splitlines()[0] + _full_key(e)) from e
    return validate(cfg)


def _full_key(e: OmegaConfBaseException) -> str:
    key = getattr(e, "full_key", None)
    return f" (field: {key})" if key else ""


def to_dict(cfg: Config) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
