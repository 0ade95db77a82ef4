"""Accuracy per group of problems: by any grouping field the problems' meta carries (MathHay's task type, context
length and placement of the relevant documents), and by task type x length, each with its 95% interval."""
from __future__ import annotations

from collections import defaultdict

from ..data.problem import Problem
from .metrics import mean_ci, wilson_ci

from ..data.mathhay.build import GROUP_FIELDS as GROUP_KEYS  # the fields data/mathhay rows carry
CROSSED = ("task_type", "length")  # the table a long-context benchmark reports: accuracy per type at each length


def _summary(values: list[float], metric: str) -> dict:
    """{metric, metric_ci, n}: a Wilson interval for 0/1 verdicts (greedy), a normal one for means (pass@1)."""
    if all(v in (0.0, 1.0) for v in values):
        mean, lo, hi = wilson_ci(sum(values), len(values))
    else:
        mean, lo, hi = mean_ci(values)
    return {metric: mean, f"{metric}_ci": [lo, hi], "n": len(values)}


def accuracy_by_group(problems: list[Problem], scores: dict[str, list[float]], keys=GROUP_KEYS) -> dict:
    """{"by_<key>": {value: {metric, metric_ci, n, ...}}} for each key some problem's meta has, plus
    "by_task_type_x_length" keyed "sssd@2048"; {} when no problem carries a grouping field.

    `scores`: metric name -> one score per problem (e.g. greedy 0/1, pass@1 in [0, 1])."""
    present = [k for k in keys if any(k in p.meta for p in problems)]
    out: dict = {}
    for name, key_of in [(f"by_{k}", (lambda p, k=k: p.meta.get(k))) for k in present] + (
            [("by_task_type_x_length", lambda p: f"{p.meta.get('task_type')}@{p.meta.get('length')}")]
            if all(k in present for k in CROSSED) else []):
        members: dict = defaultdict(list)
        for i, p in enumerate(problems):
            members[str(key_of(p))].append(i)
        out[name] = {value: {k: v for metric, per_problem in scores.items()
                             for k, v in _summary([float(per_problem[i]) for i in idx], metric).items()}
                     for value, idx in sorted(members.items(), key=lambda kv: _order(kv[0]))}
    return out


def _order(value: str):
    """Numbers in numeric order (lengths 512 < 2048), then text."""
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)
