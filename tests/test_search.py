"""search/: every strategy on a scripted fake policy and a table scorer, with choices and compute checked by hand.

The fake policy knows a few full solutions per prompt. Asked for one step after a prefix, it proposes the next
line of each solution that starts with that prefix, in script order, cycling on successive samples (greedy
always takes the first); asked for the rest of a solution, it cycles through the matching remainders. One
token per character, plus one <eos> token when a solution ends; prompt tokens = len(prompt) + len(prefix).
"""
from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from rewardflow.data.problem import Problem
from rewardflow.policy.base import Completion
from rewardflow.rewards.base import StepScores
from rewardflow.search import (STRATEGIES, SearchConfig, accept_mask, answer_key, borda_votes, entropic_temperature, puct,
                               rebase_widths, self_certainty_from_logprobs)
from rewardflow.search.mcts import step_priors
from rewardflow.search.particle import particle_log_weights
from rewardflow.search.tree import Path, refill_counts, top_in_order

EOS = 999
PARAMS = 1000  # fake policy parameters: 2 * 1000 = 2000 FLOPs per token
SCORER_PARAMS = 100  # fake scorer: 200 FLOPs per scored token


class FakePolicy:
    def __init__(self, solutions: dict[str, list[str]], num_params: int = PARAMS, logprob: float = -0.5, dists=None):
        self.solutions, self.num_params, self.logprob = solutions, num_params, logprob
        self.dists = dists or {}  # completion text -> next-token distribution (same at every position)
        self.pos: Counter = Counter()
        self.calls: list[tuple] = []

    def _options(self, prompt: str, prefix: str, step: bool) -> list[tuple[str, str]]:
        out = []
        for sol in self.solutions[prompt]:
            if not sol.startswith(prefix) or sol == prefix.rstrip("\n"):
                continue
            rest = sol[len(prefix):]
            if step and "\n" in rest:
                out.append((rest.split("\n", 1)[0] + "\n", "stop"))
            else:
                out.append((rest, "eos"))
        assert out, f"no scripted continuation of {prefix!r}"
        return out

    def generate(self, prompts, params, prefixes=None):
        prefixes = prefixes or [""] * len(prompts)
        self.calls.append((len(prompts), params.n, params.temperature, params.stop))
        groups = []
        for prompt, prefix in zip(prompts, prefixes):
            options = self._options(prompt, prefix, step=bool(params.stop))
            group = []
            for _ in range(params.n):
                key = (prompt, prefix, bool(params.stop))
                text, reason = options[0] if params.temperature == 0 else options[self.pos[key] % len(options)]
                if params.temperature != 0:
                    self.pos[key] += 1
                ids = list(range(len(text))) + ([EOS] if reason == "eos" else [])
                group.append(Completion(text, ids, torch.full((len(ids),), self.logprob), reason, len(prompt) + len(prefix)))
            groups.append(group)
        return groups

    def token_distributions(self, prompts, completions, prefixes=None):
        """The optional full-distribution hook self-certainty calls: one [T, V] block per completion."""
        for r, c in enumerate(completions):
            p = torch.tensor(self.dists[c.text])  # [V]
            yield [r], p.log().expand(1, len(c.token_ids), -1), torch.ones(1, len(c.token_ids))


class TableScorer:
    """Step k's score = table[steps 1..k joined by newlines]; outcome = the score of the whole text."""

    num_params = SCORER_PARAMS

    def __init__(self, table: dict[str, float], outcome_only: bool = False):
        self.table, self.outcome_only = table, outcome_only
        self.seen: list[list[str]] = []

    def score(self, problems, solutions):
        out = []
        for steps in solutions:
            self.seen.append(list(steps))
            values = [self.table["\n".join(steps[: k + 1])] for k in range(len(steps))]
            out.append(StepScores(steps=[] if self.outcome_only else values, outcome=values[-1]))
        return out


Q = Problem(id="q", prompt="Q?", answer="2", task="t")
# 13, 13, 11 and 11 characters
SOLS = {"Q?": ["a\nb\nAnswer: 1", "a\nc\nAnswer: 2", "d\nAnswer: 2", "e\nAnswer: 1"]}
TABLE = {"a": 0.9, "a\nb": 0.2, "a\nb\nAnswer: 1": 0.9, "a\nc": 0.8, "a\nc\nAnswer: 2": 0.7,
         "d": 0.3, "d\nAnswer: 2": 0.95, "e": 0.6, "e\nAnswer: 1": 0.9}
