"""Monte-Carlo tree search over reasoning steps with PUCT selection."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..data.problem import Problem
from ..rewards.base import aggregate
from .base import SearchConfig, SearchResult, choose_final, make_result
from .engine import Run, steps_of
from .tree import Path, expand_and_score, path_candidate


@dataclass
class Node:
    path: Path
    parent: "Node | None" = None
    prior: float = 1.0  # P(s, a)
    visits: int = 0  # N(s, a)
    value_sum: float = 0.0  # W(s, a)
    children: list["Node"] = field(default_factory=list)

    @property
    def q(self) -> float:
        return self.value_sum / self.visits if self.visits else 0.0


def puct(q: float, prior: float, parent_visits: int, child_visits: int, c: float) -> float:
    """PUCT (Silver et al. 2017, AlphaGo Zero, "Methods: Select"; Rosin 2011):
    Q(s, a) + c * P(s, a) * sqrt(N(s)) / (1 + N(s, a))."""
    return q + c * prior * math.sqrt(parent_visits) / (1 + child_visits)


def step_priors(mean_logprobs: list[float]) -> list[float]:
    """Priors P(s, a) of sampled sibling steps: softmax of their mean token logprob. We length-normalise
    because a whole step's probability exp(sum logprob) is vanishingly small and would put all prior mass
    on the shortest step."""
    top = max(mean_logprobs)
    e = [math.exp(x - top) for x in mean_logprobs]
    return [x / sum(e) for x in e]


def select_leaf(root: Node, c: float) -> Node:
    node = root
    while node.children:
        node = max(node.children, key=lambda ch: puct(ch.q, ch.prior, node.visits, ch.visits, c))  # ties: first child
    return node


def backup(node: Node | None, value: float) -> None:
    while node is not None:
        node.visits += 1
        node.value_sum += value
        node = node.parent


def mcts(problems: list[Problem], policy, scorer, cfg: SearchConfig, *, draft=None) -> list[SearchResult]:
    """MCTS over steps (in the manner of Zhang et al. 2024 "ReST-MCTS*" and Guan et al. 2025 "rStar-Math"),
    cfg.simulations per problem (0: cfg.n). One simulation:

    1. select: from the root, follow argmax PUCT (`puct`, c = cfg.puct_c) down to a leaf;
    2. expand: sample M = cfg.beam_width next steps; priors from their logprobs (`step_priors`);
    3. evaluate each child: mcts_value="prm" -> its step value (last step score, engine.step_value);
       "rollout" -> sample the rest of the solution from it and take the aggregated score of the whole; a
       finished child is valued by the aggregated score of itself (`_rollout_values`: one scale for all Q);
    4. back up: each child starts with N = 1, W = its value; every ancestor gets N += 1, W += value.

    A leaf that is finished (or at max_steps) is not expanded; its value is backed up again. Candidates are
    the finished nodes and the roll-outs; cfg.select chooses among them. If nothing finished (too few
    simulations to reach an end), the most-visited path is completed by one sampled roll-out (booked like
    any other generation) and returned.
    """
    run = Run(problems, cfg, scorer, {"policy": policy})
    roots = [Node(Path()) for _ in problems]
    found: list[list[Path]] = [[] for _ in problems]
    for _ in range(cfg.simulations or cfg.n):
        leaves = [select_leaf(r, cfg.puct_c) for r in roots]
        for leaf in leaves:
            if leaf.path.done:
                backup(leaf, leaf.path.value)
        items = [(i, leaf.path) for i, leaf in enumerate(leaves) if not leaf.path.done]
        if not items:
            continue
        children = expand_and_score(run, items, cfg.beam_width)
        if cfg.mcts_value == "rollout":
            _rollout_values(run, [(i, c) for (i, _), kids in zip(items, children) for c in kids], found)
        for (i, parent), kids in zip(items, children):
            leaf = leaves[i]
            for kid, prior in zip(kids, step_priors([k.logprob for k in kids])):
                node = Node(kid, parent=leaf, prior=prior, visits=1, value_sum=kid.value)
                leaf.children.append(node)
                backup(leaf, kid.value)
                if kid.done:
                    found[i].append(kid)
    unfinished = [(i, _most_visited(roots[i])) for i in range(len(problems)) if not found[i]]
    _rollout_values(run, unfinished, found)
    results = []
    for i, problem in enumerate(problems):
        paths = found[i] or [_most_visited(roots[i])]  # only a path that was already done (none: see above)
        cands = [path_candidate(p, cfg) for p in paths]
        info = {"root_visits": roots[i].visits, "root_value": roots[i].q}
        results.append(make_result(problem, cands, choose_final(cands, cfg.select), run.compute[i], cfg.delimiter, info))
    return results


def _rollout_values(run: Run, kids: list[tuple[int, Path]], found: list[list[Path]]) -> None:
    """Value of each unfinished child = aggregated score of one sampled completion from it (the roll-out
    joins the candidates); value of each finished child = the aggregated score of its own steps.

    Why the finished ones too: in rollout mode Q(s, a) estimates the cfg.aggregation score of a complete
    solution through a. A finished child is a complete solution, so its value is that same aggregate; its
    last step score (engine.step_value, what expansion set) is another quantity whenever aggregation is not
    `last` (with `min`, a last step of .9 after a step of .2 would outrank every roll-out scoring .5), and
    PUCT would compare values, and average them up the tree, on two scales."""
    cfg = run.cfg
    for _, k in kids:
        if k.done:
            k.value = aggregate(k.scores, cfg.aggregation)
    pending = [(i, k) for i, k in kids if not k.done]
    groups = run.sample("policy", [(i, k.steps) for i, k in pending], 1, step=False)
    rolled = [Path(k.steps + steps_of(g[0].text, cfg.delimiter), g[0].finished, True) for (_, k), g in zip(pending, groups)]
    for ((i, k), r), s in zip(zip(pending, rolled), run.score([(i, r.steps) for (i, _), r in zip(pending, rolled)])):
        r.scores = s
        k.value = r.value = aggregate(s, cfg.aggregation)
        found[i].append(r)


def _most_visited(root: Node) -> Path:
    node = root
    while node.children:
        node = max(node.children, key=lambda ch: ch.visits)
    return node.path
