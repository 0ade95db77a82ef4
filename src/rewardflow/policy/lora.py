"""Low-rank adapters (LoRA, Hu et al. 2021) through `peft`, and the other training-time model settings.

`prepare_model(policy, model_cfg)` injects adapters into the policy's model in place (policy.model stays the
transformers model, so the sampler's fast decode path and every forward call see the adapters), freezes the
base weights and turns on gradient checkpointing when asked. The reference model for a KL term is the frozen
base itself: `FrozenBaseReference(policy)` runs the same model with the adapters switched off, so no second
copy of the weights is held. `save_policy` writes a checkpoint that plain
`AutoModelForCausalLM.from_pretrained` loads (the base with B @ A merged in, W' = W + (alpha/r) B A) and, for
LoRA models, the adapter alone in `adapter/` (peft's format) to resume from or to load with peft.

peft is imported only here, and only when a LoRA rank is set.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path

import torch

ADAPTER_DIR = "adapter"  # sub-directory of a checkpoint holding the adapter weights (peft's save format)


def lora_layers(model) -> dict[str, torch.nn.Module]:
    """name -> module of every layer that carries a LoRA adapter (empty for a plain model)."""
    return {name: m for name, m in model.named_modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer")}


def is_lora(model) -> bool:
    return bool(lora_layers(model))


def apply_lora(policy, lora_cfg, *, seed: int = 0) -> None:
    """Inject adapters of rank lora_cfg.rank into the modules named by lora_cfg.targets, in place; only the
    adapters train. policy.peft keeps peft's wrapper (for saving the adapter); policy.model is unchanged in type.
    A's random init is drawn from `seed`, not the global RNG: a run and its resumed twin start identical."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as e:  # pragma: no cover - the extra is installed in CI
        raise ImportError("model.lora.rank > 0 needs peft: pip install 'rewardflow[lora]'") from e
    names = {n.rsplit(".", 1)[-1] for n, m in policy.model.named_modules() if isinstance(m, torch.nn.Linear)}
    missing = [t for t in lora_cfg.targets if t not in names]
    if missing:
        raise ValueError(f"model.lora.targets: {missing} name no linear layer of this model; it has {sorted(names)}")
    config = LoraConfig(r=lora_cfg.rank, lora_alpha=lora_cfg.alpha, target_modules=list(lora_cfg.targets),
                        lora_dropout=lora_cfg.dropout, bias="none", task_type="CAUSAL_LM")
    device = next(policy.model.parameters()).device
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []), warnings.catch_warnings():
        # peft reads transformers' deprecated `is_gradient_checkpointing` (a FutureWarning on every wrap)
        warnings.simplefilter("ignore", FutureWarning)
        torch.manual_seed(seed)
        policy.peft = get_peft_model(policy.model, config)  # wraps policy.model, replacing target Linears in place
    policy.model = policy.peft.get_base_model()  # the same transformers model object, now with adapters


def prepare_model(policy, model_cfg, *, seed: int = 0) -> None:
    """The training-time settings of config `model`: LoRA (lora.rank > 0, adapters initialised from `seed`) and
    gradient checkpointing."""
    if model_cfg.lora.rank > 0 and not is_lora(policy.model):
        apply_lora(policy, model_cfg.lora, seed=seed)
    if model_cfg.gradient_checkpointing:
        # non-reentrant: with frozen embeddings (LoRA) the re-entrant variant would see inputs without gradient
        # and silently drop the gradient of every checkpointed block
        model = policy.model
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x renamed it
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        # (forwards with gradient drop their cache inside each checkpointed block; config.use_cache is left as it is,
        # so a saved checkpoint generates with a cache elsewhere)


@contextmanager
def adapters_disabled(model):
    """Run `model` as its frozen base: every adapter is bypassed inside the block (no weights are copied)."""
    layers = list(lora_layers(model).values())
    was = [m.disable_adapters for m in layers]
    for m in layers:
        m.enable_adapters(False)
    try:
        yield model
    finally:
        for m, disabled in zip(layers, was):
            m.enable_adapters(not disabled)


class _BaseModelView:
    """Calls the model with its adapters off; every other attribute is the model's own."""

    def __init__(self, model):
        self._model = model

    def __call__(self, *args, **kwargs):
        with adapters_disabled(self._model):
            return self._model(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._model, name)


class FrozenBaseReference:
    """The reference policy of a LoRA policy: the same object with adapters off in `logprobs` and `model(...)`.
    Used wherever a second HFPolicy would be the reference (KL to the start, DPO's reference, OREO's)."""

    def __init__(self, policy):
        self._policy = policy
        self.model = _BaseModelView(policy.model)

    def logprobs(self, *args, **kwargs):
        with adapters_disabled(self._policy.model):
            return self._policy.logprobs(*args, **kwargs)

    def __getattr__(self, name):  # tokenizer, token_batch, encode_prompts, ... are the policy's
        return getattr(self._policy, name)


def reference_for(policy, load_copy):
    """The KL / preference reference: the frozen base view of a LoRA policy, else `load_copy()` (a second policy)."""
    return FrozenBaseReference(policy) if is_lora(policy.model) else load_copy()


def merged_state_dict(model) -> dict[str, torch.Tensor]:
    """The plain model's state dict with each adapter folded in: W' = W + delta, delta = (alpha/r) B @ A (peft's
    get_delta_weight, which also handles transposed Conv1D weights). Names lose peft's `.base_layer`; adapter
    tensors are dropped. Tensors are detached copies in the weights' own dtype; the live model is untouched."""
    state = {}
    for key, value in model.state_dict().items():
        if ".lora_" in key:
            continue
        state[key.replace(".base_layer.", ".")] = value.detach().clone()
    for name, layer in lora_layers(model).items():
        if layer.disable_adapters or not layer.active_adapters:
            continue
        w = state[f"{name}.weight"]
        for adapter in layer.active_adapters:
            with torch.no_grad():
                w = w + layer.get_delta_weight(adapter).to(w.dtype)
        state[f"{name}.weight"] = w
    return state


def save_policy(policy, path: str | Path) -> Path:
    """A checkpoint directory that `AutoModelForCausalLM.from_pretrained(path)` loads as the full model, plus the
    tokenizer; a LoRA policy also writes its adapter alone under path/adapter."""
    path = Path(path)
    model = policy.model
    if is_lora(model):
        model.save_pretrained(path, state_dict=merged_state_dict(model))
        policy.peft.save_pretrained(path / ADAPTER_DIR)
    else:
        model.save_pretrained(path)
    policy.tokenizer.save_pretrained(path)
    return path


def load_weights(policy, ckpt: str | Path) -> None:
    """Load a checkpoint's trained weights into `policy`: the adapter of a LoRA policy (from ckpt/adapter), else
    every weight of the full model."""
    ckpt = Path(ckpt)
    if is_lora(policy.model):
        from peft.utils import set_peft_model_state_dict
        from safetensors.torch import load_file

        adapter = ckpt / ADAPTER_DIR / "adapter_model.safetensors"
        if not adapter.is_file():
            raise ValueError(f"{ckpt}: no LoRA adapter ({adapter}); the run that wrote it had model.lora.rank=0")
        set_peft_model_state_dict(policy.peft, load_file(adapter))
        return
    from transformers import AutoModelForCausalLM

    policy.model.load_state_dict(AutoModelForCausalLM.from_pretrained(ckpt).state_dict())
