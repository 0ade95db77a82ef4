"""Long chain-of-thought text: the in-context prompt that makes an instruct model write it (BOLT, Pang et al. 2025,
stage 1), the parser that splits a completion into internal thoughts and a response, the format filter, detectors
of reflection and backtracking, refusal detection and reasoning length (Auto-CEI, Zhao et al. 2025), and a
documented generator of long-CoT traces for arithmetic chains (the tiny models cannot follow in-context examples).

A long-CoT completion reads

    <thought>
    plan, steps, checks ("Check: ..."), corrections ("Wait, ... Let me redo ...")
    </thought>
    <response>
    the clean solution, ending in `Answer: N`
    </response>

Pure text functions: no model, no torch.
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .problem import DataError, Problem
from .worked import chain_steps

THOUGHT_OPEN, THOUGHT_CLOSE = "<thought>", "</thought>"
RESPONSE_OPEN, RESPONSE_CLOSE = "<response>", "</response>"
EXAMPLE_FIELDS = ("question", "thoughts", "response")
INSTRUCTION = ("Solve the problem. First think inside <thought> </thought>: make a plan, work step by step, check your "
               "work and correct any mistake you find. Then write the clean solution inside <response> </response>, "
               "ending with a line 'Answer: <number>'.")

# Words that mark a reflection (the model checks its own work) or a backtrack (it abandons a step and redoes it).
# Matched case-insensitively on word boundaries inside the thoughts.
REFLECT = re.compile(r"\b(check|verify|double-check|let me make sure|looks right|confirm)", re.IGNORECASE)
BACKTRACK = re.compile(r"\b(wait|that's wrong|that is wrong|mistake|let me redo|start over|actually,|not \S+, but)", re.IGNORECASE)
# Refusal ("I don't know") phrases; curly apostrophes are normalised first.
REFUSAL = re.compile(r"\b(i don't know|i do not know|i'm not sure|i am not sure|i cannot solve|i can't solve)", re.IGNORECASE)
ANSWER_LINE = re.compile(r"^\s*answer\s*:\s*\S", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class LongCoT:
    thoughts: str  # the text between <thought> and </thought>, stripped
    response: str  # the text after </thought> (inside <response> when present), stripped


def load_icl_examples(path: str | Path | None = None) -> list[dict]:
    """The in-context examples: a JSONL file of {"question", "thoughts", "response"} rows (default: the 10 that ship
    with the package, data/bolt_examples.jsonl). A bad row is a DataError naming the file and line."""
    if path is None:
        source, text = "rewardflow/data/bolt_examples.jsonl", resources.files(__package__).joinpath("bolt_examples.jsonl").read_text("utf-8")
    else:
        source, text = str(path), Path(path).read_text("utf-8")
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{source}:{lineno}: not valid JSON ({e.msg})") from e
        missing = [k for k in EXAMPLE_FIELDS if not isinstance(row, dict) or not isinstance(row.get(k), str) or not row[k].strip()]
        if missing:
            raise DataError(f"{source}:{lineno}: an in-context example needs non-empty string fields {missing}")
        rows.append(row)
    if not rows:
        raise DataError(f"{source}: no in-context examples")
    return rows


def format_longcot(thoughts: str, response: str) -> str:
    """The completion text of one long-CoT solution (the form the parser reads back)."""
    return f"{THOUGHT_OPEN}\n{thoughts.strip()}\n{THOUGHT_CLOSE}\n{RESPONSE_OPEN}\n{response.strip()}\n{RESPONSE_CLOSE}"


def build_icl_prompt(examples: list[dict], question: str, k: int | None = None) -> str:
    """The bootstrapping prompt: the instruction, the first k examples (all when k is None) each as a question and
    its long-CoT solution, then the new question. The model continues with its own <thought> ... </response>."""
    chosen = examples if k is None else examples[:k]
    if k is not None and not 0 < k <= len(examples):
        raise ValueError(f"k={k} in-context examples asked for, {len(examples)} available")
    parts = [INSTRUCTION, ""]
    for i, ex in enumerate(chosen, 1):
        parts += [f"Example {i}", f"Problem: {ex['question'].strip()}", format_longcot(ex["thoughts"], ex["response"]), ""]
    parts += ["Now solve this one the same way.", f"Problem: {question.strip()}"]
    return "\n".join(parts)


def parse_longcot(text: str) -> LongCoT | None:
    """Split a completion into thoughts and response; None when it is not in the long-CoT form (no thought block,
    or nothing after it). A missing </response> is tolerated (generation often stops right after the answer)."""
    start, end = text.find(THOUGHT_OPEN), text.find(THOUGHT_CLOSE)
    if start < 0 or end < start:
        return None
    thoughts = text[start + len(THOUGHT_OPEN) : end].strip()
    rest = text[end + len(THOUGHT_CLOSE) :]
    if RESPONSE_OPEN in rest:
        rest = rest.split(RESPONSE_OPEN, 1)[1]
    response = rest.split(RESPONSE_CLOSE, 1)[0].strip()
    return LongCoT(thoughts, response) if response else None


def format_ok(parsed: LongCoT | None, *, min_thought_lines: int = 2) -> bool:
    """The format filter of BOLT's bootstrapping: thoughts of at least `min_thought_lines` non-empty lines, a response
    with an `Answer:` line, and no thought block repeated inside the response."""
    if parsed is None:
        return False
    lines = [ln for ln in parsed.thoughts.splitlines() if ln.strip()]
    return len(lines) >= min_thought_lines and ANSWER_LINE.search(parsed.response) is not None and THOUGHT_OPEN not in parsed.response


def _thought_text(text: str) -> str:
    parsed = parse_longcot(text)
    return parsed.thoughts if parsed is not None else text


def reflects(text: str) -> bool:
    """Does the completion's reasoning check its own work? (its thoughts when it has them, else all of it)"""
    return REFLECT.search(_thought_text(text)) is not None


