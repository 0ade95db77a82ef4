"""Step labels for process reward models from Monte-Carlo rollouts of a policy.

For a solution split into steps s_1..s_S, the prefix s_1..s_t is continued K times by the policy and
each completion (prefix + continuation) is verified against the gold answer: r_k in {0, 1}. Labels:

- `mc-hard`  Math-Shepherd (Wang et al. 2024, "Math-Shepherd", Sec. 3.2, hard estimation):
             1 if any of the K completions reaches the gold answer.
- `mc-soft`  Math-Shepherd soft estimation: the fraction that do.
- `er`       ER-PRM (Zhang et al. 2024, "Entropy-Regularized Process Reward Model", the
             entropy-regularised target): (1/eta) * log mean_k exp(eta * r_k); eta -> 0 gives the soft
             label, eta -> inf the hard one.
- `oracle`   exact labels of an arithmetic chain, checked against its worked solution (no rollouts; a
             diagnosis: what a PRM learns when its labels carry no Monte-Carlo noise).
- `omega`    OmegaPRM-style binary search (Luo et al. 2024, "Improve Mathematical Reasoning in Language
             Models by Automated Process Supervision", Sec. 3.2): only the prefixes that a binary search
             for the first wrong step visits are rolled out.

The last prefix is the whole solution: its outcome is the verdict on the solution itself, so it is
verified once instead of rolled out (Math-Shepherd labels the final step by answer correctness too).

Rows are appended to a JSONL file one chunk at a time (flushed and fsynced), one row per solution:
`{"id", "prompt", "steps", "labels", "label_kind", "rollouts": K, "mc", "answer", "pred", "correct",
"rollouts_used"}`; `prompt`/`steps`/`labels` are what PRM training reads, `correct` is the outcome
label an ORM trains on. A rerun skips ids already in the file, so a crash loses at most one chunk.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..data.problem import DataError, Problem
from ..data.steps import join_steps
from ..policy.base import SamplingParams


# ---------------------------------------------------------------- the label math (pure)


def hard_labels(outcomes) -> torch.Tensor:
    """Math-Shepherd hard estimate: [S, K] 0/1 outcomes -> [S], 1 where any completion is correct."""
    r = torch.as_tensor(outcomes, dtype=torch.float64)  # [S, K]
    return (r.sum(-1) > 0).to(torch.float64)  # [S]


def soft_labels(outcomes) -> torch.Tensor:
    """Math-Shepherd soft estimate: [S, K] -> [S], the fraction of completions that are correct."""
    r = torch.as_tensor(outcomes, dtype=torch.float64)  # [S, K]
    return r.mean(-1)  # [S]


def er_labels(outcomes, eta: float) -> torch.Tensor:
    """ER-PRM label (Zhang et al. 2024): (1/eta) * log( (1/K) * sum_k exp(eta * r_k) ), per step.

    The soft-max of the outcomes under a KL-regularised (entropy-regularised) objective: it lies between
    the soft label (eta -> 0) and the hard label (eta -> inf). logsumexp keeps large eta finite.
    """
    if eta <= 0:
        raise ValueError(f"ER-PRM needs eta > 0, got {eta}")
    r = torch.as_tensor(outcomes, dtype=torch.float64)  # [S, K]
    return (torch.logsumexp(eta * r, dim=-1) - math.log(r.shape[-1])) / eta  # [S]


def omega_labels(first_wrong: int | None, n_steps: int) -> list[float]:
    """Labels from the first wrong step (1-based; None when the solution is correct): 1 before it, 0 at
    it and after. OmegaPRM only keeps the prefixes up to the first error; we label the later steps 0,
    as PRM800K / ProcessBench do ("once a step is wrong, the solution stays wrong")."""
    if first_wrong is None:
        return [1.0] * n_steps
    return [1.0] * (first_wrong - 1) + [0.0] * (n_steps - first_wrong + 1)


@dataclass
class FirstWrongSearch:
    """Binary search over prefix lengths for the first step whose prefix has MC estimate 0 (OmegaPRM).

    Invariant: the prefix of length `hi` has estimate 0 (at the start: the whole solution, verified
    wrong) and the prefix of length `lo - 1` has estimate > 0 (or is empty). Each probe halves [lo, hi],
    so ceil(log2 S) prefixes are rolled out instead of S - 1. Assumes estimates fall to 0 at one step and
    stay there; with noisy K-sample estimates it finds a step t with c(t) = 0 < c(t-1).
    """

    lo: int
    hi: int

    @property
    def done(self) -> bool:
        return self.lo >= self.hi

    def probe(self) -> int:
        return (self.lo + self.hi) // 2

    def update(self, t: int, estimate: float) -> None:
        if estimate > 0:
            self.lo = t + 1
        else:
            self.hi = t


def chain_oracle_labels(gold_steps: Sequence[str], steps: Sequence[str]) -> list[float]:
    """Exact step labels of an arithmetic chain (the STEP ORACLE; no rollouts): step k is 1 when steps 1..k-1 are
    right and step k is the next line of the worked solution `gold_steps`, or its final answer line (a solution may
    skip its working and answer directly); once a step is wrong every later step is 0. Whitespace is ignored."""
    norm = lambda s: " ".join(s.split())
    gold = [norm(g) for g in gold_steps]
    labels, ok = [], True
    for k, step in enumerate(steps):
        ok = ok and norm(step) in ((gold[k], gold[-1]) if k < len(gold) else ())
        labels.append(float(ok))
    return labels


LABELS: dict[str, Callable] = {
    "mc-hard": lambda r, eta: hard_labels(r),
    "mc-soft": lambda r, eta: soft_labels(r),
    "er": lambda r, eta: er_labels(r, eta),
}
METHODS = (*LABELS, "omega", "oracle")


# ---------------------------------------------------------------- rollouts


@dataclass(frozen=True)
class Solution:
    id: str  # unique key of the row (resume skips ids already written)
    problem: Problem
    steps: list[str]


@dataclass(frozen=True)
class LabelConfig:
    method: str = "mc-hard"  # mc-hard | mc-soft | er | omega
    rollouts: int = 8  # K completions per prefix
    eta: float = 2.0  # ER-PRM temperature (method er only)
    temperature: float = 1.0  # sampling temperature of the rollouts
    max_new_tokens: int = 64  # completion budget of one rollout
    chunk: int = 16  # solutions per policy.generate call (one flush of the output file)
    seed: int = 0  # chunk c samples with seed + c, so a resumed run repeats the straight one


def prefix_text(steps: Sequence[str], t: int) -> str:
    """The answer prefix s_1..s_t, ending in a newline so the policy starts the next step."""
    return join_steps(list(steps[:t])) + "\n"


def rollout_outcomes(policy, verifier, items: list[tuple[Problem, str]], cfg: LabelConfig, seed: int) -> list[list[bool]]:
    """One generate call: K continuations of each (problem, prefix), verified as prefix + continuation."""
    if not items:
        return []
    params = SamplingParams(n=cfg.rollouts, temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens, seed=seed)
    groups = policy.generate([p.prompt for p, _ in items], params, prefixes=[x for _, x in items])
    problems = [p for (p, _), g in zip(items, groups) for _ in g]
    texts = [x + c.text for (_, x), g in zip(items, groups) for c in g]
    verdicts = verifier.verify(problems, texts)
    K = cfg.rollouts
    return [[v.correct for v in verdicts[i * K : (i + 1) * K]] for i in range(len(items))]


def _label_chunk(policy, verifier, sols: list[Solution], cfg: LabelConfig, seed: int) -> list[dict]:
    K = cfg.rollouts
    finals = verifier.verify([s.problem for s in sols], [join_steps(s.steps) for s in sols])
    # mc[i][t-1]: MC estimate of prefix t (None where it was not rolled out); the whole solution is verified
    mc: list[list[float | None]] = [[None] * (len(s.steps) - 1) + [float(f.correct)] for s, f in zip(sols, finals)]
    used = [0] * len(sols)
    if cfg.method == "oracle":  # exact labels from the worked solution (arithmetic chains only): no rollouts
        from ..data import worked_solution

        labels = [chain_oracle_labels(worked_solution(s.problem).split("\n"), s.steps) for s in sols]
    elif cfg.method == "omega":
        # A correct solution is its own witness: every prefix reaches the gold answer (hard label 1).
        searches = {i: FirstWrongSearch(1, len(s.steps)) for i, (s, f) in enumerate(zip(sols, finals)) if not f.correct}
        round_ = 0
        while todo := [i for i, q in searches.items() if not q.done]:
            probes = [(i, searches[i].probe()) for i in todo]
            outs = rollout_outcomes(policy, verifier, [(sols[i].problem, prefix_text(sols[i].steps, t)) for i, t in probes], cfg, seed * 64 + round_)
            for (i, t), r in zip(probes, outs):
                mc[i][t - 1] = sum(r) / K
                searches[i].update(t, mc[i][t - 1])
                used[i] += K
            round_ += 1
        labels = [omega_labels(searches[i].lo if i in searches else None, len(s.steps)) for i, s in enumerate(sols)]
    else:
        probes = [(i, t) for i, s in enumerate(sols) for t in range(1, len(s.steps))]
        outs = rollout_outcomes(policy, verifier, [(sols[i].problem, prefix_text(sols[i].steps, t)) for i, t in probes], cfg, seed)
        per_sol: list[list[list[bool]]] = [[] for _ in sols]
        for (i, t), r in zip(probes, outs):
            per_sol[i].append(r)
            mc[i][t - 1] = sum(r) / K
            used[i] += K
        labels = []
        for i, f in enumerate(finals):
            outcomes = per_sol[i] + [[f.correct] * K]  # [S, K]
            labels.append([round(float(x), 6) for x in LABELS[cfg.method](outcomes, cfg.eta)])
    return [{"id": s.id, "prompt": s.problem.prompt, "steps": s.steps, "labels": labels[i], "label_kind": cfg.method,
             "rollouts": K, "mc": mc[i], "answer": s.problem.answer, "pred": finals[i].pred, "correct": bool(finals[i].correct),
             "rollouts_used": used[i], "problem_id": s.problem.id} for i, s in enumerate(sols)]


# ---------------------------------------------------------------- the resumable driver


def done_ids(path: Path) -> set[str]:
    """Ids already in a labels file. A torn last line (crash mid-write) is cut off; any other bad line is
    a DataError naming the file and line."""
    path = Path(path)
    if not path.exists():
        return set()
    raw = path.read_bytes()
    # every row is written with its newline, so text after the last newline is a torn write: cut it off
    good_end = raw.rfind(b"\n") + 1
    ids = set()
    for line_no, line in enumerate(raw[:good_end].split(b"\n")[:-1], 1):
        if not line.strip():
            continue
        try:
            ids.add(str(json.loads(line)["id"]))
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise DataError(f"{path}:{line_no}: malformed labels row: {e}") from e
    if good_end < len(raw):
        with path.open("r+b") as f:
            f.truncate(good_end)
    return ids


def label_solutions(policy, verifier, solutions: list[Solution], cfg: LabelConfig, out: str | Path, *, progress=None) -> dict:
    """Label every solution not yet in `out`, appending one JSONL row per solution, a chunk at a time.

    Chunks are cut from the full list (not from what is left), and chunk c always samples with seed
    cfg.seed + c, so a rerun after a crash writes exactly what an uninterrupted run would have.
    Returns counts: solutions labelled / skipped, prefixes and rollouts used, seconds.
    """
    if cfg.method not in METHODS:
        raise ValueError(f"unknown labelling method {cfg.method!r}; valid: {', '.join(METHODS)}")
    if cfg.rollouts < 1 or cfg.chunk < 1:
        raise ValueError(f"rollouts ({cfg.rollouts}) and chunk ({cfg.chunk}) must be >= 1")
    ids = [s.id for s in solutions]
    if len(set(ids)) != len(ids):
        raise ValueError("solution ids must be unique (resume keys rows by id)")
    if any(not s.steps for s in solutions):
        raise ValueError(f"solution {next(s.id for s in solutions if not s.steps)!r} has no steps")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = done_ids(out)
    stats = {"labelled": 0, "skipped": 0, "rollouts": 0, "prefixes": 0, "full_mc_rollouts": 0, "seconds": 0.0}
    t0 = time.perf_counter()
    with out.open("a", encoding="utf-8") as f:
        for c, start in enumerate(range(0, len(solutions), cfg.chunk)):
            todo = [s for s in solutions[start : start + cfg.chunk] if s.id not in done]
            stats["skipped"] += min(cfg.chunk, len(solutions) - start) - len(todo)
            if todo:
                rows = _label_chunk(policy, verifier, todo, cfg, cfg.seed + c)
                # one write per chunk, then flush + fsync: a crash tears at most this chunk
                f.write("".join(json.dumps(r) + "\n" for r in rows))
                f.flush()
                os.fsync(f.fileno())
                stats["labelled"] += len(rows)
                stats["rollouts"] += sum(r["rollouts_used"] for r in rows)
                stats["prefixes"] += sum(r["rollouts_used"] for r in rows) // cfg.rollouts
                # what Math-Shepherd would have spent: every prefix but the verified last one
                stats["full_mc_rollouts"] += sum((len(r["steps"]) - 1) * cfg.rollouts for r in rows)
            if progress is not None:
                progress(min(cfg.chunk, len(solutions) - start), rollouts=stats["rollouts"])
    stats["seconds"] = time.perf_counter() - t0
    return stats


def read_labels(path: str | Path) -> list[dict]:
    """Rows of a labels file (after a torn last line, if any, is cut off)."""
    done_ids(path)
    return [json.loads(l) for l in Path(path).read_text(encoding="utf-8").splitlines() if l.strip()]


def sample_solutions(policy, problems: list[Problem], n: int, *, temperature: float = 1.0, max_new_tokens: int = 64,
                     seed: int = 0, chunk: int = 32, progress=None) -> list[Solution]:
    """n sampled solutions per problem, split into steps, with ids `<problem id>#<j>`. Seeded per chunk
    of problems, so a rerun draws the same solutions; empty completions (no step) are left out."""
    out: list[Solution] = []
    for c, start in enumerate(range(0, len(problems), chunk)):
        batch = problems[start : start + chunk]
        params = SamplingParams(n=n, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed * 1_000_003 + c)
        for p, group in zip(batch, policy.generate([p.prompt for p in batch], params)):
            out += [Solution(f"{p.id}#{j}", p, c_.steps) for j, c_ in enumerate(group) if c_.steps]
        if progress is not None:
            progress(len(batch))
    return out
