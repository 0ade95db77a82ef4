"""`rewardflow search` and `rewardflow bench search`: `register(sub)` and `register_bench(bench_sub)` add them to
cli.py's parser; heavy imports (torch, transformers) stay inside the handlers, so `--help` stays fast."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ..atomic import write_json
from .bench_cli import lazy_bench
from .devices import add_device_args
from .run_dir import add_overwrite, positive_int, refuse_used

SEARCH_HELP = """Run one test-time search strategy over a dataset and write OUT/results.json (accuracy with its 95%
interval, compute per model: tokens generated / prefilled / scored, FLOPs as 2 x params x tokens with prefill and
decode apart, seconds) and OUT/compute.png.

strategies: majority, best_of_n, weighted_best_of_n, self_certainty, self_certainty_borda, beam, dvts, mcts, rebase,
speculative (needs --draft; --policy is the target), particle. Each one's paper and equations are in its docstring
(src/rewardflow/search/).

--scorer is `verifier` (checks the final answer against the gold one: an ORACLE, labelled so in the output) or a saved
scorer directory (rewards.load_scorer: `rewardflow rm train` output, an implicit PRM, OREO's value model OUT/value from
`rewardflow oreo`, a judge/ensemble/PAV scorer.json). Strategies that do not read a scorer (majority, self_certainty*)
ignore it.

examples:
  rewardflow search --strategy beam --policy runs/quickstart/sft --scorer verifier --n 8 --data chain_sum \\
      --task-kwargs '{"min_terms": 3, "max_terms": 3, "min_digits": 1, "max_digits": 1}' --limit 50 --out runs/beam
  rewardflow search --strategy speculative --policy big/ --draft small/ --scorer my_prm/ --n 1 --data gsm8k.jsonl --out runs/rsd
  rewardflow search --strategy mcts --policy m/ --scorer my_prm/ --n 16 --set mcts_value=rollout --set puct_c=2 --out runs/mcts
"""

BENCH_HELP = """Every search strategy on the quickstart task (reasoning-gym chain_sum, 3 one-digit terms) with two tiny
policies warm-started by SFT on worked solutions: a smaller draft and a larger target (the policy of every strategy;
the draft only drafts for speculative decoding). N = 1, 2, 4, ... up to --max-n. Writes OUT/search.json (per strategy
and N: accuracy, 95% interval, tokens, FLOPs per model, seconds), OUT/search.png (accuracy against FLOPs) and the two
headline comparisons: speculative decoding's target FLOPs against target-only sampling, and beam search against
best-of-N at equal FLOPs. The trained models are cached in OUT (a rerun skips training).

The default scorer is the verifier, an ORACLE that knows the gold answer (labelled so everywhere); `--scorer
step-oracle` checks every step against the worked solution (an ORACLE PRM); --scorer DIR takes a learned reward
model. Other scorers write OUT/search_<name>.json and .png, so runs with different scorers share the cached models.

examples:
  rewardflow bench search --out runs/bench_search                       # full run (about 15 minutes on 2 cores)
  rewardflow bench search --out runs/bs_small --problems 50 --max-n 16 --sft-steps 200
"""


def _parse_sets(pairs: list[str]) -> dict:
    """--set KEY=VALUE pairs -> SearchConfig overrides, typed by the field's default; unknown keys are errors."""
    from ..search.base import SearchConfig

    known = {f.name: f for f in dataclasses.fields(SearchConfig)}
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or key not in known:
            raise ValueError(f"--set {pair!r}: expected KEY=VALUE with KEY one of {', '.join(known)}")
        kind = type(known[key].default)
        if kind is bool:  # bool("false") is True: read the word
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"--set {pair!r}: {key} takes true or false")
            out[key] = value.lower() in ("true", "1", "yes")
        else:
            out[key] = kind(value)
    return out


def config_from_args(args):
    from ..search.base import SearchConfig

    kw = dict(n=args.n, beam_width=args.beam_width, max_steps=args.max_steps, max_step_tokens=args.max_step_tokens,
              max_new_tokens=args.max_new_tokens, temperature=args.temperature, aggregation=args.aggregation,
              select=args.select, lookahead=args.lookahead, simulations=args.simulations, delta=args.delta, seed=args.seed)
    kw.update(_parse_sets(args.set))
    return SearchConfig(**kw)




