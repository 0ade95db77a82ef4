"""Offline data in shuffled batches: the epoch loop the preference and OREO trainers share."""
from __future__ import annotations

from typing import Iterator, Sequence, TypeVar

import torch

T = TypeVar("T")


def shuffled_batches(items: Sequence[T], batch_size: int, epochs: int, seed: int) -> Iterator[list[T]]:
    """`epochs` passes over `items` in batches of `batch_size` (the last one of a pass may be smaller), each pass
    in a fresh order drawn from one generator seeded by `seed`, so a run is reproducible from its seed."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(items), generator=gen).tolist()
        for lo in range(0, len(items), batch_size):
            yield [items[i] for i in order[lo : lo + batch_size]]
