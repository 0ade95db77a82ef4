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
from ..eval.metrics import top_scored
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


def refill_counts(kept: int, n: int) -> list[int]:
    """Children per kept beam so that the active set is back to n (search-and-learn's beam search repeats the
    list of kept beams until it holds n): beam j of `kept` gets n // kept, plus one for the first n % kept."""
    return [n // kept + (1 if j < n % kept else 0) for j in range(kept)]


def top_in_order(paths: list[Path], k: int) -> list[Path]:
    """The k highest-valued paths (an earlier path wins a tie), in their original order."""
    best = sorted(range(len(paths)), key=lambda j: -paths[j].value)[:k]  # sorted() is stable
    return [paths[j] for j in sorted(best)]


def _results(run: Run, per_problem: list[list[Path]]) -> list[SearchResult]:
    cfg = run.cfg
    results = []
    for i, problem in enumerate(run.problems):
        cands = [path_candidate(p, cfg) for p in per_problem[i]]
        results.append(make_result(problem, cands, choose_final(cands, cfg.select), run.compute[i], cfg.delimiter))
    return results


def beam(problems: list[Problem], policy, scorer, cfg: SearchConfig, *, draft=None) -> list[SearchResult]:
    """PRM beam search (Snell et al. 2024, Sec. 5; Beeching et al. 2024, HF "Scaling test-time compute", whose
    search-and-learn code sets the compute allocation we follow): sample N first steps; at every depth the
    finished children leave the beam, the N/M highest-valued unfinished ones are kept (M = cfg.beam_width,
    reduced to N when N < M) and the active set is refilled to N: each kept beam gets M next steps, or
    `refill_counts` when fewer than N/M are left, so every depth spends N samples until all have finished.
    The candidates are the first N solutions to finish (search-and-learn's default, unsorted); the final
    choice among them is cfg.select over the cfg.aggregation of their step scores."""
    m = min(cfg.beam_width, cfg.n)
    run = Run(problems, cfg, scorer, {"policy": policy})
    frontier = [[Path()] for _ in problems]
    counts = [[cfg.n] for _ in problems]
    done: list[list[Path]] = [[] for _ in problems]
    while any(frontier):
        items = [(i, p) for i, fr in enumerate(frontier) for p in fr]
        children = expand_and_score(run, items, [c for cs in counts for c in cs])
        fresh: list[list[Path]] = [[] for _ in problems]
        for (i, _), kids in zip(items, children):
            for c in kids:
                (done[i] if c.done else fresh[i]).append(c)
        frontier = [top_in_order(fr, max(1, cfg.n // m)) for fr in fresh]
        counts = [refill_counts(len(fr), cfg.n) if fr else [] for fr in frontier]
    return _results(run, [d[: cfg.n] for d in done])


def dvts(problems: list[Problem], policy, scorer, cfg: SearchConfig, *, draft=None) -> list[SearchResult]:
    """Diverse verifier tree search (Beeching et al. 2024, HF "Scaling test-time compute with open models", as
    search-and-learn runs it): N/M independent subtrees. Each expands its current node M times and continues
    only through its argmax child (finished or not; the first on a tie); when that child is finished (or at
    max_steps) the subtree stops, even if an unfinished sibling remains. The candidates are each subtree's last
    M children, N in all (unfinished siblings as cut-off solutions). Splitting the budget keeps the subtrees
    from collapsing onto one high-scoring prefix."""
    m = min(cfg.beam_width, cfg.n)
    n_trees = max(1, cfg.n // m)
    run = Run(problems, cfg, scorer, {"policy": policy})
    current = [[Path(tree=t) for t in range(n_trees)] for _ in problems]  # the node each subtree grows from
    last: list[list[list[Path]]] = [[[] for _ in range(n_trees)] for _ in problems]  # its latest M children
    live = [(i, t) for i in range(len(problems)) for t in range(n_trees)]
    while live:
        children = expand_and_score(run, [(i, current[i][t]) for i, t in live], m)
        still = []
        for (i, t), kids in zip(live, children):
            last[i][t] = kids
            best = top_scored([k.value for k in kids])[0]  # the one best-of-N: ties to the first child
            if not kids[best].done:
                current[i][t] = kids[best]
                still.append((i, t))
        live = still
    return _results(run, [[p for kids in trees for p in kids] for trees in last])


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
    return _results(run, done)
