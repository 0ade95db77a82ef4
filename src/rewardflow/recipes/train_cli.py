"""Command-line verbs of the training loops beyond `train`: `preference`, `oreo`, and `bench algos`.
cli.py wires them in with `register(sub)` and `register_bench(bench_sub)`; heavy imports stay in handlers."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .bench_cli import lazy_bench
from .run_dir import add_overwrite, owned_run_dir

PREFERENCE_HELP = """Preference optimisation from a policy checkpoint (model.path).

Offline: set preference.pairs to a JSONL of {"prompt", "chosen", "rejected"} rows and preference.loss to one of
dpo | ipo | cdpo | simpo | rpo (default dpo, beta 0.1). Online (preference.pairs unset): the iterative DPO of
"RLHF Workflow" (Dong et al. 2024): preference.iterations (3) rounds of sampling preference.group_size (8)
completions for preference.prompts_per_iter (64) training prompts, scoring them with preference.scorer
('verifier' or a saved reward-model directory), pairing best against worst (ties skipped), training, and
(preference.refresh_ref, default true) making the policy the next reference. Evaluates before and after on
the held-out split; writes results.json, metrics.jsonl and the trained policy under --out.

examples:
  rewardflow preference --config configs/dpo_pairs.yaml model.path=runs/quickstart/sft preference.pairs=pairs.jsonl
  rewardflow preference --config configs/online_dpo.yaml model.path=runs/quickstart/sft preference.iterations=5
"""

OREO_HELP = """OREO (Wang, Hao et al. 2024): offline RL by soft Bellman consistency.

Samples offline.group_size (8) trajectories for offline.prompts (128) training prompts from the starting
policy (model.path, e.g. the SFT checkpoint), verifies them, then trains the policy and a separate value model
jointly (beta = offline.beta, 0.03). Writes results.json (eval before/after), trajectories.jsonl, the policy
(--out/policy) and the value model (--out/value, with scorer.json kind "oreo_value", for search).

example:
  rewardflow oreo --config configs/oreo.yaml model.path=runs/quickstart/sft --out runs/oreo
"""

BENCH_HELP = """Every online algorithm on the quickstart task (3-term chain sums) from one SFT checkpoint with the
same budget (prompts per step, group size, steps, learning rate, seeds). Writes DIR/algos.json (per algorithm:
pass@1, pass@N, maj@N as mean and std over seeds, pass@1 intervals, distinct answers per problem, final training
reward, seconds per step, tokens generated, reward curves), DIR/algos.png (reward curves) and DIR/algos.md (a table).

The policy is the quickstart model with 2 layers instead of 4 (model.layers=2, 0.54M parameters): it warm-starts
better (pass@1 0.41 vs 0.36) and steps twice as fast, so 17 algorithms x 3 seeds x 140 steps fit in an hour on
2 CPU cores (--workers 2: two 1-thread runs at once). Override with model.layers=4 for the quickstart model itself.
Each finished run is kept in DIR/runs/NAME_sSEED/result.json: rerunning the same command skips it.

examples:
  rewardflow bench algos --out runs/bench_algos
  rewardflow bench algos --out runs/bench_small --steps 10 --seeds 0 --algos grpo,ppo,rover rollout.prompts_per_step=8
