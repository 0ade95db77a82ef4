"""Evaluate a policy on held-out problems: greedy accuracy, pass@1 (mean over samples), pass@k, maj@k."""
from __future__ import annotations

from ..data.problem import Problem
from ..policy.base import SamplingParams
from .groups import accuracy_by_group
from .metrics import maj_at_k, mean_ci, pass_at_k, wilson_ci


# Padded tokens one generate call may hold (rows x (longest prompt + new tokens)): 256 one-sample MathHay prompts of
# 2k tokens reached 17.5 GB; this keeps SmolLM2's fp32 KV cache near 3 GB and leaves short-prompt batches as they were.
MAX_BATCH_TOKENS = 65_536


def prompt_lengths(policy, problems: list[Problem]) -> list[int]:
    """Each prompt's token count as the policy renders it (about 4 characters a token for a policy that cannot say)."""
    prompts = [p.prompt for p in problems]
    encode = getattr(policy, "encode_prompts", None)
    return [len(ids) for ids in encode(prompts)] if encode else [len(t) // 4 + 1 for t in prompts]


def _batches(problems: list[Problem], lengths: list[int], chunk: int, params: SamplingParams):
    """Consecutive slices of `problems`: at most `chunk` problems and MAX_BATCH_TOKENS padded tokens each (one at least)."""
    start = 0
    while start < len(problems):
        end, longest = start, 0
        while end < len(problems) and end - start < chunk:
            longest = max(longest, lengths[end])
            if end > start and (end - start + 1) * params.n * (longest + params.max_new_tokens) > MAX_BATCH_TOKENS:
                break
            end += 1
        yield problems[start:end]
        start = end


def _sample_verdicts(policy, verifier, problems: list[Problem], lengths: list[int], params: SamplingParams, chunk: int, progress=None,
                     keep: list | None = None, keep_n: int = 0):
    """For each problem, the (answer, correct) pair of each of params.n samples. `keep` (a list) receives the first
    sample of each of the first `keep_n` problems as a readable row."""
    verdicts = []
    for batch in _batches(problems, lengths, chunk, params):
        groups = policy.generate([p.prompt for p in batch], params)
        flat_problems = [p for p, g in zip(batch, groups) for _ in g]
        results = verifier.verify(flat_problems, [c.text for g in groups for c in g])
        for i in range(len(batch)):
            verdicts.append([(r.pred, r.correct) for r in results[i * params.n : (i + 1) * params.n]])
            if keep is not None and len(keep) < keep_n and groups[i]:
                p, r = batch[i], results[i * params.n]
                keep.append({"id": p.id, "prompt": p.prompt, "completion": groups[i][0].text, "answer": p.answer, "pred": r.pred,
                             "reward": float(r.correct), "correct": bool(r.correct)})
        if progress is not None:
            progress(len(batch))
    return verdicts


def evaluate_policy(policy, verifier, problems: list[Problem], *, n_samples: int = 8, ks=(1, 2, 4, 8), temperature: float = 1.0,
                    max_new_tokens: int = 64, greedy: bool = True, seed: int = 0, chunk: int = 32, progress=None, samples: int = 4) -> dict:
    """Metrics as fractions in [0, 1], each with its 95% interval (`<metric>_ci`) and the problem count; `samples`:
    the first sampled completion of the first `samples` problems with answer, verdict and reward (0/1), to read."""
    params = SamplingParams(n=n_samples, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
    kept: list = []
    lengths = prompt_lengths(policy, problems)  # once, for both passes
    verdicts = _sample_verdicts(policy, verifier, problems, lengths, params, max(1, chunk * 8 // n_samples), progress, kept, samples)
    out: dict = {"n_problems": len(problems), "n_samples": n_samples, "temperature": temperature, "samples": kept}
    for k in ks:
        per_problem = [pass_at_k(n_samples, sum(ok for _, ok in v), k) for v in verdicts]
        mean, lo, hi = mean_ci(per_problem)
        out[f"pass@{k}"], out[f"pass@{k}_ci"] = mean, [lo, hi]
        if k == 1:  # kept so that two policies evaluated on the same problems can be compared problem by problem
            out["pass@1_per_problem"] = per_problem
    k = max(ks)
    maj = [maj_at_k([a for a, _ in v], [ok for _, ok in v], k) for v in verdicts]
    mean, lo, hi = wilson_ci(sum(maj), len(maj))
    out[f"maj@{k}"], out[f"maj@{k}_ci"] = mean, [lo, hi]
    out["distinct_answers"] = sum(len({a for a, _ in v if a is not None}) for v in verdicts) / max(1, len(verdicts))
    if greedy:
        # one sample at temperature 0 is already the greedy decode: long contexts (MathHay) should not pay it twice
        g = verdicts if (n_samples == 1 and temperature <= 0) else _sample_verdicts(
            policy, verifier, problems, lengths, SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new_tokens), chunk * 8)
        mean, lo, hi = wilson_ci(sum(v[0][1] for v in g), len(g))
        out["greedy"], out["greedy_ci"] = mean, [lo, hi]
    per_problem = {"pass@1": out.get("pass@1_per_problem"), "greedy": [float(v[0][1]) for v in g] if greedy else None}
    out.update(accuracy_by_group(problems, {k: v for k, v in per_problem.items() if v is not None}))  # by task type, length, ...
    return out
