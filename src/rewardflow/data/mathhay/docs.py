"""MathHay's documents: short synthetic reports (a company, a town, a sports club, a farm) that state numerical facts
over three consecutive years, rendered from the templates and name/number pools in pools.json.

Why synthetic: the paper (Wang et al. 2024, MathHay) gathered real web documents by topic and had an LLM write the
questions; offline and without a judge model we write the documents ourselves, so that every number in them is known
and every answer can be re-derived from the text by code. A user-supplied corpus can replace the haystack (the padding),
never the documents that carry the facts.
"""
from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from ..problem import DataError

# Token count without a tokenizer: one token per digit (SmolLM2's and Llama-style tokenizers split numbers into single
# digits) plus one per 4 other characters. On 2000 rendered documents this came to 0.99 of SmolLM2-135M-Instruct's
# count on average (0.92-1.08 per document; measured, see docs/mathhay.md). Pass the evaluated model's tokenizer for
# exact counts.
CHARS_PER_TOKEN = 4


def approx_tokens(text: str) -> int:
    """The documented approximation of a token count: digits + ceil(other characters / 4)."""
    digits = sum(c.isdigit() for c in text)
    return digits + math.ceil((len(text) - digits) / CHARS_PER_TOKEN)


@lru_cache(maxsize=1)
def pools() -> dict:
    """The shipped pools (names, attribute ranges, sentence templates), read once."""
    text = resources.files(__package__).joinpath("pools.json").read_text(encoding="utf-8")
    return json.loads(text)


@dataclass(frozen=True)
class Doc:
    """One report: an entity of a kind with each attribute's value per year, rendered as `text`."""
    kind: str  # "company" | "city" | "team" | "farm"
    name: str  # the entity, e.g. "Harbor Logistics"
    years: tuple[int, ...]  # the three years the report covers, ascending
    facts: dict  # attribute -> (value in years[0], years[1], years[2])
    text: str  # the rendered report (title line, then sentences)


def entity_names(kind: str) -> list[str]:
    """Every name the pools can give an entity of this kind (first x second)."""
    names = pools()["kinds"][kind]["names"]
    return [f"{a} {b}" for a in names["first"] for b in names["second"]]


def _series(rng: random.Random, lo: int, hi: int, n: int) -> tuple[int, ...]:
    """n yearly values in [lo, hi]: a first value, then changes of up to 25% a year, as real series drift."""
    values = [rng.randint(lo, hi)]
    for _ in range(n - 1):
        step = rng.choice((-1, 1)) * max(1, round(values[-1] * rng.uniform(0.02, 0.25)))
        nxt = min(hi, max(lo, values[-1] + step))
        values.append(nxt if nxt != values[-1] else min(hi, max(lo, values[-1] - step)))  # at a bound: turn back
    return tuple(values)


def series_text(item: str, values, years) -> str:
    """'120 in 2021, 135 in 2022 and 151 in 2023' from the attribute's item template."""
    parts = [item.format(v=v, y=y) for v, y in zip(values, years)]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def random_years(rng: random.Random) -> tuple[int, int, int]:
    """Three consecutive years from the pool's span."""
    first = rng.choice(pools()["years"][:-2])
    return (first, first + 1, first + 2)


def random_facts(rng: random.Random, kind: str) -> dict:
    """attribute -> three yearly values within the attribute's range."""
    return {a: _series(rng, *s["range"], 3) for a, s in pools()["kinds"][kind]["attributes"].items()}


def make_doc(rng: random.Random, kind: str, name: str, facts: dict | None = None, years: tuple | None = None) -> Doc:
    """A report about `name`: random facts and years unless given, sentences in a shuffled order with fillers."""
    spec = pools()["kinds"][kind]
    years = years or random_years(rng)
    facts = facts or random_facts(rng, kind)
    sentences = [rng.choice(s["sentence"]).format(series=series_text(s["item"], facts[a], years))
                 for a, s in spec["attributes"].items()]
    sentences += rng.sample(spec["filler"], 2)
    rng.shuffle(sentences)
    body = " ".join([rng.choice(spec["intro"]).format(name=name), *sentences])
    return Doc(kind, name, years, facts, f"{spec['title'].format(name=name)}\n{body}")


def random_doc(rng: random.Random, exclude: set[str]) -> Doc:
    """A report about a random entity whose name is not in `exclude` (the haystack never names a relevant entity)."""
    kinds = sorted(pools()["kinds"])
    while True:
        kind = rng.choice(kinds)
        name = rng.choice(entity_names(kind))
        if name not in exclude:
            return make_doc(rng, kind, name)


def load_corpus(path: str | Path, *, min_chars: int = 200) -> list[str]:
    """A user's haystack text: paragraphs of a UTF-8 text file split on blank lines, short ones merged with the next.

    The paragraphs only pad the context; the facts always come from our documents."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such corpus file: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: the corpus must be UTF-8 text (byte {e.start} is not)") from None
    paragraphs, current = [], ""
    for block in re.split(r"\n\s*\n", text):
        current = f"{current}\n{block.strip()}".strip()
        if len(current) >= min_chars:
            paragraphs.append(current)
            current = ""
    if current:
        paragraphs.append(current)
    if not paragraphs:
        raise DataError(f"{path}: the corpus has no text")
    return paragraphs
