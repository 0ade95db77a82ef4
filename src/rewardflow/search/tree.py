"""Step-level tree search guided by a (process) reward: PRM beam search, DVTS, REBASE.

A node is a partial solution (its steps); expanding it samples children steps that stop at the step
delimiter. Every child is scored by the scorer; its value for ranking is `engine.step_value` (the last
step's score, or the outcome score for outcome-only scorers), or with `cfg.lookahead = k` the value of a
greedy k-step roll-out from it (Snell et al. 2024, "Scaling LLM Test-Time Compute Optimally ...", Sec. 5).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..data.problem import Problem
from ..rewards.base import StepScores, aggregate
from .base import Candidate, SearchConfig, SearchResult, candidate, choose_final, make_result
from .engine import Run, step_value


@dataclass
class Path:
    steps: list[str] = field(default_factory=list)
    eos: bool = False  # the model ended the solution
    done: bool = False  # no further expansion: eos, or max_steps reached
    scores: StepScores | None = None  # the scorer's verdict on these steps
    value: float = 0.0  # what the search ranks by
    tree: int = 0  # subtree id (DVTS)
    writers: list[str] = field(default_factory=list)  # model that wrote each step (speculative decoding)
    logprob: float = 0.0  # mean token logprob of the last step under the model that wrote it (MCTS priors)


def expand_and_score(run: Run, items: list[tuple[int, Path]], counts, *, model: str = "policy") -> list[list[Path]]:
    """counts[j] scored children of each (problem index, path); look-ahead applies when cfg.lookahead > 0."""
    cfg = run.cfg
    groups = run.sample(model, [(i, p.steps) for i, p in items], counts)
    children = [[Path(p.steps + [pc.text], pc.finished, pc.finished or len(p.steps) + 1 >= cfg.max_steps, tree=p.tree,
                      writers=p.writers + [model], logprob=float(pc.completion.logprobs.mean()) if len(pc.completion.token_ids) else 0.0)
                 for pc in g] for (_, p), g in zip(items, groups)]
    flat = [(i, c) for (i, _), kids in zip(items, children) for c in kids]
    for (i, c), s in zip(flat, run.score([(i, c.steps) for i, c in flat])):
        c.scores, c.value = s, step_value(s)
    if cfg.lookahead > 0:
        pending = [(i, c) for i, c in flat if not c.done]
        for (_, c), v in zip(pending, lookahead_values(run, [(i, c.steps) for i, c in pending], cfg.lookahead, model)):
            c.value = v
    return children


def lookahead_values(run: Run, items: list[tuple[int, list[str]]], k: int, model: str = "policy") -> list[float]:
    """Roll each partial solution out greedily (temperature 0) for up to k more steps and score the end of the
    roll-out (Snell et al. 2024, Sec. 5, "lookahead search"); the roll-out steps are then discarded."""
    paths = [list(s) for _, s in items]
    live = list(range(len(items)))
    for _ in range(k):
        if not live:
            break
        groups = run.sample(model, [(items[j][0], paths[j]) for j in live], 1, greedy=True)
        still = []
        for j, g in zip(live, groups):
            paths[j].append(g[0].text)
            if not g[0].finished and len(paths[j]) < run.cfg.max_steps:
                still.append(j)
        live = still
    return [step_value(s) for s in run.score([(i, p) for (i, _), p in zip(items, paths)])]


def path_candidate(p: Path, cfg: SearchConfig) -> Candidate:
    score = aggregate(p.scores, cfg.aggregation) if p.scores is not None else None
    extra = {"writers": p.writers} if set(p.writers) - {"policy"} else {}  # who wrote which step, when it varies
    return candidate(p.steps, cfg.delimiter, score=score, finished=p.eos, extra=extra)


def _tree_search(run: Run, n_trees: int, root_width: int, keep: int, width: int) -> list[SearchResult]:
    """Each of n_trees roots gets root_width children; then, per tree and depth, the `keep` best unfinished
    children are each expanded `width` times. Finished children leave the beam as candidates."""
    problems, cfg = run.problems, run.cfg
    frontier = [[Path(tree=t) for t in range(n_trees)] for _ in problems]
    done: list[list[Path]] = [[] for _ in problems]
    counts = root_width
    while any(frontier):
        items = [(i, p) for i, fr in enumerate(frontier) for p in fr]
        children = expand_and_score(run, items, counts)
        counts = width
        fresh: list[list[Path]] = [[] for _ in problems]
        for (i, _), kids in zip(items, children):
            for c in kids:
                (done[i] if c.done else fresh[i]).append(c)
        for i in range(len(problems)):
            kept = []
            for t in range(n_trees):
                in_tree = [c for c in fresh[i] if c.tree == t]
                kept += sorted(in_tree, key=lambda c: -c.value)[:keep]  # stable: earlier child wins a tie
            frontier[i] = kept
    results = []
    for i, problem in enumerate(problems):
        cands = [path_candidate(p, cfg) for p in done[i]]
        results.append(make_result(problem, cands, choose_final(cands, cfg.select), run.compute[i], cfg.delimiter))
    return results


def beam(problems: list[Problem], policy, scorer, cfg: SearchConfig, *, draft=None) -> list[SearchResult]:
    """PRM beam search (Snell et al. 2024, Sec. 5; Beeching et al. 2024, HF "Scaling test-time compute"):
    sample N first steps; at every depth keep the N/M highest-valued unfinished partial solutions and expand
    each with M next steps (M = cfg.beam_width, reduced to N when N < M). Finished solutions leave the beam;
    the final choice among them is cfg.select over the cfg.aggregation of their step scores."""
    m = min(cfg.beam_width, cfg.n)
    run = Run(problems, cfg, scorer, {"policy": policy})
    return _tree_search(run, n_trees=1, root_width=cfg.n, keep=max(1, cfg.n // m), width=m)


def dvts(problems: list[Problem], policy, scorer, cfg: SearchConfig, *, draft=None) -> list[SearchResult]:
    """Diverse verifier tree search (Beeching et al. 2024, HF "Scaling test-time compute with open models"):
    N/M independent subtrees, each a beam of width one: expand the current best node M times, keep the best
    child. Splitting the budget keeps the subtrees from collapsing onto one high-scoring prefix."""
    m = min(cfg.beam_width, cfg.n)
    run = Run(problems, cfg, scorer, {"policy": policy})
    return _tree_search(run, n_trees=max(1, cfg.n // m), root_width=m, keep=1, width=m)


# ---------------------------------------------------------------- REBASE


def rebase_widths(rewards: list[float], budget: int, temperature: float) -> list[int]:
    """REBASE expansion widths (Wu et al. 2024, "Inference Scaling Laws: An Empirical Analysis of
    Compute-Optimal Inference for Problem-Solving with Language Models", the REBASE expansion rule):

        W_j = Round(B * exp(r_j / T_b) / sum_k exp(r_k / T_b)).

    Rounding: largest remainder (floors, then +1 for the largest fractional parts), so sum_j W_j = B exactly;
    the paper's plain Round can over- or under-spend the budget."""
    if budget <= 0 or not rewards:
        return [0] * len(rewards)
    top = max(rewards)
    e = [math.exp((r - top) / temperature) for r in rewards]  # shifted by the max: no overflow
    shares = [budget * x / sum(e) for x in e]
    widths = [int(s) for s in shares]
    by_remainder = sorted(range(len(shares)), key=lambda j: -(shares[j] - widths[j]))  # stable on ties
    for j in by_remainder[: budget - sum(widths)]:
        widths[j] += 1
    return widths


def rebase(problems: list[Problem], policy, scorer, cfg: SearchConfig, *, draft=None) -> list[SearchResult]:
    """REBASE, reward-balanced search (Wu et al. 2024): at each depth the unfinished nodes share
    the remaining budget B = N - (solutions finished so far) in proportion to softmax(r / T_b) of their
    rewards (`rebase_widths`, T_b = cfg.rebase_temperature); a node given 0 children is pruned. The search
    ends when N solutions have finished (or max_steps cuts the rest). Final choice: cfg.select (the paper
    uses weighted majority voting, select="weighted")."""
    run = Run(problems, cfg, scorer, {"policy": policy})
    frontier = [[Path()] for _ in problems]
    done: list[list[Path]] = [[] for _ in problems]
    while any(frontier):
        items, counts = [], []
        for i, fr in enumerate(frontier):
            widths = rebase_widths([p.value for p in fr], cfg.n - len(done[i]), cfg.rebase_temperature)
            items += [(i, p) for p, w in zip(fr, widths) if w > 0]
            counts += [w for w in widths if w > 0]
        children = expand_and_score(run, items, counts)
        frontier = [[] for _ in problems]
        for (i, _), kids in zip(items, children):
            for c in kids:
                (done[i] if c.done else frontier[i]).append(c)
        frontier = [fr if len(done[i]) < cfg.n else [] for i, fr in enumerate(frontier)]
    results = []
    for i, problem in enumerate(problems):
        cands = [path_candidate(p, cfg) for p in done[i]]
        results.append(make_result(problem, cands, choose_final(cands, cfg.select), run.compute[i], cfg.delimiter))
    return results
