"""The verifier's worker processes: started, capped in memory, killed when an item overruns its time limit.

A worker is a process reading jobs from a pipe and answering ("ok", bool) or ("error", message). Its address
space is capped (RLIMIT_AS) so a hostile expression that tries to build a huge number or matrix gets
MemoryError instead of taking the machine's memory. Inside a daemonic process (a multiprocessing.Pool worker)
multiprocessing refuses to start children, but the kernel does not: there the worker is forked directly, so
the time limit holds in Pool workers too.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import time
from multiprocessing.connection import Connection
from typing import Any, Callable

# Address space a worker may add to what it inherited: sympy and math-verify work in far less; a hostile
# expression (10**10**8, a huge matrix) gets MemoryError here.
DEFAULT_MEMORY_MB = 2048


def limit_memory(extra_mb: int | None) -> None:
    """Cap this process's address space at what it maps now plus `extra_mb`. Relative, not absolute: a worker
    forked from a trainer inherits its mappings (CUDA reserves tens of GiB of address space)."""
    if not extra_mb:
        return
    try:
        import resource

        with open("/proc/self/statm") as f:
            mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = mapped + int(extra_mb) * 2**20
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except (ImportError, OSError, ValueError):  # no /proc or no RLIMIT_AS (macOS, Windows): time limit only
        pass


def worker_main(conn: Connection, parent_end: Connection, parent_pid: int, check: Callable[[tuple], bool],
                memory_mb: int | None) -> None:
    parent_end.close()  # so that the parent's death shows up as EOF here
    limit_memory(memory_mb)
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
            reply = ("ok", bool(check(job)))
        except BaseException as e:  # MemoryError, RecursionError, anything a scorer raises: a verdict, not a crash
            reply = ("error", f"{type(e).__name__}: {e}"[:300])
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return


class _ForkedProcess:
    """os.fork without multiprocessing's bookkeeping, for daemonic processes (whose multiprocessing children are
    refused). The subset of the Process interface _Worker uses."""

    def __init__(self, target: Callable, args: tuple) -> None:
        self.target, self.args, self.pid, self.exitcode = target, args, 0, None

    def start(self) -> None:
        pid = os.fork()
        if pid == 0:  # the child: run the loop, then leave without running the parent's exit handlers
            code = 1
            try:
                self.target(*self.args)
                code = 0
            finally:
                os._exit(code)
        self.pid = pid

    def is_alive(self) -> bool:
        if self.exitcode is None:
            try:
                if os.waitpid(self.pid, os.WNOHANG)[0] == self.pid:
                    self.exitcode = -1
            except ChildProcessError:  # already reaped
                self.exitcode = -1
        return self.exitcode is None

    def join(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        while self.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)

    def kill(self) -> None:
        if self.is_alive():
            os.kill(self.pid, signal.SIGKILL)


class Worker:
    # Generous: a spawn-context worker re-imports sympy and math-verify before it says "ready".
    STARTUP_S = 60.0

    def __init__(self, check: Callable[[tuple], bool], memory_mb: int | None = DEFAULT_MEMORY_MB) -> None:
        ctx = context()
        self.conn, child_end = ctx.Pipe()
        args = (child_end, self.conn, os.getpid(), check, memory_mb)
        if mp.current_process().daemon and ctx.get_start_method() == "fork":
            self.proc: Any = _ForkedProcess(worker_main, args)
        else:
            self.proc = ctx.Process(target=worker_main, args=args, name="rewardflow-verify", daemon=True)
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


def context() -> Any:
    # fork starts a worker in milliseconds and inherits the parent's imported modules; macOS and
    # Windows lack a safe fork, so they pay spawn's start-up once per worker.
    if sys.platform.startswith("linux") and "fork" in mp.get_all_start_methods():
        return mp.get_context("fork")
    return mp.get_context("spawn")
