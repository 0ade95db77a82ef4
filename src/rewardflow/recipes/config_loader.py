"""Config loading and validation: defaults <- YAML file <- dotted CLI overrides. Parsing and type checking are
OmegaConf's (structured configs); an unknown field or a wrong type is an error that names it, and `validate`
rejects invalid values and combinations by field name."""
from __future__ import annotations

import math
import os
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Callable

from torch import device as torch_device

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..config import Config


class ConfigError(ValueError):
    pass


def _choices(name: str, value: str, valid) -> None:
    if value not in valid:
        raise ConfigError(f"{name}={value!r} is not valid; choose one of: {', '.join(sorted(valid))}")


def _choice_table() -> dict[str, object]:
    """Field -> its valid values; taken from the registries where there is one."""
    from ..algos import DENSE_MODES, POLICY_LOSSES, PREFERENCE_LOSSES
    from ..policy.backends import BACKENDS
    from ..train.algorithms import ALGORITHMS, RAFT_KEEP

    return {
        "algo.name": ALGORITHMS, "algo.loss": POLICY_LOSSES, "preference.loss": PREFERENCE_LOSSES, "algo.raft.keep": RAFT_KEEP,
        "algo.dense.mode": set(DENSE_MODES) - {"last"},  # "last" places rewards for GAE; it is not an advantage
        "algo.kl_mode": {"loss", "reward"}, "algo.kl_placement": {"after", "before"}, "algo.kl_estimator": {"k1", "k2", "k3"},
        "algo.d3s.mode": {"none", "sample", "token", "both"}, "algo.d3s.schedule": {"linear", "cosine"}, "algo.d3s.scope": {"batch", "group"},
        "algo.ppo.critic": {"head", "model"}, "algo.scale": {"group", "batch", "none"},
        "algo.agg": {"token-mean", "seq-mean-token-mean", "seq-mean-token-sum"},
        "trainer.lr_schedule": {"constant", "linear", "cosine"}, "model.dtype": {"float32", "bfloat16", "float16"},
        "model.backend": BACKENDS,
    }


