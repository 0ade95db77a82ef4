"""Particle filtering over reasoning steps with entropic annealing and look-ahead modulation (ePF)."""
from __future__ import annotations

import torch

from ..data.problem import Problem
from .base import SearchConfig, SearchResult, choose_final, make_result
from .engine import Run, step_value
from .tree import Path, expand_and_score, path_candidate


def entropic_temperature(values: torch.Tensor, t: int, horizon: int, tau0: float, threshold: float) -> tuple[float, float]:
    """Entropic annealing (Giannone et al. 2025, "Mitigating Premature Exploitation in Particle-based Monte
    Carlo for Inference-Time Scaling", Sec. "Entropic Annealing"): when the particle weights lose diversity,
    raise the resampling temperature so the next generation keeps more distinct particles, less so as t
    approaches the horizon T:

        w = softmax(v / tau0),  ESS_H = exp(H(w)) = exp(-sum_i w_i log w_i),
        tau_t = tau0 * max(1, N / ESS_H * (1 - t / T))   if ESS_H / N < threshold,   else tau0.

    The paper's schedule is beta_t^-1 = N / ESS(t) * (1 - t/T); we measure ESS by the weight entropy
    (perplexity exp(H), which equals N for uniform weights and 1 for a point mass) as the entropy-driven
    variant asks, and never go below tau0. values: [N]. Returns (tau_t, ESS_H / N)."""
    n = values.shape[0]
    w = torch.softmax(values / tau0, dim=0)  # [N]
    entropy = -(w * torch.log(w.clamp_min(1e-30))).sum()
    ess_frac = float(torch.exp(entropy)) / n
    if ess_frac >= threshold:
        return tau0, ess_frac
    return tau0 * max(1.0, (1.0 / ess_frac) * (1.0 - t / horizon)), ess_frac


def lookahead_modulated(own: float, ahead: float) -> float:
    """Look-ahead modulation (Giannone et al. 2025, "Look-ahead Modulation"): a state's weight also reflects
    the reward of its successor. The paper's exact mixing is not reproduced here: we use the mean of the
    state's own step value and the value of its greedy k-step look-ahead (cfg.lookahead = k)."""
    return 0.5 * (own + ahead)


def particle(problems: list[Problem], policy, scorer, cfg: SearchConfig, *, draft=None) -> list[SearchResult]:
    """Particle filtering for inference-time scaling (Puri et al. 2025, "A Probabilistic Inference Approach to
    Inference-Time Scaling of LLMs using Particle-Based Monte Carlo") with ePF's entropic annealing and
    look-ahead modulation (Giannone et al. 2025). N = cfg.n particles per problem; at each step t < T = max_steps:

    1. propagate: every unfinished particle samples its next step from the policy;
    2. weigh: v_i = step value of particle i (last step score), or with cfg.lookahead = k the look-ahead
       modulated value (`lookahead_modulated`); finished particles keep their last value;
    3. resample N particles with replacement from softmax(v / tau_t), tau_t from `entropic_temperature`
       (tau0 = cfg.pf_temperature, threshold = cfg.entropy_threshold); a seeded torch.Generator draws.

    The final N particles (duplicates included, as the filter's posterior) are the candidates; cfg.select
    chooses. result.info records tau_t and ESS_H / N per step.
    """
    run = Run(problems, cfg, scorer, {"policy": policy})
    gen = torch.Generator().manual_seed(cfg.seed)
    particles = [[Path() for _ in range(cfg.n)] for _ in problems]
    trace: list[list[dict]] = [[] for _ in problems]
    for t in range(cfg.max_steps):
        live = [(i, j) for i, ps in enumerate(particles) for j, p in enumerate(ps) if not p.done]
        if not live:
            break
        children = expand_and_score(run, [(i, particles[i][j]) for i, j in live], 1)
        for (i, j), kids in zip(live, children):
            kid = kids[0]
            if cfg.lookahead > 0 and not kid.done:
                kid.value = lookahead_modulated(step_value(kid.scores), kid.value)
            particles[i][j] = kid
        for i, ps in enumerate(particles):
            if all(p.done for p in ps):
                continue
            values = torch.tensor([p.value for p in ps], dtype=torch.float64)  # [N]
            tau, ess = entropic_temperature(values, t, cfg.max_steps, cfg.pf_temperature, cfg.entropy_threshold)
            weights = torch.softmax(values / tau, dim=0)  # [N]
            picks = torch.multinomial(weights, cfg.n, replacement=True, generator=gen).tolist()
            particles[i] = [ps[k] for k in picks]
            trace[i].append({"t": t, "tau": tau, "ess_frac": ess})
    results = []
    for i, problem in enumerate(problems):
        cands = [path_candidate(p, cfg) for p in particles[i]]
        info = {"trace": trace[i]}
        results.append(make_result(problem, cands, choose_final(cands, cfg.select), run.compute[i], cfg.delimiter, info))
    return results