"""


def _add_common(p, default_out: str) -> None:
    p.add_argument("--config", default=None, help="YAML recipe (see configs/); defaults are the quickstart recipe")
    p.add_argument("--out", default=default_out, help=f"run directory (default: {default_out})")
    add_overwrite(p)
    p.add_argument("--seed", type=int, default=0, help="seed for sampling and data order (default: 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. preference.loss=ipo preference.beta=0.5")


def _load(args):
    from .config_loader import load_config

    return load_config(args.config, [f"trainer.seed={args.seed}"] + list(args.overrides))


def _preference(args) -> int:
    from .jobs import run_preference

    cfg = _load(args)
    with owned_run_dir(args) as out:
        res = run_preference(cfg, out, show_progress=not args.quiet)
    print(json.dumps({"mode": res["mode"], "loss": res["loss"], "delta": res["delta"], "wall_seconds": res["wall_seconds"]}, indent=2))
    return 0


def _oreo(args) -> int:
    from .jobs import run_oreo

    cfg = _load(args)
    with owned_run_dir(args) as out:
        res = run_oreo(cfg, out, show_progress=not args.quiet)
    print(json.dumps({"trajectories": res["trajectories"], "delta": res["delta"], "wall_seconds": res["wall_seconds"]}, indent=2))
    return 0


def _bench_algos(args) -> int:
    from .bench.algos import BENCH_ALGOS, BENCH_MODEL, run_bench, table

    algos = args.algos.split(",") if args.algos else list(BENCH_ALGOS)
    overrides = BENCH_MODEL + [f"trainer.steps={args.steps}"] + list(args.overrides)
    res = run_bench(Path(args.out), algos=algos, seeds=[int(s) for s in args.seeds.split(",")], overrides=overrides,
                    n_eval=args.n, eval_size=args.eval_size, workers=args.workers, show_progress=not args.quiet)
    md = table(res)
    (Path(args.out) / "algos.md").write_text(md + "\n")
    print(md)
    return 0


def register(sub) -> None:
    """Adds `preference` and `oreo` to the top-level subparsers."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("preference", help="DPO / IPO / cDPO / SimPO / RPO on pairs, or online iterative DPO.",
                       description=PREFERENCE_HELP.replace("%", "%%"), formatter_class=fmt)
    _add_common(p, "runs/preference")
    p.set_defaults(func=_preference)
    o = sub.add_parser("oreo", help="OREO offline RL on trajectories sampled from the SFT policy; saves a value model.",
                       description=OREO_HELP.replace("%", "%%"), formatter_class=fmt)
    _add_common(o, "runs/oreo")
    o.set_defaults(func=_oreo)


REAL_HELP = """The package on a real pretrained model, SmolLM2-135M-Instruct (the smol extra), on this CPU. Writes DIR/real.json
and DIR/real.png: the base model on GSM8K (first 200 test problems, chat template, greedy + 3 samples: pass@1, maj@3,
greedy with 95%% intervals) and on the RL task (reasoning-gym chain_sum, two one-digit terms, where the base model has
signal); best-of-N with the verifier and majority vote on the GSM8K samples against FLOPs; GRPO with LoRA on the task
and held-out pass@1 again, with the paired delta and its 95%% interval; an ORM on the model's own samples' verdicts,
scored on held-out samples (within-problem AUROC). Budget: designed for about 45 minutes at --threads 2 on a quiet
2-core CPU; --quick runs every stage at smoke size in a few minutes. See docs/real_model.md.

examples:
  rewardflow bench real --out runs/bench_real --threads 2
  rewardflow bench real --out runs/bench_real_quick --quick
"""


def register_bench(bench_sub) -> None:
    """Adds `algos` and `real` to the `bench` subparsers."""
    r = bench_sub.add_parser("real", help="SmolLM2-135M-Instruct: GSM8K, RL with LoRA, best-of-N, an ORM on its own samples.",
                             description=REAL_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--out", default="runs/bench_real", help="output directory (default: runs/bench_real)")
    r.add_argument("--quick", action="store_true", help="smoke run: every stage at a few problems and steps (minutes)")
    r.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    r.add_argument("--seed", type=int, default=0, help="seed of problems, sampling and training (default: 0)")
    r.add_argument("--data-root", default=None, help="benchmark data folder holding gsm8k/ (default: $REWARDFLOW_DATA or ../shared/data)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.set_defaults(func=lazy_bench("real"))
    b = bench_sub.add_parser("algos", help="Compare every online RL algorithm from one SFT checkpoint.",
                             description=BENCH_HELP.replace("%", "%%"), formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("--out", default="runs/bench_algos", help="output directory (default: runs/bench_algos)")
    b.add_argument("--steps", type=int, default=140, help="RL steps per run (default: 140)")
    b.add_argument("--seeds", default="0,1,2", help="comma-separated sampling seeds (default: 0,1,2)")
    b.add_argument("--algos", default=None, help="comma-separated subset (default: all; see rewardflow/train/compare.py BENCH_ALGOS)")
    b.add_argument("--n", type=int, default=16, help="eval samples per problem: pass@1, pass@N, maj@N (default: 16)")
    b.add_argument("--eval-size", type=int, default=200, help="held-out problems (default: 200)")
    b.add_argument("--workers", type=int, default=2, help="runs at once, each in its own process with a share of the torch threads (default: 2)")
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    b.add_argument("overrides", nargs="*", help="dotted config overrides for every run, e.g. rollout.prompts_per_step=16 sft.steps=200")
    b.set_defaults(func=_bench_algos)
