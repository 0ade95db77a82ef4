"""Score model outputs against gold answers or reasoning-gym scorers, with a hard per-item time limit.

Each item goes through two stages. The cheap stage (extraction, string and plain-number equality)
runs in the caller's process: most RL rewards end there. Everything else (math-verify's sympy work,
reasoning-gym's scorers) can take unbounded time on hostile model output, and Python cannot
interrupt a running thread, while ``signal.alarm`` only works on the main thread. So the expensive
stage runs in a small pool of worker processes that we kill and restart when an item runs past the
limit. That works from any thread, from worker processes and from Ray workers alike.
"""
from __future__ import annotations

import threading
import time
import warnings
from collections import Counter, deque
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any, Callable

from ..data.problem import Problem
from .equiv import fast_equiv, math_verify_equiv
from .extract import _NUMBER, _explicit, extract_answer, last_number
from .workers import DEFAULT_MEMORY_MB, Worker

STATUSES = ("ok", "no_answer", "timeout", "error")

# A job for the expensive stage: ("equiv", pred, gold) or ("rg", (task, source_dataset), pred, entry).
Job = tuple


@dataclass
class VerifyResult:
    correct: bool
    pred: str | None  # the extracted answer that was judged
    status: str  # one of STATUSES


# ---------------------------------------------------------------- reasoning-gym scorers

_RG_SCORERS: dict[str, Callable[[Any, dict], float]] = {}


def _rg_scorer(names: tuple[str | None, ...]) -> Callable[[Any, dict], float]:
    """The score_answer of the first registered name; built once per task and process."""
    import reasoning_gym

    for name in names:
        if not name:
            continue
        if name not in _RG_SCORERS:
            try:
                _RG_SCORERS[name] = reasoning_gym.get_score_answer_fn(name)
            except ValueError:  # not a registered dataset name: try the next candidate
                continue
        return _RG_SCORERS[name]
    raise ValueError(f"no reasoning-gym dataset registered under {names}")


def _rg_answer(text: str, gold: Any = None) -> str | None:
    """reasoning-gym answers are free-form (words, lists, expressions), so the last-number fallback
    would mangle them: a bare one-line reply is taken as it stands, unless the gold answer is a
    number and the reply is a sentence around one ("The answer to this problem is 3." from
    SmolLM2 on chain_sum was scored wrong when the whole sentence was the prediction)."""
    if not isinstance(text, str) or not text.strip():
        return None
    explicit = _explicit(text)
    if explicit:
        return explicit
    stripped = text.strip()
    if "\n" in stripped or len(stripped) > 500:
        return last_number(text)
    numeric_gold = isinstance(gold, (int, float)) or (isinstance(gold, str) and _NUMBER.fullmatch(gold.strip()) is not None)
    if numeric_gold and _NUMBER.fullmatch(stripped) is None:
        return last_number(stripped) or stripped
    return stripped


# ---------------------------------------------------------------- the two stages


def _prepare(problem: Problem, text: str) -> VerifyResult | tuple[Job, str]:
    """The cheap stage: a final result, or the job (and extracted answer) for the expensive one."""
    entry = problem.meta.get("rg_entry") if isinstance(problem.meta, dict) else None
    if entry is not None:
        pred = _rg_answer(text, entry.get("answer"))
        if pred is None:
            return VerifyResult(False, None, "no_answer")
        source = (entry.get("metadata") or {}).get("source_dataset")
        return ("rg", (problem.task, source), pred, entry), pred
    pred = extract_answer(text)
    if pred is None:
        return VerifyResult(False, None, "no_answer")
    gold = _gold_text(problem.answer)
    if gold is None:
        # Nothing to compare against: a data problem, reported rather than scored as wrong.
        return VerifyResult(False, pred, "error")
    fast = fast_equiv(pred, gold)
    if fast is not None:
        return VerifyResult(fast, pred, "ok")
    return ("equiv", pred, gold), pred