S1, S2, S3, S4 = SOLS["Q?"]
# Step tokens: "a\n" = 2, "Answer: N" + <eos> = 10. Scored tokens (no tokenizer): ceil(len("Q?\n" + text) / 4):
# "Q?\na" -> 1, "Q?\na\nb" -> 2, a 3-step solution (16 chars) -> 4, a 2-step one (14 chars) -> 4.


def run(name, *, cfg=None, table=TABLE, sols=SOLS, draft=None, **kw):
    policy, scorer = FakePolicy(sols, **kw), TableScorer(table)
    cfg = cfg or SearchConfig(n=4, beam_width=2, seed=0)
    [res] = STRATEGIES[name]([Q], policy, scorer, cfg, draft=draft)
    return res, policy, scorer


# ---------------------------------------------------------------- pure pieces


def test_self_certainty_is_mean_kl_from_uniform():
    # V = 2. p = (0.5, 0.5): KL(U||p) = 0. p = (0.9, 0.1): KL = -log 2 - (log 0.9 + log 0.1) / 2
    #   = -0.693147 + (0.105361 + 2.302585) / 2 = 0.510826. A row of both, mask on both tokens: mean 0.255413.
    logp = torch.tensor([[[0.5, 0.5], [0.9, 0.1]], [[0.9, 0.1], [0.5, 0.5]]]).log()  # [2, 2, 2]
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])  # row 2 has only its first token
    sc = self_certainty_from_logprobs(logp, mask)
    assert sc.tolist() == pytest.approx([0.2554128, 0.5108256], abs=1e-6)
    # KL(U || p) >= 0 and larger for a peaked p: a sign error would rank the uniform row higher
    assert sc[1] > sc[0] > 0


def test_borda_votes():
    # N = 3, certainties (0.2, 0.9, 0.5): ranks 3, 1, 2 -> votes (3-3+1)^p, (3-1+1)^p, (3-2+1)^p = 1, 3, 2 at p = 1
    assert borda_votes([0.2, 0.9, 0.5], 1.0) == [1.0, 3.0, 2.0]
    assert borda_votes([0.2, 0.9, 0.5], 0.5) == pytest.approx([1.0, math.sqrt(3), math.sqrt(2)], abs=1e-12)
    assert borda_votes([0.2, 0.9, 0.5], 0.0) == [1.0, 1.0, 1.0]  # p = 0: plain majority voting


def test_rebase_widths():
    # r = (0, ln 3 * 0.5) at T_b = 0.5: exp(r / T_b) = (1, 3) -> shares of B = 4: (1, 3)
    assert rebase_widths([0.0, 0.5 * math.log(3)], 4, 0.5) == [1, 3]
    # r = (1, 1, 1), B = 4: shares 4/3 each -> floors (1, 1, 1), one left goes to the first (largest remainder, stable)
    assert rebase_widths([1.0, 1.0, 1.0], 4, 0.2) == [2, 1, 1]
    # a higher reward must get more children (a flipped sign would give it fewer)
    w = rebase_widths([0.9, 0.1], 10, 0.2)  # exp(4.5) : exp(0.5) = 90.0 : 1.6 -> shares 9.8, 0.2 -> (10, 0)
    assert w == [10, 0]
    assert rebase_widths([0.3], 0, 0.1) == [0]


def test_puct_and_priors():
    # Q + c P sqrt(N) / (1 + n) = 0.5 + 2 * 0.25 * sqrt(16) / (1 + 3) = 0.5 + 0.5 = 1.0
    assert puct(0.5, 0.25, 16, 3, 2.0) == pytest.approx(1.0, abs=1e-12)
    # softmax of mean logprobs (-1, -1 + ln 3): (1/4, 3/4)
    assert step_priors([-1.0, -1.0 + math.log(3)]) == pytest.approx([0.25, 0.75], abs=1e-12)


