"""ROVER (He, Ye et al. 2025, "Random Policy Valuation is Enough for LLM Reasoning with Verifiable Rewards",
arXiv 2509.24981).

Reasoning with a verifier is a finite-horizon MDP with deterministic transitions, tree-structured states and
binary terminal rewards. There, acting greedily on the Q-function of the *uniform random* policy is optimal
(Theorem 3.1), and sampling from softmax(Q_u / rho) keeps diversity. Q_u satisfies (gamma = 1)
    Q_u(s, a) = r(s, a) + 1/|A| sum_{a'} Q_u(s', a').
What is implemented, as the paper states it (sec. 3, Algorithm 1; checked against the authors' release):
  * Q is intrinsic to the LLM, relative to the policy that sampled the data:
        Q(s_t, a_t) = rho * (log pi_theta(a_t | s_t) - log pi_old(a_t | s_t)),
    so pi_theta = pi_old * exp(Q / rho): sampling from pi_theta samples softmax(Q / rho) on top of the prior
    pi_old (exactly softmax(Q / rho) when that prior is uniform).
  * The reward is mean-centred within the prompt's group, r~ = r - mean_group(r), and broadcast to every
    token; the target of token t is  r~ + 1/|V| sum_{a'} Q(s_{t+1}, a')  (0 for the successor term after the
    last token), computed from the full next-token distributions and held constant (stop-gradient).
  * Loss: squared error between Q(s_t, a_t) and the target, aggregated over valid tokens.
Assumptions (ours): the target is detached (the paper writes it as a regression target); aggregation is
configurable (token-mean default, matching the authors' release).
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch

from .losses import aggregate_tokens


def uniform_policy_q(
    children: Mapping[Hashable, Sequence[Hashable]], reward: Mapping[Hashable, float], root: Hashable
) -> dict[tuple[Hashable, Hashable], float]:
    """Exact Q of the uniform random policy on a finite tree (paper sec. 3, gamma = 1), by backward induction.

    children[s]: the states reached by each action from s (none for a terminal state); reward[s]: reward of
    entering s (the verifier's outcome on terminal states; missing = 0). Returns {(s, s'): Q_u(s, a -> s')}.
    """
    q: dict[tuple[Hashable, Hashable], float] = {}

    def value(s: Hashable) -> float:  # V_u(s) = mean over actions of Q_u(s, a)
        kids = children.get(s, ())
        for kid in kids:
            q[(s, kid)] = reward.get(kid, 0.0) + value(kid)
        return sum(q[(s, kid)] for kid in kids) / len(kids) if kids else 0.0

    value(root)
    return q


def rover_policy(q: torch.Tensor, *, rho: float = 1.0) -> torch.Tensor:
    """ROVER's sampling distribution (sec. 3): pi(a | s) = softmax(Q_u(s, a) / rho) over the last dim."""
    return torch.softmax(q / rho, dim=-1)


def rover_q(logp: torch.Tensor, old_logp: torch.Tensor, *, rho: float = 1.0) -> torch.Tensor:
    """Intrinsic Q of the taken tokens: rho * (log pi_theta - log pi_old). [N, T] -> [N, T]."""
    return rho * (logp - old_logp)


def vocab_mean_logprob(logits: torch.Tensor) -> torch.Tensor:
    """1/|V| sum_a log softmax(logits)_a per position, [N, T, V] -> [N, T]: with the same for pi_old this gives
    the successor term 1/|V| sum_a' Q(s, a') = rho * (mean_logp_theta - mean_logp_old) without storing [N, T, V]."""
    return torch.log_softmax(logits.float(), dim=-1).mean(dim=-1)


def rover_next_q_mean(
    mean_logp: torch.Tensor, old_mean_logp: torch.Tensor, mask: torch.Tensor, *, rho: float = 1.0
) -> torch.Tensor:
    """Successor term of each token: 1/|V| sum_a' Q(s_{t+1}, a'), read at position t+1 (the distribution that
    predicts token t+1 is state s_{t+1}); 0 after a row's last valid token. Inputs [N, T] from
    vocab_mean_logprob under pi_theta and pi_old. Returns [N, T], detached."""
    q_mean = rho * (mean_logp - old_mean_logp).detach() * mask  # [N, T] mean Q at s_t
    return torch.cat([q_mean[:, 1:], torch.zeros_like(q_mean[:, :1])], dim=1)  # [N, T] shifted to s_{t+1}


def rover_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    next_q_mean: torch.Tensor,
    centred_reward: torch.Tensor,
    mask: torch.Tensor,
    *,
    rho: float = 1.0,
    agg: str = "token-mean",
    normalizer: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """ROVER training loss (sec. 3, Algorithm 1): (Q(s_t, a_t) - sg[r~ + 1/|V| sum_a' Q(s_{t+1}, a')])^2.

    logp, old_logp, next_q_mean, mask: [N, T]; centred_reward: [N] (r - group mean, e.g. dr_grpo_advantages)
    or [N, T]. A positive centred reward pulls the taken tokens' log-probability above pi_old.
    """
    if centred_reward.dim() == 1:
        centred_reward = centred_reward[:, None]  # [N, 1]
    q = rover_q(logp, old_logp, rho=rho)  # [N, T]
    target = (centred_reward + next_q_mean).detach()  # [N, T]
    per_token = (q - target) ** 2  # [N, T]
    loss = aggregate_tokens(per_token, mask, agg, normalizer)
    with torch.no_grad():
        m = mask.bool()
        stats = {
            "rover/q_mean": q[m].mean().item() if m.any() else 0.0,
            "rover/target_mean": target.expand_as(q)[m].mean().item() if m.any() else 0.0,
        }
    return loss, stats
