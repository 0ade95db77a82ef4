"""Worked solutions for multi-step arithmetic, for supervised warm-start.

One step per line, evaluated left to right, and the final answer on its own line as `Answer: N`, a
form the verifier extracts exactly.
"""
from __future__ import annotations

import re

from .problem import Problem


_FIRST = re.compile(r"\s*(-?\d+)")
_NEXT = re.compile(r"\s*([+\-*])\s*(-?\d+)")


def chain_steps(expression: str) -> list[str]:
    """'4 - 1 - 7' -> ['4 - 1 = 3', '3 - 7 = -4']: left-to-right evaluation of + - * chains.
    Operands may be negative ('5 - -3')."""
    m = _FIRST.match(expression or "")
    if not m:
        raise ValueError(f"not a chain of binary operations: {expression!r}")
    acc, pos, steps = int(m.group(1)), m.end(), []
    while (m := _NEXT.match(expression, pos)) is not None:
        op, term = m.group(1), int(m.group(2))
        new = acc + term if op == "+" else acc - term if op == "-" else acc * term
        steps.append(f"{acc} {op} {term} = {new}")
        acc, pos = new, m.end()
    if not steps or expression[pos:].strip():
        raise ValueError(f"not a chain of binary operations: {expression!r}")
    return steps


def worked_solution(problem: Problem, *, direct: bool = False) -> str:
    """The step-by-step solution text of an arithmetic-chain problem (reasoning-gym chain_sum).

    direct=True gives only the final line: the same answer stated without working.
    """
    expression = problem.meta.get("expression") or problem.prompt.rsplit(":", 1)[-1].rstrip(" =")
    steps = chain_steps(expression)
    answer = steps[-1].rsplit("=", 1)[-1].strip()
    return "\n".join(([] if direct else steps) + [f"Answer: {answer}"])
