"""MathHay's four task types (Wang et al. 2024, sec. 3): single-step single-document (SSSD), multi-step
single-document (MSSD), single-step multi-document (SSMD) and multi-step multi-document (MSMD).

A question is a small expression over facts, each fact a (document, attribute, year) triple; the answer is the
expression evaluated exactly (fractions) by code. Quality control (`rederive`) reads every fact back from the
rendered context text and evaluates the expression again, so a question whose documents do not state what the answer
assumes is never written.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from fractions import Fraction

from .docs import Doc, entity_names, make_doc, pools, random_facts, random_years

TASK_TYPES = ("sssd", "mssd", "ssmd", "msmd")
INSTRUCTION = "Use the documents above. Put the final number in \\boxed{}."

# Expressions: ("fact", doc_index, attribute, year) leaves; ("+", x, y), ("-", x, y), ("sum", [xs]), ("mean", [xs]).


@dataclass(frozen=True)
class Question:
    task_type: str  # one of TASK_TYPES
    query: str  # the question text, without the context
    expr: tuple  # the expression the answer is computed from
    docs: tuple[Doc, ...]  # the relevant documents, in the order the expression's doc indices name them
    answer: str  # the exact answer as text: an integer, or a terminating decimal


def evaluate(expr: tuple, fact) -> Fraction:
    """The expression's exact value; `fact(doc_index, attribute, year)` supplies each leaf."""
    op = expr[0]
    if op == "fact":
        return Fraction(fact(*expr[1:]))
    if op in ("+", "-"):
        x, y = evaluate(expr[1], fact), evaluate(expr[2], fact)
        return x + y if op == "+" else x - y
    values = [evaluate(e, fact) for e in expr[1]]
    return sum(values, Fraction(0)) / (len(values) if op == "mean" else 1)


def n_operations(expr: tuple) -> int:
    """Arithmetic operations in the expression: a +/- is one, a sum of n terms n-1, a mean of n terms n."""
    op = expr[0]
    if op == "fact":
        return 0
    if op in ("+", "-"):
        return 1 + n_operations(expr[1]) + n_operations(expr[2])
    inner = sum(n_operations(e) for e in expr[1])
    return inner + len(expr[1]) - (1 if op == "sum" else 0)


def answer_text(value: Fraction) -> str:
    """An exact answer as a plain number: '12', '-7', '40.5'. A value with no terminating decimal is refused."""
    if value.denominator == 1:
        return str(value.numerator)
    den, twos, fives = value.denominator, 0, 0
    while den % 2 == 0:
        den, twos = den // 2, twos + 1
    while den % 5 == 0:
        den, fives = den // 5, fives + 1
    if den != 1:
        raise ValueError(f"{value} has no terminating decimal")
    places = max(twos, fives)
    scaled = abs(value.numerator) * 10**places // value.denominator  # exact: the decimal terminates
    whole, frac = divmod(scaled, 10**places)
    return f"{'-' if value < 0 else ''}{whole}.{frac:0{places}d}"


def _fact_of(docs):
    return lambda i, attr, year: docs[i].facts[attr][docs[i].years.index(year)]


def _noun(kind: str, attr: str) -> str:
    return pools()["kinds"][kind]["attributes"][attr]["noun"]


def _pair(kind: str, i: int, year: int) -> tuple:
    pair = pools()["kinds"][kind]["pair"]
    return (pair["op"], ("fact", i, pair["a"], year), ("fact", i, pair["b"], year))


def _divisible(facts: dict, attr: str, n: int, lo: int, hi: int) -> dict:
    """The facts with the last value of `attr` moved (by < n) so that the values sum to a multiple of n: a mean of n
    values is then an integer, which a small model can state exactly."""
    values = list(facts[attr])
    values[-1] -= sum(values) % n
    if values[-1] < lo:
        values[-1] += n
    return {**facts, attr: tuple(values)} if values[-1] <= hi else facts


# -- one builder per task type: rng -> (query, expr, docs) --------------------------------------------------------

def _single_doc(rng: random.Random, kind: str, mean_attr: str | None = None) -> Doc:
    facts = random_facts(rng, kind)
    if mean_attr:
        facts = _divisible(facts, mean_attr, 3, *pools()["kinds"][kind]["attributes"][mean_attr]["range"])
    return make_doc(rng, kind, rng.choice(entity_names(kind)), facts)


def _sssd(rng: random.Random, kind: str):
    doc = _single_doc(rng, kind)
    attr, (y1, y2, y3) = rng.choice(sorted(doc.facts)), doc.years
    form = rng.randrange(3)
    if form == 0:
        a, b = sorted(rng.sample((y1, y2, y3), 2))
        return (f"By how much did the {_noun(kind, attr)} of {doc.name} change from {a} to {b}? "
                f"(Give the {b} value minus the {a} value.)", ("-", ("fact", 0, attr, b), ("fact", 0, attr, a)), (doc,))
    if form == 1:
        a, b = sorted(rng.sample((y1, y2, y3), 2))
        return (f"What was the {_noun(kind, attr)} of {doc.name} in {a} and {b} combined?",
                ("+", ("fact", 0, attr, a), ("fact", 0, attr, b)), (doc,))
    year = rng.choice(doc.years)
    return f"What was the {pools()['kinds'][kind]['pair']['phrase']} of {doc.name} in {year}?", _pair(kind, 0, year), (doc,)


