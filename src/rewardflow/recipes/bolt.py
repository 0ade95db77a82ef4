"""`rewardflow bolt`: BOLT (Pang et al. 2025, "Bootstrapping Long Chain-of-Thought ... without Distillation"), three
stages, against short-CoT training with the same data, steps and RL budget.

1. bootstrapping: a bootstrapper writes long CoT (<thought> plan / steps / checks / corrections </thought>, then
   <response>) for bolt.prompts training problems. A model bootstrapper (bolt.bootstrapper = an instruct model such
   as smollm2-135m-instruct) is prompted with bolt.icl_k in-context examples (data/bolt_examples.jsonl, or
   bolt.examples); `synthetic` writes the traces by rule (data/longcot.synth_longcot), for the tiny model, which
   cannot follow in-context examples. Kept: format right (data/longcot.format_ok) and the verifier accepts the
   response's answer. Writes DIR/bootstrap.jsonl and the statistics (kept fraction, thought length, reflection and
   backtracking shares).
2. long-CoT SFT: the policy (the tiny model, or model.path) fine-tuned on the kept traces; the short-CoT arm is the
   same policy fine-tuned on the worked solutions of the same problems (train/sft.run_sft, same steps and rate).
3. online training: train/rl.train_rl (algo.name: grpo by default; raft, rloo, ... any of the registry) from each
   SFT checkpoint, with the verifier's reward.
Each of the four checkpoints is evaluated on the held-out split: accuracy (greedy and sampled), mean completion
length, the shares of completions in the long-CoT form, that reflect and that backtrack.
"""
from __future__ import annotations

import json
import platform
import random
import time
from pathlib import Path

# Heavy modules are imported inside the functions: `rewardflow --help` loads this module to register the verb.
from ..config import Config

BOOT_OFFSET = 3_000_000  # bootstrapping problems: a slice of the training stream RL (from 0) does not reach


def _bootstrap_texts(cfg: Config, problems: list, bar) -> list[list[str]]:
    """bolt.samples completions per problem from the bootstrapper."""
    from ..data.longcot import RESPONSE_CLOSE, build_icl_prompt, load_icl_examples, synth_longcot

    b, seed = cfg.bolt, cfg.trainer.seed
    if b.bootstrapper == "synthetic":
        return [[synth_longcot(p, random.Random(seed * 1_000_003 + i * b.samples + j), p_backtrack=b.p_backtrack, p_reflect=b.p_reflect)
                 for j in range(b.samples)] for i, p in enumerate(problems)]
    from ..policy.base import SamplingParams
    from ..policy.hf import HFPolicy

    examples = load_icl_examples(b.examples)
    policy = HFPolicy.from_pretrained(b.bootstrapper, device=cfg.model.device)
    params = SamplingParams(n=b.samples, temperature=b.temperature, max_new_tokens=b.max_new_tokens, seed=seed, stop=(RESPONSE_CLOSE,))
    tick, texts = bar(f"bootstrap ({b.bootstrapper})", len(problems)), []
    for lo in range(0, len(problems), 4):  # long prompts (k worked examples each): small batches
        chunk = problems[lo : lo + 4]
        texts += [[c.text for c in g] for g in policy.generate([build_icl_prompt(examples, p.prompt, b.icl_k) for p in chunk], params)]
        tick(len(chunk))
    return texts


