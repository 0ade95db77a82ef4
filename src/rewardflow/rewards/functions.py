"""Reward functions as plain Python, the way TRL users write them (config `reward.functions`).

A spec is `path/to/file.py:name` (the file is loaded from its path) or `package.module:name` (imported). The function is

    fn(prompts: list[str], completions: list[str], **columns) -> list[float | None]

with one entry per completion. `columns` holds at least `answer` (the gold answer, may be None), `task` and `id` of
each completion's problem (lists of the same length as `completions`); accept `**kwargs` for forward compatibility.
`None` means "no opinion" and counts as 0 in the reward sum:

    reward(sample) = verifier_weight * verdict + sum_i weights[i] * r_i + sum_j function_weights[j] * f_j(sample)

User code runs in one worker process (spawned once per run) with a per-call time limit (`reward.function_timeout`):
a function that hangs, raises, or returns the wrong thing stops the run with a one-line error naming it.
"""
from __future__ import annotations

import concurrent.futures as cf
import importlib
import importlib.util
import math
import multiprocessing
import os
import sys
from pathlib import Path

import torch


class RewardFunctionError(ValueError):
    """A reward function that cannot be loaded, hangs, raises or returns the wrong thing; the message names it."""


def parse_spec(spec: str) -> tuple[str, str, bool]:
    """`file.py:name` | `pkg.mod:name` -> (file path or module, name, is_file). Raises RewardFunctionError when malformed."""
    where, sep, name = str(spec).rpartition(":")
    if not sep or not where or not name.isidentifier():
        raise RewardFunctionError(f"reward function spec {spec!r} must be 'path/to/file.py:name' or 'package.module:name'")
    is_file = where.endswith(".py") or "/" in where or os.sep in where
    return where, name, is_file


def check_spec(spec: str) -> None:
    """Cheap config-time check, without running user code: the file exists / the module can be found."""
    where, _, is_file = parse_spec(spec)
    if is_file:
        if not Path(where).is_file():
            raise RewardFunctionError(f"reward function {spec!r}: no file {where}")
        return
    try:
        found = importlib.util.find_spec(where)
    except (ImportError, ValueError) as e:
        found, why = None, f" ({type(e).__name__}: {e})"
    else:
        why = ""
    if found is None:
        raise RewardFunctionError(f"reward function {spec!r}: no module {where!r} on the Python path{why}")


def metric_names(specs: list[str]) -> list[str]:
    """`reward/fn/<name>` per spec; a name used twice gets its index appended."""
    names = [parse_spec(s)[1] for s in specs]
    return [f"reward/fn/{n}" if names.count(n) == 1 else f"reward/fn/{n}_{j}" for j, n in enumerate(names)]


# ---------------------------------------------------------------- worker side (runs in the child process)