def test_entropic_temperature():
    # uniform values: w uniform, exp(H) = N, ESS/N = 1 >= threshold: tau0 unchanged
    assert entropic_temperature(torch.zeros(4), 0, 4, 0.2, 0.5) == (0.2, pytest.approx(1.0))
    # v = (1, 0, 0, 0), tau0 = 0.1: w = (e^10, 1, 1, 1) / (e^10 + 3); e^10 = 22026.466
    #   w1 = 0.9998638, w = 4.53937e-5; H = -(w1 ln w1 + 3 w ln w) = 0.0001362 + 3 * 4.53937e-5 * 10.000136 = 0.0014980
    #   ESS/N = exp(H) / 4 = 1.0014991 / 4 = 0.2503748 < 0.5 -> tau = 0.1 * max(1, 4 / 1.0014991 * (1 - 1/4)) = 0.2995509
    tau, ess = entropic_temperature(torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64), 1, 4, 0.1, 0.5)
    assert ess == pytest.approx(0.2503748, abs=1e-6)
    assert tau == pytest.approx(0.2995509, abs=1e-6)
    # near the horizon the annealing fades: t = 3 of 4 -> 4 / exp(H) * 1/4 = 0.9986 < 1 -> tau0
    assert entropic_temperature(torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64), 3, 4, 0.1, 0.5)[0] == 0.1


def test_accept_mask_and_answer_key():
    assert accept_mask([0.69, 0.7, 0.95], 0.7) == [False, True, True]
    assert answer_key("3.0") == answer_key("3") == "3"
    assert answer_key(" x ") == "x" and answer_key(None) is None


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="SearchConfig.aggregation"):
        SearchConfig(aggregation="median")
    with pytest.raises(ValueError, match="SearchConfig.n"):
        SearchConfig(n=0)


def compute(res, model):
    c = res.compute[model]
    return c.tokens_generated, c.tokens_prefill, c.tokens_scored, c.flops


# ---------------------------------------------------------------- strategies over N full samples


def test_majority():
    res, policy, _ = run("majority", cfg=SearchConfig(n=3))
    # samples S1, S2, S3 -> answers 1, 2, 2 -> "2"; its first sample is S2
    assert (res.answer, res.text, res.chosen) == ("2", S2, 1)
    # generated 14 + 14 + 12 = 40 tokens, prefill 3 x len("Q?") = 6; FLOPs 2 * 1000 * 46 = 92000; no scorer booked
    assert compute(res, "policy") == (40, 6, 0, 92000.0)
    assert set(res.compute) == {"policy"}
    c = res.compute["policy"]
    assert (c.flops_prefill, c.flops_decode) == (12000.0, 80000.0)


def test_best_of_n_and_aggregation():
    res, _, scorer = run("best_of_n", cfg=SearchConfig(n=4, aggregation="last"))
    # last-step scores: S1 0.9, S2 0.7, S3 0.95, S4 0.9 -> S3
    assert (res.answer, res.text) == ("2", S3)
    assert [c.score for c in res.candidates] == [0.9, 0.7, 0.95, 0.9]
    # generated 14 + 14 + 12 + 12 = 52, prefill 8: 2000 * 60 = 120000; scored 4 x 4 = 16 tokens: 200 * 16 = 3200
    assert compute(res, "policy") == (52, 8, 0, 120000.0)
    assert compute(res, "scorer") == (0, 0, 16, 3200.0)
    assert scorer.seen == [["a", "b", "Answer: 1"], ["a", "c", "Answer: 2"], ["d", "Answer: 2"], ["e", "Answer: 1"]]
    # min over steps: S1 0.2, S2 0.7, S3 0.3, S4 0.6 -> S2 (a different choice: the aggregation is really used)
    res, _, _ = run("best_of_n", cfg=SearchConfig(n=4, aggregation="min"))
    assert res.text == S2 and [c.score for c in res.candidates] == [0.2, 0.7, 0.3, 0.6]


def test_weighted_best_of_n():
    res, _, _ = run("weighted_best_of_n", cfg=SearchConfig(n=4, aggregation="last"))
    # summed scores: answer 1: 0.9 + 0.9 = 1.8 > answer 2: 0.7 + 0.95 = 1.65 -> "1" (best-of-N picked "2");
    # within answer 1, S1 and S4 tie at 0.9 -> the earlier, S1
    assert (res.answer, res.text) == ("1", S1)
    assert compute(res, "scorer") == (0, 0, 16, 3200.0)


DISTS = {S1: [0.99, 0.01], S2: [0.6, 0.4], S3: [0.9, 0.1]}
# KL(U || p) with V = 2: S1 -ln2 - (ln .99 + ln .01)/2 = 1.614463; S2 -ln2 - (ln .6 + ln .4)/2 = 0.020411; S3 0.510826


