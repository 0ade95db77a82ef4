"""JSONL benchmarks in the GSM8K, MATH-500 and Qwen2.5-Math-eval formats -> Problems.

A malformed row is a DataError naming the file and line; nothing is skipped silently.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

from .problem import DataError, Problem


def _gsm8k(row: dict) -> tuple[str, str, dict]:
    solution = text_field(row, "answer")
    if "####" not in solution:
        raise KeyError("GSM8K answer has no '#### N' final line")
    return row["question"], solution.split("####")[-1].strip().replace(",", ""), {"solution": solution}


def _math(row: dict) -> tuple[str, str, dict]:
    meta = {k: row[k] for k in ("subject", "level", "unique_id", "solution") if k in row}
    return row["problem"], _answer_text(row["answer"]), meta


def _generic(row: dict) -> tuple[str, str, dict]:
    question = row.get("question", row.get("problem"))
    answer = row.get("answer", row.get("gt"))
    if question is None or answer is None:
        raise KeyError("needs 'question' or 'problem', and 'answer' or 'gt'")
    if row.get("body"):  # ASDiv keeps the facts in 'body' and only the final question in 'question'
        question = f"{text_field(row, 'body').strip()} {question}"
    return question, _answer_text(answer), {}


def _detect(row: dict):
    if "problem" in row and "unique_id" in row:
        return _math
    if "question" in row and isinstance(row.get("answer"), str) and "####" in row["answer"]:
        return _gsm8k
    return _generic


# A JSONL row is a problem or a solution: far below this. A bigger "line" is a file that is not JSONL (or a
# hostile one); reading it whole would take memory without bound.
MAX_LINE_BYTES = 10 * 2**20
_BOMS = {b"\xff\xfe": "UTF-16", b"\xfe\xff": "UTF-16", b"\xef\xbb\xbf": None}


def read_rows(path: str | Path, parse, *, what: str = "row", max_line_bytes: int = MAX_LINE_BYTES):
    """Yield (line_no, parse(row)) for every non-empty line of a JSONL file. A line that is not a JSON object, or
    that parse rejects (KeyError / TypeError / ValueError), is a DataError naming file:line: bad data is
    reported, never skipped. So are files that are not UTF-8 text and lines over `max_line_bytes`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    with path.open("rb") as f:
        for line_no, line in enumerate(_lines(f, path, max_line_bytes), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise TypeError(f"row is not a JSON object but {type(row).__name__}")
                item = parse(row)
            except DataError:
                raise
            except RecursionError:
                raise DataError(f"{path}:{line_no}: malformed {what}: JSON nested too deeply") from None
            except (KeyError, TypeError, ValueError) as e:
                raise DataError(f"{path}:{line_no}: malformed {what}: {_one_line(e)}") from e
            yield line_no, item


def _lines(f, path: Path, max_line_bytes: int):
    """Decoded lines of a binary file object, each read with a size cap; a file that is not UTF-8 text is a
    DataError saying what it looks like."""
    for line_no in itertools.count(1):
        raw = f.readline(max_line_bytes + 1)
        if not raw:
            return
        if line_no == 1:
            bom = next((b for b in _BOMS if raw.startswith(b)), None)
            if bom is not None and _BOMS[bom]:
                raise DataError(f"{path}: the file is {_BOMS[bom]} text; rewardflow reads UTF-8 JSONL (convert it first)")
            raw = raw[len(bom):] if bom else raw
        if len(raw) > max_line_bytes:
            raise DataError(f"{path}:{line_no}: line longer than {max_line_bytes} bytes; not a JSONL row")
        if b"\x00" in raw:
            raise DataError(f"{path}:{line_no}: NUL bytes: a binary or UTF-16 file, not UTF-8 JSONL")
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{path}:{line_no}: not UTF-8 text (byte {e.start}); a binary file?") from None


def _one_line(e: Exception) -> str:
    text = " ".join(str(e).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def text_field(row: dict, key: str) -> str:
    """row[key] as a string; a number or a structure where text belongs is a TypeError naming the field."""
    value = row[key]
    if not isinstance(value, str):
        raise TypeError(f"{key!r} must be a string, got {type(value).__name__}")
    return value


def step_list(row: dict, key: str = "steps") -> list[str]:
    """row[key] as a list of step strings (numbers are taken as their text). A string or a number where the list
    belongs would otherwise be split into characters or fail later: a TypeError naming the field."""
    value = row[key]
    if not isinstance(value, list):
        raise TypeError(f"{key!r} must be a list of strings, got {type(value).__name__}")
    for i, s in enumerate(value):
        if isinstance(s, bool) or not isinstance(s, (str, int, float)):
            raise TypeError(f"{key!r}[{i}] must be a string, got {type(s).__name__}")
    return [s if isinstance(s, str) else str(s) for s in value]


def _answer_text(answer) -> str:
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        raise TypeError(f"the answer must be a string or a number, got {type(answer).__name__}")
    return answer if isinstance(answer, str) else str(answer)


def load_jsonl(path: str | Path, *, task: str | None = None, limit: int | None = None) -> list[Problem]:
    """Read problems from a JSONL file; the format is detected from the first row's fields."""
    task = task or Path(path).parent.name  # ../data/math500/test.jsonl -> "math500"
    detected = []  # the format parser, fixed by the first row

    def parse(row: dict):
        detected[:] = detected or [_detect(row)]
        question, answer, meta = detected[0](row)
        if not isinstance(question, str):
            raise TypeError(f"the question must be a string, got {type(question).__name__}")
        return row, question, answer, meta

    problems: list[Problem] = []
    for _, (row, question, answer, meta) in read_rows(path, parse):
        pid = str(row.get("unique_id", row.get("idx", row.get("id", len(problems)))))
        problems.append(Problem(id=f"{task}/{pid}", prompt=question, answer=answer, task=task, meta=meta))
        if limit and len(problems) >= limit:
            break
    return problems


class ListSource:
    """Training problems from a JSONL file (cycled), eval problems from another; same interface as GymSource."""

    def __init__(self, train: list[Problem], eval_problems: list[Problem]):
        if not train:
            raise ValueError("the training file has no problems")
        self.train, self.eval_problems = train, eval_problems

    def train_problems(self, indices) -> list[Problem]:
        return [self.train[int(i) % len(self.train)] for i in indices]
