"""Problem files -> Problems: JSONL benchmarks in the GSM8K, MATH-500 and Qwen2.5-Math-eval formats, and your own
data as .jsonl, .json, .csv or .parquet with the question and answer fields named by `prompt_key` / `answer_key`.

A malformed row is a DataError naming the file and line (or row); nothing is skipped silently.
"""
from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

from .chat import is_messages, render_messages
from .hub import hub_rows, hub_task_name, is_hub_name
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
    question = row.get("question", row.get("problem", row.get("messages")))  # messages: the conversational format
    answer = row.get("answer", row.get("gt"))
    if question is None or answer is None:
        raise KeyError("needs 'question' or 'problem', and 'answer' or 'gt' (or name the fields with data.prompt_key / "
                       "data.answer_key)")
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


def _mapped(prompt_key: str | None, answer_key: str | None):
    """The row parser for user-named fields; a field left None is found as today ('question'/'problem',
    'answer'/'gt')."""

    def field_of(row: dict, key: str, setting: str):
        if key not in row:
            raise ValueError(f"no {key!r} field ({setting}={key!r}); the row has {sorted(row)[:20]}")
        return row[key]

    def parse(row: dict) -> tuple[str, str, dict]:
        question = field_of(row, prompt_key, "data.prompt_key") if prompt_key else row.get("question", row.get("problem", row.get("messages")))
        answer = field_of(row, answer_key, "data.answer_key") if answer_key else row.get("answer", row.get("gt"))
        if question is None:
            raise KeyError("needs 'question' or 'problem' (or set data.prompt_key)")
        if answer is None:
            raise KeyError("needs 'answer' or 'gt' (or set data.answer_key)")
        return question, _answer_text(answer), {}

    return parse


def load_jsonl(path: str | Path, *, task: str | None = None, limit: int | None = None,
               prompt_key: str | None = None, answer_key: str | None = None) -> list[Problem]:
    """Read problems from a JSONL file; the format is detected from the first row's fields, unless `prompt_key` /
    `answer_key` name the question and answer fields."""
    return _problems(path, read_rows, task=task, limit=limit, prompt_key=prompt_key, answer_key=answer_key)


def _problems(path, reader, *, task, limit, prompt_key, answer_key) -> list[Problem]:
    task = task or Path(path).parent.name  # ../data/math500/test.jsonl -> "math500"
    detected = []  # the format parser, fixed by the first row
    if prompt_key or answer_key:
        detected.append(_mapped(prompt_key, answer_key))

    def parse(row: dict):
        detected[:] = detected or [_detect(row)]
        question, answer, meta = detected[0](row)
        if is_messages(question):  # the conversational format: [{role, content}, ...] -> one prompt string
            question = render_messages(question, prompt_key or "messages")
        if not isinstance(question, str):
            raise TypeError(f"the question must be a string, got {type(question).__name__}")
        return row, question, answer, meta

    problems: list[Problem] = []
    for _, (row, question, answer, meta) in reader(path, parse):
        pid = str(row.get("unique_id", row.get("idx", row.get("id", len(problems)))))
        problems.append(Problem(id=f"{task}/{pid}", prompt=question, answer=answer, task=task, meta=meta))
        if limit and len(problems) >= limit:
            break
    return problems


# -- other file formats ----------------------------------------------------------------------------------------------
DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


def is_data_file(name: str) -> bool:
    """True for a problem file path (by suffix) or a `datasets` name (hf:NAME); anything else is a reasoning-gym task."""
    return str(name).lower().endswith(DATA_SUFFIXES) or is_hub_name(name)


def load_problems(path: str | Path, *, task: str | None = None, limit: int | None = None,
                  prompt_key: str | None = None, answer_key: str | None = None, split: str = "train") -> list[Problem]:
    """Problems from a .jsonl, .json (an array of objects, or JSON Lines), .csv (header row) or .parquet file, or
    from `split` of a `datasets` dataset named 'hf:NAME[:CONFIG]'. Rows are read as in `load_jsonl`: formats
    detected, or the fields named by `prompt_key` / `answer_key`; a malformed row is a DataError naming the file
    (or dataset) and row."""
    task = task or (hub_task_name(path) if is_hub_name(path) else None)
    return _problems(path, row_reader(path, split), task=task, limit=limit, prompt_key=prompt_key, answer_key=answer_key)


def row_reader(path, split: str = "train"):
    """The `reader(path, parse)` for a data file (by suffix) or a `datasets` name (hf:NAME, its `split`): it yields
    (line or row number, parse(row)) and raises DataError naming the file and line of a malformed row."""
    if is_hub_name(path):
        return lambda spec, parse: _parsed(spec, hub_rows(spec, split), parse, where=lambda n: f"split {split!r} row {n}")
    suffix = Path(path).suffix.lower()
    readers = {".jsonl": read_rows, ".json": _json_rows, ".csv": _csv_rows, ".parquet": _parquet_rows}
    if suffix not in readers:
        raise DataError(f"{path}: unknown problem file type {suffix or '(no suffix)'!r}; use one of {', '.join(DATA_SUFFIXES)}")
    return readers[suffix]


def _parsed(path: Path, rows, parse, where=lambda n: f"row {n}"):
    """(n, parse(row)) for numbered dict rows, with read_rows' errors: DataError naming file and row."""
    for n, row in rows:
        try:
            if not isinstance(row, dict):
                raise TypeError(f"row is not an object but {type(row).__name__}")
            item = parse(row)
        except DataError:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{path}: {where(n)}: malformed row: {_one_line(e)}") from e
        yield n, item


def _existing(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    return path


def _json_rows(path, parse):
    """A .json file: a JSON array of objects (rows numbered from 1), or JSON Lines under a .json name."""
    path = _existing(path)
    with path.open("rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head.startswith(b"["):
        yield from read_rows(path, parse)
        return
    try:
        rows = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}); a binary file?") from None
    except (ValueError, RecursionError) as e:
        raise DataError(f"{path}: not a JSON array of rows: {_one_line(e)}") from None
    yield from _parsed(path, enumerate(rows, 1), parse)


def _csv_rows(path, parse):
    """A .csv file with a header row; every value is text. Errors name the file's line number."""
    path = _existing(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None:
                return
            header = len(reader.fieldnames)

            def rows():
                for row in reader:
                    if None in row or len(row) != header or any(v is None for v in row.values()):
                        raise DataError(f"{path}:{reader.line_num}: malformed row: {len(row)} columns where the header has {header}")
                    yield reader.line_num, row

            yield from _parsed(path, rows(), parse, where=lambda n: f"line {n}")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}); a binary file?") from None
    except csv.Error as e:
        raise DataError(f"{path}: not a readable CSV file: {_one_line(e)}") from None


def _parquet_rows(path, parse):
    """A .parquet file via pyarrow (which `datasets` installs too); rows numbered from 1."""
    path = _existing(path)
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(f"{path}: reading .parquet files needs pyarrow: pip install pyarrow (or pip install datasets)") from None
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow's own errors (not a parquet file, corrupt footer) -> one clear DataError
        raise DataError(f"{path}: not a readable parquet file: {_one_line(e)}") from None
    yield from _parsed(path, enumerate(table.to_pylist(), 1), parse)


class ListSource:
    """Training problems from a JSONL file (cycled), eval problems from another; same interface as GymSource."""

    def __init__(self, train: list[Problem], eval_problems: list[Problem]):
        if not train:
            raise ValueError("the training file has no problems")
        self.train, self.eval_problems = train, eval_problems

    def train_problems(self, indices) -> list[Problem]:
        return [self.train[int(i) % len(self.train)] for i in indices]