def backtracks(text: str) -> bool:
    """Does the completion's reasoning abandon a step and redo it?"""
    return BACKTRACK.search(_thought_text(text)) is not None


def _plain(text: str) -> str:
    return text.replace("\u2019", "'").replace("\u2018", "'")


def is_refusal(text: str) -> bool:
    """An 'I don't know' answer: a refusal phrase and no `Answer:` line after it."""
    t = _plain(text)
    m = REFUSAL.search(t)
    return m is not None and ANSWER_LINE.search(t, m.end()) is None


def reasoning_length(text: str) -> int:
    """Reasoning steps before the refusal (or the answer): non-empty lines, the refusal's and `Answer:` lines not
    counted. The length Auto-CEI's refusal reward looks at (its code splits on lines too)."""
    t = _plain(text)
    m = REFUSAL.search(t)
    head = t[: m.start()] if m else t
    return sum(1 for ln in head.splitlines() if ln.strip() and not ANSWER_LINE.match(ln))


def refusal_text(steps: list[str]) -> str:
    """The completion that works `steps` and then declines: the form Auto-CEI's policy learns to write."""
    return "\n".join([*steps, "I don't know."])


# ------------------------------------------------------------------ synthetic long-CoT traces (documented generator)

def synth_longcot(problem: Problem, rng: random.Random, *, p_backtrack: float = 0.5, p_reflect: float = 0.7) -> str:
    """A long-CoT trace for an arithmetic chain, written by rule (no model): a plan line, the left-to-right steps;
    with probability p_backtrack one step is first written with a slip of +-1..3, then noticed ("Wait, ...") and
    redone; with probability p_reflect the result is checked by undoing the last step. The response is the clean
    worked solution. Every trace is correct, so the verifier keeps all of them."""
    expression = problem.meta.get("expression") or problem.prompt.rsplit(":", 1)[-1].rstrip(" =")
    steps = chain_steps(expression)
    thoughts = [f"Plan: there are {len(steps) + 1} numbers; combine them left to right, one step per line."]
    slip_at = rng.randrange(len(steps)) if rng.random() < p_backtrack else -1
    for i, step in enumerate(steps):
        lhs, value = step.rsplit("=", 1)
        if i == slip_at:
            wrong = int(value) + rng.choice([-3, -2, -1, 1, 2, 3])
            thoughts += [f"{lhs.strip()} = {wrong}", f"Wait, that's wrong: {lhs.strip()} is not {wrong}. Let me redo it.", step]
        else:
            thoughts.append(step)
    if rng.random() < p_reflect:
        lhs, value = steps[-1].rsplit("=", 1)
        a, op, b = lhs.split()
        inverse = {"+": "-", "-": "+"}.get(op)
        if inverse is not None:
            thoughts.append(f"Check: {value.strip()} {inverse} {b} = {a}, so the last step is right.")
        else:
            thoughts.append(f"Check: {lhs.strip()} = {value.strip()} again, so the last step is right.")
    answer = steps[-1].rsplit("=", 1)[-1].strip()
    return format_longcot("\n".join(thoughts), "\n".join([*steps, f"Answer: {answer}"]))
