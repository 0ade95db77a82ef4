"""Worked solutions for multi-step arithmetic, for supervised warm-start.

One step per line, evaluated left to right, and the final answer on its own line as `Answer: N`, a
form the verifier extracts exactly.
"""
from __future__ import annotations

import re

from .problem import Problem


def chain_steps(expression: str) -> list[str]:
    """'4 - 1 - 7' -> ['4 - 1 = 3', '3 - 7 = -4']: left-to-right evaluation of + - * chains."""
    terms, ops = [], []
    for tok in re.findall(r"\d+|[+\-*]", expression.replace(" ", "")):
        if tok.isdigit():
            terms.append(int(tok))
        else:
            ops.append(tok)
    if len(terms) < 2 or len(ops) != len(terms) - 1:
        raise ValueError(f"not a chain of binary operations: {expression!r}")
    steps, acc = [], terms[0]
    for op, term in zip(ops, terms[1:]):
        new = acc + term if op == "+" else acc - term if op == "-" else acc * term
        steps.append(f"{acc} {op} {term} = {new}")
        acc = new
    return steps


def worked_solution(problem: Problem) -> str:
    """The step-by-step solution text of an arithmetic-chain problem (reasoning-gym chain_sum)."""
    expression = problem.meta.get("expression") or problem.prompt.rsplit(":", 1)[-1].rstrip(" =")
    steps = chain_steps(expression)
    answer = steps[-1].rsplit("=", 1)[-1].strip()
    return "\n".join(steps + [f"Answer: {answer}"])
