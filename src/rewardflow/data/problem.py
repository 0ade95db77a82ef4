"""The unit of work that flows through every room: one question with its gold answer."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Problem:
    id: str
    prompt: str  # the question as the user would write it
    answer: str | None  # gold final answer, when one exists
    task: str  # "chain_sum", "gsm8k", "math500", ...
    meta: dict = field(default_factory=dict, compare=False, hash=False)  # level, subject, source row ...


class DataError(ValueError):
    """A malformed input row; the message names the file and line."""
