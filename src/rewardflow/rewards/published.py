"""Published reward-model formats as Scorers: each reads a checkpoint the way its authors' model card does.

  qwen-prm       Qwen2.5-Math-PRM (Zhang et al. 2025). A Qwen2 backbone with a two-way head on every token. The
                 conversation [system, user: question, assistant: steps each followed by "<extra_0>"] goes through
                 the tokenizer's chat template; step k's score is softmax(logits)[1] (the positive class) at the
                 k-th "<extra_0>" token. Loaded as AutoModelForTokenClassification (num_labels 2); the upstream
                 checkpoint ships its head as remote code (Qwen2ForProcessRewardModel), loaded only with
                 trust_remote_code=True.
  math-shepherd  Math-Shepherd (Wang et al. 2024, peiyi9979/math-shepherd-mistral-7b-prm). A causal LM; the text
                 is f"{question} {steps}" with each step written "Step k: ... ки" and steps joined by newlines;
                 step k's score is P('+') of the softmax over just the '+' and '-' token logits at the k-th "ки".
  rlhflow-prm    RLHFlow's Llama-3.1-8B PRMs (Xiong et al. 2024). A causal LM over a chat: user turn 1 is
                 f"{question} {step 1}", user turn k the k-th step, and every assistant turn is "+"; step k's
                 score is P('+') of the softmax over the '+' and '-' logits at the position that predicts the
                 k-th assistant "+" (one forward pass scores all steps: the model is causal).
  seqcls-orm     Sequence-classification ORMs (Skywork-Reward and alike): AutoModelForSequenceClassification
                 with one label over the chat [user: question, assistant: steps joined by newlines]; the outcome
                 is the raw logit at the last real token (no step scores).

Outcome of a PRM = its last step's score, as our own PRM (aggregate() gives min / prod / ...); a solution with
no steps is scored as one empty step and gets an outcome only. Spec: `--scorer FORMAT:DIR` (rewards/registry.py;
DIR may be a hub name when a hub is reachable), or a checkpoint directory holding a scorer.json {"kind": FORMAT}.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from ..algos.ragged import pad_ragged
from ..data.problem import Problem
from .base import StepScores, forward_flops

QWEN_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."  # Qwen2.5-Math-PRM's model card


# ---------------------------------------------------------------- the mathematics (pure, hand-checked in tests)


def positive_class_prob(logits: torch.Tensor) -> torch.Tensor:
    """[..., 2] two-way logits -> [...] probability of class 1 (Qwen2.5-Math-PRM's 'correct' class)."""
    return torch.softmax(logits.float(), dim=-1)[..., 1]


def plus_vs_minus(logits: torch.Tensor, plus_id: int, minus_id: int) -> torch.Tensor:
    """[..., V] LM logits -> [...] P('+') of the softmax over only the '+' and '-' logits = sigmoid(l+ - l-)."""
    pair = logits[..., [plus_id, minus_id]].float()  # [..., 2]
    return torch.softmax(pair, dim=-1)[..., 0]


def last_token_id(tokenizer, text: str) -> int:
    """The id a text ends with when tokenized alone (the model cards' `tokenizer.encode(x)[-1]`, minus BOS)."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if not ids:
        raise ValueError(f"the tokenizer encodes {text!r} to no tokens")
    return ids[-1]


def token_at_char(offsets: list[tuple[int, int]], char: int) -> int:
    """Index of the token whose span starts at character `char` (or, failing that, the first token covering it)."""
    for i, (a, b) in enumerate(offsets):
        if a <= char < b:
            return i
    raise ValueError(f"no token covers character {char}")


# ---------------------------------------------------------------- one scorer shell, four input formats


class PublishedScorer(torch.nn.Module):
    """Shared shell: load, batch, pad right, forward, read the scores at the positions `build` names. An
    nn.Module, so `.to(device, dtype)` moves the checkpoint it holds (recipes/devices.place_scorer)."""

    format = ""
    auto_class = "AutoModelForCausalLM"
    outcome_only = False  # True: one score per solution, no step scores

    def __init__(self, model, tokenizer, *, path: str = "", batch_size: int = 8):
        super().__init__()
        self.model, self.tokenizer, self.path, self.batch_size = model.eval(), tokenizer, path, batch_size
        self.flops_spent = 0.0  # Scorer contract: forward FLOPs of every score() call so far
        self.setup()

    def setup(self) -> None:
        """Per-format token ids (called once the tokenizer is known)."""

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @classmethod
    def load(cls, path: str | Path, *, trust_remote_code: bool = False, dtype: torch.dtype = torch.float32,
             auto_class: str | None = None) -> "PublishedScorer":
        """A local checkpoint directory, or a hub name (transformers downloads it when a hub is reachable)."""
        import transformers
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        model = getattr(transformers, auto_class or cls.auto_class).from_pretrained(str(path), dtype=dtype, trust_remote_code=trust_remote_code)
        return cls(model, transformers.AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code), path=str(path))

    def build(self, prompt: str, steps: list[str]) -> tuple[list[int], list[int]]:
        """-> (token ids, one position per step (or one position for an outcome scorer))."""
        raise NotImplementedError

    def read(self, logits: torch.Tensor) -> torch.Tensor:
        """[n, V'] logits at the positions -> [n] scores."""
        raise NotImplementedError

    @torch.no_grad()
    def score(self, problems: list[Problem], solutions: list[list[str]]) -> list[StepScores]:
        out: list[StepScores] = []
        for i in range(0, len(problems), self.batch_size):
            sols = solutions[i : i + self.batch_size]
            built = [self.build(p.prompt, s or [""]) for p, s in zip(problems[i : i + self.batch_size], sols)]
            pad = self.pad_id([b[0] for b in built])
            ids, valid = pad_ragged([b[0] for b in built], fill=pad, dtype=torch.long)  # [n, L] right-padded
            mask = valid.long()  # [n, L]
            self.flops_spent += forward_flops(self.num_params, mask)
            logits = self._forward(ids, mask, pad)  # [n, L, V'] on the model's device
            rows = [j for j, (_, pos) in enumerate(built) for _ in pos]
            cols = [c for _, pos in built for c in pos]
            flat = self.read(logits[rows, cols]).cpu().tolist()  # only the read-out positions leave the device, at once
            for steps, (_, pos) in zip(sols, built):
                scores, flat = flat[: len(pos)], flat[len(pos):]
                out.append(StepScores(steps=[] if self.outcome_only or not steps else scores, outcome=scores[-1]))
        return out

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, pad: int) -> torch.Tensor:
        device = next(self.model.parameters()).device
        out = self.model(input_ids=ids.to(device), attention_mask=mask.to(device))
        return out.logits if hasattr(out, "logits") else out[0]

    def pad_id(self, rows: list[list[int]]) -> int:
        return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0


class QwenPRM(PublishedScorer):
    format = "qwen-prm"
    auto_class = "AutoModelForTokenClassification"
    system = QWEN_SYSTEM
    separator = "<extra_0>"

    def setup(self) -> None:
        self.sep_id = self.tokenizer.convert_tokens_to_ids(self.separator)
        if self.sep_id is None or self.sep_id == self.tokenizer.unk_token_id:
            raise ValueError(f"{self.path}: the tokenizer has no {self.separator!r} token: not a Qwen2.5-Math-PRM checkpoint")

    @classmethod
    def load(cls, path, *, trust_remote_code: bool = False, dtype: torch.dtype = torch.float32, auto_class=None):
        from transformers import AutoConfig

        archs = AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code).architectures or []
        if "Qwen2ForProcessRewardModel" in archs:  # the upstream release: its two-layer head is remote code
            if not trust_remote_code:
                raise ValueError(f"{path}: this checkpoint's head is remote code (Qwen2ForProcessRewardModel); load it in Python "
                                 "with QwenPRM.load(path, trust_remote_code=True) once you have read that code")
            auto_class = "AutoModel"
        return super().load(path, trust_remote_code=trust_remote_code, dtype=dtype, auto_class=auto_class)

    def build(self, prompt, steps):
        messages = [{"role": "system", "content": self.system}, {"role": "user", "content": prompt},
                    {"role": "assistant", "content": "".join(s + self.separator for s in steps)}]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        pos = [i for i, t in enumerate(ids) if t == self.sep_id]
        if len(pos) < len(steps):
            raise ValueError(f"qwen-prm: found {len(pos)} {self.separator!r} tokens for {len(steps)} steps; the chat template drops them")
        return ids, pos[-len(steps):]  # a separator typed into the question is not a step end

    def read(self, logits):
        return positive_class_prob(logits)  # [n, 2] -> [n]


