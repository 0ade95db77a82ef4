"""Strategies over N independent full samples: majority vote, best-of-N, weighted best-of-N, self-certainty."""
from __future__ import annotations

import math
import time

import torch

from ..data.problem import Problem
from ..rewards.base import aggregate
from .base import Candidate, SearchConfig, SearchResult, candidate, choose, choose_by_vote, make_result
from .engine import Run, steps_of


def _sample_all(run: Run) -> list[list[Candidate]]:
    """N full solutions per problem as candidates (extra["completion"] keeps the Completion for later use)."""
    d = run.cfg.delimiter
    groups = run.sample("policy", [(i, []) for i in range(len(run.problems))], run.cfg.n, step=False)
    return [[candidate(steps_of(p.text, d), d, finished=p.finished, extra={"completion": p.completion}) for p in g] for g in groups]


def _finish(run: Run, cands: list[list[Candidate]], how: str) -> list[SearchResult]:
    out = []
    for i, (problem, cs) in enumerate(zip(run.problems, cands)):
        for c in cs:
            c.extra.pop("completion", None)  # tensors do not belong in results
        out.append(make_result(problem, cs, choose(cs, how), run.compute[i], run.cfg.delimiter))
    return out


def _score_all(run: Run, cands: list[list[Candidate]]) -> None:
    items = [(i, c.steps) for i, cs in enumerate(cands) for c in cs]
    scores = iter(run.score(items))
    for cs in cands:
        for c in cs:
            c.score = aggregate(next(scores), run.cfg.aggregation)


def majority(problems: list[Problem], policy, scorer, cfg: SearchConfig, *, draft=None) -> list[SearchResult]:
    """Self-consistency (Wang et al. 2023): the most frequent final answer of N samples. The scorer is not
    used (and costs nothing). Equal answers are grouped by `base.answer_key`."""
    run = Run(problems, cfg, None, {"policy": policy})
    return _finish(run, _sample_all(run), "majority")


def best_of_n(problems: list[Problem], policy, scorer, cfg: SearchConfig, *, draft=None) -> list[SearchResult]:
    """Best-of-N reranking (Cobbe et al. 2021; Lightman et al. 2023): the sample whose score, reduced over
    steps by cfg.aggregation (rewards.aggregate), is largest; ties go to the earliest sample."""
    run = Run(problems, cfg, scorer, {"policy": policy})
    cands = _sample_all(run)
    _score_all(run, cands)
    return _finish(run, cands, "best")


def weighted_best_of_n(problems: list[Problem], policy, scorer, cfg: SearchConfig, *, draft=None) -> list[SearchResult]:
    """Weighted best-of-N (Uesato et al. 2022; Li et al. 2023 "Making Language Models Better Reasoners with
    Step-Aware Verifier"): the answer whose samples' scores sum highest; its top-scored sample is returned."""
    run = Run(problems, cfg, scorer, {"policy": policy})
    cands = _sample_all(run)
    _score_all(run, cands)
    return _finish(run, cands, "weighted")


# ---------------------------------------------------------------- self-certainty (Kang et al. 2025)