def _gold_text(answer: Any) -> str | None:
    """The gold answer as text: a number read from JSON (`"answer": 2`) counts as "2"; bools and other
    objects are not answers."""
    if isinstance(answer, str):
        return answer
    if isinstance(answer, int) and not isinstance(answer, bool):
        return str(answer)
    if isinstance(answer, float) and answer == answer and abs(answer) != float("inf"):
        return str(int(answer)) if answer.is_integer() else repr(answer)
    return None


def _slow_check(job: Job) -> bool:
    """The expensive stage. Tests patch this module-level name to inject slow checks."""
    if job[0] == "equiv":
        return math_verify_equiv(job[1], job[2])
    if job[0] == "rg":
        _, names, pred, entry = job
        return float(_rg_scorer(names)(pred, entry)) >= 1.0
    raise ValueError(f"unknown job kind {job[0]!r}")


def score_text(problem: Problem, text: str) -> VerifyResult:
    """Judge one output in-process, with no time limit (use Verifier for that). Never raises."""
    pred = None
    try:
        prep = _prepare(problem, text)
        if isinstance(prep, VerifyResult):
            return prep
        job, pred = prep
        return VerifyResult(_slow_check(job), pred, "ok")
    except Exception:
        return VerifyResult(False, pred, "error")


def _check(job: Job) -> bool:
    """What a worker runs: looked up at call time, so a patched _slow_check reaches forked workers."""
    return _slow_check(job)


# ---------------------------------------------------------------- the Verifier


