"""`rewardflow rm label` (step labels by Monte-Carlo rollouts) and `rewardflow bench rm` (the reward-model
demonstration), added to the parser by `register_rm(rm_sub)` and `register_bench(bench_sub)`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .bench_cli import lazy_bench
from .devices import add_device_args

LABEL_EPILOG = """methods (K = --rollouts completions from every step prefix, each verified against the gold answer):
  mc-hard  Math-Shepherd hard label: 1 if any completion reaches the gold answer
  mc-soft  Math-Shepherd soft label: the fraction that do
  er       ER-PRM label (1/eta) * log mean exp(eta * r): between soft (eta -> 0) and hard (eta -> inf)
  omega    OmegaPRM-style binary search for the first wrong step: 1 before it, 0 from it on;
           correct solutions need no rollouts, wrong ones about log2(steps) prefixes instead of all

output: one JSONL row per solution {"id", "prompt", "steps", "labels", "label_kind", "rollouts", "mc",
"answer", "pred", "correct", "rollouts_used"}, appended a chunk at a time; rerunning the same command
skips ids already in --out, so a crashed run resumes where it stopped.

example:
  rewardflow rm label --policy runs/quickstart/sft --data chain_sum --problems 64 --samples 4 \\
      --rollouts 8 --method mc-soft --out runs/labels.jsonl
"""

BENCH_EPILOG = """what it does, cached stage by stage in --out (rerun to resume):
  1. builds the quickstart tiny policy and SFT-warm-starts it exactly as `rewardflow quickstart` does
  2. samples --samples solutions on each of --train-problems TRAINING problems and labels their steps
     by Monte-Carlo rollouts (--method, --rollouts)
  3. trains an outcome RM (correctness of each sample) and a process RM (the step labels)
  4. on --eval-problems held-out problems samples 16 solutions each and writes rm.json: pass@1, maj@16,
     orm@16 (best of 16 by the ORM), prm@16 per aggregation (min, prod, last, mean), with 95% intervals,
     and the cost of every stage (seconds, rollouts)

example (about 10 minutes on 2 CPU cores at the defaults; shrink with the size flags):
  rewardflow bench rm --out runs/bench_rm
  rewardflow bench rm --out runs/bench_rm_small --sft-steps 100 --train-problems 64 --eval-problems 50
  rewardflow bench rm --quick --out runs/bench_rm_quick                  # smoke test at toy sizes
  rewardflow bench rm --method oracle --out runs/bench_rm_oracle         # exact step labels (the diagnosis)
