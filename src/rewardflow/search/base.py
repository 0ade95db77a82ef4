"""Types every search strategy shares: its config, its result, and the compute it spent per model.

A strategy is `search(problems, policy, scorer, cfg, *, draft=None) -> list[SearchResult]` (see
`registry.STRATEGIES`). Compute is booked per model name: "policy" (or "draft" and "target" for
speculative decoding) and "scorer".
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from ..data.problem import Problem
from ..eval.metrics import top_scored, vote
from ..verify.equiv import as_number, normalize
from ..verify.extract import extract_answer


@dataclass
class Compute:
    """What one model spent. FLOPs follow the usual forward-pass estimate 2 * params * tokens (Kaplan et al.
    2020, "Scaling Laws for Neural Language Models", Table 1), counted apart for prompt tokens read
    (prefill), tokens sampled one by one (decode) and tokens read by a scorer."""

    tokens_generated: int = 0  # tokens sampled (decode)
    tokens_prefill: int = 0  # prompt/prefix tokens read before sampling, and teacher-forced tokens
    tokens_scored: int = 0  # tokens a scorer read (its own model's view of prompt + solution)
    flops_prefill: float = 0.0  # 2 * params * tokens_prefill
    flops_decode: float = 0.0  # 2 * params * tokens_generated
    flops_scored: float = 0.0  # 2 * scorer params * tokens_scored (0 for a scorer without a model, e.g. the verifier)
    seconds: float = 0.0  # wall time, shared out over the problems of a batched call by their rows
    calls: int = 0  # model calls (generate / score / forward) that touched this problem

    @property
    def flops(self) -> float:
        return self.flops_prefill + self.flops_decode + self.flops_scored

    def add(self, other: "Compute") -> "Compute":
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def to_dict(self) -> dict:
        return {**asdict(self), "flops": self.flops}


@dataclass
class Candidate:
    """One finished (or cut-off) solution a strategy considered."""

    steps: list[str]
    answer: str | None  # extract_answer of the text
    score: float | None = None  # the strategy's score of it (aggregated reward, self-certainty, ...)
    finished: bool = True  # False when cut off by max_steps / max tokens
    extra: dict = field(default_factory=dict)  # strategy-specific numbers (votes, model that wrote each step ...)

    def text(self, delimiter: str = "\n") -> str:
        return delimiter.join(self.steps)


@dataclass
class SearchResult:
    problem_id: str
    answer: str | None  # the chosen answer
    text: str  # the chosen solution text
    candidates: list[Candidate]
    compute: dict[str, Compute]  # model name -> what it spent on this problem
    chosen: int | None = None  # index into candidates of the chosen solution
    info: dict = field(default_factory=dict)  # strategy diagnostics (acceptance rate, temperatures, ...)

    def total(self) -> Compute:
        out = Compute()
        for c in self.compute.values():
            out.add(c)
        return out


SELECTIONS = ("best", "weighted", "majority")
VALUE_SOURCES = ("prm", "rollout")
# particle filtering's resampling weights: softmax(logit r) (the reference) or softmax(r / tau)
WEIGHTINGS = ("logit", "tempered")


@dataclass
class SearchConfig:
    # budget
    n: int = 8  # N: samples (best-of-N), beams, chains (speculative) or particles
    beam_width: int = 4  # M: children per expanded node (beam, DVTS, MCTS); DVTS runs N/M subtrees
    simulations: int = 0  # MCTS simulations per problem (0: use n)
    # generation
    delimiter: str = "\n"  # step delimiter: step-level search stops generation at it
    max_steps: int = 8  # at most this many steps per solution in step-level search
    max_step_tokens: int = 32  # token budget of one step
    max_new_tokens: int = 64  # token budget of one full solution (sampling strategies)
    temperature: float = 1.0  # sampling temperature
    top_p: float = 1.0  # nucleus sampling
    # scoring and choice
    aggregation: str = "last"  # step scores -> one number: outcome or a rewards.AGGREGATIONS key (min | prod | last | mean | geo_mean)
    select: str = "best"  # final choice among candidates: best (top score) | weighted (summed score per answer) | majority
    lookahead: int = 0  # beam / particle: greedy steps rolled out before scoring a step (Snell et al. 2024)
    # strategy knobs
    puct_c: float = 1.0  # MCTS exploration constant c in PUCT
    mcts_value: str = "prm"  # MCTS leaf value: prm (score of the new step) | rollout (outcome of a sampled completion)
    rebase_temperature: float = 0.2  # REBASE: T_b in softmax(r / T_b) that shares out the expansion budget
    delta: float = 0.7  # speculative decoding: a draft step is kept when its score >= delta
    pf_weighting: str = "logit"  # particle filtering: logit (softmax(logit r), Puri et al. 2025, the reference) | tempered (softmax(r / pf_temperature))
    pf_temperature: float = 0.2  # particle filtering, tempered weighting only: base temperature of softmax(r / tau)
    entropy_threshold: float = 0.5  # particle filtering: anneal when exp(H(w)) / N falls below this
    borda_power: float = 0.5  # self-certainty Borda vote: rank r gets (N - r + 1) ** p votes
    seed: int = 0  # seeds every sampling call and every resampling draw
    chunk: int = 512  # most sequences per policy call (bounds memory at large N)
    prefix_cache: bool = True  # models that can (HFPolicy) keep keys/values across calls and read a prompt once for its n samples
    compile_decode: bool = False  # HFPolicy's decode step through torch.compile: step-wise search runs small batches, where it pays

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        from ..rewards.base import AGGREGATIONS

        checks = [
            ("n", self.n >= 1, "must be >= 1"),
            ("beam_width", self.beam_width >= 1, "must be >= 1"),
            ("simulations", self.simulations >= 0, "must be >= 0"),
            ("delimiter", bool(self.delimiter), "must not be empty"),
            ("max_steps", self.max_steps >= 1, "must be >= 1"),
            ("max_step_tokens", self.max_step_tokens >= 1, "must be >= 1"),
            ("max_new_tokens", self.max_new_tokens >= 1, "must be >= 1"),
            ("temperature", self.temperature >= 0, "must be >= 0"),
            ("aggregation", self.aggregation in ("outcome", *AGGREGATIONS), f"must be one of outcome, {', '.join(AGGREGATIONS)}"),
            ("select", self.select in SELECTIONS, f"must be one of {', '.join(SELECTIONS)}"),
            ("lookahead", self.lookahead >= 0, "must be >= 0"),
            ("mcts_value", self.mcts_value in VALUE_SOURCES, f"must be one of {', '.join(VALUE_SOURCES)}"),
            ("rebase_temperature", self.rebase_temperature > 0, "must be > 0"),
            ("pf_weighting", self.pf_weighting in WEIGHTINGS, f"must be one of {', '.join(WEIGHTINGS)}"),
            ("pf_temperature", self.pf_temperature > 0, "must be > 0"),
            ("entropy_threshold", 0 <= self.entropy_threshold <= 1, "must be in [0, 1]"),
            ("chunk", self.chunk >= 1, "must be >= 1"),
        ]
        for name, ok, why in checks:
            if not ok:
                raise ValueError(f"SearchConfig.{name}={getattr(self, name)!r}: {why}")


# ---------------------------------------------------------------- answers


def answer_key(answer: str | None) -> str | None:
    """The key equal answers share: the exact value for plain numbers ("3.0", "3" -> "3"), else the
    normalised string (verify.equiv.normalize). We group by key rather than by pairwise `is_equiv`, whose
    math-verify fallback costs sympy time per pair (N^2 pairs) with no time limit."""
    if answer is None:
        return None
    value = as_number(answer)
    return str(value) if value is not None else normalize(answer)


def candidate(steps: list[str], delimiter: str, **kw) -> Candidate:
    return Candidate(steps=list(steps), answer=extract_answer(delimiter.join(steps)), **kw)


def choose(cands: list[Candidate], how: str) -> int | None:
    """Index of the chosen candidate, by eval.metrics' one best-of-N and one vote (shared with reward-model
    evaluation and the benchmarks). best: top score (ties: earliest; a missing or NaN score never wins); weighted:
    the answer with the largest summed score (Uesato et al. 2022; Li et al. 2023), then its top-scored candidate;
    majority: the most frequent answer, then its first candidate (Wang et al. 2023, self-consistency). Answers are
    grouped by `answer_key`."""
    if how not in SELECTIONS:
        raise ValueError(f"unknown selection {how!r}; valid: {', '.join(SELECTIONS)}")
    if not cands:
        return None
    if how == "best":
        return top_scored([c.score for c in cands])[0]
    if how == "majority":
        return choose_by_vote(cands, [1.0] * len(cands), then="first")
    # weighted voting sums raw scores (a missing score counts 0), so it suits scorers in [0, 1]
    return choose_by_vote(cands, [0.0 if c.score is None or math.isnan(c.score) else c.score for c in cands])


def choose_by_vote(cands: list[Candidate], weights: list[float], *, then: str = "best") -> int | None:
    """The answer (by `answer_key`) with the largest summed weight, ties to the answer seen first (eval.metrics.vote),
    then among its candidates the top-scored ("best") or the first ("first"); nobody answering falls back to the
    top score."""
    if not cands:
        return None
    scores = [c.score for c in cands]
    keys = [answer_key(c.answer) for c in cands]
    winners = vote(keys, weights)
    if not winners:
        return top_scored(scores)[0]
    members = [i for i, k in enumerate(keys) if k == keys[winners[0]]]
    return members[0] if then == "first" else top_scored(scores, members)[0]


def choose_final(cands: list[Candidate], how: str) -> int | None:
    """`choose` among finished candidates when there are any, else among all (cut-off ones)."""
    done = [i for i, c in enumerate(cands) if c.finished]
    if not done or len(done) == len(cands):
        return choose(cands, how)
    j = choose([cands[i] for i in done], how)
    return done[j]


def make_result(problem: Problem, cands: list[Candidate], chosen: int | None, compute: dict[str, Compute], delimiter: str,
                info: dict | None = None) -> SearchResult:
    if chosen is None:
        return SearchResult(problem.id, None, "", cands, compute, None, info or {})
    return SearchResult(problem.id, cands[chosen].answer, cands[chosen].text(delimiter), cands, compute, chosen, info or {})
