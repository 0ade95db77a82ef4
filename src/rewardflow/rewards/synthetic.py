"""Synthetic step labels for arithmetic chains: the worked solution with one slip put in, labelled by the step oracle.

A model that cannot reliably produce a sum can still learn to check one, but it needs tens of thousands of labelled
steps (docs/reward_models_selection.md: 3k-12k labelled steps of the policy's own samples leave a PRM at
within-problem AUROC 0.58-0.60). Rollout labels cost a policy call each; these cost nothing: take a training
problem's worked solution, make ONE slip of the kinds a sampling policy makes, carry it on as the policy would
(the later steps compute correctly from the wrong value), and label every step with `label.chain_oracle_labels`,
the same exact rule the oracle labeller applies to real samples. The slips:

- result: a step's result off by a small amount (`7 + 8 = 14`);
- operand: a step starts from a number other than the previous result, or reads a wrong term from the prompt;
- answer: the `Answer:` line states a number other than the last result;
- direct: no working, just `Answer: N` (right or wrong: a solution may answer directly);
- none: the worked solution itself (about a quarter of the rows, so both labels are common).
"""
from __future__ import annotations

import random
import re
from typing import Sequence

from ..data.problem import Problem
from ..data.worked import worked_solution
from .label import chain_oracle_labels

SLIPS = ("none", "result", "operand", "answer", "direct")
_STEP = re.compile(r"^(-?\d+) ([+\-*]) (-?\d+) = (-?\d+)$")


def _apply(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def _delta(rng: random.Random) -> int:
    """A small nonzero error, mostly +-1 (the commonest slip of a sampling policy), sometimes a digit's worth."""
    d = rng.choice((1, 1, 1, 2, 2, 3, 10))
    return d if rng.random() < 0.5 else -d


def _replay(parts: list[tuple[int, str, int]], start: int, a0: int) -> list[tuple[int, str, int, int]]:
    """Steps from index `start` on, computed correctly from the (possibly wrong) first operand a0."""
    out, a = [], a0
    for _, op, b in parts[start:]:
        c = _apply(a, op, b)
        out.append((a, op, b, c))
        a = c
    return out


def slipped_steps(gold: Sequence[str], slip: str, rng: random.Random) -> list[str]:
    """The worked solution `gold` (steps 'a op b = c' then 'Answer: N') with one slip of kind `slip` put in."""
    parts = []
    for line in gold[:-1]:
        m = _STEP.match(line)
        if m is None:
            raise ValueError(f"not a chain step: {line!r}")
        parts.append((int(m.group(1)), m.group(2), int(m.group(3))))
    final = int(gold[-1].split(":", 1)[1])
    if slip == "none":
        return list(gold)
    if slip == "direct":
        return [f"Answer: {final + (0 if rng.random() < 0.5 else _delta(rng))}"]
    if slip == "answer" or not parts:
        return list(gold[:-1]) + [f"Answer: {final + _delta(rng)}"]
    j = rng.randrange(len(parts))
    done = [f"{a} {op} {b} = {_apply(a, op, b)}" for a, op, b in parts[:j]]
    a, op, b = parts[j]
    if slip == "result":
        c = _apply(a, op, b) + _delta(rng)
        rest = [(a, op, b, c)] + _replay(parts, j + 1, c)
    elif slip == "operand" and j > 0 and rng.random() < 0.5:  # started from a number other than the previous result
        rest = _replay(parts, j, a + _delta(rng))
    else:  # read a wrong term from the prompt
        b2 = b + _delta(rng)
        rest = [(a, op, b2, _apply(a, op, b2))] + _replay(parts, j + 1, _apply(a, op, b2))
    steps = done + [f"{x} {o} {y} = {z}" for x, o, y, z in rest]
    return steps + [f"Answer: {rest[-1][3]}"]


def synthetic_rows(problems: Sequence[Problem], per_problem: int, *, seed: int = 0,
                   weights: Sequence[float] = (0.25, 0.35, 0.2, 0.1, 0.1)) -> list[dict]:
    """`per_problem` slipped solutions of each problem's worked solution, as reward-model rows (prompt, steps, exact
    step labels, outcome) that train/rm.py takes; the slip kinds drawn with `weights` (in SLIPS order)."""
    rng, rows = random.Random(seed), []
    for p in problems:
        gold = worked_solution(p).split("\n")
        answer = gold[-1].split(":", 1)[1].strip()
        for k in range(per_problem):
            steps = slipped_steps(gold, rng.choices(SLIPS, weights)[0], rng)
            labels = chain_oracle_labels(gold, steps)
            pred = steps[-1].split(":", 1)[1].strip()
            rows.append({"id": f"{p.id}#syn{k}", "problem_id": p.id, "prompt": p.prompt, "steps": steps, "labels": labels,
                         "label_kind": "synthetic", "answer": answer, "pred": pred, "correct": pred == answer, "rollouts_used": 0})
    return rows
