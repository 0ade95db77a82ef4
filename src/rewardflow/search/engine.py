"""The plumbing every strategy shares: batched step generation and scoring, with compute booked per problem.

Strategies run all problems in lockstep so that each model call covers every problem's pending work (one
`generate` for all beams of all problems): on a CPU the per-call overhead dominates tiny models. A batched
call's wall time is shared out over the problems by how many rows each had in it.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

from ..data.problem import Problem
from ..policy.base import Completion, SamplingParams
from ..rewards.base import StepScores
from .base import Compute, SearchConfig


@dataclass
class Piece:
    """One continuation: a step (the delimiter stripped) or the rest of a solution."""

    text: str
    finished: bool  # the model ended the solution (<eos>)
    completion: Completion


def steps_of(text: str, delimiter: str) -> list[str]:
    """A full solution text -> its non-empty steps."""
    return [s for s in text.split(delimiter) if s.strip()]


class Run:
    """One search call: the problems, the models by name ("policy", "draft", "target"), the scorer, and the
    compute ledger (`compute[i][model name]`)."""

    def __init__(self, problems: list[Problem], cfg: SearchConfig, scorer, models: dict):
        self.problems, self.cfg, self.scorer, self.models = problems, cfg, scorer, models
        names = [*models, "scorer"] if scorer is not None else list(models)
        self.compute = [{name: Compute() for name in names} for _ in problems]
        for model in models.values():  # a fresh cache per search call: nothing read for an earlier call is free here
            if hasattr(model, "enable_prefix_cache"):
                model.enable_prefix_cache() if cfg.prefix_cache else model.disable_prefix_cache()
            if hasattr(model, "compile_decode"):
                model.compile_decode = cfg.compile_decode
        self._calls = 0
        # Scored tokens are counted in the first model's tokenizer (the scorer's own may differ or not exist).
        first = next(iter(models.values()))
        self._tokenizer = getattr(first, "tokenizer", None)

    # ---------------------------------------------------------------- helpers
    def prefix(self, steps: list[str]) -> str:
        d = self.cfg.delimiter
        return d.join(steps) + d if steps else ""

    def _seed(self) -> int:
        # every call gets its own seed, a pure function of cfg.seed and the call's position in the run
        self._calls += 1
        return self.cfg.seed * 1_000_003 + self._calls

    def _share_seconds(self, rows_per_problem: dict[int, int], seconds: float, model: str) -> None:
        total = sum(rows_per_problem.values())
        for i, rows in rows_per_problem.items():
            self.compute[i][model].seconds += seconds * rows / total
            self.compute[i][model].calls += 1

    def count_tokens(self, text: str) -> int:
        """Length of `text` in the (first) policy's tokens; ceil(characters / 4) when it has no tokenizer
        (the usual rule of thumb for English BPE vocabularies)."""
        if self._tokenizer is not None:
            return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])
        return math.ceil(len(text) / 4)

    # ---------------------------------------------------------------- generation
    def sample(self, model: str, items: list[tuple[int, list[str]]], counts: int | list[int], *, step: bool = True,
               greedy: bool = False) -> list[list[Piece]]:
        """counts[j] continuations of item j = (problem index, steps so far). step=True: one step (stops at the
        delimiter, max_step_tokens); step=False: the rest of the solution (max_new_tokens)."""
        counts = [counts] * len(items) if isinstance(counts, int) else counts
        out: list[list[Piece]] = [[] for _ in items]
        by_count: dict[int, list[int]] = {}
        for j, c in enumerate(counts):
            if c > 0:
                by_count.setdefault(c, []).append(j)
        for n, idx in by_count.items():  # one batched call per distinct count (REBASE gives nodes different widths)
            per_call = max(1, self.cfg.chunk // n)
            for start in range(0, len(idx), per_call):
                chunk = idx[start : start + per_call]
                groups = self._generate(model, [items[j] for j in chunk], n, step=step, greedy=greedy)
                for j, g in zip(chunk, groups):
                    out[j] = g
        return out

    def _generate(self, model: str, items, n: int, *, step: bool, greedy: bool) -> list[list[Piece]]:
        cfg, policy = self.cfg, self.models[model]
        d = cfg.delimiter
        params = SamplingParams(n=n, temperature=0.0 if greedy else cfg.temperature, top_p=cfg.top_p,
                                max_new_tokens=cfg.max_step_tokens if step else cfg.max_new_tokens,
                                stop=(d,) if step else (), seed=self._seed())
        t0 = time.perf_counter()
        groups = policy.generate([self.problems[i].prompt for i, _ in items], params, prefixes=[self.prefix(s) for _, s in items])
        seconds = time.perf_counter() - t0
        flops_per_token = 2.0 * policy.num_params
        rows: dict[int, int] = {}
        result = []
        for (i, _), group in zip(items, groups):
            c = self.compute[i][model]
            pieces = []
            for comp in group:
                c.tokens_generated += len(comp.token_ids)
                # prefill is what the policy computed: tokens its prefix cache served (or another sample of the same
                # prompt read) are not counted again
                read = comp.prompt_tokens - comp.cached_tokens
                c.tokens_prefill += read
                c.flops_decode += flops_per_token * len(comp.token_ids)
                c.flops_prefill += flops_per_token * read
                text = comp.text
                if step and comp.finish_reason == "stop" and text.endswith(d):
                    text = text[: -len(d)]
                pieces.append(Piece(text, comp.finish_reason == "eos", comp))
            rows[i] = rows.get(i, 0) + len(group)
            result.append(pieces)
        self._share_seconds(rows, seconds, model)
        return result

    # ---------------------------------------------------------------- scoring
    def score(self, items: list[tuple[int, list[str]]]) -> list[StepScores]:
        """Scorer verdicts on (problem index, step list) pairs. Empty steps are dropped before scoring (a
        model may emit the delimiter twice); an empty solution is scored as one empty step."""
        if not items:
            return []
        d = self.cfg.delimiter
        solutions = [[s for s in steps if s.strip()] or [""] for _, steps in items]
        before = getattr(self.scorer, "flops_spent", None)
        t0 = time.perf_counter()
        scores = self.scorer.score([self.problems[i] for i, _ in items], solutions)
        seconds = time.perf_counter() - t0
        tokens = [self.count_tokens(self.problems[i].prompt + d + d.join(sol)) for (i, _), sol in zip(items, solutions)]
        if before is not None:  # the scorer metered itself (Scorer contract): share its FLOPs out by tokens scored
            per_token = (self.scorer.flops_spent - before) / max(1, sum(tokens))
        else:  # else one forward per scored token; a scorer without `num_params` (the verifier) costs 0
            per_token = 2.0 * (getattr(self.scorer, "num_params", 0) or 0)
        rows: dict[int, int] = {}
        for (i, _), n in zip(items, tokens):
            c = self.compute[i]["scorer"]
            c.tokens_scored += n
            c.flops_scored += per_token * n
            rows[i] = rows.get(i, 0) + 1
        self._share_seconds(rows, seconds, "scorer")
        return scores

    def book_forward(self, model: str, i: int, tokens: int, seconds: float) -> None:
        """A teacher-forced forward pass over `tokens` tokens (prompt + completion) for problem i."""
        c = self.compute[i][model]
        c.tokens_prefill += tokens
        c.flops_prefill += 2.0 * self.models[model].num_params * tokens
        c.seconds += seconds
        c.calls += 1


def step_value(scores: StepScores) -> float:
    """The value of a (partial) solution: its last step's score when the scorer scores steps (a PRM),
    else its outcome score (an ORM or the verifier)."""
    return scores.steps[-1] if scores.steps else scores.outcome
