"""A prompted generative judge: a language model asked whether each step (and the whole solution) is correct.

Step k of a solution is scored by showing the judge the problem and steps 1..k and asking whether step k is
correct; its score is P(Yes) / (P(Yes) + P(No)) from the teacher-forced logprobs of the two answer strings,
i.e. sigmoid(log P(Yes) - log P(No)). The outcome is the same question about the whole solution. This is the
generative-verifier reading of "LLM-as-a-judge" (Zheng et al. 2023; Zhang et al. 2024, "Generative Verifiers":
the verifier's score is the probability of its "Yes" token). All questions of a batch go through one
teacher-forced pass.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..data.problem import Problem
from .base import StepScores, forward_flops

STEP_QUESTION = "{problem}\n\n{steps}\n\nIs step {k} correct? Answer Yes or No."
SOLUTION_QUESTION = "{problem}\n\n{steps}\n\nIs this solution correct? Answer Yes or No."


def _numbered(steps: list[str]) -> str:
    return "\n".join(f"Step {i}: {s}" for i, s in enumerate(steps, 1))


class JudgeScorer:
    """Any Policy as a step-level and outcome judge. It needs `encode_prompts`, `token_batch`, `logprobs` (the
    Policy contract) and `completion_ids(texts, add_eos=False)` to tokenise the answers (HFPolicy has it)."""

    def __init__(self, policy, *, yes: str = "Yes", no: str = "No", step_question: str = STEP_QUESTION,
                 solution_question: str = SOLUTION_QUESTION):
        self.policy, self.yes, self.no = policy, yes, no
        self.step_question, self.solution_question = step_question, solution_question
        self.flops_spent = 0.0  # Scorer contract: every question is a forward pass of the judge

    @classmethod
    def load(cls, path: str | Path) -> "JudgeScorer":
        """A directory whose scorer.json is {"kind": "judge", "policy": checkpoint dir (absolute, or relative to it and inside it),
        optional "yes"/"no"}."""
        from ..policy.hf import HFPolicy
        from .registry import read_meta, resolve_inside

        path = Path(path)
        meta = read_meta(path)
        policy = resolve_inside(path, meta.get("policy"), field="policy")
        return cls(HFPolicy.from_pretrained(policy), yes=meta.get("yes", "Yes"), no=meta.get("no", "No"))

    def questions(self, problem: Problem, steps: list[str]) -> list[str]:
        """One question per step (about step k, shown steps 1..k), then one about the whole solution."""
        per_step = [self.step_question.format(problem=problem.prompt, steps=_numbered(steps[:k]), k=k) for k in range(1, len(steps) + 1)]
        return per_step + [self.solution_question.format(problem=problem.prompt, steps=_numbered(steps))]

    @torch.no_grad()
    def p_yes(self, questions: list[str]) -> torch.Tensor:
        """P(Yes) / (P(Yes) + P(No)) for each question, from one teacher-forced pass over 2 * M rows. [M]."""
        M = len(questions)
        prompt_ids = self.policy.encode_prompts(questions)
        yes_ids, no_ids = self.policy.completion_ids([self.yes, self.no], add_eos=False)
        batch = self.policy.token_batch(prompt_ids + prompt_ids, [yes_ids] * M + [no_ids] * M)
        self.flops_spent += forward_flops(self.policy.num_params, batch.attention_mask)
        logp = self.policy.logprobs(batch).logprobs  # [2M, T]
        answer_logp = (logp * batch.completion_mask).sum(1).float().cpu()  # [2M] log P(answer | question)
        return torch.sigmoid(answer_logp[:M] - answer_logp[M:])  # [M]

    def score(self, problems: list[Problem], solutions: list[list[str]]) -> list[StepScores]:
        questions, counts = [], []
        for problem, steps in zip(problems, solutions):
            qs = self.questions(problem, steps)
            questions += qs
            counts.append(len(qs))
        if not questions:
            return []
        probs = self.p_yes(questions).tolist()
        out, start = [], 0
        for c in counts:  # c - 1 step questions, then the solution question
            out.append(StepScores(steps=probs[start : start + c - 1], outcome=probs[start + c - 1]))
            start += c
        return out
