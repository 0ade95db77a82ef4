"""OREO's value model as a Scorer (Wang, Hao et al. 2024, "Offline Reinforcement Learning for LLM Multi-Step
Reasoning", sec. 3.3 uses it to guide test-time beam search).

`rewardflow oreo` saves the value model (train/offline.py `save_value`) as a directory: the transformers causal-LM
backbone and tokenizer, `head.pt` (the state dict of the scalar head, nn.Linear(hidden, 1), read with
weights_only=True: plain tensors, no pickled code) and `scorer.json` = {"kind": "oreo_value", "beta": ...}.

V(s_t) is read at the state s_t before completion token t, after the prompt the policy saw (its rendered format),
exactly as in training. A solution's completion is join_steps(steps) + EOS (`implicit.encode_step_lists`):
  steps[k] = V(state just after step k, its newline included); the last step's state is the whole text, before EOS
             (the EOS action leads to the terminal state, whose value is 0 by definition and never trained);
  outcome  = the last step's value (V of the prompt alone when there are no steps).

Range: the value is clamped to [0, 1]. OREO trains on verifier rewards R in {0, 1}, and the optimal soft value of a
KL-regularised problem, V*(s) = beta log E_{pi_ref}[exp(R / beta) | s], lies between the smallest and the largest
reward, so [0, 1] is its whole range; an estimate outside it is fitting error. In that range search's
aggregations (min, prod, last) and weighted voting (which sums scores and wants them non-negative) read it as
a success probability, like a PRM's.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..data.problem import Problem
from ..policy.forward import forward
from ..policy.hf import HFPolicy
from .base import StepScores, forward_flops
from .implicit import encode_step_lists

KIND = "oreo_value"
VALUE_RANGE = (0.0, 1.0)  # the verifier's reward range, which bounds the soft value (see the module docstring)


class OREOValueScorer:
    """Scorer: StepScores.steps = V(state after each step) in [0, 1], outcome = V(state after the last step)."""

    def __init__(self, policy: HFPolicy, head: torch.nn.Linear, *, beta: float, micro_batch: int = 16):
        self.policy, self.head = policy, head
        self.beta = beta  # the KL scale the value was trained with (recorded, not used to score)
        self.micro_batch = micro_batch  # rows per forward
        self.flops_spent = 0.0  # Scorer contract: 2 * params * real tokens of every forward

    @property
    def num_params(self) -> int:
        return self.policy.num_params + sum(p.numel() for p in self.head.parameters())

    @classmethod
    def load(cls, path: str | Path, **kw) -> "OREOValueScorer":
        """A value model saved by `rewardflow oreo`; `kw` (device, dtype) go to HFPolicy.from_pretrained."""
        from .registry import read_meta

        path = Path(path)
        meta = read_meta(path)
        if meta.get("kind") != KIND:
            raise ValueError(f"{path / 'scorer.json'}: kind {meta.get('kind')!r} is not {KIND!r}")
        if not (path / "head.pt").is_file():
            raise ValueError(f"{path}: an {KIND} scorer needs head.pt (the value head), which is missing")
        policy = HFPolicy.from_pretrained(path, **kw)
        model = policy.model.eval()
        head = torch.nn.Linear(model.config.hidden_size, 1)
        head.load_state_dict(torch.load(path / "head.pt", map_location="cpu", weights_only=True))
        param = next(model.parameters())
        return cls(policy, head.to(device=param.device, dtype=param.dtype).eval(), beta=float(meta.get("beta", 0.0)))

    @torch.no_grad()
    def score(self, problems: list[Problem], solutions: list[list[str]]) -> list[StepScores]:
        out: list[StepScores] = []
        for lo in range(0, len(problems), self.micro_batch):
            sols = solutions[lo : lo + self.micro_batch]
            batch, ends = encode_step_lists(self.policy, [p.prompt for p in problems[lo : lo + self.micro_batch]], sols)
            self.flops_spent += forward_flops(self.num_params, batch.attention_mask)
            hidden = forward(self.policy.model, batch, hidden=True).hidden  # [n, T, H] state before each token
            values = self.head(hidden.to(self.head.weight.dtype)).squeeze(-1).float().clamp(*VALUE_RANGE).cpu()  # [n, T]
            # the last step ends at EOS inclusive; its state is the one before EOS, at len - 1 (= the EOS index)
            last = batch.completion_mask.sum(-1).long().cpu() - 1  # [n]
            for i, sol in enumerate(sols):
                at = [min(int(e), int(last[i])) for e in ends[i, : len(sol)]]
                steps = [values[i, t].item() for t in at]
                out.append(StepScores(steps=steps, outcome=steps[-1] if steps else values[i, 0].item()))
        return out
