"""Our trained ORM / PRM as a checkpoint plain transformers loads: AutoModelFor{Sequence,Token}Classification.

Layout of a saved directory: config.json + model.safetensors + tokenizer files (what `save_pretrained` writes)
and scorer.json {"kind": "orm" | "prm", "layout": "classification", "head": "sequence" | "token", "logit_bias",
"max_length", "causal", "init", "input"}.

What the head means (RewardModel reads a scalar head at the last token of each step, rewards/models.py):
- PRM -> AutoModelForTokenClassification, one label. Its logit at the last token of step k is our step logit;
  sigmoid of it is the step score. The input is the chat-templated prompt (generation prompt added; plain
  prompt + newline for a tokenizer without a template) followed by the steps joined by newlines.
- ORM on a decoder LM -> AutoModelForSequenceClassification, one label: transformers pools the last real token,
  exactly where our ORM reads. Its `score` layer has no bias, so our head's bias is kept in scorer.json as
  `logit_bias`: plain transformers' logit + logit_bias = our logit (rankings need no correction).
- ORM on an encoder (BERT, MiniLM) -> AutoModelForTokenClassification, read at the last real token: an encoder's
  sequence-classification head pools the first token through an extra layer, which our ORM never trained.
A PRM on an encoder keeps `is_decoder: true` in config.json, so transformers builds it with the causal mask it
was trained with. `load_classification(dir)` reads such a directory back into the parts of a RewardModel (same scores).
An architecture transformers has no such class for (OPT has no token classifier) is saved as backbone/ +
head.safetensors + scorer.json instead, the layout rewardflow wrote before; RewardModel.load reads both.
A reward model with the logprob read-out (rewards/models.py) has no head to export: it saves as the causal LM it is
(AutoModelForCausalLM loads it) + scorer.json {"layout": "causal-lm", "readout": "logprob", "scale", "bias"}; its
logit at token t is scale * (lowest log-probability of a solution token up to t) + bias (`save_causal_lm`).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..atomic import atomic_path

LAYOUT = "classification"


def head_class(kind: str, decoder_lm: bool) -> tuple[str, str]:
    """(transformers auto class, "sequence" | "token") for a reward model of `kind` on that backbone."""
    if kind == "orm" and decoder_lm:
        return "AutoModelForSequenceClassification", "sequence"
    return "AutoModelForTokenClassification", "token"


def _head_module(model) -> nn.Linear:
    """The one Linear a *ForSequenceClassification / *ForTokenClassification adds on top of its base model."""
    heads = [m for name, m in model.named_children() if name != model.base_model_prefix and isinstance(m, nn.Linear)]
    if len(heads) != 1:
        raise ValueError(f"{type(model).__name__}: expected one linear head beside the base model, found {len(heads)}")
    return heads[0]


def save_classification(rm, out: str | Path) -> Path:
    """Write `rm` (a RewardModel) to `out` as a transformers classification checkpoint + scorer.json, atomically."""
    import transformers

    if rm.readout == "logprob":
        return save_causal_lm(rm, out)
    config = rm.backbone.config.__class__.from_dict(rm.backbone.config.to_dict())  # a copy: the live model keeps its own
    # RewardModel.new: causal = decoder LM, or an encoder given is_decoder=True to serve as a PRM
    decoder_lm = rm.causal and not getattr(config, "is_decoder", False)
    auto_name, head = head_class(rm.kind, decoder_lm)
    if config.model_type not in _task_models(head):  # e.g. OPT has no token-classification class
        return save_backbone_and_head(rm, out)
    config.num_labels = 1
    config.architectures = None
    if config.pad_token_id is None and rm.tokenizer.pad_token_id is not None:
        config.pad_token_id = rm.tokenizer.pad_token_id  # lets transformers pool a padded batch
    model = getattr(transformers, auto_name).from_config(config)
    missing, unexpected = model.base_model.load_state_dict(rm.backbone_state(), strict=False)
    # an encoder's token-classification body has no pooler; our reward model never used it (it reads tokens)
    unexpected = [k for k in unexpected if not k.startswith("pooler.")]
    if missing or unexpected:
        raise ValueError(f"{auto_name} for {config.model_type} does not hold this backbone: missing {missing[:3]}, unexpected {unexpected[:3]}")
    linear = _head_module(model)
    bias = float(rm.head.bias.item())
    with torch.no_grad():
        linear.weight.copy_(rm.head.weight)  # [1, H]
        if linear.bias is not None:
            linear.bias.copy_(rm.head.bias)
            bias = 0.0  # carried by the checkpoint itself
    meta = {"kind": rm.kind, "layout": LAYOUT, "head": head, "logit_bias": bias, "max_length": rm.max_length,
            "causal": rm.causal, "init": rm.init,
            "input": "chat-templated prompt (generation prompt added), then the steps joined by newlines; "
                     + ("the pooled logit" if head == "sequence" else "the logit at the last token of each step (PRM) or of the text (ORM)")
                     + " + logit_bias, through a sigmoid, is the score"}
    with atomic_path(out) as tmp:
        model.save_pretrained(tmp)
        rm.tokenizer.save_pretrained(tmp)
        (tmp / "scorer.json").write_text(json.dumps(meta, indent=2))
    return Path(out)


def _task_models(head: str) -> dict:
    from transformers.models.auto import modeling_auto as auto

    return auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES if head == "sequence" else auto.MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES


def save_backbone_and_head(rm, out: str | Path) -> Path:
    """The layout for backbones transformers has no classification class for: backbone/ (model + tokenizer),
    head.safetensors, scorer.json. rewardflow reads it (RewardModel.load); plain transformers reads backbone/."""
    from safetensors.torch import save_file

    with atomic_path(out) as tmp:
        rm.backbone.save_pretrained(tmp / "backbone", state_dict=rm.backbone_state())
        rm.tokenizer.save_pretrained(tmp / "backbone")
        save_file({k: v.contiguous() for k, v in rm.head.state_dict().items()}, str(tmp / "head.safetensors"))
        meta = {"kind": rm.kind, "layout": "backbone+head", "max_length": rm.max_length, "causal": rm.causal, "init": rm.init}
        (tmp / "scorer.json").write_text(json.dumps(meta, indent=2))
    return Path(out)


def load_classification(path: str | Path, meta: dict) -> tuple[nn.Module, object, torch.Tensor, float]:
    """What `save_classification` wrote in `path` (meta: its scorer.json), as the parts a RewardModel is built from:
    (backbone, tokenizer, head weight [1, H], head bias with scorer.json's logit_bias folded in)."""
    import transformers

    auto_name = "AutoModelForSequenceClassification" if meta.get("head") == "sequence" else "AutoModelForTokenClassification"
    model = getattr(transformers, auto_name).from_pretrained(path, dtype=torch.float32)
    linear = _head_module(model)
    bias = float(meta.get("logit_bias", 0.0)) + (float(linear.bias.item()) if linear.bias is not None else 0.0)
    return model.base_model, transformers.AutoTokenizer.from_pretrained(path), linear.weight.detach(), bias


def save_causal_lm(rm, out: str | Path) -> Path:
    """A logprob read-out reward model (rewards/models.py): its causal LM as plain transformers saves it
    (AutoModelForCausalLM loads it) + scorer.json with the two calibration numbers, atomically."""
    scale, bias = (float(x) for x in rm.calibration.detach().cpu())
    meta = {"kind": rm.kind, "layout": "causal-lm", "readout": "logprob", "scale": scale, "bias": bias, "max_length": rm.max_length,
            "causal": True, "init": rm.init,
            "input": "chat-templated prompt (generation prompt added), then the steps joined by newlines; the logit at token t "
                     "is scale * (lowest log-probability the LM gives any solution token up to t) + bias, read at the last token "
                     "of each step (PRM) or of the text (ORM), through a sigmoid"}
    with atomic_path(out) as tmp:
        rm.lm.save_pretrained(tmp)
        rm.tokenizer.save_pretrained(tmp)
        (tmp / "scorer.json").write_text(json.dumps(meta, indent=2))
    return Path(out)


def load_causal_lm(path: str | Path) -> tuple[nn.Module, object, torch.Tensor]:
    """What `save_causal_lm` wrote: (causal LM, tokenizer, calibration [scale, bias])."""
    import transformers

    meta = json.loads((Path(path) / "scorer.json").read_text())
    lm = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return lm, transformers.AutoTokenizer.from_pretrained(path), torch.tensor([meta["scale"], meta["bias"]])
