"""Scorers by name or by saved directory: the one place `--scorer SPEC` / `--model PATH` is resolved.

SPEC is `verifier` (the outcome 0/1 verifier) or a directory written by a reward model's `save(path)`,
whose `scorer.json` names its kind; SCORER_KINDS maps that kind to a loader `load(path) -> Scorer`.
"""
from __future__ import annotations

import contextvars
import importlib
import json
import os
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
    "oreo_value": _saved("oreo_value", "OREOValueScorer"),  # written by `rewardflow oreo` (train/offline.save_value)
    # published reward-model checkpoints read the way their model cards do (rewards/published.py): `FORMAT:DIR`
    "qwen-prm": _saved("published", "QwenPRM"),
    "math-shepherd": _saved("published", "MathShepherdPRM"),
    "rlhflow-prm": _saved("published", "RLHFlowPRM"),
    "seqcls-orm": _saved("published", "SeqClsORM"),
}

NAMED_SCORERS: dict[str, Callable[[str], Scorer]] = {"verifier": _verifier}


# The scorer directories being loaded in this context, outermost first: an ensemble that lists itself, directly
# or through other ensembles, is caught here instead of recursing until RecursionError.
_LOADING: contextvars.ContextVar[tuple[Path, ...]] = contextvars.ContextVar("rewardflow_scorers_loading", default=())


def load_scorer(spec: str) -> Scorer:
    """`verifier`, a saved reward-model directory (holding scorer.json with its `kind`), or `KIND:DIR` (a
    checkpoint loaded as KIND, e.g. `qwen-prm:DIR`, `math-shepherd:DIR`, `rlhflow-prm:DIR`, `seqcls-orm:DIR`)."""
    if spec in NAMED_SCORERS:
        return NAMED_SCORERS[spec](spec)
    kind, sep, where = spec.partition(":")
    if sep and kind in SCORER_KINDS and where and not Path(spec).exists():  # KIND:DIR, e.g. qwen-prm:DIR (no scorer.json needed)
        return SCORER_KINDS[kind](Path(where))
    path = Path(spec)
    if not path.exists() and hub_id(spec):  # org/name: a saved scorer directory on the hub, fetched when reachable
        from .published import hub_snapshot

        path = hub_snapshot(spec)
    meta = read_meta(path)
    kind = meta.get("kind")
    if kind not in SCORER_KINDS:
        raise ValueError(f"{path / 'scorer.json'}: unknown scorer kind {kind!r}; known: {', '.join(sorted(SCORER_KINDS)) or 'none'}")
    loading, here = _LOADING.get(), path.resolve()
    if here in loading:
        chain = " -> ".join(str(p) for p in (*loading[loading.index(here):], here))
        raise ValueError(f"scorer {spec!r}: scorer directories refer to each other in a cycle: {chain}")
    token = _LOADING.set((*loading, here))
    try:
        return SCORER_KINDS[kind](path)
    finally:
        _LOADING.reset(token)


def hub_id(spec: str) -> bool:
    """`org/name` that is not a local path: the same rule as models (policy/resolve.is_hub_id)."""
    from ..policy.resolve import is_hub_id

    return is_hub_id(spec)


def read_meta(path: str | Path) -> dict:
    """scorer.json of a saved scorer directory, as a dict; anything else is an error naming the file."""
    meta = Path(path) / "scorer.json"
    if not meta.is_file():
        raise ValueError(f"scorer {str(path)!r}: not one of {', '.join(NAMED_SCORERS)} and not a directory with scorer.json")
    try:
        obj = json.loads(meta.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:
        raise ValueError(f"{meta}: not valid JSON ({type(e).__name__})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{meta}: must be a JSON object, got {type(obj).__name__}")
    return obj


def resolve_inside(scorer_dir: str | Path, ref, *, field: str) -> Path:
    """A path named in `scorer_dir`/scorer.json: an absolute path is taken as given (the writer chose it
    explicitly); a relative one is resolved against the scorer directory and may not leave it through `..`, so a
    downloaded scorer cannot point its loader at files elsewhere on the machine by a relative path."""
    if not isinstance(ref, str) or not ref:
        raise ValueError(f"{Path(scorer_dir) / 'scorer.json'}: {field} must be a non-empty path string, got {ref!r}")
    if os.path.isabs(ref):
        return Path(ref)
    norm = os.path.normpath(ref)
    if norm == os.pardir or norm.startswith(os.pardir + os.sep):
        raise ValueError(f"{Path(scorer_dir) / 'scorer.json'}: {field} {ref!r} leaves the scorer directory; "
                         "use a path inside it, or an absolute path")
    return Path(scorer_dir) / norm