def bootstrap(cfg: Config, problems: list, verifier, bar) -> tuple[list[dict], dict]:
    """Stage 1: every bootstrapped completion with its format check, verdict (on the response) and behaviours."""
    from ..data.longcot import backtracks, format_ok, parse_longcot, reflects

    rows = []
    for p, texts in zip(problems, _bootstrap_texts(cfg, problems, bar)):
        parsed = [parse_longcot(t) for t in texts]
        verdicts = verifier.verify([p] * len(texts), [x.response if x else t for x, t in zip(parsed, texts)])
        for t, x, v in zip(texts, parsed, verdicts):
            ok = format_ok(x, min_thought_lines=cfg.bolt.min_thought_lines)
            lines = [ln for ln in (x.thoughts.splitlines() if x else []) if ln.strip()]
            rows.append({"id": p.id, "prompt": p.prompt, "answer": p.answer, "completion": t, "format_ok": ok, "correct": bool(v.correct),
                         "kept": ok and bool(v.correct), "thought_lines": len(lines), "thought_chars": len(x.thoughts) if x else 0,
                         "reflects": ok and reflects(t), "backtracks": ok and backtracks(t)})
    kept = [r for r in rows if r["kept"]]
    n = max(1, len(rows))
    stats = {"bootstrapper": cfg.bolt.bootstrapper, "icl_k": cfg.bolt.icl_k if cfg.bolt.bootstrapper != "synthetic" else 0,
             "completions": len(rows), "format_ok_frac": sum(r["format_ok"] for r in rows) / n,
             "correct_frac": sum(r["correct"] for r in rows) / n, "kept": len(kept), "kept_frac": len(kept) / n}
    for key in ("thought_lines", "thought_chars"):
        stats[f"kept_mean_{key}"] = sum(r[key] for r in kept) / len(kept) if kept else 0.0
    for key in ("reflects", "backtracks"):
        stats[f"kept_{key}_share"] = sum(r[key] for r in kept) / len(kept) if kept else 0.0
    return rows, stats


def evaluate_longcot(policy, verifier, problems: list, cfg: Config) -> dict:
    """Greedy accuracy, sampled accuracy (eval.n_samples at eval.temperature), mean completion tokens, and the shares
    of sampled completions in the long-CoT form, that reflect and that backtrack."""
    from ..data.longcot import backtracks, format_ok, parse_longcot, reflects
    from ..eval.metrics import wilson_ci
    from ..policy.base import SamplingParams

    e, seed = cfg.eval, cfg.trainer.seed
    out = {}
    for name, params in (("greedy", SamplingParams(n=1, temperature=0.0, max_new_tokens=e.max_new_tokens)),
                         ("sampled", SamplingParams(n=e.n_samples, temperature=e.temperature, max_new_tokens=e.max_new_tokens, seed=seed))):
        comps = [c for lo in range(0, len(problems), 32) for g in policy.generate([p.prompt for p in problems[lo : lo + 32]], params) for c in g]
        flat = [p for p in problems for _ in range(params.n)]
        correct = sum(v.correct for v in verifier.verify(flat, [c.text for c in comps]))
        acc, lo_, hi = wilson_ci(correct, len(comps))
        out[f"{name}/accuracy"], out[f"{name}/accuracy_ci"] = acc, [lo_, hi]
        out[f"{name}/mean_tokens"] = sum(len(c.token_ids) for c in comps) / len(comps)
        out[f"{name}/longcot_form"] = sum(format_ok(parse_longcot(c.text), min_thought_lines=1) for c in comps) / len(comps)
        out[f"{name}/reflect_share"] = sum(reflects(c.text) for c in comps) / len(comps)
        out[f"{name}/backtrack_share"] = sum(backtracks(c.text) for c in comps) / len(comps)
        out[f"{name}/truncated"] = sum(c.finish_reason == "length" for c in comps) / len(comps)
    out["n_problems"] = len(problems)
    return out


def _start_checkpoint(cfg: Config, out: Path, rows: list[dict], problems: list) -> Path:
    """model.path, or the tiny model with a tokenizer learned from the prompts, worked solutions and kept traces."""
    from ..data import worked_solution
    from ..policy.tiny import TinyModelConfig, make_tiny_checkpoint

    if cfg.model.path:
        return Path(cfg.model.path)
    if (out / "init" / "config.json").exists():
        return out / "init"
    m = cfg.model
    corpus = [p.prompt for p in problems] + [worked_solution(p) for p in problems] + [r["completion"] for r in rows if r["kept"]]
    tiny = TinyModelConfig(m.hidden_size, m.layers, m.heads, m.intermediate_size, m.max_positions, cfg.trainer.seed)
    return make_tiny_checkpoint(out / "init", tiny, corpus)


