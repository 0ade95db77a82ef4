"""The Policy contract: sample completions with per-token logprobs; score given completions."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch

from ..data.steps import split_steps


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1  # completions per prompt
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 disables top-k
    max_new_tokens: int = 128
    stop: tuple[str, ...] = ()  # generation ends after any of these strings (kept in the text)
    seed: int | None = None  # seeds the sampler's own generator; None draws from torch's global RNG


@dataclass
class Completion:
    text: str
    token_ids: list[int]
    logprobs: torch.Tensor  # [T] log pi(token) at the sampling temperature, before top-p/top-k truncation
    finish_reason: str  # "eos" | "stop" | "length"
    prompt_tokens: int = 0  # tokens of prompt (+ prefix) this completion continued
    cached_tokens: int = 0  # of those, how many the policy did not compute for it (prefix cache, or shared with the other samples of its prompt)

    @property
    def steps(self) -> list[str]:
        return split_steps(self.text)


@dataclass
class TokenBatch:
    """Prompts left-padded to P, completions right-padded to T, concatenated: [N, P+T]."""

    input_ids: torch.Tensor  # [N, P+T]
    attention_mask: torch.Tensor  # [N, P+T]
    completion_mask: torch.Tensor  # [N, T] 1 on real completion tokens
    prompt_len: int  # P

    @property
    def completion_ids(self) -> torch.Tensor:
        return self.input_ids[:, self.prompt_len :]  # [N, T]

    def select(self, idx: torch.Tensor | slice) -> "TokenBatch":
        return TokenBatch(self.input_ids[idx], self.attention_mask[idx], self.completion_mask[idx], self.prompt_len)


@dataclass
class LogprobOutput:
    logprobs: torch.Tensor  # [N, T]
    entropy: torch.Tensor | None = field(default=None)  # [N, T]


class Policy(Protocol):
    num_params: int  # for FLOPs accounting (2 * params * tokens)

    def generate(
        self, prompts: list[str], params: SamplingParams, prefixes: list[str] | None = None
    ) -> list[list[Completion]]:
        """params.n completions for each prompt (the raw question; the policy applies its template).

        prefixes[i], when given, is the start of the assistant's answer to continue from (step-level
        search); the returned text is only the continuation.
        """
        ...

    def logprobs(self, batch: TokenBatch, *, temperature: float = 1.0, with_entropy: bool = False) -> LogprobOutput:
        """Teacher-forced log pi(completion tokens) under the current weights: [N, T]."""
        ...

    def encode_prompts(self, prompts: list[str], prefixes: list[str] | None = None) -> list[list[int]]:
        """Token ids of the templated prompts (plus answer prefixes), as generate() feeds them."""
        ...

    def token_batch(self, prompt_ids: list[list[int]], completion_ids: list[list[int]]) -> TokenBatch:
        """Pack prompt and completion token ids into one TokenBatch."""
        ...