def test_self_certainty():
    res, _, _ = run("self_certainty", cfg=SearchConfig(n=3), dists=DISTS)
    assert [c.score for c in res.candidates] == pytest.approx([1.614463, 0.020411, 0.510826], abs=1e-6)
    assert (res.answer, res.text) == ("1", S1)  # the most certain sample
    # sampling: 40 generated, 6 prefill; teacher forcing reads prompt + completion: (2+14) + (2+14) + (2+12) = 46
    # prefill 6 + 46 = 52; FLOPs 2000 * (40 + 52) = 184000; no scorer
    assert compute(res, "policy") == (40, 52, 0, 184000.0)
    assert set(res.compute) == {"policy"}


def test_self_certainty_borda():
    res, _, _ = run("self_certainty_borda", cfg=SearchConfig(n=3, borda_power=0.5), dists=DISTS)
    # ranks S1 1, S3 2, S2 3 -> votes 3^.5 = 1.732, 2^.5 = 1.414 (S3), 1 (S2): answer 2 has 2.414 > 1.732 -> "2",
    # and its most certain sample, S3 (plain self-certainty chose S1)
    assert (res.answer, res.text) == ("2", S3)
    assert [c.extra["votes"] for c in res.candidates] == pytest.approx([math.sqrt(3), 1.0, math.sqrt(2)], abs=1e-12)
    # p = 1: votes 3, 1, 2 -> a 3 : 3 tie -> the first-seen answer, "1"
    res, _, _ = run("self_certainty_borda", cfg=SearchConfig(n=3, borda_power=1.0), dists=DISTS)
    assert res.answer == "1"


def test_self_certainty_needs_distributions():
    class NoModel(FakePolicy):
        token_distributions = None

    with pytest.raises(TypeError, match="full next-token distributions"):
        STRATEGIES["self_certainty"]([Q], NoModel(SOLS), None, SearchConfig(n=1))


# ---------------------------------------------------------------- step-level tree search


def test_beam():
    res, _, _ = run("beam", cfg=SearchConfig(n=4, beam_width=2))
    # depth 0: 4 first steps a, a, d, e (values .9 .9 .3 .6) -> keep N/M = 2: a, a
    # depth 1: each a -> b, c (.2 .8 .2 .8) -> keep c, c;  depth 2: each -> "Answer: 2" (done, .7) x 2
    assert (res.answer, res.text) == ("2", S2)
    assert [c.text() for c in res.candidates] == [S2] * 4
    # generated 4*2 + 4*2 + 4*10 = 56; prefill 4*2 + 4*(2+2) + 4*(2+4) = 48 -> 2000 * 104 = 208000
    # scored 4*1 + 4*2 + 4*4 = 28 -> 200 * 28 = 5600
    assert compute(res, "policy") == (56, 48, 0, 208000.0)
    assert compute(res, "scorer") == (0, 0, 28, 5600.0)


def test_beam_lookahead():
    res, policy, _ = run("beam", cfg=SearchConfig(n=4, beam_width=2, lookahead=1))
    # look-ahead 1 greedy step: a -> a,b (.2) twice, d -> d,Answer: 2 (.95), e -> e,Answer: 1 (.9) -> keep d, e;
    # each expanded twice -> S3, S3 (.95), S4, S4 (.9) -> S3
    assert (res.answer, res.text) == ("2", S3)
    assert [c.text() for c in res.candidates] == [S3, S3, S4, S4]
    # generated: 8 (depth 0) + 2+2+10+10 (look-ahead) + 4*10 (depth 1) = 72; prefill 8 + 4*4 + 4*4 = 40 -> 2000 * 112
    # scored: 4*1 + (2+2+4+4) + 4*4 = 32
    assert compute(res, "policy") == (72, 40, 0, 224000.0)
    assert compute(res, "scorer") == (0, 0, 32, 6400.0)
    assert any(t == 0.0 for _, _, t, _ in policy.calls)  # the look-ahead is greedy


def test_dvts():
    res, _, _ = run("dvts", cfg=SearchConfig(n=4, beam_width=2))
    # two subtrees, each root expanded twice: tree 0 a, a (keep a), tree 1 d (.3), e (.6) (keep e)
    # tree 0: a -> b .2, c .8 -> keep c -> "Answer: 2" x 2 (.7); tree 1: e -> "Answer: 1" x 2 (.9) -> best: S4
    # candidates: each tree's last two children, tree 0 first
    assert (res.answer, res.text) == ("1", S4)
    assert [c.text() for c in res.candidates] == [S2, S2, S4, S4]
    # generated 8 + (4 + 20) + 20 = 52; prefill 8 + (2*4 + 2*4) + 2*6 = 36; scored 4 + (4 + 8) + 8 = 24
    assert compute(res, "policy") == (52, 36, 0, 176000.0)
    assert compute(res, "scorer") == (0, 0, 24, 4800.0)


