"""Progress bars (rich) for long work; callers get a `tick(n, **fields)` callable per task."""
from __future__ import annotations

import time
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


@contextmanager
def progress_bars(enabled: bool = True):
    """Yields `bar(description, total) -> tick` ; a disabled instance yields no-op ticks."""
    if not enabled:
        yield lambda description, total: (lambda n=1, **fields: None)
        return
    if not console.is_terminal:  # a log file or a pipe: plain lines every 30 s (and at the end) instead of a live bar
        yield _log_bar
        return
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as prog:
        def bar(description: str, total: int):
            task = prog.add_task(description, total=total, info="")

            def tick(n: int = 1, **fields) -> None:
                prog.update(task, advance=n, info=_fields_text(fields))

            return tick

        yield bar


def _log_bar(description: str, total: int, every_s: float = 30.0):
    state = {"done": 0, "start": time.perf_counter(), "last": time.perf_counter()}

    def tick(n: int = 1, **fields) -> None:
        state["done"] += n
        now = time.perf_counter()
        if now - state["last"] >= every_s or state["done"] >= total:
            state["last"] = now
            console.print(f"{description}: {state['done']}/{total}  {_fields_text(fields)}  {now - state['start']:.0f}s", highlight=False)

    return tick


def _fields_text(fields: dict) -> str:
    return "  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
