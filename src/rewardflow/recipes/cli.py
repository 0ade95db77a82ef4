"""`rewardflow <verb>`: quickstart, train, eval, preference, oreo, search, rm {eval,label,...}, bench {...}.
Run `rewardflow <verb> --help` for each. Each room registers its own verbs (register / register_rm /
register_bench in its cli module), so this file only lists the rooms."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import bench_cli, config_cli, label_cli, mathhay_cli, rm_cli, search_cli, train_cli
from . import sft_cli
from . import autocei, bolt
from .devices import DTYPES, add_device_args, place_scorer
from .run_dir import add_overwrite, owned_run_dir, positive_int

EPILOG = """examples:
  rewardflow quickstart --out runs/quickstart         # tiny model: SFT -> eval -> GRPO -> eval -> report
  rewardflow train --config configs/grpo_chain_sum.yaml algo.name=rloo trainer.steps=100 --out runs/rloo
  rewardflow eval --model runs/quickstart/rl/checkpoints/step_000080 --data chain_sum --n 16
  rewardflow rm eval --bench processbench --scores my_prm_scores.jsonl --out runs/pb
  rewardflow search --strategy beam --policy runs/quickstart/rl/checkpoints/step_000080 --scorer verifier --n 16 --out runs/beam
  rewardflow bench search --out runs/bench_search    # every strategy, N = 1..64, accuracy vs FLOPs