def test_refill_counts_and_top_in_order():
    # search-and-learn repeats the kept list until it holds N: 3 kept, N 8 -> [b0 b1 b2 b0 b1 b2 b0 b1] -> 3, 3, 2
    assert refill_counts(3, 8) == [3, 3, 2] and refill_counts(2, 4) == [2, 2] and refill_counts(1, 4) == [4]
    paths = [Path(steps=[s], value=v) for s, v in zip("wxyz", [0.5, 0.9, 0.5, 0.7])]
    # top 2: x (.9), z (.7), listed in their original order; top 3 takes w over y at the .5 tie
    assert [p.steps[0] for p in top_in_order(paths, 2)] == ["x", "z"]
    assert [p.steps[0] for p in top_in_order(paths, 3)] == ["w", "x", "z"]


def test_beam_refills_the_active_set_to_n():
    res, _, _ = run("beam", cfg=SearchConfig(n=4, beam_width=1))
    # keep N/M = 4. depth 0: a, a, d, e (all unfinished, all kept), one child each: a -> b, a -> c, d -> S3 (done),
    # e -> S4 (done). depth 1 leaves 2 unfinished (a/b, a/c) < 4: refilled to N = 4, two children each ->
    # S1, S1, S2, S2 (a plain "M children per kept beam" expands them once each: S1, S2).
    # Candidates: the first N = 4 to finish -> S3, S4, S1, S1; best S3 (.95)
    assert [c.text() for c in res.candidates] == [S3, S4, S1, S1]
    assert (res.answer, res.text) == ("2", S3)
    # generated 4*2 + (2+2+10+10) + 4*10 = 72; prefill 4*2 + 4*4 + 4*6 = 48 -> 2000 * 120 = 240000
    # scored 4*1 + (2+2+4+4) + 4*4 = 32 -> 6400
    assert compute(res, "policy") == (72, 48, 0, 240000.0)
    assert compute(res, "scorer") == (0, 0, 32, 6400.0)


def test_dvts_stops_at_a_finished_argmax_child():
    sols = {"Q?": ["a\nAnswer: 2", "a\nb\nAnswer: 1"]}
    table = {"a": 0.5, "a\nAnswer: 2": 0.9, "a\nb": 0.4, "a\nb\nAnswer: 1": 0.8}
    res, _, _ = run("dvts", cfg=SearchConfig(n=2, beam_width=2), sols=sols, table=table)
    # one subtree: root -> a, a (.5, .5) -> the first a -> "Answer: 2" (.9, finished), "b" (.4): the argmax child is
    # finished, so the subtree stops there (continuing through "b" would add "Answer: 1" x 2)
    assert [(c.text(), c.finished) for c in res.candidates] == [("a\nAnswer: 2", True), ("a\nb", False)]
    assert res.answer == "2"
    # generated 2*2 + (10 + 2) = 16; prefill 2*2 + 2*4 = 12 -> 2000 * 28 = 56000; scored 2*1 + (4 + 2) = 8
    assert compute(res, "policy") == (16, 12, 0, 56000.0)
    assert compute(res, "scorer") == (0, 0, 8, 1600.0)


def test_rebase():
    res, _, _ = run("rebase", cfg=SearchConfig(n=4, rebase_temperature=0.2))
    # root -> a, a, d, e (.9 .9 .3 .6); exp(v/.2) = 90.02, 90.02, 4.48, 20.09 -> shares of 4: 1.76 1.76 .09 .39 -> 2 2 0 0
    # a -> b, c twice (.2 .8 .2 .8): shares .09 1.91 .09 1.91 -> 0 2 0 2 -> four "Answer: 2" -> S2
    assert (res.answer, res.text) == ("2", S2)
    assert [c.text() for c in res.candidates] == [S2] * 4
    assert compute(res, "policy") == (56, 48, 0, 208000.0)
    # a flat T_b = 10: shares 1.022 1.022 .963 .992 -> floors 1 1 0 0, the 2 left go to e then d -> 1 1 1 1:
    # a -> b, a -> c, d -> S3 (done), e -> S4 (done); budget 4 - 2 = 2 over ab (.2), ac (.8): shares .97, 1.03 -> 1, 1
    res, _, _ = run("rebase", cfg=SearchConfig(n=4, rebase_temperature=10.0, select="weighted"))
    assert [c.text() for c in res.candidates] == [S3, S4, S1, S2]
    # weighted: answer 1: .9 + .9 = 1.8 > answer 2: .95 + .7 = 1.65 -> "1", S4 before S1 at a .9 tie
    assert (res.answer, res.text) == ("1", S4)
    # generated 8 + (2+2+10+10) + (10+10) = 52; prefill 8 + (4+4+4+4) + (6+6) = 36
    assert compute(res, "policy") == (52, 36, 0, 176000.0)


