"""Scorers by name or by saved directory: the one place `--scorer SPEC` / `--model PATH` is resolved.

SPEC is `verifier` (the outcome 0/1 verifier) or a directory written by a reward model's `save(path)`,
whose `scorer.json` names its kind; SCORER_KINDS maps that kind to a loader `load(path) -> Scorer`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from .base import Scorer


def _verifier(_spec: str) -> Scorer:
    from .verifier import VerifierScorer

    return VerifierScorer()


# Kinds of saved scorer directories: kind (from scorer.json) -> loader(path). Reward-model modules add theirs here.
def _reward_model(path: Path) -> Scorer:
    from .models import RewardModel

    return RewardModel.load(path)


def _implicit_prm(path: Path) -> Scorer:
    from .implicit import load_implicit_prm

    return load_implicit_prm(path)


def _judge(path: Path) -> Scorer:
    from .judge import JudgeScorer

    return JudgeScorer.load(path)


def _ensemble(path: Path) -> Scorer:
    from .ensemble import EnsembleScorer

    return EnsembleScorer.load(path)


def _pav(path: Path) -> Scorer:
    from .pav import PAVScorer

    return PAVScorer.load(path)


SCORER_KINDS: dict[str, Callable[[Path], Scorer]] = {
    "orm": _reward_model, "prm": _reward_model, "implicit_prm": _implicit_prm, "judge": _judge, "ensemble": _ensemble, "pav": _pav,
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
