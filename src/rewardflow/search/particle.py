"""Particle filtering over reasoning steps with entropic annealing and look-ahead modulation (ePF)."""
from __future__ import annotations

import torch

from ..data.problem import Problem
from .base import WEIGHTINGS, SearchConfig, SearchResult, choose_final, make_result
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




def particle_log_weights(rewards: torch.Tensor, weighting: str = "logit", *, temperature: float = 1.0,
                         eps: float = 1e-4) -> torch.Tensor:
    """Unnormalised log resampling weights of particles from their PRM scores r in [0, 1]. [N] -> [N].

    logit (Puri et al. 2025, the reference particle filter): a PRM score is the probability that the partial
    solution is on track, and a particle's weight is its odds, w_i = softmax(logit r_i) = (r_i / (1 - r_i)) /
    sum_j r_j / (1 - r_j). r is clamped to [eps, 1 - eps] first so that a 0/1 score (a verifier) keeps a finite
    log-weight (eps is ours). tempered: r / temperature (softmax(r / tau), flatter than the odds for tau >~ .25).
    """
    if weighting == "logit":
        r = rewards.clamp(eps, 1 - eps)  # [N]
        return torch.log(r) - torch.log1p(-r)
    if weighting == "tempered":
        return rewards / temperature
    raise ValueError(f"unknown particle weighting {weighting!r}; valid: {', '.join(WEIGHTINGS)}")


def lookahead_modulated(own: float, ahead: float) -> float:
    """Look-ahead modulation (Giannone et al. 2025, "Look-ahead Modulation"): a state's weight also reflects
    the reward of its successor. The paper's exact mixing is not reproduced here: we use the mean of the
    state's own step value and the value of its greedy k-step look-ahead (cfg.lookahead = k)."""
    return 0.5 * (own + ahead)


def particle(problems: list[Problem], policy, scorer, cfg: SearchConfig, *, draft=None,
             weighting: str | None = None) -> list[SearchResult]:
    """Particle filtering for inference-time scaling (Puri et al. 2025, "A Probabilistic Inference Approach to
    Inference-Time Scaling of LLMs using Particle-Based Monte Carlo") with ePF's entropic annealing and
    look-ahead modulation (Giannone et al. 2025). N = cfg.n particles per problem; at each step t < T = max_steps:

    1. propagate: every unfinished particle samples its next step from the policy;
    2. weigh: v_i = step value of particle i (last step score), or with cfg.lookahead = k the look-ahead
       modulated value (`lookahead_modulated`); finished particles keep their last value;
    3. resample N particles with replacement from softmax(l / a_t), l = `particle_log_weights`(v): by default
       l = logit(v) (the reference's weights, `weighting="logit"`); `weighting="tempered"` gives l = v / tau0,
       tau0 = cfg.pf_temperature. a_t >= 1 is ePF's annealing factor, `entropic_temperature` on l with base 1
       (threshold = cfg.entropy_threshold; 0 never anneals, the plain filter of Puri et al.); a seeded
       torch.Generator draws.

    weighting: None reads cfg.pf_weighting when the config has that field, else "logit". The final N
    particles (duplicates included, as the filter's posterior) are the candidates; cfg.select chooses.
    result.info records, per step, tau_t (tempered: tau0 * a_t; logit: a_t) and ESS_H / N.
    """
    weighting = weighting or cfg.pf_weighting
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown particle weighting {weighting!r}; valid: {', '.join(WEIGHTINGS)}")
    base = cfg.pf_temperature if weighting == "tempered" else 1.0
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
            log_w = particle_log_weights(values, weighting, temperature=cfg.pf_temperature)  # [N]
            factor, ess = entropic_temperature(log_w, t, cfg.max_steps, 1.0, cfg.entropy_threshold)
            weights = torch.softmax(log_w / factor, dim=0)  # [N]
            picks = torch.multinomial(weights, cfg.n, replacement=True, generator=gen).tolist()
            particles[i] = [ps[k] for k in picks]
            trace[i].append({"t": t, "tau": base * factor, "ess_frac": ess})
    results = []
    for i, problem in enumerate(problems):
        cands = [path_candidate(p, cfg) for p in particles[i]]
        info = {"trace": trace[i]}
        results.append(make_result(problem, cands, choose_final(cands, cfg.select), run.compute[i], cfg.delimiter, info))
    return results