def test_mcts_prm_value():
    res, _, _ = run("mcts", cfg=SearchConfig(n=4, beam_width=2, puct_c=1.0, mcts_value="prm"))
    # sim 1: root -> a1, a2 (.9 each, priors .5). root N=2 W=1.8
    # sim 2: PUCT .9 + .5*sqrt(2)/2 for both -> a1 -> b (.2), c (.8); a1 N=3 W=1.9; root N=4 W=3.8
    # sim 3: a1 .633 + .5*2/4 = .883 < a2 .9 + .5*2/2 = 1.4 -> a2 -> b, c; root N=6 W=5.8... (a2 N=3 W=1.9)
    #   root W = 1.8 + 1.0 + 1.0 = 3.8 after sim 3 (each child's value is added once)
    # sim 4: a1 = a2 = .633 + .5*sqrt(6)/4 -> a1; in a1: b .2 + .5*sqrt(3)/2 = .633 < c .8 + .433 -> c -> two "Answer: 2"
    #   (.7 each): root N = 8, W = 3.8 + 1.4 = 5.2
    assert (res.answer, res.text) == ("2", S2)
    assert [c.text() for c in res.candidates] == [S2, S2]
    assert res.info["root_visits"] == 8 and res.info["root_value"] == pytest.approx(5.2 / 8, abs=1e-12)
    # generated 4 + 4 + 4 + 20 = 32; prefill 2*2 + 2*4 + 2*4 + 2*6 = 32; scored 2 + 4 + 4 + 8 = 18
    assert compute(res, "policy") == (32, 32, 0, 128000.0)
    assert compute(res, "scorer") == (0, 0, 18, 3600.0)


def test_mcts_completes_an_unfinished_search():
    res, _, _ = run("mcts", cfg=SearchConfig(n=1, simulations=1, beam_width=2))
    # one simulation: root -> a, a (nothing finished) -> the most-visited path (the first a) is rolled out: S1
    assert (res.answer, res.text) == ("1", S1) and res.candidates[0].finished
    # generated 2*2 + 12 = 16; prefill 2*2 + (2+2) = 8; scored 2*1 + 4 = 6
    assert compute(res, "policy") == (16, 8, 0, 48000.0)
    assert compute(res, "scorer") == (0, 0, 6, 1200.0)


def test_mcts_rollout_value():
    res, _, _ = run("mcts", cfg=SearchConfig(n=1, simulations=1, beam_width=2, mcts_value="rollout"))
    # root -> a, a; roll-outs from "a\n" cycle the remainders of S1 then S2: values .9 and .7 -> best S1
    assert (res.answer, res.text) == ("1", S1)
    assert [c.text() for c in res.candidates] == [S1, S2]
    # generated 2*2 + 12 + 12 = 28; prefill 2*2 + 2*4 = 12; scored 2*1 + 2*4 = 10
    assert compute(res, "policy") == (28, 12, 0, 80000.0)
    assert compute(res, "scorer") == (0, 0, 10, 2000.0)


def test_mcts_rollout_values_share_one_scale():
    sols = {"Q?": ["a\nAnswer: 2", "a\nb\nAnswer: 1"]}
    table = {"a": 0.5, "a\nAnswer: 2": 0.9, "a\nb": 0.4, "a\nb\nAnswer: 1": 0.8}
    cfg = SearchConfig(n=1, simulations=2, beam_width=2, mcts_value="rollout", aggregation="min", puct_c=1.0)
    res, _, _ = run("mcts", cfg=cfg, sols=sols, table=table)
    # sim 1: root -> a1, a2 (priors .5); roll-outs a,Answer: 2 (min(.5, .9) = .5) and a,b,Answer: 1 (min .4):
    #   Q(a1) = .5, Q(a2) = .4; root N = 2, W = .9
    # sim 2: PUCT a1 .5 + .5 * sqrt(2) / 2 = .854 > a2 .754 -> a1 -> "Answer: 2" (finished: [.5, .9]) and "b" (roll-out
    #   a,b,Answer: 1, min .4). The finished child's value is its own min, .5 -- the same scale as the roll-outs
    #   (its last step score .9 would give root W = 2.2, Q = .55). Root N = 4, W = .9 + .5 + .4 = 1.8 -> Q = .45
    assert res.info["root_visits"] == 4 and res.info["root_value"] == pytest.approx(1.8 / 4, abs=1e-12)
    # candidates: the three roll-outs, then the finished child; min scores .5, .4, .4, .5 -> the first .5
    assert [c.text() for c in res.candidates] == ["a\nAnswer: 2", "a\nb\nAnswer: 1", "a\nb\nAnswer: 1", "a\nAnswer: 2"]
    assert [c.score for c in res.candidates] == [0.5, 0.4, 0.4, 0.5] and res.answer == "2"


