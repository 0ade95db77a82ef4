"""Is a predicted answer the same as the gold one?

Two tiers. ``fast_equiv`` settles the common cases (identical strings after light normalisation,
plain numbers) in microseconds with no sympy, and says "undecided" otherwise. ``math_verify_equiv``
hands the rest to math-verify, whose parsing and simplification can take unbounded time on hostile
input; its own guard uses ``signal.alarm``, which only works on the main thread, so we switch it off
and let the caller (``Verifier``) enforce the limit from outside.
"""
from __future__ import annotations

import logging
import re
from fractions import Fraction

# Strings longer than this are never numbers we want to compare exactly (and int() refuses >4300
# digits anyway); they go to math-verify, where the Verifier's time limit protects us.
_MAX_NUMBER_LEN = 64

_PLAIN_NUMBER = re.compile(r"[-+]?(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]*)(?:\.[0-9]*)?")
_FRACTION = re.compile(r"([-+]?[0-9]+)/([0-9]+)")
_LATEX_FRAC = re.compile(r"([-+]?)\\frac\{([-+]?[0-9]+)\}\{([0-9]+)\}")
_BACKSLASH_DIGIT = re.compile(r"(?<!\\)\\(?=[0-9])")
_TEXT_WRAP = re.compile(r"^\\(?:text|textbf|mathrm|mbox)\{(.*)\}$")
# LaTeX that changes spacing or size but never the value.
_NOISE = ("\\left", "\\right", "\\!", "\\,", "\\;", "\\:", "\\displaystyle", "\\$", "$")


class _DropDisabledTimeoutWarning(logging.Filter):
    """math-verify warns once per process that its timeout is off; ours is on, so the note misleads."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_DropDisabledTimeoutWarning())


def normalize(s: str) -> str:
    """Spacing, delimiters and synonyms removed, so that only value-bearing text is compared."""
    s = s.strip()
    if s.startswith("\\boxed{") and s.endswith("}"):
        s = s[len("\\boxed{") : -1]
    for tok in _NOISE:
        s = s.replace(tok, "")
    # "10{,}000" is how LaTeX typesets a thousands comma without the space after it.
    s = s.replace("{,}", ",")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "")
    s = "".join(s.split()).rstrip(".")
    # "\boxed{\15}": a "\$15" that lost its dollar sign; a backslash before a digit is never LaTeX.
    s = _BACKSLASH_DIGIT.sub("", s)
    m = _TEXT_WRAP.match(s)
    return m.group(1) if m else s


def as_number(s: str) -> Fraction | None:
    """The exact value of a plain number ("1,000", "-0.5", "3/4", "\\frac{3}{4}", "5."), else None."""
    s = normalize(s)
    if not s or len(s) > _MAX_NUMBER_LEN:
        return None
    try:
        if _PLAIN_NUMBER.fullmatch(s) and any(c.isdigit() for c in s):
            return Fraction(s.replace(",", "").rstrip(".") or "0")
        m = _FRACTION.fullmatch(s)
        if m and int(m.group(2)) != 0:
            return Fraction(int(m.group(1)), int(m.group(2)))
        m = _LATEX_FRAC.fullmatch(s)
        if m and int(m.group(3)) != 0:
            sign = -1 if m.group(1) == "-" else 1
            return sign * Fraction(int(m.group(2)), int(m.group(3)))
    except (ValueError, ZeroDivisionError):
        return None
    return None


def fast_equiv(pred: str, gold: str) -> bool | None:
    """True/False when cheap rules settle it; None when only math-verify can tell."""
    if normalize(pred) == normalize(gold):
        return True
    a, b = as_number(pred), as_number(gold)
    if a is not None and b is not None:
        # Two plain numbers: exact comparison is the whole truth, no need for sympy.
        return a == b
    return None


def _parse(s: str) -> list:
    from math_verify import parse  # lazy: keeps `import rewardflow` light

    # Gold answers in MATH are bare LaTeX ("\frac{1}{2}"); math-verify wants them delimited.
    for wrapped in (f"${s}$", f"\\boxed{{{s}}}", s):
        parsed = parse(wrapped, parsing_timeout=None)
        if parsed:
            return parsed
    return []


def math_verify_equiv(pred: str, gold: str) -> bool:
    """math-verify's verdict with its signal-based timeouts off; the caller bounds the time."""
    from math_verify import verify

    gold_parsed, pred_parsed = _parse(gold), _parse(pred)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))


def is_equiv(pred: str, gold: str) -> bool:
    """Whether pred and gold denote the same answer. Never raises; no time limit of its own."""
    try:
        if not isinstance(pred, str) or not isinstance(gold, str) or not pred.strip():
            return False
        fast = fast_equiv(pred, gold)
        return fast if fast is not None else math_verify_equiv(pred, gold)
    except Exception:
        return False
