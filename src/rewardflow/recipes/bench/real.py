"""`rewardflow bench real`: the whole package on a real pretrained model (SmolLM2-135M-Instruct) on a CPU.

1. the base model on GSM8K (the first --gsm8k test problems, chat template): greedy, and k samples per problem
   for pass@1 and maj@k, each with a 95% interval;
2. best-of-N with the verifier as oracle and majority vote over the same GSM8K samples, N = 1 .. k, as
   accuracy against FLOPs spent per problem (2 P per prompt and generated token);
3. the base model on the RL task (a reasoning-gym task where it has signal, chosen by a measurement recorded in
   docs/real_model.md): the same metrics on --task-eval held-out problems;
4. GRPO with LoRA on that task (train/rl.py, the frozen base as KL reference), then the held-out metrics again
   with the same seed; delta pass@1 is paired problem by problem (mean and 95% interval of after - before);
5. the same model as a reward-model backbone: an ORM trained on its own samples' verdicts on training problems
   of the task, scored on the held-out samples of step 3 (within-problem AUROC: does it rank a problem's right
   samples above its wrong ones?).

Writes DIR/real.json, DIR/real.png, DIR/rl (metrics, the LoRA checkpoint: merged model + adapter) and DIR/orm.
--quick shrinks every budget to a smoke run of a few minutes.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ...eval.metrics import paired_delta
from .common import machine_note, measure_peak, peak_rss_mb, throughput_mfu, write_json

MODEL = "smollm2-135m-instruct"
# The RL task and its options: where the base model's pass@1 is in the useful range (docs/real_model.md, task search)
TASK, TASK_KWARGS = "chain_sum", {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}
# Budgets. FULL is sized for <= 45 min at 2 threads on a quiet 2-core CPU from an estimate of ~150 generated
# tokens/s and ~40 GFLOP/s in training (docs/real_model.md shows the arithmetic; the lead's full run measures it).
FULL = {"gsm8k": 200, "gsm8k_k": 3, "gsm8k_tokens": 160, "task_eval": 100, "task_k": 4, "task_tokens": 32, "rl_steps": 30,
        "rl_prompts": 4, "rl_group": 8, "lora_rank": 16, "lr": 3e-4, "orm_problems": 32, "orm_epochs": 1}
QUICK = {"gsm8k": 4, "gsm8k_k": 2, "gsm8k_tokens": 48, "task_eval": 8, "task_k": 2, "task_tokens": 24, "rl_steps": 2,
         "rl_prompts": 2, "rl_group": 4, "lora_rank": 4, "lr": 2e-4, "orm_problems": 4, "orm_epochs": 1}


def sample_groups(policy, verifier, problems, *, k: int, max_new_tokens: int, seed: int, chunk: int = 16) -> tuple[list[dict], dict]:
    """Per problem: the greedy verdict and k sampled (text, answer, correct) at temperature 1; plus the tokens
    generated and the seconds spent (for tokens/s and FLOPs)."""
    from ...policy.base import SamplingParams

    groups, gen_tokens, prompt_tokens, seconds = [], 0, 0, 0.0
    greedy_p = SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new_tokens, seed=seed)
    sample_p = SamplingParams(n=k, temperature=1.0, max_new_tokens=max_new_tokens, seed=seed)
    for start in range(0, len(problems), chunk):
        batch = problems[start : start + chunk]
        t0 = time.perf_counter()
        greedy = policy.generate([p.prompt for p in batch], greedy_p)
        sampled = policy.generate([p.prompt for p in batch], sample_p)
        seconds += time.perf_counter() - t0
        prompt_tokens += sum(len(ids) for ids in policy.encode_prompts([p.prompt for p in batch])) * (1 + k)
        flat = [c for g, s in zip(greedy, sampled) for c in g + s]
        gen_tokens += sum(len(c.token_ids) for c in flat)
        verdicts = verifier.verify([p for p in batch for _ in range(1 + k)], [c.text for c in flat])
        for i, p in enumerate(batch):
            v = verdicts[i * (1 + k) : (i + 1) * (1 + k)]
            texts = [c.text for c in flat[i * (1 + k) : (i + 1) * (1 + k)]]
            groups.append({"prompt": p.prompt, "greedy": bool(v[0].correct), "texts": texts[1:], "answers": [r.pred for r in v[1:]],
                           "correct": [bool(r.correct) for r in v[1:]], "tokens": [len(c.token_ids) for c in flat[i * (1 + k) + 1 : (i + 1) * (1 + k)]]})
    return groups, {"gen_tokens": gen_tokens, "prompt_tokens": prompt_tokens, "seconds": seconds}


def group_metrics(groups: list[dict], k: int) -> dict:
    """pass@1 (mean over samples), maj@k and greedy accuracy with 95% intervals, and pass@1 per problem."""
    from ...eval.metrics import maj_at_k, mean_ci, wilson_ci

    per_problem = [sum(g["correct"]) / len(g["correct"]) for g in groups]
    p1, lo, hi = mean_ci(per_problem)
    maj = [maj_at_k(g["answers"], g["correct"], k) for g in groups]
    m, mlo, mhi = wilson_ci(sum(maj), len(maj))
    gr, glo, ghi = wilson_ci(sum(g["greedy"] for g in groups), len(groups))
    return {"n_problems": len(groups), "k": k, "pass@1": p1, "pass@1_ci95": [lo, hi], f"maj@{k}": m, f"maj@{k}_ci95": [mlo, mhi],
            "greedy": gr, "greedy_ci95": [glo, ghi], "pass@1_per_problem": per_problem}


def compute_curve(groups: list[dict], params: int, prompt_tokens_per_sample: float) -> list[dict]:
    """Best-of-N with the verifier (an oracle: right when any of the first N samples is right) and majority vote
    over the first N samples, N = 1 .. k, with the FLOPs per problem: 2 P per prompt and generated token."""
    from ...eval.metrics import maj_at_k

    rows = []
    for n in range(1, len(groups[0]["correct"]) + 1):
        tokens = sum(sum(g["tokens"][:n]) + n * prompt_tokens_per_sample for g in groups) / len(groups)
        rows.append({"n": n, "flops_per_problem": 2.0 * params * tokens,
                     "best_of_n_verifier": sum(any(g["correct"][:n]) for g in groups) / len(groups),
                     "majority_vote": sum(maj_at_k(g["answers"][:n], g["correct"][:n], n) for g in groups) / len(groups)})
    return rows


def gsm8k_problems(data_root: Path, n: int):
    from ...data.jsonl import load_problems

    path = Path(data_root) / "gsm8k" / "test.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"GSM8K test set not found at {path} (set REWARDFLOW_DATA or --data-root)")
    return load_problems(path, task="gsm8k", limit=n)


def run_rl(policy_path: Path, out: Path, plan: dict, seed: int, bar) -> tuple[object, dict]:
    """GRPO with LoRA on TASK from the base model (the recipe's own loading: fp32 master weights, the frozen base as
    KL reference); returns the trained policy and its training statistics."""
    from ...data import GymSource
    from ...rewards.verifier import VerifierScorer
    from ...train.metrics import MetricsLog
    from ...train.rl import train_rl
    from ..config_loader import load_config
    from ..pipeline import load_rl_models

    cfg = load_config(None, [f"model.lora.rank={plan['lora_rank']}", f"model.lora.alpha={2 * plan['lora_rank']}", "algo.name=grpo",
                             "algo.kl_coef=0.01", f"trainer.lr={plan['lr']}", f"trainer.steps={plan['rl_steps']}", "trainer.eval_every=0",
                             "trainer.save_every=0", f"trainer.seed={seed}", f"rollout.prompts_per_step={plan['rl_prompts']}",
                             f"rollout.group_size={plan['rl_group']}", f"rollout.max_new_tokens={plan['task_tokens']}", "trainer.micro_batch_size=16", "model.dtype=bfloat16"])  # bf16 autocast, fp32 master weights
    policy, ref, autocast = load_rl_models(cfg, policy_path, "cpu")
    source = GymSource(TASK, seed=seed, eval_size=plan["task_eval"], **TASK_KWARGS)
    scorer, log = VerifierScorer(), MetricsLog(out / "metrics.jsonl")
    t0 = time.perf_counter()
    with autocast:
        train_rl(cfg, policy, ref, source, scorer, out, log=log, progress=bar(f"GRPO + LoRA r={plan['lora_rank']}", plan["rl_steps"]))
    seconds = time.perf_counter() - t0
    scorer.verifier.close()
    rows = [r for r in log.read() if "reward/mean" in r]
    train_tok_s = sum(r["perf/train_tok_per_s"] for r in rows) / len(rows)
    gen_tok_s = sum(r["perf/gen_tok_per_s"] for r in rows) / len(rows)
    return policy, {"seconds": seconds, "steps": len(rows), "reward_curve": [r["reward/mean"] for r in rows], "train_tok_per_s": train_tok_s,
                    "gen_tok_per_s": gen_tok_s, "trainable_params": sum(p.numel() for p in policy.model.parameters() if p.requires_grad)}


def run_orm(policy, verifier, base_path: Path, held_out: list[dict], out: Path, plan: dict, seed: int, bar) -> dict:
    """An ORM on the base model's own samples of training problems (label: the verifier's verdict), scored on the
    held-out samples: AUROC over all samples and within problems that have both right and wrong samples."""
    from ...data import GymSource
    from ...data.problem import Problem
    from ...train.rm import RMTrainConfig, steps_total, train_reward_model
    from .rm import _rm_diagnostics

    source = GymSource(TASK, seed=seed, eval_size=plan["task_eval"], **TASK_KWARGS)
    train = source.train_problems(range(10_000, 10_000 + plan["orm_problems"]))  # far from the RL steps' prompts
    groups, _ = sample_groups(policy, verifier, train, k=plan["task_k"], max_new_tokens=plan["task_tokens"], seed=seed + 1)
    rows = [{"prompt": g["prompt"], "steps": [t or " "], "correct": float(ok)} for g in groups for t, ok in zip(g["texts"], g["correct"])]
    cfg = RMTrainConfig(kind="orm", loss="bce", epochs=plan["orm_epochs"], lr=1e-4, batch_size=16, max_length=160, seed=seed)
    t0 = time.perf_counter()
    rm, history = train_reward_model(base_path, rows, out, cfg, progress=bar("train ORM", steps_total(rows, cfg)))
    train_seconds = time.perf_counter() - t0
    problems = [Problem(id=str(i), prompt=g["prompt"], answer=None, task=TASK, meta={}) for i, g in enumerate(held_out)]
    flat = rm.score([p for p, g in zip(problems, held_out) for _ in g["texts"]], [[t or " "] for g in held_out for t in g["texts"]])
    k = len(held_out[0]["texts"])
    scores = [[s.outcome for s in flat[i * k : (i + 1) * k]] for i in range(len(held_out))]
    diag = _rm_diagnostics(held_out, {"orm": scores}).get("orm", {"note": "held-out samples are all right or all wrong"})
    return {"train_rows": len(rows), "train_correct_frac": sum(r["correct"] for r in rows) / len(rows), "train_seconds": train_seconds,
            "last_epoch": history[-1], **diag}


def evaluate_base(policy, verifier, plan: dict, data_root: Path, seed: int, bar) -> tuple[dict, list[dict], dict]:
    """Steps 1-3: GSM8K and the task's held-out split with the base model; returns (results, the task's groups,
    generation totals)."""
    from ...data import GymSource

    gsm = gsm8k_problems(data_root, plan["gsm8k"])
    tick = bar("base on GSM8K", 1)
    gsm_groups, gsm_gen = sample_groups(policy, verifier, gsm, k=plan["gsm8k_k"], max_new_tokens=plan["gsm8k_tokens"], seed=seed)
    tick(1)
    task_problems = GymSource(TASK, seed=seed, eval_size=plan["task_eval"], **TASK_KWARGS).eval_problems
    tick = bar(f"base on {TASK}", 1)
    task_groups, task_gen = sample_groups(policy, verifier, task_problems, k=plan["task_k"], max_new_tokens=plan["task_tokens"], seed=seed)
    tick(1)
    prompt_per_sample = gsm_gen["prompt_tokens"] / (len(gsm) * (1 + plan["gsm8k_k"]))
    base = {"gsm8k": {**group_metrics(gsm_groups, plan["gsm8k_k"]), "max_new_tokens": plan["gsm8k_tokens"],
                      "compute_curve": compute_curve(gsm_groups, policy.num_params, prompt_per_sample)},
            TASK: {**group_metrics(task_groups, plan["task_k"]), "max_new_tokens": plan["task_tokens"]}}
    gen = {k: gsm_gen[k] + task_gen[k] for k in gsm_gen}
    return base, task_groups, gen


def plot(report: dict, path: Path) -> Path:
    """Left: pass@1 on the task before and after RL (95% intervals). Right: GSM8K accuracy against FLOPs per
    problem, best-of-N with the verifier and majority vote."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    base, rl = report["base"][TASK], report["rl"]["eval"]
    for x, (name, m) in enumerate([("base", base), ("after GRPO+LoRA", rl)]):
        lo, hi = m["pass@1_ci95"]
        a.errorbar([x], [m["pass@1"]], yerr=[[m["pass@1"] - lo], [hi - m["pass@1"]]], fmt="o", capsize=6, label=name)
    a.set_xticks([0, 1], ["base", "after RL"])
    a.set_ylabel(f"pass@1 on {TASK} (held out)")
    a.set_title(f"delta {report['delta_pass@1']['mean']:+.3f} [{report['delta_pass@1']['ci95'][0]:+.3f}, {report['delta_pass@1']['ci95'][1]:+.3f}]")
    curve = report["base"]["gsm8k"]["compute_curve"]
    flops = [r["flops_per_problem"] for r in curve]
    b.plot(flops, [r["best_of_n_verifier"] for r in curve], "o-", label="best-of-N (verifier)")
    b.plot(flops, [r["majority_vote"] for r in curve], "s-", label="majority vote")
    b.set_xscale("log")
    b.set_xlabel("FLOPs per problem")
    b.set_ylabel("GSM8K accuracy")
    b.legend()
    fig.suptitle(f"{report['model']} ({report['params'] / 1e6:.1f}M params) on a CPU")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_bench(out: Path, *, quick: bool, threads: int, seed: int = 0, data_root: Path | None = None, show_progress: bool = True) -> dict:
    from ...eval.rm.runner import default_data_root
    from ...policy.hf import HFPolicy
    from ...policy.resolve import resolve_model
    from ...progress import progress_bars
    from ...verify import Verifier

    t_start, plan = time.perf_counter(), dict(QUICK if quick else FULL)
    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    peak = measure_peak(threads)
    base_path = Path(resolve_model(MODEL))
    # bf16 weights for sampling: on this CPU a bf16 decode step is 1.8-4.8x faster than fp32 (docs/speed.md); the
    # policy after RL is sampled in bf16 too, so before and after compare like with like
    policy = HFPolicy.from_pretrained(base_path, dtype=torch.bfloat16)
    report = {"model": MODEL, "task": {"name": TASK, **TASK_KWARGS}, "params": policy.num_params, "plan": plan, "quick": quick,
              "machine": machine_note(), "peak": peak}
    with Verifier() as verifier, progress_bars(show_progress) as bar:
        report["base"], held_out, gen = evaluate_base(policy, verifier, plan, Path(data_root or default_data_root()), seed, bar)
        write_json(out / "real.json", report)
        report["orm"] = run_orm(policy, verifier, base_path, held_out, out / "orm", plan, seed, bar)
        del policy  # the RL run loads its own copy (fp32 master weights + LoRA)
        trained, rl_stats = run_rl(base_path, out / "rl", plan, seed, bar)
        trained.model.eval()
        trained.model.to(torch.bfloat16)
        from ...data import GymSource

        problems = GymSource(TASK, seed=seed, eval_size=plan["task_eval"], **TASK_KWARGS).eval_problems
        after, _ = sample_groups(trained, verifier, problems, k=plan["task_k"], max_new_tokens=plan["task_tokens"], seed=seed)
    report["rl"] = {**rl_stats, "eval": group_metrics(after, plan["task_k"])}
    report["delta_pass@1"] = paired_delta([report["rl"]["eval"]["pass@1_per_problem"]], [report["base"][TASK]["pass@1_per_problem"]])
    gen_tok_s = gen["gen_tokens"] / gen["seconds"]
    report.update({"wall_seconds": time.perf_counter() - t_start, "peak_rss_mb": peak_rss_mb(), "gen_tok_per_s": gen_tok_s,
                   **throughput_mfu(report["params"], peak["peak_gflops"], gen_tok_per_s=gen_tok_s, train_tok_per_s=rl_stats["train_tok_per_s"])})
    write_json(out / "real.json", report)
    plot(report, out / "real.png")
    return report


def run_from_args(args) -> int:
    from ...progress import console

    res = run_bench(Path(args.out), quick=args.quick, threads=args.threads, seed=args.seed,
                    data_root=Path(args.data_root) if args.data_root else None, show_progress=not args.quiet)
    summary = {"gsm8k_pass@1": res["base"]["gsm8k"]["pass@1"], f"{TASK}_pass@1_base": res["base"][TASK]["pass@1"],
               f"{TASK}_pass@1_rl": res["rl"]["eval"]["pass@1"], "delta_pass@1": res["delta_pass@1"],
               "orm_within_problem_auroc": res["orm"].get("within_problem_auroc"), "wall_seconds": res["wall_seconds"]}
    console.print(json.dumps(summary, indent=2))
    console.print(f"wrote {Path(args.out) / 'real.json'} and {Path(args.out) / 'real.png'}")
    return 0