"""


def _add_task_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="chain_sum",
                   help="a reasoning-gym task name (its TRAINING stream is used) or a .jsonl file of problems (default: chain_sum)")
    p.add_argument("--task-kwargs", default='{"min_terms": 3, "max_terms": 3, "min_digits": 1, "max_digits": 1}',
                   help="reasoning-gym task options as JSON (default: the quickstart's 3 one-digit terms)")


def register_rm(rm_sub) -> None:
    """Add `rm label` to the `rewardflow rm` sub-commands."""
    p = rm_sub.add_parser("label", help="Label the steps of a policy's own solutions by Monte-Carlo rollouts (Math-Shepherd, ER-PRM, OmegaPRM).",
                          description="Sample --samples solutions per problem from --policy, split them into steps, and label every "
                                      "step by rolling the policy out from it and verifying the final answers.",
                          epilog=LABEL_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policy", required=True, help="a local transformers checkpoint directory (samples the solutions and the rollouts)")
    _add_task_args(p)
    p.add_argument("--problems", type=int, default=64, help="number of problems to label (default 64)")
    p.add_argument("--offset", type=int, default=0, help="first training-stream index (reasoning-gym) or row (JSONL) (default 0)")
    p.add_argument("--eval-size", type=int, default=200,
                   help="reasoning-gym only: size of the held-out split (seeded by --seed) that training problems avoid (default 200)")
    p.add_argument("--samples", type=int, default=4, help="N solutions sampled per problem (default 4)")
    p.add_argument("--rollouts", type=int, default=8, help="K completions rolled out from each step prefix (default 8)")
    p.add_argument("--method", default="mc-hard", choices=["mc-hard", "mc-soft", "er", "omega"], help="label kind (default mc-hard)")
    p.add_argument("--eta", type=float, default=2.0, help="ER-PRM temperature for --method er (default 2.0)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature of solutions and rollouts (default 1.0)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="token budget of a solution and of a rollout (default 64)")
    p.add_argument("--chunk", type=int, default=16, help="solutions per generate call and per flush of --out (default 16)")
    p.add_argument("--seed", type=int, default=0, help="seed of the problems, the samples and the rollouts (default 0)")
    add_device_args(p)
    p.add_argument("--out", required=True, help="labels JSONL; appended to, and ids already there are skipped")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_label)


def _label(args) -> int:
    from ..progress import console, progress_bars
    from ..verify import Verifier
    from ..rewards.label import LabelConfig, label_solutions, sample_solutions

    for name in ("problems", "samples", "rollouts", "chunk"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    from .devices import check_device, load_policy
    from .warmstart import problems_from_args

    check_device(args.device)
    problems = problems_from_args(args.data, args.task_kwargs, n=args.problems, seed=args.seed, split="train", offset=args.offset,
                                  eval_size=args.eval_size)
    policy = load_policy(args.policy, args)
    cfg = LabelConfig(method=args.method, rollouts=args.rollouts, eta=args.eta, temperature=args.temperature,
                      max_new_tokens=args.max_new_tokens, chunk=args.chunk, seed=args.seed)
    with Verifier() as verifier, progress_bars(not args.quiet) as bar:
        solutions = sample_solutions(policy, problems, args.samples, temperature=args.temperature, max_new_tokens=args.max_new_tokens,
                                     seed=args.seed, progress=bar("sample solutions", len(problems)))
        stats = label_solutions(policy, verifier, solutions, cfg, Path(args.out), progress=bar(f"label ({args.method})", len(solutions)))
    stats = {"problems": len(problems), "solutions": len(solutions), **stats, "out": str(args.out)}
    console.print(json.dumps(stats, indent=2))
    return 0


def register_bench(bench_sub) -> None:
    """Add `bench rm` to the `rewardflow bench` sub-commands."""
    p = bench_sub.add_parser("rm", help="Reward-model demonstration: label, train ORM + PRM, best-of-16 vs majority voting.",
                             description="Label a warm-started tiny policy's own samples by Monte-Carlo rollouts, train an outcome "
                                         "and a process reward model on them plus synthetic exactly-labelled solutions (logprob "
                                         "read-out by default), and compare best-of-16 by each with majority voting on held-out "
                                         "problems, with consistency probes. Writes OUT/rm.json (about 13 minutes on 2 cores).",
                             epilog=BENCH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench_rm", help="output and cache directory (default runs/bench_rm)")
    p.add_argument("--seed", type=int, default=0, help="seed of everything (default 0)")
    p.add_argument("--sft-steps", type=int, default=400, help="SFT warm-start steps (quickstart: 400)")
    p.add_argument("--model-size", default="quickstart", choices=["quickstart", "small"],
                   help="quickstart: the 1.07M-parameter quickstart model; small: hidden 64, 2 layers (default quickstart)")
    p.add_argument("--train-problems", type=int, default=256, help="training problems whose samples are labelled (default 256)")
    p.add_argument("--samples", type=int, default=4, help="solutions sampled per training problem (default 4)")
    p.add_argument("--rollouts", type=int, default=8, help="K rollouts per step prefix (default 8)")
    p.add_argument("--method", default="mc-soft", choices=["mc-hard", "mc-soft", "er", "omega", "oracle"],
                   help="step-label kind for the PRM; oracle: exact labels from the worked solution, no rollouts (a diagnosis) (default mc-soft)")
    p.add_argument("--rm-epochs", type=int, default=2, help="passes over the labelled data when training each RM (default 2)")
    p.add_argument("--readout", default="logprob", choices=["linear", "logprob"],
                   help="both RMs' read-out: linear (a fresh scalar head) or logprob (the backbone's own LM head: the lowest "
                        "token log-probability so far, calibrated; default logprob)")
    p.add_argument("--synthetic", type=int, default=10_000,
                   help="also train both RMs on 4 slipped worked solutions of each of N more training problems, labelled "
                        "exactly (rewards/synthetic.py); 0: only the policy's own labelled samples (default 10000)")
    p.add_argument("--rm-lr", type=float, default=3e-4, help="peak learning rate of both reward models (default 3e-4)")
    p.add_argument("--eval-problems", type=int, default=100, help="held-out problems scored at N=16 (default 100)")
    p.add_argument("--n", type=int, default=16, help="samples per held-out problem for maj@N / orm@N / prm@N (default 16)")
    p.add_argument("--rm-extra-layers", type=int, default=0, help="new transformer blocks on top of the policy's for both RMs (default 0)")
    p.add_argument("--quick", action="store_true", help="smoke test: tiny sizes (small model, 16 training and 10 held-out problems, N=4)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=lazy_bench("rm"))