_LOADED: dict = {}


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _load(spec: str):
    if spec in _LOADED:
        return _LOADED[spec]
    where, name, is_file = parse_spec(spec)
    if is_file:
        path = Path(where).resolve()
        mod_name = f"_rewardflow_user_{abs(hash(str(path)))}"
        loader_spec = importlib.util.spec_from_file_location(mod_name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise RewardFunctionError(f"reward function {spec!r}: cannot load {where} as Python")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[mod_name] = module
        loader_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    fn = getattr(module, name, None)
    if fn is None:
        raise RewardFunctionError(f"reward function {spec!r}: {where} has no {name!r}")
    if not callable(fn):
        raise RewardFunctionError(f"reward function {spec!r}: {name} is a {type(fn).__name__}, not a function")
    _LOADED[spec] = fn
    return fn


def _worker_load(specs: list[str], path: list[str], cwd: str) -> list[str | None]:
    """Load every spec (with the parent's sys.path and working directory); one error message or None per spec."""
    sys.path[:] = list(path)
    os.chdir(cwd)
    errors = []
    for spec in specs:
        try:
            _load(spec)
            errors.append(None)
        except RewardFunctionError as e:
            errors.append(str(e))
        except BaseException as e:  # noqa: BLE001 - user code at import time: report, don't die
            errors.append(f"reward function {spec!r} failed to load: {_one_line(e)}")
    return errors


def _worker_call(spec: str, prompts: list[str], completions: list[str], columns: dict) -> tuple[str, object]:
    """('ok', [float | None] * N) or ('error', message). Checked here so a bad object never needs pickling."""
    try:
        out = _load(spec)(prompts, completions, **columns)
    except BaseException as e:  # noqa: BLE001
        return "error", f"reward function {spec} raised {_one_line(e)}"
    n = len(completions)
    if isinstance(out, (str, bytes, dict)) or not hasattr(out, "__len__"):
        return "error", f"reward function {spec} returned a {type(out).__name__}; it must return a list of {n} floats (or None)"
    if len(out) != n:
        return "error", f"reward function {spec} returned {len(out)} values for {n} completions; it must return one per completion"
    values = []
    for i, v in enumerate(out):
        if v is None:
            values.append(None)
            continue
        try:
            if isinstance(v, (str, bytes)):
                raise TypeError
            f = float(v)
        except (TypeError, ValueError):
            return "error", f"reward function {spec} returned {v!r} ({type(v).__name__}) at index {i}; each value must be a number or None"
        if not math.isfinite(f):
            return "error", f"reward function {spec} returned {f} at index {i}; each value must be finite (or None)"
        values.append(f)
    return "ok", values


# ---------------------------------------------------------------- parent side


class FunctionWorker:
    """One spawned worker process that runs user reward functions; killed (and restarted on next use) after a timeout."""

    def __init__(self):
        self._pool: cf.ProcessPoolExecutor | None = None

    def submit(self, fn, *args) -> cf.Future:
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        return self._pool.submit(fn, *args)

    def kill(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        for p in list((getattr(pool, "_processes", None) or {}).values()):
            p.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


class RewardFunctions:
    """The weighted user reward functions of config `reward.functions` / `function_weights` / `function_timeout`.
    Loaded (in the worker) once at construction; `rewards(...)` -> sum_j w_j f_j as a [B, G] tensor."""

    LOAD_GRACE_S = 120.0  # starting the worker (spawn + imports) before the user's own load time

    def __init__(self, specs: list[str], weights: list[float], timeout: float = 30.0, worker: FunctionWorker | None = None):
        if len(weights) != len(specs):
            raise RewardFunctionError(f"reward.function_weights={list(weights)} needs one weight per entry of reward.functions={list(specs)}")
        for s in specs:
            parse_spec(s)
        self.specs, self.weights, self.timeout = list(specs), [float(w) for w in weights], float(timeout)
        self.names = metric_names(self.specs)
        self.worker = worker if worker is not None else FunctionWorker()
        self._sums = [0.0] * len(specs)
        self._counts = [0] * len(specs)
        fut = self.worker.submit(_worker_load, self.specs, list(sys.path), os.getcwd())
        errors = self._result(fut, self.timeout + self.LOAD_GRACE_S, f"loading reward functions {self.specs}", None)
        for e in errors:
            if e is not None:
                raise RewardFunctionError(e)

    def _result(self, fut: cf.Future, timeout: float, what: str, n: int | None):
        try:
            return fut.result(timeout=timeout)
        except cf.TimeoutError:
            self.worker.kill()
            batch = f" on a batch of {n} completions" if n is not None else ""
            raise RewardFunctionError(f"{what} took longer than {timeout:g} s{batch}; make it faster, or raise "
                                      f"reward.function_timeout (the worker process was killed)") from None
        except cf.process.BrokenProcessPool as e:
            self.worker.kill()
            raise RewardFunctionError(f"{what}: the worker process died ({e}); a crash or exit in the function's code") from None

    def values(self, problems: list, texts: list[str]) -> list[list[float | None]]:
        """Each function's raw values on the N completions `texts` of `problems`, in spec order."""
        prompts = [p.prompt for p in problems]
        columns = {"answer": [p.answer for p in problems], "task": [p.task for p in problems], "id": [p.id for p in problems]}
        out = []
        for spec in self.specs:  # one at a time, so a timeout names its function
            fut = self.worker.submit(_worker_call, spec, prompts, list(texts), columns)
            status, payload = self._result(fut, self.timeout, f"reward function {spec}", len(texts))
            if status != "ok":
                raise RewardFunctionError(payload)
            out.append(payload)
        return out

    def rewards(self, problems: list, texts: list[str], shape: tuple[int, int]) -> torch.Tensor:
        """sum_j function_weights[j] * f_j, None counted as 0: [B, G] (shape) for N = B*G completions."""
        total = torch.zeros(shape)
        for j, (w, vals) in enumerate(zip(self.weights, self.values(problems, texts))):
            given = [v for v in vals if v is not None]
            self._sums[j] += sum(given)
            self._counts[j] += len(given)
            total = total + w * torch.tensor([0.0 if v is None else v for v in vals], dtype=torch.float).view(shape)
        return total

    def pop_metrics(self) -> dict:
        """Mean unweighted value of each function (over the values it gave, None left out) since the last pop:
        `reward/fn/<name>`. A function that gave only None is left out."""
        out = {name: s / c for name, s, c in zip(self.names, self._sums, self._counts) if c}
        self._sums, self._counts = [0.0] * len(self.specs), [0] * len(self.specs)
        return out

    def close(self) -> None:
        self.worker.close()