def _search(args) -> int:
    from ..progress import console, progress_bars
    from ..rewards import load_scorer
    from ..verify import Verifier
    from ..search.registry import NEEDS_DRAFT, USES_SCORER, get_strategy, run_search
    from ..search.summary import plot_compute, scorer_label, summarize
    from .devices import check_device, load_policy, place_scorer
    from .warmstart import problems_from_args

    check_device(args.device)
    get_strategy(args.strategy)  # an unknown name (or a used --out) fails before any model loads
    refuse_used(Path(args.out), resume=False, overwrite=args.overwrite)
    if args.strategy in NEEDS_DRAFT and not args.draft:
        raise ValueError(f"--strategy {args.strategy} needs --draft PATH (the small model that proposes steps)")
    cfg = config_from_args(args)
    problems = problems_from_args(args.data, args.task_kwargs, n=args.limit, seed=args.seed)
    policy = load_policy(args.policy, args)
    draft = load_policy(args.draft, args, backend="hf") if args.draft else None  # the draft scores token by token: transformers
    scorer = place_scorer(load_scorer(args.scorer), args.device, args.dtype) if args.strategy in USES_SCORER else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        with progress_bars(not args.quiet) as bar:
            results = run_search(args.strategy, problems, policy, scorer, cfg, draft=draft, batch_size=args.batch_size,
                                 progress=bar(f"search ({args.strategy}, N={cfg.n})", len(problems)))
        with Verifier() as verifier:
            summary = summarize(results, problems, verifier)
    finally:
        if hasattr(getattr(scorer, "verifier", None), "close"):
            scorer.verifier.close()
    res = {"strategy": args.strategy, "data": args.data, "policy": args.policy, "policy_params": policy.num_params,
           "draft": args.draft, "draft_params": draft.num_params if draft else None,
           "scorer": scorer_label(args.scorer) if scorer is not None else None, "oracle": scorer is not None and args.scorer == "verifier",
           "config": dataclasses.asdict(cfg), **summary}
    write_json(out / "results.json", res)
    plot_compute(res, out / "compute.png")
    console.print(f"{args.strategy}: accuracy {res['accuracy']:.3f} [{res['accuracy_ci95'][0]:.3f}, {res['accuracy_ci95'][1]:.3f}] "
                  f"on {res['n_problems']} problems, {res['flops_per_problem']:.3g} FLOPs per problem  ->  {out / 'results.json'}")
    return 0


def register(sub) -> None:
    """Adds `search` to the top-level subparsers."""
    from ..rewards.base import AGGREGATIONS
    from ..search.base import SELECTIONS, SearchConfig

    d = SearchConfig()
    p = sub.add_parser("search", help="Test-time search (best-of-N, beam, MCTS, REBASE, speculative, particle, ...) with compute accounting.",
                       description=SEARCH_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--strategy", required=True, help="one of the strategies listed above")
    p.add_argument("--policy", required=True, help="a local transformers checkpoint (the target for speculative)")
    p.add_argument("--draft", default=None, help="speculative only: the small draft model's checkpoint")
    p.add_argument("--scorer", default="verifier", help="verifier (oracle) or a saved scorer directory: reward model, OREO value model, ... (default: verifier)")
    p.add_argument("--data", default="chain_sum", help="reasoning-gym task name (its eval split) or a .jsonl file (default: chain_sum)")
    p.add_argument("--task-kwargs", default=None, help='reasoning-gym options as JSON, e.g. \'{"min_terms": 3}\'')
    p.add_argument("--limit", type=int, default=None, help="only the first N problems (reasoning-gym default: 200)")
    p.add_argument("--n", type=positive_int, default=d.n, help=f"N: samples / beams / chains / particles (default {d.n})")
    p.add_argument("--beam-width", type=int, default=d.beam_width, help=f"M: children per expansion (default {d.beam_width})")
    p.add_argument("--max-steps", type=int, default=d.max_steps, help=f"most steps per solution (default {d.max_steps})")
    p.add_argument("--max-step-tokens", type=int, default=d.max_step_tokens, help=f"token budget of one step (default {d.max_step_tokens})")
    p.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens, help=f"token budget of a full solution (default {d.max_new_tokens})")
    p.add_argument("--temperature", type=float, default=d.temperature, help=f"sampling temperature (default {d.temperature})")
    p.add_argument("--aggregation", default=d.aggregation, help=f"step scores -> one: outcome|{'|'.join(AGGREGATIONS)} (default {d.aggregation})")
    p.add_argument("--select", default=d.select, choices=SELECTIONS, help=f"final choice among candidates (default {d.select})")
    p.add_argument("--lookahead", type=int, default=d.lookahead, help=f"greedy look-ahead steps before scoring (default {d.lookahead})")
    p.add_argument("--simulations", type=int, default=d.simulations, help="MCTS simulations (default 0: N)")
    p.add_argument("--delta", type=float, default=d.delta, help=f"speculative: keep a draft step when its score >= delta (default {d.delta})")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other SearchConfig field, e.g. --set puct_c=2 --set mcts_value=rollout (see search/base.py)")
    p.add_argument("--batch-size", type=int, default=32, help="problems searched together per batch (default 32)")
    p.add_argument("--seed", type=int, default=0, help="seed of the eval split and of sampling (default 0)")
    add_device_args(p)  # policy, draft and scorer all run there
    p.add_argument("--out", required=True, help="output directory for results.json and compute.png")
    add_overwrite(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_search)


def register_bench(bench_sub) -> None:
    """Adds `search` to the `bench` subparsers."""
    b = bench_sub.add_parser("search", help="Every search strategy on the quickstart task at N = 1 .. 64: accuracy vs FLOPs.",
                             description=BENCH_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("--out", default="runs/bench_search", help="output and cache directory (default runs/bench_search)")
    b.add_argument("--problems", type=int, default=50, help="held-out problems (default 50: the full run then fits in ~15 min on 2 cores)")
    b.add_argument("--max-n", type=int, default=64, help="largest N; N runs over powers of two up to it (default 64)")
    b.add_argument("--sft-steps", type=int, default=500, help="SFT warm-start steps of each policy (default 500)")
    b.add_argument("--scorer", default="verifier", help="verifier (oracle, default), step-oracle (oracle PRM) or a saved reward-model directory")
    b.add_argument("--strategies", default=None, help="comma-separated subset (default: all)")
    b.add_argument("--seed", type=int, default=0, help="seed of models, data and sampling (default 0)")
    b.add_argument("--delta", type=float, default=0.7, help="speculative: keep a draft step when its score >= delta (default 0.7)")
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    b.set_defaults(func=lazy_bench("search"))
