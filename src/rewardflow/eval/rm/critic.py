"""ProcessBench with a generative critic (Zheng et al. 2024, arXiv:2412.06559, Sec. 4.1): the model reads the
problem and the indexed steps and names the earliest wrong one (-1 for none) inside \\boxed{}. An answer
that cannot be parsed, or names no existing step, counts as wrong on both erroneous and correct samples.
"""
from __future__ import annotations

import re
from typing import Callable, Sequence


# Our wording of the paper's critique instruction: tagged paragraphs indexed from 0, answer boxed.
CRITIC_TEMPLATE = """The following is a math problem and a proposed solution, split into paragraphs. Each paragraph \
is enclosed in tags and indexed from 0.

[Math Problem]

{problem}

[Solution]

{paragraphs}

Check the paragraphs in order. If one contains an error (a wrong calculation, a logical flaw, or an \
unjustified claim), find the earliest such paragraph and answer with its index. If every paragraph is \
correct, answer -1. Put the final answer, the index alone, in \\boxed{{}}."""

_BOXED = re.compile(r"\\boxed\{\s*(-?\d+)\s*\}")


def critic_prompt(problem: str, steps: Sequence[str]) -> str:
    paragraphs = "\n\n".join(f"<paragraph_{i}>\n{s}\n</paragraph_{i}>" for i, s in enumerate(steps))
    return CRITIC_TEMPLATE.format(problem=problem, paragraphs=paragraphs)


def parse_critic_index(text: str, n_steps: int) -> int | None:
    """The last \\boxed{k} in the text when -1 <= k < n_steps; None when there is no usable answer."""
    found = _BOXED.findall(text or "")
    if not found:
        return None
    k = int(found[-1])
    return k if -1 <= k < n_steps else None


def _as_batch_fn(critic, max_new_tokens: int) -> Callable[[list[str]], list[str]]:
    """A Policy (greedy, one sample, as the paper's default) or any callable prompt -> text."""
    if hasattr(critic, "generate"):
        from ...policy.base import SamplingParams

        params = SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new_tokens)
        return lambda prompts: [group[0].text for group in critic.generate(prompts, params)]
    if callable(critic):
        return lambda prompts: [critic(p) for p in prompts]
    raise TypeError(f"a critic is a Policy or a callable prompt -> text, got {type(critic).__name__}")


def critic_predictions(critic, data: dict[str, list[dict]], *, batch_size: int = 16,
                       max_new_tokens: int = 2048) -> dict[str, list[int | None]]:
    """Per subset, the index of the earliest wrong step the critic names for each row (-1: none; None: unparsed).
    ProcessBench's metric is computed where the benchmark lives (processbench.py)."""
    generate = _as_batch_fn(critic, max_new_tokens)
    preds: dict[str, list[int | None]] = {}
    for subset, rows in data.items():
        preds[subset] = []
        for lo in range(0, len(rows), batch_size):
            batch = rows[lo : lo + batch_size]
            texts = generate([critic_prompt(r["problem"], r["steps"]) for r in batch])
            preds[subset] += [parse_critic_index(t, len(r["steps"])) for t, r in zip(texts, batch)]
    return preds