def _mssd(rng: random.Random, kind: str):
    attr = rng.choice(sorted(pools()["kinds"][kind]["attributes"]))
    form = rng.randrange(3)
    doc = _single_doc(rng, kind, mean_attr=attr if form == 0 else None)
    y1, y2, y3 = doc.years
    leaves = [("fact", 0, attr, y) for y in doc.years]
    if form == 0 and sum(doc.facts[attr]) % 3 == 0:
        return f"What was the average yearly {_noun(kind, attr)} of {doc.name} over {y1}, {y2} and {y3}?", ("mean", leaves), (doc,)
    if form == 1:
        phrase = pools()["kinds"][kind]["pair"]["phrase"]
        return (f"By how much did the {phrase} of {doc.name} change from {y1} to {y3}? (Give the {y3} value minus the "
                f"{y1} value.)", ("-", _pair(kind, 0, y3), _pair(kind, 0, y1)), (doc,))
    return f"What was the total {_noun(kind, attr)} of {doc.name} over {y1}, {y2} and {y3}?", ("sum", leaves), (doc,)


def _several_docs(rng: random.Random, kind: str, n: int, mean_attr: str | None = None) -> tuple[tuple[Doc, ...], int]:
    """n reports of distinct entities of one kind over the same three years, and the year a question asks about.
    With `mean_attr`, the last entity's value in that year is moved so that the mean over entities is an integer."""
    years, names = random_years(rng), rng.sample(entity_names(kind), n)
    facts = [random_facts(rng, kind) for _ in names]
    year = rng.choice(years)
    if mean_attr:
        lo, hi = pools()["kinds"][kind]["attributes"][mean_attr]["range"]
        y = years.index(year)
        last = list(facts[-1][mean_attr])
        last[y] -= sum(f[mean_attr][y] for f in facts) % n
        last[y] += n if last[y] < lo else 0
        if last[y] <= hi:
            facts[-1] = {**facts[-1], mean_attr: tuple(last)}
    return tuple(make_doc(rng, kind, nm, f, years) for nm, f in zip(names, facts)), year


def _ssmd(rng: random.Random, kind: str):
    docs, year = _several_docs(rng, kind, 2)
    attr = rng.choice(sorted(docs[0].facts))
    a, b = (d.name for d in docs)
    if rng.randrange(2) == 0:
        return (f"How much greater was the {_noun(kind, attr)} of {a} than that of {b} in {year}? (A smaller value gives "
                f"a negative number.)", ("-", ("fact", 0, attr, year), ("fact", 1, attr, year)), docs)
    return (f"What was the {_noun(kind, attr)} of {a} and {b} combined in {year}?",
            ("+", ("fact", 0, attr, year), ("fact", 1, attr, year)), docs)


def _msmd(rng: random.Random, kind: str):
    attr = rng.choice(sorted(pools()["kinds"][kind]["attributes"]))
    form = rng.randrange(3)
    if form == 0:
        docs, year = _several_docs(rng, kind, 3, mean_attr=attr)
        names = ", ".join(d.name for d in docs[:2]) + f" and {docs[2].name}"
        if sum(d.facts[attr][d.years.index(year)] for d in docs) % 3 == 0:
            return (f"What was the average {_noun(kind, attr)} of {names} in {year}?",
                    ("mean", [("fact", i, attr, year) for i in range(3)]), docs)
        form = 2
    if form == 1:
        docs, year = _several_docs(rng, kind, 2)
        phrase = pools()["kinds"][kind]["pair"]["phrase"]
        return (f"In {year}, how much greater was the {phrase} of {docs[0].name} than that of {docs[1].name}? (A smaller "
                f"value gives a negative number.)", ("-", _pair(kind, 0, year), _pair(kind, 1, year)), docs)
    docs, year = _several_docs(rng, kind, 3)
    return (f"In {year}, by how much did the {_noun(kind, attr)} of {docs[0].name} and {docs[1].name} combined exceed "
            f"that of {docs[2].name}? (A smaller total gives a negative number.)",
            ("-", ("+", ("fact", 0, attr, year), ("fact", 1, attr, year)), ("fact", 2, attr, year)), docs)


BUILDERS = {"sssd": _sssd, "mssd": _mssd, "ssmd": _ssmd, "msmd": _msmd}


def make_question(rng: random.Random, task_type: str) -> Question:
    """A question of the task type about a random kind of document, its answer computed from the facts."""
    if task_type not in BUILDERS:
        raise ValueError(f"unknown MathHay task type {task_type!r}; choose from {', '.join(TASK_TYPES)}")
    kind = rng.choice(sorted(pools()["kinds"]))
    query, expr, docs = BUILDERS[task_type](rng, kind)
    return Question(task_type, f"{query} {INSTRUCTION}", expr, docs, answer_text(evaluate(expr, _fact_of(docs))))


# -- quality control: read the facts back from the context text -----------------------------------------------------

def fact_from_text(context: str, name: str, attr: str, year: int) -> int:
    """The value the context states for `name`'s `attr` in `year`: the one document titled `name`, the one sentence
    in it naming `attr` with numbers, the number before 'in <year>'. Anything ambiguous or missing is a ValueError."""
    blocks = [b for b in context.split("\n\n") if b.split("\n", 1)[0].startswith(f"{name}:")]
    if len(blocks) != 1:
        raise ValueError(f"{len(blocks)} documents titled {name!r} in the context")
    sentences = [s for s in re.split(r"(?<=\.)\s+", blocks[0]) if attr in s.lower() and re.search(r"\d", s)]
    if len(sentences) != 1:
        raise ValueError(f"{len(sentences)} sentences about {attr!r} in the document on {name!r}")
    found = re.findall(rf"(\d+)(?: [a-z]+)* in {year}\b", sentences[0])
    if len(found) != 1:
        raise ValueError(f"no single value for {year} in {sentences[0]!r}")
    return int(found[0])


def rederive(question: Question, context: str) -> str:
    """The answer computed again from the facts as the context states them (not from the generator's records)."""
    names = [d.name for d in question.docs]
    return answer_text(evaluate(question.expr, lambda i, attr, year: fact_from_text(context, names[i], attr, year)))
