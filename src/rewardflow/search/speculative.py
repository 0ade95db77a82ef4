"""Reward-guided speculative decoding: a cheap draft model writes, a reward model vets, the target repairs."""
from __future__ import annotations

from ..data.problem import Problem
from .base import SearchConfig, SearchResult, choose_final, make_result
from .engine import Run, step_value
from .tree import Path, path_candidate


def accept_mask(scores: list[float], delta: float) -> list[bool]:
    """RSD acceptance (Liao et al. 2025, "Reward-Guided Speculative Decoding for Efficient LLM Reasoning"):
    the weighting w(r) = 1[r >= delta] keeps a draft step exactly when its reward reaches delta."""
    return [s >= delta for s in scores]


def speculative(problems: list[Problem], policy, scorer, cfg: SearchConfig, *, draft=None) -> list[SearchResult]:
    """Reward-guided speculative decoding (Liao et al. 2025), step by step, for N = cfg.n independent
    chains per problem:

    1. the draft model proposes the next step from the current prefix;
    2. the scorer scores the prefix plus that step; value r = engine.step_value (last step score);
    3. r >= delta (cfg.delta, `accept_mask`): keep the draft step; else the target model (`policy`)
       regenerates the step from the same prefix, and its step is kept without another check.

    Until <eos> or max_steps. With N > 1 the finished chains are scored once more as whole solutions and
    cfg.select chooses (N = 1 needs no choice and no extra scoring). Compute is booked apart for "draft",
    "target" and "scorer"; result.info has the share of steps the draft wrote.
    """
    if draft is None:
        raise ValueError("speculative decoding needs a draft model: pass draft=... (CLI: --draft PATH)")
    run = Run(problems, cfg, scorer, {"target": policy, "draft": draft})  # target first: its tokenizer counts scored tokens
    chains = [[Path() for _ in range(cfg.n)] for _ in problems]
    for _ in range(cfg.max_steps):
        live = [(i, p) for i, ps in enumerate(chains) for p in ps if not p.done]
        if not live:
            break
        proposals = run.sample("draft", [(i, p.steps) for i, p in live], 1)
        drafts = [p.steps + [g[0].text] for (_, p), g in zip(live, proposals)]
        values = [step_value(s) for s in run.score([(i, d) for (i, _), d in zip(live, drafts)])]
        keep = accept_mask(values, cfg.delta)
        for (i, p), g, ok in zip(live, proposals, keep):
            if ok:
                _extend(p, g[0], "draft", cfg.max_steps)
        rejected = [(i, p) for (i, p), ok in zip(live, keep) if not ok]
        repairs = run.sample("target", [(i, p.steps) for i, p in rejected], 1)
        for (_, p), g in zip(rejected, repairs):
            _extend(p, g[0], "target", cfg.max_steps)
    if cfg.n > 1:
        flat = [(i, p) for i, ps in enumerate(chains) for p in ps]
        for (_, p), s in zip(flat, run.score([(i, p.steps) for i, p in flat])):
            p.scores = s
    results = []
    for i, problem in enumerate(problems):
        cands = [path_candidate(p, cfg) for p in chains[i]]
        steps = [w for p in chains[i] for w in p.writers]
        info = {"draft_step_share": steps.count("draft") / max(1, len(steps)), "steps": len(steps)}
        results.append(make_result(problem, cands, choose_final(cands, cfg.select), run.compute[i], cfg.delimiter, info))
    return results


def _extend(path: Path, piece, writer: str, max_steps: int) -> None:
    path.steps.append(piece.text)
    path.writers.append(writer)
    path.eos = piece.finished
    path.done = piece.finished or len(path.steps) >= max_steps