def test_speculative():
    target = FakePolicy({"Q?": [S2]})
    draft = FakePolicy(SOLS, num_params=10)
    [res] = STRATEGIES["speculative"]([Q], target, TableScorer(TABLE), SearchConfig(n=1, delta=0.7), draft=draft)
    # draft "a" (.9 >= .7: kept); draft "b" (.2 < .7) -> target writes "c"; draft "Answer: 2" (.7 >= .7: kept)
    assert (res.answer, res.text) == ("2", S2)
    assert res.candidates[0].extra["writers"] == ["draft", "target", "draft"]
    assert res.info["draft_step_share"] == pytest.approx(2 / 3)
    # draft: generated 2 + 2 + 10 = 14, prefill 2 + 4 + 6 = 12 -> 2 * 10 * 26 = 520
    # target: generated 2, prefill 4 -> 2000 * 6 = 12000; scored 1 + 2 + 4 = 7 (N = 1: no final re-scoring)
    assert compute(res, "draft") == (14, 12, 0, 520.0)
    assert compute(res, "target") == (2, 4, 0, 12000.0)
    assert compute(res, "scorer") == (0, 0, 7, 1400.0)
    # delta above every score: the target writes every step, the draft's proposals are all wasted
    [res] = STRATEGIES["speculative"]([Q], FakePolicy({"Q?": [S2]}), TableScorer(TABLE), SearchConfig(n=1, delta=1.1),
                                      draft=FakePolicy(SOLS, num_params=10))
    assert res.candidates[0].extra["writers"] == ["target"] * 3 and res.text == S2
    with pytest.raises(ValueError, match="draft"):
        STRATEGIES["speculative"]([Q], target, TableScorer(TABLE), SearchConfig(n=1))


def run_particle(cfg, **kw):
    [res] = STRATEGIES["particle"]([Q], FakePolicy(SOLS), TableScorer(TABLE), cfg, **kw)
    return res


def test_particle_tempered():
    cfg = SearchConfig(n=2, pf_temperature=0.001, entropy_threshold=0.0, seed=0)
    res = run_particle(cfg, weighting="tempered")
    # t0: a, a (equal weights); t1: b (.2), c (.8): at tau .001 the weights are (e^-600, 1) -> both resample c;
    # t2: both -> "Answer: 2"
    assert [c.text() for c in res.candidates] == [S2, S2] and res.answer == "2"
    assert [step["tau"] for step in res.info["trace"]] == [0.001, 0.001]
    # generated 2*2 + 2*2 + 2*10 = 28; prefill 2*2 + 2*4 + 2*6 = 24; scored 2*1 + 2*2 + 2*4 = 14
    assert compute(res, "policy") == (28, 24, 0, 104000.0)
    assert compute(res, "scorer") == (0, 0, 14, 2800.0)
    # threshold .9: at t1 the weights are a point mass, ESS/N = 1/2 < .9 -> tau = .001 * max(1, 2/1 * (1 - 1/8)) = .00175
    res = run_particle(SearchConfig(n=2, pf_temperature=0.001, entropy_threshold=0.9, seed=0), weighting="tempered")
    assert [step["tau"] for step in res.info["trace"]] == pytest.approx([0.001, 0.00175], abs=1e-12)


