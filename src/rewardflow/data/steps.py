"""Splitting a solution into reasoning steps (the unit that process rewards score)."""
from __future__ import annotations


def split_steps(text: str) -> list[str]:
    """Steps are paragraphs when the text has blank lines (MATH/PRM800K style), else lines."""
    text = text.strip()
    if not text:
        return []
    sep = "\n\n" if "\n\n" in text else "\n"
    return [s.strip() for s in text.split(sep) if s.strip()]


def join_steps(steps: list[str], sep: str = "\n") -> str:
    return sep.join(steps)