def sft_arm(cfg: Config, init: Path, pairs: list[tuple[str, str]], path: Path, log, bar) -> Path:
    """Stage 2: SFT of the starting checkpoint on (prompt, completion) pairs, cycling through a seeded shuffle."""
    import torch

    from ..policy.hf import HFPolicy
    from ..train.sft import run_sft

    if (path / "DONE").exists():
        return path
    torch.manual_seed(cfg.trainer.seed)
    s = cfg.sft
    order = list(range(len(pairs)))
    random.Random(cfg.trainer.seed).shuffle(order)
    examples = lambda step: [pairs[order[(step * s.batch_size + i) % len(order)]] for i in range(s.batch_size)]  # noqa: E731
    policy = HFPolicy.from_pretrained(init, device=cfg.model.device)
    run_sft(policy, examples, steps=s.steps, lr=s.lr, warmup_steps=s.warmup_steps, weight_decay=s.weight_decay,
            max_grad_norm=cfg.trainer.max_grad_norm, micro_batch_size=cfg.trainer.micro_batch_size, log=log,
            progress=bar(f"SFT {path.parent.name}", s.steps))
    policy.model.save_pretrained(path)
    policy.tokenizer.save_pretrained(path)
    (path / "DONE").write_text("")
    return path


def online_arm(cfg: Config, sft_dir: Path, run_dir: Path, source, log, bar):
    """Stage 3: online RL (train/rl.train_rl, algo.name) from an SFT checkpoint with the verifier's reward."""
    from ..rewards.verifier import VerifierScorer
    from ..train.rl import train_rl
    from .pipeline import load_rl_models

    policy, ref, autocast = load_rl_models(cfg, sft_dir, cfg.model.device)  # model.lora / dtype / backend as in `train`
    scorer = VerifierScorer()
    try:
        with autocast:
            train_rl(cfg, policy, ref, source, scorer, run_dir, log=log, progress=bar(f"RL {run_dir.parent.name} ({cfg.algo.name})", cfg.trainer.steps))
    finally:
        scorer.verifier.close()
    return policy