class Verifier:
    """verify(problems, texts) -> one VerifyResult each; counts tallies statuses and correct/wrong (and
    `memory_error`: items whose check ran out of the worker's `memory_mb`); `stats` / `take_stats` report the
    timeouts and errors for training logs."""

    def __init__(self, timeout_s: float = 5.0, workers: int = 1, memory_mb: int | None = DEFAULT_MEMORY_MB) -> None:
        self.timeout_s = float(timeout_s)
        self.workers = max(1, int(workers))
        self.memory_mb = memory_mb
        self.counts: Counter = Counter()
        self._reported: Counter = Counter()
        self._setup()

    def _setup(self) -> None:
        # One lock serialises pool use: a Verifier shared by many threads stays consistent.
        self._lock = threading.Lock()
        self._pool: list[Worker | None] | None = None
        self._in_process = False  # set once worker processes turned out to be impossible here

    # pickling sends only the configuration: a copy in another process starts its own workers.
    def __getstate__(self) -> dict:
        return {"timeout_s": self.timeout_s, "workers": self.workers, "memory_mb": self.memory_mb,
                "counts": Counter(self.counts), "_reported": Counter(self._reported)}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({"memory_mb": DEFAULT_MEMORY_MB, "_reported": Counter(), **state})
        self._setup()

    @property
    def stats(self) -> dict[str, int]:
        """Running totals, named for metrics.jsonl: items judged, and those that timed out or errored (the
        memory-capped ones among the errors)."""
        c = self.counts
        return {"verify/items": c["correct"] + c["wrong"], "verify/timeout": c["timeout"], "verify/error": c["error"],
                "verify/memory_error": c["memory_error"]}

    def take_stats(self) -> dict[str, int]:
        """`stats` since the previous take_stats call: what one training step logs."""
        now = self.stats
        delta = {k: v - self._reported[k] for k, v in now.items()}
        self._reported = Counter(now)
        return delta

    def verify(self, problems: list[Problem], texts: list[str]) -> list[VerifyResult]:
        if len(problems) != len(texts):
            raise ValueError(f"{len(problems)} problems but {len(texts)} texts")
        results: list[VerifyResult | None] = [None] * len(problems)
        jobs: list[tuple[int, Job, str]] = []
        for i, (problem, text) in enumerate(zip(problems, texts)):
            try:
                prep = _prepare(problem, text)
            except Exception:
                prep = VerifyResult(False, None, "error")
            if isinstance(prep, VerifyResult):
                results[i] = prep
            else:
                jobs.append((i, *prep))
        with self._lock:
            if jobs:
                self._run_jobs(jobs, results)
            for r in results:
                self.counts[r.status] += 1
                self.counts["correct" if r.correct else "wrong"] += 1
        return results  # type: ignore[return-value]

    def _ensure_pool(self, jobs: list[tuple[int, Job, str]]) -> list[Worker | None] | None:
        if self._pool is not None or self._in_process:
            return self._pool
        # Import in the parent first so forked workers inherit warm modules instead of paying the
        # import inside their first item's time budget.
        import math_verify  # noqa: F401

        if any(job[0] == "rg" for _, job, _ in jobs):
            import reasoning_gym  # noqa: F401
        pool: list[Worker | None] = []
        try:
            for _ in range(self.workers):
                pool.append(Worker(_check, self.memory_mb))
        except Exception as e:  # e.g. "daemonic processes are not allowed to have children"
            for w in pool:
                w.kill()  # type: ignore[union-attr]
            self._in_process = True
            warnings.warn(
                f"Verifier cannot start worker processes ({type(e).__name__}: {e}); checking "
                "in-process, so the per-item time limit is not enforced",
                RuntimeWarning, stacklevel=4,
            )
            return None
        self._pool = pool
        return pool

    def _run_jobs(self, jobs: list[tuple[int, Job, str]], results: list) -> None:
        pool = self._ensure_pool(jobs) or []
        pending = deque(jobs)
        busy: dict[int, tuple[int, str, float]] = {}  # worker slot -> (item, pred, deadline)
        while pending or busy:
            free = [w for w, worker in enumerate(pool) if worker is not None and w not in busy]
            if not free and not busy:
                break  # no live worker left: finish in-process below
            for w in free[: len(pending)]:
                i, job, pred = pending.popleft()
                try:
                    pool[w].conn.send(job)
                    busy[w] = (i, pred, time.monotonic() + self.timeout_s)
                except Exception:  # unpicklable job or a dead worker: this item cannot be judged
                    results[i] = VerifyResult(False, pred, "error")
                    self._restart(w)
            if not busy:
                continue
            first_deadline = min(d for _, _, d in busy.values())
            ready = wait([pool[w].conn for w in busy], max(0.0, first_deadline - time.monotonic()))
            now = time.monotonic()
            for w, (i, pred, deadline) in list(busy.items()):
                if pool[w].conn in ready:
                    results[i] = self._receive(w, pred)
                elif now >= deadline:
                    results[i] = VerifyResult(False, pred, "timeout")
                    self._restart(w)
                else:
                    continue
                del busy[w]
        # No pool (workers impossible here) or no worker would restart: in-process, unbounded.
        for i, job, pred in pending:
            try:
                results[i] = VerifyResult(_slow_check(job), pred, "ok")
            except Exception:
                results[i] = VerifyResult(False, pred, "error")

    def _receive(self, w: int, pred: str) -> VerifyResult:
        """The verdict worker w sent; a worker that died mid-item (segfault, OOM kill) or hit its memory cap is
        replaced (a cap hit can leave its heap fragmented)."""
        try:
            kind, value = self._pool[w].conn.recv()  # type: ignore[index, union-attr]
        except Exception:
            self._restart(w)
            return VerifyResult(False, pred, "error")
        if kind == "error" and str(value).startswith("MemoryError"):
            self.counts["memory_error"] += 1
            self._restart(w)
        return VerifyResult(kind == "ok" and value is True, pred, "ok" if kind == "ok" else "error")

    def _restart(self, w: int) -> None:
        """Replace the worker in slot w; a slot whose new worker cannot start stays empty (None)."""
        assert self._pool is not None
        self._pool[w].kill()
        try:
            self._pool[w] = Worker(_check, self.memory_mb)
        except Exception as e:
            self._pool[w] = None
            warnings.warn(f"Verifier could not restart a worker: {e}", RuntimeWarning, stacklevel=2)

    def close(self) -> None:
        with self._lock:
            for w in self._pool or []:
                if w is not None:
                    w.stop()
            self._pool = None

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
