"""Config loading and validation: defaults <- YAML file <- dotted CLI overrides. Parsing and type checking are
OmegaConf's (structured configs); an unknown field or a wrong type is an error that names it, and `validate`
rejects invalid values and combinations by field name."""
from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..config import Config


class ConfigError(ValueError):
    pass


def _choices(name: str, value: str, valid) -> None:
    if value not in valid:
        raise ConfigError(f"{name}={value!r} is not valid; choose one of: {', '.join(sorted(valid))}")


def validate(cfg: Config) -> Config:
    from ..algos import POLICY_LOSSES, PREFERENCE_LOSSES
    from ..train.algorithms import ALGORITHMS

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
    from ..rewards.base import AGGREGATIONS
    from ..rewards.shaping import SHAPINGS, TRANSFORMS

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