def run_bolt(cfg: Config, out: Path, *, show_progress: bool = True) -> dict:
    import torch

    from ..atomic import write_json, write_text
    from ..data import worked_solution
    from ..policy.hf import HFPolicy
    from ..progress import progress_bars
    from ..train.metrics import MetricsLog
    from ..verify import Verifier
    from .config_loader import to_dict
    from .warmstart import make_source

    t0, out = time.perf_counter(), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.trainer.seed)
    write_json(out / "config.json", to_dict(cfg))
    source = make_source(cfg)
    problems = source.train_problems(range(BOOT_OFFSET, BOOT_OFFSET + cfg.bolt.prompts))
    results: dict = {"task": cfg.data.task, "task_kwargs": dict(cfg.data.task_kwargs),
                     "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()}}
    with Verifier() as verifier, progress_bars(show_progress) as bar:
        rows, results["bootstrap"] = bootstrap(cfg, problems, verifier, bar)
        write_text(out / "bootstrap.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
        write_json(out / "results.json", results)
        kept = [r for r in rows if r["kept"]]
        if cfg.bolt.bootstrap_only or not kept:
            results["stopped_after_bootstrap"] = "bolt.bootstrap_only" if kept else "no bootstrapped trace was kept"
            results["wall_seconds"] = time.perf_counter() - t0
            write_json(out / "results.json", results)
            return results
        init = _start_checkpoint(cfg, out, rows, problems)
        by_id = {p.id: p for p in problems}
        kept_problems = list(dict.fromkeys(r["id"] for r in kept))  # the problems with a kept trace, once each
        arms = {"short": [(by_id[i].prompt, worked_solution(by_id[i])) for i in kept_problems],
                "bolt": [(r["prompt"], r["completion"]) for r in kept]}
        results["arms"] = {}
        for arm, pairs in arms.items():
            log = MetricsLog(out / arm / "metrics.jsonl")
            sft_dir = sft_arm(cfg, init, pairs, out / arm / "sft", log, bar)
            res = results["arms"]
            res[f"{arm}_sft"] = evaluate_longcot(HFPolicy.from_pretrained(sft_dir, device=cfg.model.device), verifier, source.eval_problems, cfg)
            policy = online_arm(cfg, sft_dir, out / arm / "rl", source, log, bar)
            res[f"{arm}_rl"] = evaluate_longcot(policy, verifier, source.eval_problems, cfg)
            res[f"{arm}_rl"]["final_train_reward"] = [r for r in log.read() if "reward/mean" in r][-1]["reward/mean"]
            write_json(out / "results.json", results)
    results["wall_seconds"] = time.perf_counter() - t0
    write_json(out / "results.json", results)
    return results


HELP = """BOLT (Pang et al. 2025): bootstrap long chain-of-thought without distillation, then long-CoT SFT, then
online RL; compared with short-CoT SFT on the same problems followed by the same RL. Writes DIR/bootstrap.jsonl
(every bootstrapped completion: format check, verdict, kept, thought length, reflects, backtracks), DIR/results.json
(bootstrap statistics; per arm after SFT and after RL: greedy and sampled accuracy with 95% intervals, mean
completion tokens, long-CoT form, reflection and backtracking shares), DIR/{short,bolt}/{sft,rl} checkpoints and
metrics.jsonl. bolt.bootstrapper=synthetic writes the traces by rule (for the tiny model); --model NAME makes an
instruct model the bootstrapper, prompted with bolt.icl_k in-context examples (bolt.examples: your own JSONL of
{question, thoughts, response}).

examples:
  rewardflow bolt --config configs/bolt.yaml --out runs/bolt                       # synthetic traces, tiny model
  rewardflow bolt --model smollm2-135m-instruct --out runs/bolt_smol bolt.prompts=8 bolt.icl_k=4 bolt.bootstrap_only=true
  rewardflow bolt --out runs/bolt_raft algo.name=raft trainer.steps=40             # RAFT instead of GRPO online
"""


def _cli(args) -> int:
    from .config_loader import load_config
    from .run_dir import owned_run_dir

    overrides = [f"trainer.seed={args.seed}", *args.overrides] + ([f"bolt.bootstrapper={args.model}"] if args.model else [])
    cfg = load_config(args.config, overrides)
    with owned_run_dir(args) as out:
        res = run_bolt(cfg, out, show_progress=not args.quiet)
    b = res["bootstrap"]
    print(f"bootstrap ({b['bootstrapper']}): kept {b['kept']}/{b['completions']} ({b['kept_frac']:.3f}), "
          f"mean thought lines {b['kept_mean_thought_lines']:.1f}")
    for arm, m in res.get("arms", {}).items():
        print(f"{arm:10s} greedy {m['greedy/accuracy']:.3f}  sampled {m['sampled/accuracy']:.3f}  tokens {m['sampled/mean_tokens']:.1f}  "
              f"reflect {m['sampled/reflect_share']:.3f}  backtrack {m['sampled/backtrack_share']:.3f}")
    print(f"results: {Path(args.out) / 'results.json'}")
    return 0


def register(sub) -> None:
    import argparse

    from .run_dir import add_recipe_args

    p = sub.add_parser("bolt", help="BOLT: bootstrap long CoT, long-CoT SFT, online RL; against short-CoT training.",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_recipe_args(p, "bolt", "the bootstrapper: an instruct model (smollm2-135m-instruct, a .gguf, a directory); "
                   "default bolt.bootstrapper (synthetic)", "bolt.prompts=64 trainer.steps=40")
    p.set_defaults(func=_cli)
