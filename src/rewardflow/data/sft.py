"""Supervised fine-tuning data of your own (`rewardflow sft --data FILE`, config `sft.data`): rows of
{"prompt": ..., "completion": ...} or {"messages": [{role, content}, ...]} in any file type data/jsonl.py reads
(.jsonl, .json, .csv, .parquet) or a `datasets` name (hf:NAME).

- prompt/completion: the prompt may itself be a list of messages (rendered by data/chat.py); the completion is text.
- messages: everything before the last message is the prompt; the last message, which must be the assistant's,
  is the completion. The loss is on completion tokens only (train/sft.py).
A malformed row is a DataError naming the file and line.
"""
from __future__ import annotations

from .chat import is_messages, render_messages, split_conversation
from .problem import DataError


def _parser(prompt_key: str, completion_key: str):
    def parse(row: dict) -> tuple[str, str]:
        if prompt_key not in row and "messages" in row:
            return split_conversation(row["messages"], "messages")
        if prompt_key not in row:
            raise ValueError(f"needs {prompt_key!r} and {completion_key!r} (sft.prompt_key / sft.completion_key), or 'messages'; "
                           f"the row has {sorted(row)[:20]}")
        prompt = row[prompt_key]
        if is_messages(prompt):
            prompt = render_messages(prompt, prompt_key)
        if not isinstance(prompt, str):
            raise TypeError(f"{prompt_key!r} must be a string or a list of {{role, content}} messages, got {type(prompt).__name__}")
        if completion_key not in row:
            raise ValueError(f"no {completion_key!r} field (sft.completion_key)")
        completion = row[completion_key]
        if is_messages(completion):  # TRL's conversational prompt/completion: the completion is [assistant message]
            completion = "\n\n".join(m.get("content", "") for m in completion)
        if not isinstance(completion, str) or not completion:
            raise TypeError(f"{completion_key!r} must be non-empty text, got {completion!r:.60}")
        return prompt, completion

    return parse


def load_sft_examples(path, *, prompt_key: str = "prompt", completion_key: str = "completion", split: str = "train",
                      limit: int | None = None) -> list[tuple[str, str]]:
    """(prompt, completion) pairs of an SFT file, in file order."""
    from .jsonl import row_reader

    out = [pair for _, pair in row_reader(path, split)(path, _parser(prompt_key, completion_key))]
    if not out:
        raise DataError(f"{path}: no SFT rows")
    return out[:limit] if limit else out


class SFTStream:
    """Step -> its batch of (prompt, completion) pairs: the file's rows in a fixed shuffled order (seeded), epoch after
    epoch, each epoch reshuffled; deterministic in the step, so a rerun trains on the same batches."""

    def __init__(self, examples: list[tuple[str, str]], batch_size: int, seed: int = 0):
        import random

        self.examples, self.batch_size, self.seed, self._random = examples, batch_size, seed, random
        self._orders: dict[int, list[int]] = {}  # epoch -> its order; a batch spans at most two epochs

    def _order(self, epoch: int) -> list[int]:
        if epoch not in self._orders:
            order = list(range(len(self.examples)))
            self._random.Random(f"rewardflow-sft:{self.seed}:{epoch}").shuffle(order)
            self._orders = {e: o for e, o in self._orders.items() if e >= epoch - 1}
            self._orders[epoch] = order
        return self._orders[epoch]

    def __call__(self, step: int) -> list[tuple[str, str]]:
        n = len(self.examples)
        first = step * self.batch_size
        return [self.examples[self._order(i // n)[i % n]] for i in range(first, first + self.batch_size)]
