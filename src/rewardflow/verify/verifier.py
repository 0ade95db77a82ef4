"""Score model outputs against gold answers or reasoning-gym scorers, with a hard per-item time limit.

Each item goes through two stages. The cheap stage (extraction, string and plain-number equality)
runs in the caller's process: most RL rewards end there. Everything else (math-verify's sympy work,
reasoning-gym's scorers) can take unbounded time on hostile model output, and Python cannot
interrupt a running thread, while ``signal.alarm`` only works on the main thread. So the expensive
stage runs in a small pool of worker processes that we kill and restart when an item runs past the
limit. That works from any thread, from worker processes and from Ray workers alike.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
import threading
import time
import warnings
from collections import Counter, deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Callable

from ..data.problem import Problem
from .equiv import fast_equiv, math_verify_equiv
from .extract import _explicit, extract_answer, last_number

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


def _rg_answer(text: str) -> str | None:
    """reasoning-gym answers are free-form (words, lists, expressions), so the last-number fallback
    would mangle them: a bare one-line reply is taken as it stands."""
    if not isinstance(text, str) or not text.strip():
        return None
    explicit = _explicit(text)
    if explicit:
        return explicit
    stripped = text.strip()
    return stripped if "\n" not in stripped and len(stripped) <= 500 else last_number(text)


# ---------------------------------------------------------------- the two stages


def _prepare(problem: Problem, text: str) -> VerifyResult | tuple[Job, str]:
    """The cheap stage: a final result, or the job (and extracted answer) for the expensive one."""
    entry = problem.meta.get("rg_entry") if isinstance(problem.meta, dict) else None
    if entry is not None:
        pred = _rg_answer(text)
        if pred is None:
            return VerifyResult(False, None, "no_answer")
        source = (entry.get("metadata") or {}).get("source_dataset")
        return ("rg", (problem.task, source), pred, entry), pred
    pred = extract_answer(text)
    if pred is None:
        return VerifyResult(False, None, "no_answer")
    if not isinstance(problem.answer, str):
        # Nothing to compare against: a data problem, reported rather than scored as wrong.
        return VerifyResult(False, pred, "error")
    fast = fast_equiv(pred, problem.answer)
    if fast is not None:
        return VerifyResult(fast, pred, "ok")
    return ("equiv", pred, problem.answer), pred


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


# ---------------------------------------------------------------- worker processes


def _worker_main(conn: Connection, parent_end: Connection, parent_pid: int) -> None:
    parent_end.close()  # so that the parent's death shows up as EOF here
    conn.send("ready")
    while True:
        try:
            # Poll so that an orphaned worker (parent SIGKILLed) notices and exits.
            if not conn.poll(1.0):
                if os.getppid() != parent_pid:
                    return
                continue
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        try:
            reply = ("ok", bool(_slow_check(job)))
        except Exception as e:
            reply = ("error", f"{type(e).__name__}: {e}"[:300])
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return


class _Worker:
    # Generous: a spawn-context worker re-imports sympy and math-verify before it says "ready".
    STARTUP_S = 60.0

    def __init__(self, ctx: Any) -> None:
        self.conn, child_end = ctx.Pipe()
        self.proc = ctx.Process(
            target=_worker_main, args=(child_end, self.conn, os.getpid()),
            name="rewardflow-verify", daemon=True,
        )
        self.proc.start()
        child_end.close()
        if not self.conn.poll(self.STARTUP_S) or self.conn.recv() != "ready":
            self.kill()
            raise RuntimeError("verifier worker did not start")

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.join(5)
        except Exception:
            pass
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
            self.proc.join(1)
        except Exception:
            pass
        if self.proc.is_alive():
            self.kill()
        else:
            self.conn.close()


def _context() -> Any:
    # fork starts a worker in milliseconds and inherits the parent's imported modules; macOS and
    # Windows lack a safe fork, so they pay spawn's start-up once per worker.
    if sys.platform.startswith("linux") and "fork" in mp.get_all_start_methods():
        return mp.get_context("fork")
    return mp.get_context("spawn")


# ---------------------------------------------------------------- the Verifier


class Verifier:
    """verify(problems, texts) -> one VerifyResult each; counts tallies statuses and correct/wrong."""

    def __init__(self, timeout_s: float = 5.0, workers: int = 1) -> None:
        self.timeout_s = float(timeout_s)
        self.workers = max(1, int(workers))
        self.counts: Counter = Counter()
        self._setup()

    def _setup(self) -> None:
        # One lock serialises pool use: a Verifier shared by many threads stays consistent.
        self._lock = threading.Lock()
        self._pool: list[_Worker | None] | None = None
        self._in_process = False  # set once worker processes turned out to be impossible here

    # pickling sends only the configuration: a copy in another process starts its own workers.
    def __getstate__(self) -> dict:
        return {"timeout_s": self.timeout_s, "workers": self.workers, "counts": Counter(self.counts)}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._setup()

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

    def _ensure_pool(self, jobs: list[tuple[int, Job, str]]) -> list[_Worker | None] | None:
        if self._pool is not None or self._in_process:
            return self._pool
        # Import in the parent first so forked workers inherit warm modules instead of paying the
        # import inside their first item's time budget.
        import math_verify  # noqa: F401

        if any(job[0] == "rg" for _, job, _ in jobs):
            import reasoning_gym  # noqa: F401
        pool: list[_Worker | None] = []
        try:
            for _ in range(self.workers):
                pool.append(_Worker(_context()))
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
                    try:
                        kind, value = pool[w].conn.recv()
                        results[i] = VerifyResult(kind == "ok" and value, pred, kind)
                    except Exception:  # the worker died mid-item (segfault, OOM kill)
                        results[i] = VerifyResult(False, pred, "error")
                        self._restart(w)
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

    def _restart(self, w: int) -> None:
        """Replace the worker in slot w; a slot whose new worker cannot start stays empty (None)."""
        assert self._pool is not None
        self._pool[w].kill()
        try:
            self._pool[w] = _Worker(_context())
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