class MathShepherdPRM(PublishedScorer):
    format = "math-shepherd"
    tag, plus, minus = "ки", "+", "-"

    def setup(self) -> None:
        self.tag_id = last_token_id(self.tokenizer, self.tag)
        self.plus_id, self.minus_id = last_token_id(self.tokenizer, self.plus), last_token_id(self.tokenizer, self.minus)

    def build(self, prompt, steps):
        numbered = [s if re.match(r"\s*Step \d+:", s) else f"Step {k + 1}: {s}" for k, s in enumerate(steps)]
        text = f"{prompt} " + "\n".join(f"{s} {self.tag}" for s in numbered)
        ids = self.tokenizer.encode(text)  # with BOS, as the model card
        pos = [i for i, t in enumerate(ids) if t == self.tag_id]
        if len(pos) < len(steps):
            raise ValueError(f"math-shepherd: found {len(pos)} step tags for {len(steps)} steps; the tokenizer splits {self.tag!r}")
        return ids, pos[-len(steps):]

    def read(self, logits):
        return plus_vs_minus(logits, self.plus_id, self.minus_id)


class RLHFlowPRM(PublishedScorer):
    format = "rlhflow-prm"
    plus, minus = "+", "-"

    def setup(self) -> None:
        if not self.tokenizer.chat_template:
            raise ValueError(f"{self.path}: rlhflow-prm needs a tokenizer with a chat template")
        self.plus_id, self.minus_id = last_token_id(self.tokenizer, self.plus), last_token_id(self.tokenizer, self.minus)

    def build(self, prompt, steps):
        chat = []
        for k, step in enumerate(steps):
            chat += [{"role": "user", "content": f"{prompt} {step}" if k == 0 else step}, {"role": "assistant", "content": self.plus}]
        render = lambda msgs, gen: self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
        text = render(chat, False)
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        pos = []
        for k in range(len(steps)):  # the "+" of answer k starts where the prompt for answer k ends
            head = render(chat[: 2 * k + 1], True)
            if not text.startswith(head):
                raise ValueError("rlhflow-prm: the chat template does not render a conversation as an extension of its prefix")
            plus_at = token_at_char(enc["offset_mapping"], len(head))
            if enc["input_ids"][plus_at] != self.plus_id:
                raise ValueError(f"rlhflow-prm: the assistant's {self.plus!r} does not start a token of its own")
            pos.append(plus_at - 1)  # the position whose next-token logits predict it
        return enc["input_ids"], pos

    def read(self, logits):
        return plus_vs_minus(logits, self.plus_id, self.minus_id)