def test_particle_log_weights_reference_vs_tempered():
    r = torch.tensor([0.99, 0.9, 0.5, 0.1], dtype=torch.float64)
    # Puri et al.: softmax(logit r) = odds / sum of odds; odds 99, 9, 1, 1/9 sum to 982/9 -> (891, 81, 9, 1) / 982
    # = (.90733, .08248, .00916, .00102)
    ref = torch.softmax(particle_log_weights(r), dim=0)
    torch.testing.assert_close(ref, torch.tensor([891, 81, 9, 1], dtype=torch.float64) / 982, atol=1e-12, rtol=0)
    # tempered, tau .2: exp((r - .99) / .2) = 1, e^-.45, e^-2.45, e^-4.45 = 1, .637628, .086294, .011679 (sum 1.735601)
    # -> (.57617, .36738, .04972, .00673)
    tempered = torch.softmax(particle_log_weights(r, "tempered", temperature=0.2), dim=0)
    e = torch.tensor([0.0, -0.45, -2.45, -4.45], dtype=torch.float64).exp()
    torch.testing.assert_close(tempered, e / e.sum(), atol=1e-12, rtol=0)
    assert abs(tempered[0].item() - 0.57617) < 1e-5 and abs(ref[0].item() - 0.90733) < 1e-5
    # a verifier's 0/1 scores are clamped to [1e-4, 1 - 1e-4]: logit = +-log(9999), finite
    torch.testing.assert_close(particle_log_weights(torch.tensor([1.0, 0.0], dtype=torch.float64)),
                               torch.tensor([math.log(9999), -math.log(9999)], dtype=torch.float64), atol=1e-9, rtol=0)
    with pytest.raises(ValueError, match="weighting"):
        particle_log_weights(r, "nope")


def test_particle_default_weighs_by_odds():
    # default weighting logit, no annealing (threshold 0): the base temperature is 1 whatever pf_temperature is
    # (today's tempered default would record tau = pf_temperature = .2 at every step)
    res = run_particle(SearchConfig(n=2, entropy_threshold=0.0, seed=0))
    assert [step["tau"] for step in res.info["trace"]] == [1.0, 1.0]
    # t1: b (.2), c (.8): odds .25 and 4 -> weights 1/17, 16/17; ESS_H / N = exp(H) / 2
    h = -(1 / 17) * math.log(1 / 17) - (16 / 17) * math.log(16 / 17)
    assert res.info["trace"][1]["ess_frac"] == pytest.approx(math.exp(h) / 2, abs=1e-12)
    with pytest.raises(ValueError, match="weighting"):
        run_particle(SearchConfig(n=2), weighting="nope")


def test_verifier_scorer_costs_no_flops():
    from rewardflow.rewards.verifier import VerifierScorer

    class Exact:  # a verifier stand-in judging in-process (no worker processes in a unit test)
        def verify(self, problems, texts):
            from rewardflow.verify import score_text

            return [score_text(p, t) for p, t in zip(problems, texts)]

    [res] = STRATEGIES["best_of_n"]([Q], FakePolicy(SOLS), VerifierScorer(Exact()), SearchConfig(n=4))
    # outcome scores 0, 1, 1, 0 -> the first correct sample
    assert [c.score for c in res.candidates] == [0.0, 1.0, 1.0, 0.0] and res.text == S2
    c = res.compute["scorer"]
    assert c.tokens_scored == 16 and c.flops == 0.0


def test_every_strategy_runs_on_two_problems():
    q2 = Problem(id="q2", prompt="R?", answer="7", task="t")
    sols = {**SOLS, "R?": ["x\nAnswer: 7"]}
    table = {**TABLE, "x": 0.5, "x\nAnswer: 7": 0.8}
    for name, fn in STRATEGIES.items():
        policy = FakePolicy(sols, dists={s: [0.5, 0.5] for p in sols.values() for s in p})
        draft = FakePolicy(sols, num_params=10) if name == "speculative" else None
        results = fn([Q, q2], policy, TableScorer(table), SearchConfig(n=2, beam_width=2), draft=draft)
        assert [r.problem_id for r in results] == ["q", "q2"], name
        assert results[1].answer == "7", name  # the only solution there is
        assert all(r.total().flops > 0 and r.total().seconds >= 0 for r in results), name


def test_run_search_batches_in_order():
    from rewardflow.search import run_search

    q2 = Problem(id="q2", prompt="R?", answer="7", task="t")
    ticks = []
    results = run_search("majority", [Q, q2], FakePolicy({**SOLS, "R?": ["x\nAnswer: 7"]}), None, SearchConfig(n=3),
                         batch_size=1, progress=ticks.append)
    assert [r.problem_id for r in results] == ["q", "q2"] and ticks == [1, 1]
    assert [r.answer for r in results] == ["2", "7"]
    with pytest.raises(ValueError, match="unknown search strategy"):
        run_search("nope", [Q], None, None, SearchConfig())
