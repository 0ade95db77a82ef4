"""The implicit PRM as a Scorer: a causal LM trained on outcome labels whose log-ratio to a frozen reference
gives process rewards for free (Yuan et al. 2024, "Free Process Rewards without Process Labels"), updated
online on fresh rollouts as in PRIME (Cui et al. 2025, "Process Reinforcement through Implicit Rewards").

The math lives in `algos.implicit_prm`; this module tokenizes (prompt, steps) pairs, finds the token where
each step ends, and runs the two models. A solution's completion text is `join_steps(steps)` + EOS; the
newline after step k belongs to step k and the EOS to the last step, so the step rewards add up to r(y).

Saved layout (`save(path)`): `policy/` and `ref/` (transformers save_pretrained, model + tokenizer) and
`scorer.json` = {"kind": "implicit_prm", "beta": ..., "lr": ...}.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from ..algos.implicit_prm import implicit_outcome_ce_loss, implicit_step_rewards, implicit_token_rewards
from ..atomic import atomic_path
from ..data.problem import Problem
from ..data.steps import join_steps
from ..optim import optimizer_step
from ..policy.forward import pad_ends
from ..policy.hf import HFPolicy
from .base import StepScores, forward_flops

KIND = "implicit_prm"


def encode_step_lists(policy: HFPolicy, prompts: list[str], solutions: list[list[str]]):
    """-> (TokenBatch, step_token_ends [N, S]) for completions join_steps(steps) + EOS, as the policy would have written
    them after its rendered prompt. Step k ends after the token holding the newline that follows it; the last step
    owns the rest, EOS included; padded steps -1. Used by every scorer that reads a policy-format LM (the implicit
    PRM, OREO's value model)."""
    tok = policy.tokenizer
    if not tok.is_fast:
        raise ValueError(f"{type(policy).__name__}'s tokenizer is not a fast one: step boundaries need its offset mapping")
    texts = [join_steps(steps) for steps in solutions]
    enc = tok(texts, add_special_tokens=False, return_offsets_mapping=True)
    completion_ids = [ids + [policy.eos_id] for ids in enc["input_ids"]]
    rows = []
    for steps, offsets, ids in zip(solutions, enc["offset_mapping"], completion_ids):
        starts = [a for a, _ in offsets]
        # tokens starting inside steps 1..k end step k (its character span runs through the newline after it)
        row = [sum(a < len(join_steps(steps[: k + 1])) + 1 for a in starts) for k in range(len(steps) - 1)]
        rows.append(row + [len(ids)] if steps else row)
    batch = policy.token_batch(policy.encode_prompts(prompts), completion_ids)
    return batch, pad_ends(rows)  # [N, S]


class ImplicitPRM:
    """Scorer: StepScores.steps = per-step implicit process rewards, outcome = r(y) = beta log pi/pi_ref (y)."""

    def __init__(self, policy: HFPolicy, ref: HFPolicy, *, beta: float = 0.05, lr: float = 1e-6,
                 max_grad_norm: float = 1.0, micro_batch: int = 16):
        self.policy, self.ref = policy, ref
        self.flops_spent = 0.0  # Scorer contract: forward FLOPs of scoring (PRIME updates are training, not counted)
        self.beta = beta  # KL-style scale of the log-ratio reward (Yuan et al. use 0.05)
        self.lr = lr  # AdamW learning rate of `update` (PRIME's online PRM update)
        self.max_grad_norm = max_grad_norm
        self.micro_batch = micro_batch  # rows per forward; gradients accumulate over the batch
        self.ref.model.eval().requires_grad_(False)
        self._opt = None  # AdamW, built on the first update and kept across updates

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, *, beta: float = 0.05, lr: float = 1e-6, **kw) -> "ImplicitPRM":
        """Policy and reference both start from `model_dir` (at init every reward is exactly 0).
        `kw` (device, dtype) go to HFPolicy.from_pretrained. `model_dir` may also be a .gguf file or a known
        model name (policy/resolve.py), resolved once here for both copies."""
        from ..policy.resolve import resolve_model

        model_dir = resolve_model(model_dir)
        return cls(HFPolicy.from_pretrained(model_dir, **kw), HFPolicy.from_pretrained(model_dir, **kw), beta=beta, lr=lr)

    # -- tokenization ----------------------------------------------------------------------------
    def _encode(self, prompts: list[str], solutions: list[list[str]]):
        return encode_step_lists(self.policy, prompts, solutions)

    def _logps(self, batch, *, grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.set_grad_enabled(grad):
            logp = self.policy.logprobs(batch).logprobs  # [N, T]
        with torch.no_grad():
            ref_logp = self.ref.logprobs(batch).logprobs  # [N, T]
        return logp, ref_logp

    @torch.no_grad()
    def token_rewards(self, batch, mask: torch.Tensor) -> torch.Tensor:
        """q_t = beta log pi_phi/pi_ref on the tokens of `batch` (a TokenBatch of a policy with this PRM's tokenizer):
        PRIME's dense reward for the RL loop. [N, T]"""
        logp, ref_logp = self._logps(batch, grad=False)
        return implicit_token_rewards(logp, ref_logp, mask, beta=self.beta)

    # -- Scorer ----------------------------------------------------------------------------------
    @torch.no_grad()
    def score(self, problems: list[Problem], solutions: list[list[str]]) -> list[StepScores]:
        return self.score_prompts([p.prompt for p in problems], solutions)

    @torch.no_grad()
    def score_prompts(self, prompts: list[str], solutions: list[list[str]]) -> list[StepScores]:
        self.policy.model.eval()
        out = []
        for lo in range(0, len(prompts), self.micro_batch):
            sols = solutions[lo : lo + self.micro_batch]
            batch, ends = self._encode(prompts[lo : lo + self.micro_batch], sols)
            self.flops_spent += forward_flops(self.policy.num_params + self.ref.num_params, batch.attention_mask)  # policy and reference
            logp, ref_logp = self._logps(batch, grad=False)
            q = implicit_token_rewards(logp, ref_logp, batch.completion_mask, beta=self.beta)  # [n, T]
            steps = implicit_step_rewards(q, ends.to(q.device)).cpu()  # [n, S]
            outcome = q.sum(-1).cpu()  # [n] r(y)
            out += [StepScores(steps[i, : len(s)].tolist(), float(outcome[i])) for i, s in enumerate(sols)]
        return out

    # -- PRIME online update ---------------------------------------------------------------------
    def update(self, problems: list[Problem], solutions: list[list[str]], correct: list[float]) -> dict:
        """One AdamW step of the outcome cross-entropy on these samples (PRIME Sec. 3.1: the implicit PRM is
        updated on each RL step's rollouts with their verifier outcomes). Returns the loss stats."""
        return self.update_prompts([p.prompt for p in problems], solutions, correct)

    def state(self) -> dict:
        """What an RL checkpoint keeps of an online-updated implicit PRM (PRIME): its weights and optimizer."""
        # copies: state_dict() returns live tensors, which later updates would change under the caller
        return copy.deepcopy({"policy": self.policy.model.state_dict(), "opt": None if self._opt is None else self._opt.state_dict()})

    def load_state(self, state: dict) -> None:
        self.policy.model.load_state_dict(state["policy"])
        if state["opt"] is not None:
            self._opt = torch.optim.AdamW(self.policy.model.parameters(), lr=self.lr, weight_decay=0.0, betas=(0.9, 0.99))
            self._opt.load_state_dict(state["opt"])

    def update_prompts(self, prompts: list[str], solutions: list[list[str]], correct: list[float]) -> dict:
        if not (len(prompts) == len(solutions) == len(correct)) or not prompts:
            raise ValueError(f"update: {len(prompts)} prompts, {len(solutions)} solutions, {len(correct)} labels")
        model = self.policy.model
        if self._opt is None:
            # constant lr, no weight decay, make_optimizer's betas; load_state builds the same optimizer
            self._opt = torch.optim.AdamW(model.parameters(), lr=self.lr, weight_decay=0.0, betas=(0.9, 0.99))
        model.train()
        self._opt.zero_grad(set_to_none=True)
        N, sums = len(prompts), {}
        for lo in range(0, N, self.micro_batch):
            hi = min(N, lo + self.micro_batch)
            batch, _ = self._encode(prompts[lo:hi], solutions[lo:hi])
            logp, ref_logp = self._logps(batch, grad=True)
            labels = torch.tensor(correct[lo:hi], dtype=logp.dtype, device=logp.device)  # [n]
            loss, stats = implicit_outcome_ce_loss(logp, ref_logp, batch.completion_mask, labels, beta=self.beta, normalizer=N)
            loss.backward()
            for k, v in stats.items():  # loss already carries 1/N; the means are re-weighted by rows
                sums[k] = sums.get(k, 0.0) + (v if k.startswith("loss/") else v * (hi - lo) / N)
        # the one optimiser step: a non-finite loss or gradient stops here, before the PRM's weights change
        grad_norm = optimizer_step(model, self._opt, None, max_grad_norm=self.max_grad_norm,
                                   losses={k: v for k, v in sums.items() if k.startswith("loss/")}, name="prm/grad_norm")
        model.eval()
        return {**sums, "prm/grad_norm": grad_norm}

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write policy/, ref/ and scorer.json to a temporary directory, then rename it into place."""
        with atomic_path(path) as tmp:
            for name, pol in (("policy", self.policy), ("ref", self.ref)):
                pol.model.save_pretrained(tmp / name)
                pol.tokenizer.save_pretrained(tmp / name)
            (tmp / "scorer.json").write_text(json.dumps({"kind": KIND, "beta": self.beta, "lr": self.lr}, indent=2))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, **kw) -> "ImplicitPRM":
        """A saved implicit PRM; `kw` (device, dtype) go to HFPolicy.from_pretrained."""
        path = Path(path)
        meta = json.loads((path / "scorer.json").read_text())
        if meta.get("kind") != KIND:
            raise ValueError(f"{path / 'scorer.json'}: kind {meta.get('kind')!r} is not {KIND!r}")
        return cls(HFPolicy.from_pretrained(path / "policy", **kw), HFPolicy.from_pretrained(path / "ref", **kw),
                   beta=float(meta["beta"]), lr=float(meta.get("lr", 1e-6)))
