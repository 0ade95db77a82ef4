"""How a PRM's step scores spread over the steps that some policies write: one sample per held-out chain_sum
problem and policy, every step scored, quantiles and the median per policy. Writes OUT (JSON).

Why: reward-guided speculative decoding keeps a draft step when its score reaches delta; this shows where
delta can sit and whether the PRM scores the weaker policy's steps lower.

    python -m rewardflow.recipes.bench.prm_step_scores --prm runs/bench_rm3/prm --policies runs/bench_search_prm/draft,runs/bench_search_prm/target \\
        --out runs/prm_step_scores.json
"""
from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rewardflow.recipes.bench.prm_step_scores", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prm", required=True, help="a saved process reward model directory")
    ap.add_argument("--policies", required=True, help="comma-separated policy checkpoints")
    ap.add_argument("--problems", type=int, default=25, help="held-out problems (default 25)")
    ap.add_argument("--seed", type=int, default=1, help="sampling seed (default 1)")
    ap.add_argument("--out", required=True, help="output JSON")
    args = ap.parse_args(argv)

    from ...atomic import write_json
    from ...data import GymSource, split_steps
    from ...policy.base import SamplingParams
    from ...policy.hf import HFPolicy
    from ...rewards import load_scorer

    problems = GymSource("chain_sum", seed=0, eval_size=50, min_terms=3, max_terms=3, min_digits=1, max_digits=1).eval_problems[: args.problems]
    prm, result = load_scorer(args.prm), {"prm": args.prm, "problems": len(problems), "policies": {}}
    for path in args.policies.split(","):
        policy = HFPolicy.from_pretrained(path)
        samples = [g[0] for g in policy.generate([p.prompt for p in problems], SamplingParams(n=1, max_new_tokens=48, seed=args.seed))]
        scores = sorted(x for s in prm.score(problems, [split_steps(c.text) for c in samples]) for x in s.steps)
        q = {f"q{int(f * 100)}": scores[round(f * (len(scores) - 1))] for f in (0.1, 0.25, 0.5, 0.75, 0.9)}
        result["policies"][path] = {"steps": len(scores), **q, "min": scores[0], "max": scores[-1]}
        print(path, json.dumps(result["policies"][path]))
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