# (field, test, what it must be): ranges a value must lie in; every float must also be finite.
RANGES: list[tuple[str, Callable[[Any], bool], str]] = [
    *[(f, lambda v: v >= 1, ">= 1") for f in (
        "model.hidden_size", "model.layers", "model.heads", "model.intermediate_size", "model.max_positions", "data.eval_size",
        "sft.batch_size", "rollout.prompts_per_step", "rollout.group_size", "rollout.max_new_tokens", "algo.epochs", "trainer.steps",
        "trainer.micro_batch_size", "trainer.eval_problems", "eval.n_samples", "eval.max_new_tokens", "preference.epochs",
        "preference.batch_size", "preference.iterations", "preference.prompts_per_iter", "offline.group_size",
        "offline.prompts", "offline.epochs", "offline.batch_size")],
    *[(f, lambda v: v >= 0, ">= 0") for f in (
        "sft.steps", "sft.warmup_steps", "sft.weight_decay", "rollout.top_k", "algo.kl_coef", "algo.entropy_coef", "algo.dense.coef",
        "algo.dapo.max_rounds", "algo.ppo.vf_coef", "algo.ppo.value_clip", "trainer.warmup_steps", "trainer.weight_decay",
        "trainer.save_every", "trainer.eval_every", "offline.kl_alpha", "dist.rollout_workers", "dist.worker_gpus", "reward.verifier_weight")],
    *[(f, lambda v: v > 0, "> 0") for f in (
        "sft.lr", "rollout.temperature", "eval.temperature", "trainer.lr", "trainer.max_grad_norm", "algo.ppo.critic_lr", "algo.rover.rho",
        "preference.beta", "preference.lr", "offline.beta", "offline.lr", "offline.value_lr", "dist.worker_cpus")],
    *[(f, lambda v: 0 <= v <= 1, "in [0, 1]") for f in (
        "sft.direct_frac", "algo.ppo.gamma", "algo.ppo.lam", "reward.transform_quantile", "preference.label_smoothing")],
    *[(f, lambda v: 0 < v <= 1, "in (0, 1]") for f in ("rollout.top_p", "algo.d3s.start", "algo.d3s.end")],
    ("algo.eps_low", lambda v: 0 <= v < 1, "in [0, 1): the ratio's lower clip 1 - eps_low must stay positive"),
    ("algo.eps_high", lambda v: v >= 0, ">= 0"),
    ("preference.group_size", lambda v: v >= 2, ">= 2: pairing best against worst needs two samples"),
    ("algo.tis_cap", lambda v: v == 0 or v >= 1, "0 (off) or >= 1: a cap below 1 would down-weight on-policy tokens too"),
    ("trainer.max_staleness", lambda v: v >= 0, ">= 0 (0: on-policy, equals synchronous RL)"),
    ("model.lora.rank", lambda v: v >= 0, ">= 0 (0: no LoRA)"),
    ("model.lora.alpha", lambda v: v > 0, "> 0"),
    ("model.lora.dropout", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("logging.samples_every", lambda v: v >= 0, ">= 0 (0: samples only at evals)"),
    ("logging.samples_per_write", lambda v: v >= 1, ">= 1"),
    ("reward.remote_retries", lambda v: v >= 0, ">= 0"),
    ("reward.remote_timeout", lambda v: v > 0, "> 0 seconds"),
    *[(f, lambda v: v >= 1, ">= 1") for f in (
        "bolt.icl_k", "bolt.prompts", "bolt.samples", "bolt.max_new_tokens", "autocei.iterations", "autocei.prompts_per_iter",
        "autocei.samples", "autocei.max_new_tokens", "autocei.sft_steps", "autocei.batch_size", "autocei.init_prompts", "autocei.val_size")],
    *[(f, lambda v: v > 0, "> 0") for f in ("bolt.temperature", "autocei.temperature", "autocei.lr", "autocei.init_lr", "autocei.max_step", "autocei.step_frac")],
    *[(f, lambda v: 0 <= v <= 1, "in [0, 1]") for f in ("bolt.p_backtrack", "bolt.p_reflect", "autocei.lam")],
    ("bolt.min_thought_lines", lambda v: v >= 0, ">= 0"),
    ("autocei.init_steps", lambda v: v >= 0, ">= 0 (0: the warm-started policy is the base, with no refusal training)"),
    ("autocei.fixed_refusal", lambda v: -1 <= v <= 1, "in [-1, 1], the range of the answer rewards"),
    ("autocei.methods", lambda v: len(v) > 0 and set(v) <= {"base", "ei", "rtuning", "autocei"}, "a non-empty list of base, ei, rtuning, autocei"),
    ("autocei.select", lambda v: v in ("best", "last"), "best or last"),
]


def _get(cfg: Config, dotted: str):
    obj = cfg
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _leaves(obj, prefix: str = ""):
    """(dotted name, value) of every field, nested groups (algo.dapo.*) included."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        if is_dataclass(value):
            yield from _leaves(value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", value


def _check_values(cfg: Config) -> None:
    for name, value in _leaves(cfg):  # every float finite: a NaN learning rate or coefficient trains nothing, silently
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{name}={value} must be a finite number")
    for name, valid in _choice_table().items():
        _choices(name, _get(cfg, name), valid)
    for name, ok, what in RANGES:
        if not ok(_get(cfg, name)):
            raise ConfigError(f"{name}={_get(cfg, name)} must be {what}")
    try:
        torch_device(cfg.model.device)
    except (RuntimeError, ValueError) as e:
        raise ConfigError(f"model.device={cfg.model.device!r} is not a torch device (cpu, cuda, cuda:1, mps)") from e


def validate(cfg: Config) -> Config:
    from ..data.jsonl import DATA_SUFFIXES, is_data_file
    from ..train.algorithms import ALGORITHMS

    _check_values(cfg)
    a, r = cfg.algo, cfg.rollout
    if cfg.model.hidden_size % cfg.model.heads:
        raise ConfigError(f"model.hidden_size={cfg.model.hidden_size} must be a multiple of model.heads={cfg.model.heads}")
    if not a.dapo.overlong_cache < r.max_new_tokens:
        raise ConfigError(f"algo.dapo.overlong_cache={a.dapo.overlong_cache} must lie in [0, rollout.max_new_tokens={r.max_new_tokens})")
    if a.dapo.overlong_cache < 0:
        raise ConfigError(f"algo.dapo.overlong_cache={a.dapo.overlong_cache} must be >= 0")
    if r.group_size < 2 and ALGORITHMS[a.name].needs_group:
        raise ConfigError(f"rollout.group_size={r.group_size}: {a.name} compares each sample with its group and needs >= 2 samples per prompt")
    if not cfg.eval.ks or min(cfg.eval.ks) < 1:
        raise ConfigError(f"eval.ks={list(cfg.eval.ks)} must be a non-empty list of k >= 1")
    if max(cfg.eval.ks) > cfg.eval.n_samples:
        raise ConfigError(f"eval.ks={list(cfg.eval.ks)} has k > eval.n_samples={cfg.eval.n_samples}")
    if is_data_file(cfg.data.task) and not cfg.data.eval_path:
        raise ConfigError(f"data.task={cfg.data.task!r} is a training file: set data.eval_path to the held-out problem file")
    if cfg.data.eval_path and not is_data_file(cfg.data.eval_path):
        raise ConfigError(f"data.eval_path={cfg.data.eval_path!r} must be a {'/'.join(DATA_SUFFIXES)} file")
    for key in ("prompt_key", "answer_key"):
        if getattr(cfg.data, key) is not None and not (isinstance(getattr(cfg.data, key), str) and getattr(cfg.data, key).strip()):
            raise ConfigError(f"data.{key}={getattr(cfg.data, key)!r} must be a non-empty field name, or null to detect it")
    if cfg.dist.rollout_workers > 0 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # checked here, before rank 0 spends its time on SFT: each torchrun rank would start its own Ray fleet
        raise ConfigError(f"dist.rollout_workers={cfg.dist.rollout_workers} cannot be combined with torchrun (WORLD_SIZE="
                          f"{os.environ['WORLD_SIZE']}): ranks already split generation; set dist.rollout_workers=0")
    if cfg.dist.rollout_backend not in ("ray", "process"):
        raise ConfigError(f"dist.rollout_backend={cfg.dist.rollout_backend!r}; valid: ray, process")
    if cfg.dist.rollout_backend == "process" and cfg.dist.worker_gpus > 0:
        raise ConfigError("dist.rollout_backend=process runs CPU workers on this machine; GPU workers (dist.worker_gpus) need dist.rollout_backend=ray")
    _validate_model(cfg)
    _validate_reward(cfg)
    _validate_byo(cfg)
    _validate_async(cfg)
    return cfg


def _validate_model(cfg: Config) -> None:
    """LoRA and precision combinations (model.*) that cannot work."""
    m = cfg.model
    if m.dtype == "float16":  # every config-driven verb trains; fp16 gradients underflow without a loss scaler
        raise ConfigError("model.dtype=float16 trains without loss scaling (gradients underflow); use model.dtype=bfloat16")
    if m.lora.rank > 0 and m.backend == "vllm":  # the engine would get peft's unmerged weight names
        raise ConfigError("model.lora.rank > 0 with model.backend=vllm is not supported: use model.backend=hf with LoRA")
    if m.lora.rank > 0 and not m.lora.targets:
        raise ConfigError("model.lora.targets is empty: name the modules that get adapters, e.g. [q_proj, v_proj]")


def _validate_async(cfg: Config) -> None:
    """trainer.async / algo.tis_cap / model.backend combinations that cannot work."""
    from ..train.algorithms import ALGORITHMS

    tr, a = cfg.trainer, cfg.algo
    if a.tis_cap > 0 and not ALGORITHMS[a.name].token_weights:  # the loss ignores p.adv: nothing to weight
        raise ConfigError(f"algo.tis_cap={a.tis_cap}: {a.name}'s loss has no per-token advantage to weight; use algo.tis_cap=0")
    if tr.async_rl and cfg.reward.online_update:
        raise ConfigError("trainer.async=true with reward.online_update=true: the scorers would learn while the producer scores with them")
    if tr.async_rl and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError(f"trainer.async=true under torchrun (WORLD_SIZE={os.environ['WORLD_SIZE']}): ranks already split generation; "
                          "use one process (with dist.rollout_workers for Ray) or trainer.async=false")
    if tr.async_rl and cfg.model.backend == "vllm" and a.tis_cap <= 0:
        raise ConfigError("trainer.async=true with model.backend=vllm needs algo.tis_cap > 0 (e.g. 2): the engine's own logprobs are the "
                          "behaviour policy's, since the trainer's copy moves on while the engine samples")
    if tr.async_rl and cfg.model.backend == "vllm" and tr.eval_every > 0:
        raise ConfigError(f"trainer.async=true with model.backend=vllm: periodic evals (trainer.eval_every={tr.eval_every}) would share the engine "
                          "with the rollout thread; set trainer.eval_every=0 (the final eval still runs)")


def _validate_byo(cfg: Config) -> None:
    """Bring-your-own settings: data mixing, prompt template, SFT data, remote reward, trackers."""
    from ..data.jsonl import is_data_file

    d, rw = cfg.data, cfg.reward
    if len(d.mix_weights) != len(d.mix):
        raise ConfigError(f"data.mix_weights={list(d.mix_weights)} needs one weight per entry of data.mix={list(d.mix)}")
    if d.mix and (any(w < 0 for w in d.mix_weights) or sum(d.mix_weights) <= 0):
        raise ConfigError(f"data.mix_weights={list(d.mix_weights)} must be >= 0 with a positive sum")
    if d.template is not None and "{prompt}" not in d.template:
        raise ConfigError(f"data.template={d.template!r} must contain '{{prompt}}' where the question goes")
    if cfg.sft.data is not None and not is_data_file(cfg.sft.data):
        raise ConfigError(f"sft.data={cfg.sft.data!r} must be a .jsonl/.json/.csv/.parquet file or hf:NAME")
    if rw.remote_url is not None and not str(rw.remote_url).startswith(("http://", "https://")):
        raise ConfigError(f"reward.remote_url={rw.remote_url!r} must be an http:// or https:// URL")
    bad = [t for t in cfg.logging.trackers if t not in ("tensorboard", "wandb")]
    if bad:
        raise ConfigError(f"logging.trackers={list(cfg.logging.trackers)}: {bad[0]!r} is not a tracker; choose from: tensorboard, wandb")



def _validate_reward(cfg: Config) -> None:
    from ..rewards.base import AGGREGATIONS
    from ..rewards.shaping import SHAPINGS, TRANSFORMS

    rw = cfg.reward
    _choices("reward.aggregation", rw.aggregation, {"outcome", *AGGREGATIONS})
    _choices("reward.shaping", rw.shaping, SHAPINGS)
    _choices("reward.transform", rw.transform, TRANSFORMS)
    if len(rw.weights) != len(rw.scorers):
        raise ConfigError(f"reward.weights={list(rw.weights)} needs one weight per entry of reward.scorers={list(rw.scorers)}")
    if rw.functions and not rw.function_weights:
        rw.function_weights = [1.0] * len(rw.functions)  # as TRL: every function weighs 1 unless weights are given
    if len(rw.function_weights) != len(rw.functions):
        raise ConfigError(f"reward.function_weights={list(rw.function_weights)} needs one weight per entry of reward.functions={list(rw.functions)}")
    if rw.functions and not rw.function_timeout > 0:
        raise ConfigError(f"reward.function_timeout must be > 0 seconds (got {rw.function_timeout})")
    if rw.functions:
        from ..rewards.functions import RewardFunctionError, check_spec

        for spec in rw.functions:
            try:
                check_spec(spec)
            except RewardFunctionError as e:
                raise ConfigError(str(e)) from None
    # options that would do nothing are errors, not silently ignored
    unused = [(f"reward.transform={rw.transform!r}", rw.transform != "none"), (f"reward.online_update={rw.online_update}", rw.online_update),
              (f"reward.shaping={rw.shaping!r}", rw.shaping != "none")]
    for name, on in unused:
        if on and not rw.scorers:
            raise ConfigError(f"{name} acts on learned scorers, but reward.scorers is empty")
    if rw.shaping != "none" and cfg.algo.dense.coef <= 0:
        raise ConfigError(f"reward.shaping={rw.shaping!r} shapes the dense per-step rewards, which need algo.dense.coef > 0 (got {cfg.algo.dense.coef})")
    from ..train.algorithms import ALGORITHMS

    if not rw.scorers and ALGORITHMS[cfg.algo.name].needs_scorer:
        raise ConfigError(f"algo.name={cfg.algo.name!r} reads an implicit PRM from reward.scorers, which is empty "
                          "(rewardflow rm train --kind implicit --out DIR, then 'reward.scorers=[DIR]' 'reward.weights=[0]')")
    extra = [name for name, on in (("reward.scorers", rw.scorers), ("reward.functions", rw.functions), ("reward.remote_url", rw.remote_url)) if on]
    if extra and ALGORITHMS[cfg.algo.name].greedy_baseline:
        raise ConfigError(f"algo.name={cfg.algo.name!r} scores its greedy baseline with the verifier alone; it cannot be combined with {extra[0]}")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults <- the named method's settings (train/algorithms.PRESETS) <- YAML file <- dotted overrides
    (`algo.name=rloo`), type-checked, then validated."""
    from ..train.algorithms import PRESETS

    try:
        layers = ([_read_yaml(Path(path))] if path is not None else []) + ([OmegaConf.from_dotlist(list(overrides))] if overrides else [])
        layers = [_keyword_keys(layer) for layer in layers]
        name = OmegaConf.select(_merge(OmegaConf.structured(Config), layers), "algo.name")
        preset = [OmegaConf.from_dotlist([f"{k}={v}" for k, v in PRESETS[name].items()])] if name in PRESETS else []
        cfg: Config = OmegaConf.to_object(_merge(OmegaConf.structured(Config), preset + layers))
    except OmegaConfBaseException as e:
        where = f" in {path}" if path else ""
        raise ConfigError(f"config error{where}: {e}".splitlines()[0] + _full_key(e)) from e
    return validate(cfg)


# Config keys that are Python keywords, so their dataclass fields carry another name: YAML/CLI key -> field.
KEYWORD_KEYS = {("trainer", "async"): "async_rl"}


def _keyword_keys(layer):
    """`trainer.async` (YAML or override) is stored in the field trainer.async_rl; giving both is an error."""
    for (group, key), name in KEYWORD_KEYS.items():
        section = layer.get(group) if isinstance(layer, DictConfig) else None
        if isinstance(section, DictConfig) and key in section:
            if name in section:
                raise ConfigError(f"{group}.{key} and {group}.{name} are the same setting; give one")
            section[name] = section.pop(key)
    return layer


def _merge(merged, layers):
    for layer in layers:
        # task_kwargs are options of one task: a layer that switches task must not inherit the previous
        # task's options (OmegaConf merges dicts key by key), only keep the ones it gives itself.
        new_task = OmegaConf.select(layer, "data.task")
        if new_task is not None and new_task != merged.data.task:
            merged.data.task_kwargs = {}
        merged = OmegaConf.merge(merged, layer)
    return merged


def _read_yaml(path: Path):
    """A YAML recipe as an OmegaConf mapping, or a one-line ConfigError naming the file."""
    import yaml

    if not path.is_file():
        raise ConfigError(f"--config {path}: {'is a directory' if path.is_dir() else 'no such file'}; give a YAML file (see configs/)")
    try:
        layer = OmegaConf.load(path)
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"--config {path}: not valid YAML ({str(e).splitlines()[0]}); indent with spaces, not tabs") from e
    if not isinstance(layer, DictConfig) or len(layer) == 0:
        raise ConfigError(f"--config {path}: empty or not a mapping of sections (model:, algo:, ...)")
    return layer


def _full_key(e: OmegaConfBaseException) -> str:
    key = getattr(e, "full_key", None)
    return f" (field: {key})" if key else ""


def to_dict(cfg: Config) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