def self_certainty_from_logprobs(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Self-certainty (Kang et al. 2025, "Scalable Best-of-N Selection for Large Language Models via
    Self-Certainty", the definition of self-certainty): the mean over generated tokens of KL(U || p_i), U uniform over the vocabulary:

        SC = -1/(n V) sum_i sum_j log(V p(j | x, y_<i))      and     KL(U || p_i) = -log V - mean_j log p_ij.

    logp: [N, T, V] log-distributions at each completion position; mask: [N, T] 1 on real tokens. Returns [N].
    """
    V = logp.shape[-1]
    kl = -math.log(V) - logp.mean(-1)  # [N, T]
    return (kl * mask).sum(-1) / mask.sum(-1).clamp(min=1)  # [N]


def borda_votes(certainty: list[float], power: float) -> list[float]:
    """Borda voting weights (Kang et al. 2025, self-certainty-weighted Borda voting): the sample ranked r by self-certainty (r = 1 the
    most certain; ties keep sample order) gets (N - r + 1) ** power votes. power = 0 is majority voting."""
    n = len(certainty)
    order = sorted(range(n), key=lambda i: -certainty[i])  # stable: earlier sample wins a tie
    votes = [0.0] * n
    for rank, i in enumerate(order, start=1):
        votes[i] = float((n - rank + 1) ** power)
    return votes


def token_distributions(policy, prompts: list[str], completions, prefixes: list[str] | None = None, *, chunk: int = 32):
    """Yield (row indices, logp [n, T, V], mask [n, T]) for the completions, teacher-forced, chunk by chunk.

    A policy may provide its own `token_distributions(prompts, completions, prefixes)` (e.g. a server that
    returns full next-token distributions); otherwise we run `policy.model` over `policy.token_batch` (any
    transformers causal LM, as HFPolicy holds). The distribution is the model's own (temperature 1), which
    is what the paper measures, whatever temperature sampled the tokens.
    """
    own = getattr(policy, "token_distributions", None)
    if callable(own):
        yield from own(prompts, completions, prefixes)
        return
    model = getattr(policy, "model", None)
    if model is None or not hasattr(policy, "token_batch"):
        raise TypeError(f"self-certainty needs full next-token distributions: {type(policy).__name__} has neither a "
                        "`token_distributions(prompts, completions, prefixes)` method nor a transformers `model`")
    prompt_ids = policy.encode_prompts(prompts, prefixes)
    for start in range(0, len(prompts), chunk):
        rows = list(range(start, min(start + chunk, len(prompts))))
        batch = policy.token_batch([prompt_ids[r] for r in rows], [completions[r].token_ids for r in rows])
        T = batch.completion_mask.shape[1]
        pos = (batch.attention_mask.cumsum(-1) - 1).clamp(min=0)  # [n, P+T]
        with torch.no_grad():
            # logits at positions P-1 .. P+T-2 predict completion tokens P .. P+T-1
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=pos,
                           logits_to_keep=T + 1).logits[:, :-1]  # [n, T, V]
        yield rows, logits.float().log_softmax(-1), batch.completion_mask  # [n, T, V], [n, T]


def _certainties(run: Run, cands: list[list[Candidate]]) -> None:
    policy = run.models["policy"]
    flat = [(i, c) for i, cs in enumerate(cands) for c in cs]
    comps = [c.extra["completion"] for _, c in flat]
    prompts = [run.problems[i].prompt for i, _ in flat]
    t0 = time.perf_counter()
    values = [0.0] * len(flat)
    for rows, logp, mask in token_distributions(policy, prompts, comps):
        for r, v in zip(rows, self_certainty_from_logprobs(logp, mask).tolist()):
            values[r] = v
    seconds = (time.perf_counter() - t0) / max(1, len(flat))
    for (i, c), comp, v in zip(flat, comps, values):
        c.score = v
        # the teacher-forced pass reads prompt + completion once more
        run.book_forward("policy", i, comp.prompt_tokens + len(comp.token_ids), seconds)


def self_certainty(problems: list[Problem], policy, scorer, cfg: SearchConfig, *, draft=None) -> list[SearchResult]:
    """Best-of-N by self-certainty (Kang et al. 2025; see `self_certainty_from_logprobs`): the sample
    the policy is most confident in; no reward model. Costs one teacher-forced pass per sample (booked as
    prefill on "policy")."""
    run = Run(problems, cfg, None, {"policy": policy})
    cands = _sample_all(run)
    _certainties(run, cands)
    return _finish(run, cands, "best")


def self_certainty_borda(problems: list[Problem], policy, scorer, cfg: SearchConfig, *, draft=None) -> list[SearchResult]:
    """Self-certainty-weighted Borda voting (Kang et al. 2025; see `borda_votes`, power
    cfg.borda_power, our default 0.5): the answer with the most votes, and its most certain sample."""
    run = Run(problems, cfg, None, {"policy": policy})
    cands = _sample_all(run)
    _certainties(run, cands)
    results = []
    for i, (problem, cs) in enumerate(zip(problems, cands)):
        votes = borda_votes([c.score for c in cs], cfg.borda_power)
        for c, v in zip(cs, votes):
            c.extra = {"votes": v}
        chosen = choose_by_vote(cs, votes)  # the answer with the most votes, then its most certain sample
        results.append(make_result(problem, cs, chosen, run.compute[i], cfg.delimiter))
    return results
