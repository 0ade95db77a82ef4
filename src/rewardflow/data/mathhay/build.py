"""MathHay rows: a question's relevant documents placed first / middle / last in a haystack of irrelevant documents
that pads the context to a requested token length, every answer re-derived from the final context text.

Deterministic in the seed: row i of a task type draws its question from random.Random("mathhay/<seed>/<type>/<i>")
and its haystack from a generator seeded with the length too, so the same questions appear at every length (a paired
comparison across lengths) and rows do not depend on which other lengths or types were built.
"""
from __future__ import annotations

import random
import re
from dataclasses import replace
from typing import Callable, Iterator

from ..jsonl import read_rows
from .docs import approx_tokens, random_doc
from .questions import TASK_TYPES, Question, make_question, n_operations, rederive

PLACEMENTS = ("first", "middle", "last")
SEPARATOR = "\n\n"
GROUP_FIELDS = ("task_type", "length", "placement")  # what `rewardflow eval` groups accuracy by
MAX_ATTEMPTS = 20  # a row whose answer cannot be re-derived is drawn again; this many failures in a row is a bug


def parse_length(text: str) -> int:
    """'2k' -> 2048, '512' -> 512, '0' -> 0 (no haystack: the relevant documents alone)."""
    m = re.fullmatch(r"\s*(\d+)\s*([kK]?)\s*", str(text))
    if not m:
        raise ValueError(f"a context length is a token count like 512, 2k or 128k, not {text!r}")
    return int(m.group(1)) * (1024 if m.group(2) else 1)


def length_label(tokens: int) -> str:
    return f"{tokens // 1024}k" if tokens and tokens % 1024 == 0 else str(tokens)


def doc_haystack(rng: random.Random, exclude: set[str]) -> str:
    """An irrelevant report: another entity (never one the question names), its own numbers."""
    return random_doc(rng, exclude).text


def corpus_haystack(paragraphs: list[str]) -> Callable[[random.Random, set[str]], str]:
    """Haystack documents drawn from a user's corpus paragraphs; a paragraph naming a relevant entity is skipped."""
    def draw(rng: random.Random, exclude: set[str]) -> str:
        for _ in range(100):
            text = rng.choice(paragraphs)
            if not any(name in text for name in exclude):
                return text
        raise ValueError("the corpus paragraphs keep naming the question's entities; use another corpus")
    return draw


def pad_context(rng: random.Random, relevant: list[str], target: int, placement: str, count: Callable[[str], int],
                haystack, exclude: set[str]) -> tuple[str, int, int]:
    """(context, documents in it, its token count): the relevant documents as one block at `placement` among
    haystack documents added while they fit in `target` tokens (0: no haystack). Documents that do not fit are
    skipped for later, smaller ones (MAX_ATTEMPTS misses end the filling), so the context ends within about one
    document of the target and never above it."""
    if placement not in PLACEMENTS:
        raise ValueError(f"unknown placement {placement!r}; choose from {', '.join(PLACEMENTS)}")
    used, filler, misses = count(SEPARATOR.join(relevant)), [], 0
    if target and used > target:
        raise ValueError(f"a context of {target} tokens cannot hold the relevant documents ({used} tokens); ask for a longer one")
    while target and misses < MAX_ATTEMPTS:
        text = haystack(rng, exclude)
        cost = count(SEPARATOR + text)
        if used + cost <= target:
            filler.append(text)
            used += cost
        else:
            misses += 1
    while True:  # counted piece by piece above; a tokenizer can merge across the joins, so count the whole again
        split = {"first": 0, "middle": len(filler) // 2, "last": len(filler)}[placement]
        context = SEPARATOR.join(filler[:split] + relevant + filler[split:])
        tokens = count(context)
        if not target or tokens <= target or not filler:
            return context, len(filler) + len(relevant), tokens
        filler.pop(0 if placement == "last" else -1)  # drop the document farthest from the relevant block


def prompt_text(context: str, query: str) -> str:
    """What the model reads: the documents, then the question (the `question` field of a row)."""
    return f"{context}{SEPARATOR}Question: {query}"


def make_row(seed: int, task_type: str, index: int, target: int, placement: str, count: Callable[[str], int],
             haystack=doc_haystack) -> tuple[dict, int]:
    """One row and the number of drafts quality control rejected before it (answers not re-derivable)."""
    for attempt in range(MAX_ATTEMPTS):
        tag = f"mathhay/{seed}/{task_type}/{index}" + (f"/retry{attempt}" if attempt else "")
        question = make_question(random.Random(tag), task_type)
        names = {d.name for d in question.docs}
        context, n_docs, tokens = pad_context(random.Random(f"{tag}/{target}"), [d.text for d in question.docs], target,
                                              placement, count, haystack, names)
        try:
            ok = rederive(question, context) == question.answer
        except ValueError:  # a fact not found once and only once in the context
            ok = False
        if ok:
            return _row(question, context, tokens, n_docs, target, placement, index), attempt
    raise RuntimeError(f"MathHay: {MAX_ATTEMPTS} drafts of {task_type} row {index} failed quality control")


def _row(q: Question, context: str, tokens: int, n_docs: int, target: int, placement: str, index: int) -> dict:
    return {"id": f"{q.task_type}-{length_label(target)}-{index:04d}", "question": prompt_text(context, q.query),
            "answer": q.answer, "task_type": q.task_type, "length": target, "context_tokens": tokens,
            "placement": placement, "context": context, "query": q.query, "n_docs": n_docs,
            "relevant": [d.name for d in q.docs], "n_operations": n_operations(q.expr), "expression": q.expr}


def build_rows(*, lengths: list[int], per_type: int, seed: int, count: Callable[[str], int] = approx_tokens,
               types=TASK_TYPES, placements=PLACEMENTS, haystack=doc_haystack, progress=None) -> Iterator[tuple[dict, int]]:
    """(row, rejected drafts) for every length, task type and index; row i of a type is placed at
    placements[i % len(placements)] at every length."""
    for target in lengths:
        for task_type in types:
            for i in range(per_type):
                yield make_row(seed, task_type, i, target, placements[i % len(placements)], count, haystack)
                if progress is not None:
                    progress(1)


def group_fields(path: str) -> list[dict]:
    """The grouping fields (GROUP_FIELDS) of each row of a JSONL problem file, in row order; {} for a row without them."""
    return [fields for _, fields in read_rows(path, lambda row: {k: row[k] for k in GROUP_FIELDS if k in row})]


def with_group_fields(path, problems: list) -> list:
    """The problems read from `path` with their rows' grouping fields added to meta, so that `rewardflow eval`
    reports accuracy per task type, length and placement; unchanged for files that are not JSONL or lack the fields.
    The loader reads rows in file order, so the i-th problem is the i-th row."""
    if not str(path).lower().endswith(".jsonl"):
        return problems
    fields = group_fields(path)[: len(problems)]
    if not any(fields):
        return problems
    return [replace(p, meta={**p.meta, **f}) for p, f in zip(problems, fields)]
