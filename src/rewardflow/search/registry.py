"""Every search strategy by name: one signature, `search(problems, policy, scorer, cfg, *, draft=None)`."""
from __future__ import annotations

from typing import Callable

from .mcts import mcts
from .particle import particle
from .sampling import best_of_n, majority, self_certainty, self_certainty_borda, weighted_best_of_n
from .speculative import speculative
from .tree import beam, dvts, rebase

STRATEGIES: dict[str, Callable] = {
    "majority": majority,
    "best_of_n": best_of_n,
    "weighted_best_of_n": weighted_best_of_n,
    "self_certainty": self_certainty,
    "self_certainty_borda": self_certainty_borda,
    "beam": beam,
    "dvts": dvts,
    "mcts": mcts,
    "rebase": rebase,
    "speculative": speculative,
    "particle": particle,
}

# Strategies that read a scorer (the others ignore it and book no scorer compute), and those needing a draft.
USES_SCORER = {"best_of_n", "weighted_best_of_n", "beam", "dvts", "mcts", "rebase", "speculative", "particle"}
NEEDS_DRAFT = {"speculative"}


def get_strategy(name: str) -> Callable:
    if name not in STRATEGIES:
        raise ValueError(f"unknown search strategy {name!r}; valid: {', '.join(STRATEGIES)}")
    return STRATEGIES[name]


def run_search(name: str, problems: list, policy, scorer, cfg, *, draft=None, batch_size: int = 32, progress=None) -> list:
    """STRATEGIES[name] over problems in batches of batch_size (a progress tick per batch). Batch b samples with
    seed cfg.seed + 7919 * b, so no two batches share random streams."""
    import dataclasses

    fn = get_strategy(name)
    results = []
    for b, start in enumerate(range(0, len(problems), batch_size)):
        batch = problems[start : start + batch_size]
        results += fn(batch, policy, scorer, dataclasses.replace(cfg, seed=cfg.seed + 7919 * b), draft=draft)
        if progress is not None:
            progress(len(batch))
    return results
