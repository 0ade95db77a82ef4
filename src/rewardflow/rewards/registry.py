"""Scorers by name or by saved directory: the one place `--scorer SPEC` / `--model PATH` is resolved.

SPEC is `verifier` (the outcome 0/1 verifier) or a directory written by a reward model's `save(path)`,
whose `scorer.json` names its kind; SCORER_KINDS maps that kind to a loader `load(path) -> Scorer`.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Callable

from .base import Scorer


def _verifier(_spec: str) -> Scorer:
    from .verifier import VerifierScorer

    return VerifierScorer()


def _saved(module: str, cls: str) -> Callable[[Path], Scorer]:
    """A loader `cls.load(path)` that imports its module only when a directory of that kind is loaded."""

    def load(path: Path) -> Scorer:
        return getattr(importlib.import_module(f".{module}", __package__), cls).load(path)

    return load


# Kinds of saved scorer directories: kind (from scorer.json) -> loader(path).
SCORER_KINDS: dict[str, Callable[[Path], Scorer]] = {
    "orm": _saved("models", "RewardModel"),
    "prm": _saved("models", "RewardModel"),
    "implicit_prm": _saved("implicit", "ImplicitPRM"),
    "judge": _saved("judge", "JudgeScorer"),
    "ensemble": _saved("ensemble", "EnsembleScorer"),
    "pav": _saved("pav", "PAVScorer"),
}

NAMED_SCORERS: dict[str, Callable[[str], Scorer]] = {"verifier": _verifier}


def load_scorer(spec: str) -> Scorer:
    """`verifier`, or a saved reward-model directory (holding scorer.json with its `kind`)."""
    if spec in NAMED_SCORERS:
        return NAMED_SCORERS[spec](spec)
    path = Path(spec)
    meta = path / "scorer.json"
    if not meta.is_file():
        raise ValueError(f"scorer {spec!r}: not one of {', '.join(NAMED_SCORERS)} and not a directory with scorer.json")
    kind = json.loads(meta.read_text()).get("kind")
    if kind not in SCORER_KINDS:
        raise ValueError(f"{meta}: unknown scorer kind {kind!r}; known: {', '.join(sorted(SCORER_KINDS)) or 'none'}")
    return SCORER_KINDS[kind](path)
