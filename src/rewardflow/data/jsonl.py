"""JSONL benchmarks in the GSM8K, MATH-500 and Qwen2.5-Math-eval formats -> Problems.

A malformed row is a DataError naming the file and line; nothing is skipped silently.
"""
from __future__ import annotations

import json
from pathlib import Path

from .problem import DataError, Problem


def _gsm8k(row: dict) -> tuple[str, str, dict]:
    solution = row["answer"]
    if "####" not in solution:
        raise KeyError("GSM8K answer has no '#### N' final line")
    return row["question"], solution.split("####")[-1].strip().replace(",", ""), {"solution": solution}


def _math(row: dict) -> tuple[str, str, dict]:
    meta = {k: row[k] for k in ("subject", "level", "unique_id", "solution") if k in row}
    return row["problem"], str(row["answer"]), meta


def _generic(row: dict) -> tuple[str, str, dict]:
    question = row.get("question", row.get("problem"))
    answer = row.get("answer", row.get("gt"))
    if question is None or answer is None:
        raise KeyError("needs 'question' or 'problem', and 'answer' or 'gt'")
    if row.get("body"):  # ASDiv keeps the facts in 'body' and only the final question in 'question'
        question = f"{row['body'].strip()} {question}"
    return question, str(answer), {}


def _detect(row: dict):
    if "problem" in row and "unique_id" in row:
        return _math
    if "question" in row and isinstance(row.get("answer"), str) and "####" in row["answer"]:
        return _gsm8k
    return _generic


def read_rows(path: str | Path, parse, *, what: str = "row"):
    """Yield (line_no, parse(row)) for every non-empty line of a JSONL file. A line that is not a JSON object, or
    that parse rejects (KeyError / TypeError), is a DataError naming file:line: bad data is reported, never skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise TypeError("row is not a JSON object")
                item = parse(row)
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise DataError(f"{path}:{line_no}: malformed {what}: {e}") from e
            yield line_no, item


def load_jsonl(path: str | Path, *, task: str | None = None, limit: int | None = None) -> list[Problem]:
    """Read problems from a JSONL file; the format is detected from the first row's fields."""
    task = task or Path(path).parent.name  # ../data/math500/test.jsonl -> "math500"
    detected = []  # the format parser, fixed by the first row

    def parse(row: dict):
        detected[:] = detected or [_detect(row)]
        return row, *detected[0](row)

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