"""

# Recipe modules that add verbs: module -> the register functions it defines (top-level `sub`, `rm` and `bench`).
VERB_MODULES = {
    train_cli: ("register", "register_bench"),
    search_cli: ("register", "register_bench"),
    label_cli: ("register_rm", "register_bench"),
    rm_cli: ("register_rm",),
    bench_cli: ("register_bench",),
    config_cli: ("register",),
    mathhay_cli: ("register",),  # rewardflow mathhay build
    sft_cli: ("register",),  # rewardflow sft --data FILE
    autocei: ("register",),  # rewardflow autocei
    bolt: ("register",),  # rewardflow bolt
}


def _quickstart(args) -> int:
    from .config_loader import load_config
    from .pipeline import run_pipeline

    overrides = [f"trainer.seed={args.seed}"] + list(args.overrides)
    cfg = load_config(args.config, overrides)  # a bad config fails before the run directory is touched
    with owned_run_dir(args) as out:
        results = run_pipeline(cfg, out, resume=args.resume, show_progress=not args.quiet)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every rank returns the results; one table is enough
        _print_summary(results, Path(args.out))
    return 0


def _print_summary(results: dict, out: Path) -> None:
    from rich.table import Table

    from ..progress import console

    table = Table(title=f"{results['algo']} on {results['task']} ({results['model']['params']:,} params, {results['wall_seconds']:.0f} s)")
    table.add_column("metric")
    for phase in ("sft", "rl"):
        table.add_column(f"after {phase.upper()}", justify="right")
    for key in ("greedy", "pass@1", "pass@8", "maj@8"):
        if key in results["sft"]:
            table.add_row(key, *(f"{results[p][key]:.3f}" for p in ("sft", "rl")))
    console.print(table)
    console.print(f"report: {out / 'report.html'}   results: {out / 'results.json'}   metrics: {out / 'metrics.jsonl'}")


def _eval(args) -> int:
    from ..data.mathhay import with_group_fields
    from .devices import load_policy
    from ..eval.runner import evaluate_policy
    from ..policy.hf import HFPolicy
    from ..progress import progress_bars
    from ..verify import Verifier
    from .warmstart import problems_from_args

    problems = problems_from_args(args.data, args.task_kwargs, n=args.limit, seed=args.seed)
    problems = with_group_fields(args.data, problems)  # MathHay rows: accuracy per task type, length, placement
    policy = load_policy(args.model, args)  # --device, --dtype
    ks = [k for k in (1, 2, 4, 8, 16, 32, 64) if k <= args.n]
    with Verifier() as verifier, progress_bars(not args.quiet) as bar:
        res = evaluate_policy(policy, verifier, problems, n_samples=args.n, ks=ks, temperature=args.temperature,
                              max_new_tokens=args.max_new_tokens, seed=args.seed, progress=bar("eval", len(problems)))
    res["verifier_counts"] = dict(verifier.counts)
    text = json.dumps(res, indent=2)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "results.json").write_text(text)
    print(text)
    return 0


def _rm_eval(args) -> int:
    from ..eval.rm import run_rm_eval
    from ..rewards import load_scorer

    if sum(x is not None for x in (args.scores, args.model, args.critic)) > 1:
        raise ValueError("give at most one of --scores, --model and --critic")
    scorer = place_scorer(load_scorer(args.model), args.device, args.dtype) if args.model else None
    critic = None
    if args.critic:
        from ..policy.hf import HFPolicy

        critic = HFPolicy.from_pretrained(args.critic)
    res = run_rm_eval(args.bench, Path(args.out), scores=Path(args.scores) if args.scores else None, threshold=args.threshold,
                      data_root=Path(args.data_root) if args.data_root else None, scorer=scorer, critic=critic, limit=args.limit)
    md = Path(args.out) / "results.md"
    print(md.read_text() if md.exists() else json.dumps(res, indent=2)[:4000])
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rewardflow", description="Make language models reason better with rewards.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="verb", required=True)

    def run_parser(name: str, help_: str, default_out: str):
        q = sub.add_parser(name, help=help_, description=help_, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
        q.add_argument("--out", default=default_out, help=f"run directory (default: {default_out})")
        q.add_argument("--resume", action="store_true", help="continue a crashed or stopped run in --out from its last checkpoint")
        add_overwrite(q)
        q.add_argument("--seed", type=int, default=0, help="seed for the model, data and sampling (default: 0)")
        q.add_argument("--quiet", action="store_true", help="no progress bars")
        q.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. trainer.steps=40 algo.kl_coef=0.01")
        return q

    q = run_parser("quickstart", "Build a tiny model, warm-start it with SFT, run GRPO, evaluate before and after, write a report.", "runs/quickstart")
    q.add_argument("--config", default=None, help="YAML recipe overriding the built-in quickstart defaults")
    q.set_defaults(func=_quickstart)
    t = run_parser("train", "Train with a YAML recipe (SFT warm-start when sft.steps > 0, then online RL), evaluate, report.", "runs/train")
    t.add_argument("--config", required=True, help="YAML recipe (see configs/)")
    t.set_defaults(func=_quickstart)

    e = sub.add_parser("eval", help="Evaluate a policy: greedy, pass@k, maj@k with 95%% intervals.")
    e.add_argument("--model", required=True, help="a transformers checkpoint directory, a .gguf file or smollm2-135m-instruct")
    e.add_argument("--data", default="chain_sum", help="reasoning-gym task name (its eval split), a .jsonl/.json/.csv/.parquet file, or hf:NAME")
    e.add_argument("--task-kwargs", default=None, help='reasoning-gym options as JSON, e.g. \'{"min_terms": 3}\'')
    e.add_argument("--n", type=positive_int, default=8, help="samples per problem (default 8)")
    e.add_argument("--limit", type=positive_int, default=None, help="evaluate only the first N problems")
    e.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0; 0 with --n 1 is the greedy decode)")
    e.add_argument("--max-new-tokens", type=positive_int, default=256, help="completion budget per sample (default 256)")
    e.add_argument("--seed", type=int, default=0, help="seed for sampling and the reasoning-gym split (default 0)")
    e.add_argument("--out", default=None, help="directory for results.json")
    add_device_args(e)
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    e.set_defaults(func=_eval)

    rm = sub.add_parser("rm", help="Reward models: label steps, train, score, evaluate on real benchmarks.")
    rm_sub = rm.add_subparsers(dest="rm_verb", required=True)
    r = rm_sub.add_parser("eval", help="Score a reward model on ProcessBench, RewardBench-math, RewardMATH, PRMBench, stored-sample selection.")
    r.add_argument("--bench", required=True, help="processbench | rewardbench | rewardmath | prmbench | selection | probes")
    r.add_argument("--scores", default=None, help='JSONL of {"id", "step_scores"} or {"id", "outcome_score"} scored elsewhere')
    r.add_argument("--model", default=None, help="one of our Scorers: 'verifier' or a saved reward-model directory (`rm train --out`); "
                   "needed by --bench probes")
    r.add_argument("--critic", default=None, help="processbench only: a causal-LM checkpoint prompted to name the earliest wrong step")
    r.add_argument("--limit", type=int, default=None, help="processbench (per subset) and probes (pairs): evaluate only the first N items")
    r.add_argument("--threshold", type=float, default=None, help="step-score threshold (ProcessBench default: best F1 on its gsm8k subset)")
    r.add_argument("--data-root", default=None, help="benchmark data folder (default: $REWARDFLOW_DATA or ../shared/data)")
    r.add_argument("--device", default="cpu", help="torch device of --model: cpu, cuda, cuda:1, mps (default: cpu)")
    r.add_argument("--dtype", default="float32", choices=DTYPES, help="weights dtype of --model (bfloat16 halves memory and is "
                   "faster on a CPU with avx512_bf16; default float32)")
    r.add_argument("--out", required=True, help="output directory (results JSON and plots)")
    r.set_defaults(func=_rm_eval)

    bench = sub.add_parser("bench", help="Benchmarks that write JSON: algos, search, rm, trl, sampler, mfu.")
    bench_sub = bench.add_subparsers(dest="bench_verb", required=True)
    targets = {"register": sub, "register_rm": rm_sub, "register_bench": bench_sub}
    for module, functions in VERB_MODULES.items():
        for fn in functions:
            getattr(module, fn)(targets[fn])
    return p


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Dotted overrides may stand anywhere, also after an option (`train --config C --out D algo.name=rloo`):
    argparse alone takes positionals only in one run."""
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and all("=" in x and not x.startswith("-") for x in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    from ..data import DataError
    from ..distributed.ray_rollout import WorkerLost
    from .config_loader import ConfigError

    args = _parse(build_parser(), argv)
    try:
        return args.func(args)
    except (ConfigError, DataError, OSError, ValueError, WorkerLost) as e:  # OSError: a path that is a file, unwritable, ...
        print(f"rewardflow: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
