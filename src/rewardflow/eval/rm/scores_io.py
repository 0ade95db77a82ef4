"""Scores files: JSONL rows {"id", "step_scores"} and/or {"outcome_score"}, read streaming and checked.

Every benchmark exposes its items as `ScoreItem`s (an id, the Problem, the step list). A scores file
must hold exactly one row per item; an unknown id, a duplicate, the wrong number of step scores, a
non-number or malformed JSON raises `ScoresFileError` naming the file and the line.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from ...data.problem import DataError, Problem
from ...rewards.base import Scorer, StepScores


class ScoresFileError(DataError):
    """A bad row in a scores file; the message starts with `path:line:`."""


@dataclass(frozen=True)
class ScoreItem:
    id: str  # the key a scores file uses for this solution
    problem: Problem
    steps: tuple[str, ...]  # the solution as a step list, the unit a process reward scores


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _parse_row(line: str, where: str, expected: Mapping[str, int | None]) -> tuple[str, StepScores]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise ScoresFileError(f"{where}: malformed JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(row, dict) or not isinstance(row.get("id"), (str, int)):
        raise ScoresFileError(f'{where}: a row must be an object with an "id"')
    row_id = str(row["id"])
    if row_id not in expected:
        raise ScoresFileError(f"{where}: unknown id {row_id!r} (not an item of this benchmark)")
    has_steps, has_outcome = "step_scores" in row, "outcome_score" in row
    if not (has_steps or has_outcome):
        raise ScoresFileError(f'{where}: id {row_id!r} has neither "step_scores" nor "outcome_score"')
    steps: list[float] = []
    if has_steps:
        steps = row["step_scores"]
        if not isinstance(steps, list) or not all(_number(s) for s in steps):
            raise ScoresFileError(f'{where}: id {row_id!r}: "step_scores" must be a list of finite numbers')
        n_expected = expected[row_id]
        if n_expected is not None and len(steps) != n_expected:
            raise ScoresFileError(f"{where}: id {row_id!r} has {len(steps)} step scores, expected {n_expected}")
    outcome = row.get("outcome_score", 0.0)
    if not _number(outcome):
        raise ScoresFileError(f'{where}: id {row_id!r}: "outcome_score" must be a finite number')
    return row_id, StepScores(steps=[float(s) for s in steps], outcome=float(outcome))


def read_scores(path: str | Path, items: Sequence[ScoreItem], *, check_steps: bool = True) -> dict[str, StepScores]:
    """Stream a scores file and check it against `items`; every item must have exactly one row."""
    path = Path(path)
    expected = {it.id: (len(it.steps) if check_steps else None) for it in items}
    scores: dict[str, StepScores] = {}
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            row_id, row_scores = _parse_row(line, where, expected)
            if row_id in scores:
                raise ScoresFileError(f"{where}: duplicate id {row_id!r}")
            scores[row_id] = row_scores
    missing = [k for k in expected if k not in scores]
    if missing:
        raise ScoresFileError(f"{path}: {len(missing)} of {len(expected)} ids have no row, e.g. {missing[:3]}")
    return scores


def write_scores(path: str | Path, scores: Mapping[str, StepScores] | Iterable[tuple[str, StepScores]]) -> Path:
    """Write a scores file: "step_scores" when a row has steps, "outcome_score" always."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pairs = scores.items() if isinstance(scores, Mapping) else scores
    with path.open("w", encoding="utf-8") as fh:
        for row_id, s in pairs:
            row: dict = {"id": row_id}
            if s.steps:
                row["step_scores"] = [float(x) for x in s.steps]
            row["outcome_score"] = float(s.outcome)
            fh.write(json.dumps(row) + "\n")
    return path


def score_items(scorer: Scorer, items: Sequence[ScoreItem], *, batch_size: int = 32) -> dict[str, StepScores]:
    """Run a Scorer over items in batches; one StepScores per item id."""
    out: dict[str, StepScores] = {}
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        scored = scorer.score([it.problem for it in batch], [list(it.steps) for it in batch])
        if len(scored) != len(batch):
            raise ValueError(f"scorer returned {len(scored)} results for {len(batch)} solutions")
        out.update((it.id, s) for it, s in zip(batch, scored))
    return out


def resolve_scores(
    items: Sequence[ScoreItem], *, scores: str | Path | None, scorer: Scorer | None, check_steps: bool = True
) -> tuple[dict[str, StepScores] | None, str]:
    """Scores from a file or a scorer (never both), with a line saying where they came from."""
    if scores is not None and scorer is not None:
        raise ValueError("give a scores file or a scorer, not both")
    if scores is not None:
        return read_scores(scores, items, check_steps=check_steps), f"scores file {scores}"
    if scorer is not None:
        return score_items(scorer, items), f"scorer {type(scorer).__name__}"
    return None, "stored scores shipped with the data"
