"""Pull the final answer out of free-form model output.

Priority (most explicit marker wins): the last balanced ``\\boxed{...}`` / ``\\fbox{...}``, then a
GSM8K-style ``#### X`` line, then an ``<answer>...</answer>`` tag (R1-style prompts), then
``Answer: X`` / ``The answer is X`` / ``final answer is X``, and only then the last number in the
text. Every regex here is linear in the input, so a 100k-character completion stays cheap.
"""
from __future__ import annotations

import re

_BOX_TOKENS = ("\\boxed", "\\fbox")
# A truncated completion can end inside an unclosed box; we then try earlier boxes, but only a few,
# so a pathological text full of "\boxed{" cannot make extraction quadratic.
_MAX_BOX_TRIES = 8

# Markers after which the rest of the line is the answer; the last marker wins, even mid-line.
_HASHES = re.compile(r"####")
_PHRASE = re.compile(r"final\s+answer\s+is|the\s+answer\s+is|answer\s*:", re.IGNORECASE)
# A plain number: a numeric LaTeX fraction, thousands-grouped ("1,234,567.5"), a simple fraction
# ("3/4"), an integer or a decimal (".5" too). A minus sign only counts when it is not the binary
# minus of "5-3".
_NUMBER = re.compile(
    r"(?:(?<![0-9A-Za-z)\]}])-)?"
    r"(?:\\[dt]?frac\{[0-9]+\}\{[0-9]+\}"  # "-\frac{24}{25}" must not end up as "25"
    r"|[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?(?![0-9])"
    r"|[0-9]+/[0-9]+(?![0-9])"
    r"|[0-9]+(?:\.[0-9]+)?"
    r"|\.[0-9]+)"
)
_SENTENCE_END = re.compile(r"\.\s")
_UNICODE_MINUS = str.maketrans({"\u2212": "-", "\u2013": "-", "\uff0d": "-"})


def _balanced_arg(text: str, start: int) -> str | None:
    """The contents of the brace group opening at text[start] == '{', or None when unclosed."""
    depth = 0
    for i in range(start, len(text)):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
    return None


def _box_at(text: str, pos: int, token: str) -> str | None:
    """The argument of the box command at text[pos:]: "\\boxed{x}" or the brace-less "\\boxed 5"."""
    i = pos + len(token)
    if text.startswith("{", i):
        return _balanced_arg(text, i)
    if text.startswith(" ", i):
        m = re.match(r" +([^\s$]+)", text[i : i + 200])
        return m.group(1) if m else None
    return None  # e.g. "\boxedx" is some other macro


def last_boxed(text: str) -> str | None:
    """Contents of the last well-formed \\boxed{...} or \\fbox{...}; nested boxes are unwrapped."""
    starts = sorted(
        (m.start(), tok) for tok in _BOX_TOKENS for m in re.finditer(re.escape(tok), text)
    )
    for pos, tok in reversed(starts[-_MAX_BOX_TRIES:]):
        inner = _box_at(text, pos, tok)
        if inner is not None:
            # "\boxed{\boxed{5}}" happens; the answer is the innermost content.
            nested = last_boxed(inner) if any(t in inner for t in _BOX_TOKENS) else None
            return (nested if nested is not None else inner).strip()
    return None


def _clean(ans: str) -> str:
    """Strip the wrapping that phrases leave around an answer: markdown bold, $...$, a final period."""
    prev = None
    while prev != ans:
        prev = ans
        ans = ans.strip().strip("*").strip()
        ans = ans.rstrip(".").strip("$").strip()
        if ans.startswith("\\(") and ans.endswith("\\)"):
            ans = ans[2:-2]
        if ans.startswith("\\[") and ans.endswith("\\]"):
            ans = ans[2:-2]
    return ans


def last_number(text: str) -> str | None:
    """The last plain number in text, with thousands commas removed ("1,000" -> "1000")."""
    last = None
    # LaTeX thousands separators ("10{,}000", "10,\\!000") would otherwise split one number in two.
    text = text.translate(_UNICODE_MINUS).replace("{,}", ",").replace(",\\!", ",")
    for last in _NUMBER.finditer(text):
        pass
    return last.group(0).replace(",", "") if last else None


def last_tag(text: str, tag: str = "answer") -> str | None:
    """Contents of the last <tag>...</tag>. Found with rfind, because a lazy regex is quadratic on
    a text full of unclosed opening tags."""
    low = text.lower()
    end = low.rfind(f"</{tag}>")
    start = low.rfind(f"<{tag}>", 0, end) if end >= 0 else -1
    return text[start + len(tag) + 2 : end] if start >= 0 else None


def _after_last(marker: re.Pattern, text: str) -> str | None:
    """The cleaned rest of the line after the last match of marker, or None."""
    found = None
    for found in marker.finditer(text):
        pass
    if found is None:
        return None
    end = text.find("\n", found.end())
    return _clean(text[found.end() : end if end >= 0 else len(text)].lstrip(" \t:")) or None


def _explicit(text: str) -> str | None:
    """The answer given with an explicit marker (box, ####, tag, answer phrase), if any."""
    boxed = last_boxed(text)
    if boxed:
        return boxed
    hashes = _after_last(_HASHES, text)
    if hashes:
        return hashes.replace(",", "") if _NUMBER.fullmatch(hashes) else hashes
    tagged = last_tag(text)
    if tagged is not None:
        # "<answer>The answer is $5$.</answer>": the tag holds a sentence, so look inside it.
        inner = _explicit(tagged) if _PHRASE.search(tagged) else None
        ans = _clean(inner if inner is not None else tagged)
        if ans:
            return ans
    phrase = _after_last(_PHRASE, text)
    # "The final answer is $5$. I hope it is correct." (Minerva's format): the sentence ends the
    # answer. A period needs whitespace after it to count, so "5.5" survives.
    if phrase is None:
        return None
    return _clean(_SENTENCE_END.split(phrase, maxsplit=1)[0]) or None


def extract_answer(text: str) -> str | None:
    """The final answer in a model's output, or None when there is none. Never raises."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        if not isinstance(text, str) or not text:
            return None
        return _explicit(text) or last_number(text)
    except Exception:  # model output is untrusted: no input may crash a training run
        return None