class SeqClsORM(PublishedScorer):
    format = "seqcls-orm"
    auto_class = "AutoModelForSequenceClassification"
    outcome_only = True

    def build(self, prompt, steps):
        chat = [{"role": "user", "content": prompt}, {"role": "assistant", "content": "\n".join(steps)}]
        if self.tokenizer.chat_template:
            ids = self.tokenizer.apply_chat_template(chat, tokenize=False)
            ids = self.tokenizer.encode(ids, add_special_tokens=False)
        else:
            ids = self.tokenizer.encode(prompt + "\n" + "\n".join(steps))
        return ids, [0]  # the model pools its own last real token: position 0 of the pooled [n, 1, 1] logits

    def pad_id(self, rows):
        # The model pools at the rightmost token that is not its pad id; a pad id that also ends a row (an EOS
        # used as pad, as many chat models do) would move that to the wrong token. Pad with an id no row uses.
        used = {t for ids in rows for t in ids}
        return next(t for t in range(self.model.config.vocab_size) if t not in used)

    def _forward(self, ids, mask, pad):
        config = self.model.config
        before, config.pad_token_id = config.pad_token_id, pad  # where the model finds each row's last real token
        try:
            return super()._forward(ids, mask, pad)[:, None, :]  # [n, 1] -> [n, 1, 1]: one "position" per row
        finally:
            config.pad_token_id = before

    def read(self, logits):
        return logits[..., 0].float()  # the raw reward logit


def hub_snapshot(name: str) -> Path:
    """A hub repository's files in the local hub cache (downloaded when a hub is reachable), for `--model org/name`."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name))
    except Exception as e:  # offline, no such repository, gated: say which, in one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ValueError(f"scorer {name!r}: not a local directory, and the hub could not provide it ({type(e).__name__}: {first})") from None

