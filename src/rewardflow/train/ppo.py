"""PPO's learned critic (Schulman et al. 2017; Ouyang et al. 2022 for LMs): V(s_t) for every completion token.

Two layouts, chosen by `algo.ppo.critic`:
  head  : a linear value head on the policy's own last hidden state. The value loss flows into the shared
          backbone (stepped by the policy optimiser); this optimiser only steps the head.
  model : a separate value model, a copy of the starting policy with its own head and optimiser, so value
          gradients never touch the policy.
The head starts at zero so the first advantages are plain returns (no random baseline noise).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..policy.forward import forward
from ..optim import make_optimizer, optimizer_step


class Critic(nn.Module):
    def __init__(self, policy_model, *, mode: str = "head", lr: float = 1e-3, max_grad_norm: float = 1.0):
        super().__init__()
        if mode not in ("head", "model"):
            raise ValueError(f"unknown critic layout {mode!r}; valid: head, model")
        self.mode, self.max_grad_norm = mode, max_grad_norm
        # a separate value model is registered as a submodule; the shared backbone is not (the policy owns it)
        self.backbone = copy.deepcopy(policy_model) if mode == "model" else None
        self.head = nn.Linear(policy_model.config.hidden_size, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.to(next(policy_model.parameters()).device)
        # constant lr; weight decay 0.01 is AdamW's default, which the critic has always trained with
        self.opt, _ = make_optimizer(self, lr, 0.01, 0, 1)

    @property
    def shared(self) -> bool:
        return self.backbone is None

    def values(self, batch, policy_hidden: torch.Tensor | None = None) -> torch.Tensor:
        """V(s_t) [N, T]. Shared head: from the policy forward's hidden states (pass them). Model: own forward."""
        if self.shared:
            if policy_hidden is None:
                raise ValueError("a shared value head needs the policy forward's hidden states")
            return self.head(policy_hidden).squeeze(-1)  # [N, T]
        return self.head(forward(self.backbone, batch, hidden=True).hidden).squeeze(-1)  # [N, T]

    def step(self, *, step: int | None = None, allreduce=None) -> float:
        """One optimiser step of the value parameters (no schedule); returns the gradient norm before clipping."""
        return optimizer_step(self, self.opt, None, max_grad_norm=self.max_grad_norm, step=step, allreduce=allreduce,
                              name="value/grad_norm")

    def state(self) -> dict:
        return {"weights": self.state_dict(), "opt": self.opt.state_dict()}

    def load_state(self, state: dict) -> None:
        self.load_state_dict(state["weights"])
        self.opt.load_state_dict(state["opt"])


def make_critic(policy, cfg) -> Critic:
    a = cfg.algo
    return Critic(policy.model, mode=a.ppo.critic, lr=a.ppo.critic_lr, max_grad_norm=cfg.trainer.max_grad_norm)
