"""rewardflow against TRL's GRPOTrainer on the same GRPO work, side by side. Writes DIR/vs_trl.json.

    python -m rewardflow.recipes.bench.vs_trl --out runs/bench_trl                 # or: rewardflow bench trl --out runs/bench_trl
    python -m rewardflow.recipes.bench.vs_trl --out runs/bench_trl --sizes 1m --reps 3 --steps 10
    rewardflow bench trl --out runs/bench_trl_smol --model smollm2-135m-instruct --lora-rank 8 --reps 1 --steps 3

--model NAME|PATH benchmarks a real checkpoint instead of the tiny models (as it is, no warm-start); --lora-rank r
puts LoRA adapters (alpha 2r, q/k/v/o projections) on both frameworks (rewardflow through policy/lora.py, TRL through
its peft_config), 0 trains every weight in both.

Same for both: the tiny Llama model (policy/tiny.py) warm-started by a short SFT on worked solutions (built
once per size and cached in DIR/init_<size>), the task (reasoning-gym chain_sum, 3 one-digit terms), the
prompts of every step (training problems (s-1)·B .. s·B-1, chat template applied), group size G, completion
budget, temperature 1, learning rate (constant, AdamW betas .9/.99, no weight decay), clip ε .2, no KL,
GRPO group-normalised advantages, token-mean loss over the whole batch (TRL `loss_type="dapo"`), one
optimiser step per generation batch, gradient clipping at 1. The reward is our verifier in both.

Each repetition of each framework runs in its own process (peak RSS is per process), alternating
rewardflow/TRL so drift on a shared machine hits both alike. The first step of every run is warm-up and
left out of the step-time statistics (it is in the reward curve). MFU: 2·P per generated token, 6·P per
trained completion token (prompt tokens and attention FLOPs not counted; rewardflow skips zero-advantage
rows, so it trains fewer tokens for the same update), against the measured fp32 matmul peak at the same
thread count. One extra, untimed rewardflow step runs under the torch profiler; its top ops go in the JSON.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from .common import machine_note, measure_peak, peak_rss_mb, profile_summary, step_stats, throughput_mfu, write_json

SIZES = {  # name: (hidden, layers, heads, intermediate, prompts per step B, sft steps, sft lr)
    "1m": (128, 4, 4, 512, 16, 300, 3e-3),
    "20m": (512, 6, 8, 1408, 4, 30, 1e-3),
}
TASK_KWARGS = {"min_terms": 3, "max_terms": 3, "min_digits": 1, "max_digits": 1}


def _lora(a):
    """The adapters both frameworks get: rank r, alpha 2r, on the attention projections."""
    from ...config import LoRAConfig

    return LoRAConfig(rank=a.lora_rank, alpha=2.0 * a.lora_rank, targets=["q_proj", "k_proj", "v_proj", "o_proj"])


def _source(seed: int):
    from ...data import GymSource

    return GymSource("chain_sum", seed=seed, eval_size=50, **TASK_KWARGS)


def prepare_model(out: Path, size: str, seed: int) -> Path:
    """Tiny model of SIZES[size], warm-started by the one warm-start recipe (recipes/warmstart.py); cached in out/init_<size>."""
    from ..config_loader import load_config
    from ..warmstart import warm_start

    hidden, layers, heads, inter, _, sft_steps, sft_lr = SIZES[size]
    cfg = load_config(None, [f"model.hidden_size={hidden}", f"model.layers={layers}", f"model.heads={heads}", f"model.intermediate_size={inter}",
                             "model.max_positions=256", f"sft.steps={sft_steps}", f"sft.lr={sft_lr}", "sft.warmup_steps=10", f"trainer.seed={seed}",
                             "data.eval_size=50"])
    t0 = time.perf_counter()
    path = warm_start(cfg, out / f"init_{size}")
    print(f"[prepare {size}] SFT {sft_steps} steps in {time.perf_counter() - t0:.0f}s", flush=True)
    return path


# ----------------------------------------------------------------------------- workers (one process per run)


def run_rewardflow(a) -> dict:
    from ...config import Config
    from ...policy.hf import HFPolicy
    from ...rewards.verifier import VerifierScorer
    from ...optim import make_optimizer
    from ...train.rl import collect_rollout, optimise, step_seed

    policy = HFPolicy.from_pretrained(a.model)
    if a.lora_rank:
        from ...policy.lora import apply_lora

        apply_lora(policy, _lora(a), seed=a.seed)
    cfg = Config()
    cfg.rollout.prompts_per_step, cfg.rollout.group_size, cfg.rollout.max_new_tokens = a.prompts, a.group, a.max_new_tokens
    cfg.trainer.lr, cfg.trainer.micro_batch_size, cfg.trainer.max_grad_norm = a.lr, a.prompts * a.group, 1.0
    source, scorer = _source(a.seed), VerifierScorer()
    opt, sched = make_optimizer(policy.model, a.lr, 0.0, 0, a.steps, "constant")
    policy.model.train()
    steps = []

    def one_step(step: int) -> dict:
        t0 = time.perf_counter()
        problems = source.train_problems(range((step - 1) * a.prompts, step * a.prompts))
        rollout, gen_s = collect_rollout(policy, scorer, problems, cfg, step_seed(a.seed, step))
        t1 = time.perf_counter()
        stats = optimise(policy, None, rollout, cfg, opt, sched)
        t2 = time.perf_counter()
        return {"step": step, "seconds": t2 - t0, "gen_seconds": gen_s, "train_seconds": t2 - t1,
                "gen_tokens": sum(len(c.token_ids) for c in rollout.completions), "train_tokens": stats["train/tokens"],
                "reward": rollout.rewards.mean().item()}

    for step in range(1, a.steps + 1):
        steps.append(one_step(step))
        print(json.dumps(steps[-1]), flush=True)
    profile = None
    if a.profile:  # one extra, untimed step under the profiler
        from torch.profiler import ProfilerActivity, profile as torch_profile

        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            extra = one_step(a.steps + 1)
        profile = {"step_seconds": extra["seconds"], "gen_share": extra["gen_seconds"] / extra["seconds"], "top_ops": profile_summary(prof)}
    scorer.verifier.close()
    return {"steps": steps, "params": policy.num_params, "profile": profile}


def _timed_generate(generate, eos_id: int, log: dict):
    """TRL calls the (unwrapped, same) model's generate once per generation batch: time it, count its tokens."""
    def timed(*args, **kw):
        t0 = time.perf_counter()
        out = generate(*args, **kw)
        log["gen_seconds"].append(time.perf_counter() - t0)
        gen = out[:, kw["input_ids"].shape[1]:]  # [N, T]
        is_eos = gen == eos_id
        lengths = torch.where(is_eos.any(1), is_eos.float().argmax(1) + 1, torch.full_like(gen[:, 0], gen.shape[1]))
        log["gen_tokens"].append(int(lengths.sum()))
        return out
    return timed


def _grpo_config(a, output_dir: str):
    """TRL's GRPOTrainer settings for the same work rewardflow does (token-mean clipped loss, no KL, constant lr)."""
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=output_dir, per_device_train_batch_size=a.prompts * a.group, gradient_accumulation_steps=1, num_generations=a.group,
        max_completion_length=a.max_new_tokens, learning_rate=a.lr, lr_scheduler_type="constant", warmup_steps=0,
        adam_beta1=0.9, adam_beta2=0.99, weight_decay=0.0, max_grad_norm=1.0, beta=0.0, epsilon=0.2, loss_type="dapo",
        scale_rewards="group", temperature=1.0, top_p=1.0, top_k=0, num_iterations=1, max_steps=a.steps, logging_steps=1,
        report_to="none", save_strategy="no", use_cpu=True, shuffle_dataset=False, seed=a.seed, disable_dropout=True,
        dataloader_num_workers=0, bf16=False, disable_tqdm=True,
    )


def run_trl(a) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOTrainer

    from ...policy.hf import HFPolicy
    from ...rewards.verifier import VerifierScorer

    tokenizer = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    render = HFPolicy(model, tokenizer).render  # the same chat-templated prompt text as rewardflow feeds its sampler
    problems = _source(a.seed).train_problems(range(a.steps * a.prompts))
    dataset = Dataset.from_list([{"prompt": render(p.prompt), "pidx": i} for i, p in enumerate(problems)])
    scorer = VerifierScorer()
    log = {"gen_seconds": [], "gen_tokens": [], "reward": [], "train_tokens": []}

    def reward(prompts, completions, pidx, **kw):
        verdicts = scorer.score_texts([problems[i] for i in pidx], completions)
        return [float(v.correct) for v in verdicts]

    model.generate = _timed_generate(model.generate, tokenizer.eos_token_id, log)
    times = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter() - self.t0)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "reward" in logs:
                log["reward"].append(logs["reward"])
                log["train_tokens"].append(logs.get("completions/mean_length", 0.0) * a.prompts * a.group)

    peft_config = None
    if a.lora_rank:
        from peft import LoraConfig

        lc = _lora(a)
        peft_config = LoraConfig(r=lc.rank, lora_alpha=lc.alpha, target_modules=list(lc.targets), lora_dropout=0.0, task_type="CAUSAL_LM")
    with tempfile.TemporaryDirectory() as tmp:
        trainer = GRPOTrainer(model=model, reward_funcs=reward, args=_grpo_config(a, tmp), train_dataset=dataset, processing_class=tokenizer,
                              callbacks=[StepTimer()], peft_config=peft_config)
        trainer.train()
    scorer.verifier.close()
    steps = [{"step": i + 1, "seconds": times[i], "gen_seconds": log["gen_seconds"][i], "train_seconds": times[i] - log["gen_seconds"][i],
              "gen_tokens": log["gen_tokens"][i], "train_tokens": log["train_tokens"][i], "reward": log["reward"][i]} for i in range(len(times))]
    for s in steps:
        print(json.dumps(s), flush=True)
    return {"steps": steps, "params": sum(p.numel() for p in model.parameters()), "profile": None}


# ----------------------------------------------------------------------------- driver


def _real_model(name: str) -> Path:
    """A real checkpoint's transformers directory (policy/resolve.py: names, .gguf files, directories)."""
    from ...policy.resolve import resolve_model

    return Path(resolve_model(name))


def summarise(runs: list[dict], samples_per_step: int, params: int, peak: float) -> dict:
    timed = [s for r in runs for s in r["steps"][1:]]  # step 1 of each run is warm-up
    sec = [s["seconds"] for s in timed]
    gen_tok_s = sum(s["gen_tokens"] for s in timed) / sum(s["gen_seconds"] for s in timed)
    train_tok_s = sum(s["train_tokens"] for s in timed) / sum(s["train_seconds"] for s in timed)
    curves = [[s["reward"] for s in r["steps"]] for r in runs]
    out = {
        "seconds_per_step": step_stats(sec),
        "samples_per_s": samples_per_step / statistics.median(sec),
        "gen_tok_per_s": gen_tok_s,
        "train_tok_per_s": train_tok_s,
        "gen_share_of_step": sum(s["gen_seconds"] for s in timed) / sum(sec),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "reward_curve_mean": [statistics.mean(c[i] for c in curves) for i in range(len(curves[0]))],
        "reward_curves": curves,
        "reward_mean_all_steps": statistics.mean(x for c in curves for x in c),
    }
    out.update(throughput_mfu(params, peak, gen_tok_per_s=gen_tok_s, train_tok_per_s=train_tok_s))
    return out


def _alternating_runs(a, out: Path, size: str, model: Path, B: int, steps: int) -> dict[str, list[dict]]:
    """a.reps runs per framework, alternating which goes first, each in its own process (python -m this module)."""
    runs = {"rewardflow": [], "trl": []}
    for rep in range(a.reps):
        for fw in (["rewardflow", "trl"] if rep % 2 == 0 else ["trl", "rewardflow"]):
            res_path = out / f"run_{size}_{fw}_{rep}.json"
            cmd = [sys.executable, "-m", __spec__.name, "--worker", fw, "--model", str(model), "--result", str(res_path), "--steps", str(steps),
                   "--prompts", str(B), "--group", str(a.group), "--max-new-tokens", str(a.max_new_tokens), "--lr", str(a.lr),
                   "--threads", str(a.threads), "--seed", str(a.seed), "--lora-rank", str(a.lora_rank)]
            cmd += ["--profile"] if fw == "rewardflow" and rep == 0 else []
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"{fw} run failed:\n{proc.stderr[-4000:]}")
            runs[fw].append(json.loads(res_path.read_text()))
            r = runs[fw][-1]
            print(f"[{size} rep {rep}] {fw}: {len(r['steps'])} steps, median {statistics.median(s['seconds'] for s in r['steps'][1:]):.2f} s/step, "
                  f"reward {statistics.mean(s['reward'] for s in r['steps']):.3f}, wall {time.perf_counter() - t0:.0f}s", flush=True)
    return runs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench_trl", help="output folder: vs_trl.json, cached warm-started models (default runs/bench_trl)")
    ap.add_argument("--sizes", default="1m,20m", help="model sizes, comma-separated: 1m (1.07M params), 20m (19.5M) (default both)")
    ap.add_argument("--reps", type=int, default=3, help="runs per framework and size, alternating (default 3)")
    ap.add_argument("--steps", type=int, default=0, help="GRPO steps per run (default 8 for 1m, 4 for 20m)")
    ap.add_argument("--group", type=int, default=8, help="G, samples per prompt (default 8)")
    ap.add_argument("--prompts", type=int, default=0, help="B, prompts per step (default 16 for 1m, 4 for 20m)")
    ap.add_argument("--max-new-tokens", type=int, default=48, help="completion budget (default 48)")
    ap.add_argument("--lr", type=float, default=3e-5, help="learning rate, both frameworks (default 3e-5, the quickstart's)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run and for the peak (default 1: the machine is shared)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker", choices=["rewardflow", "trl"], help=argparse.SUPPRESS)
    ap.add_argument("--model", default=None, help="a real model (name, .gguf or directory), e.g. smollm2-135m-instruct, instead of --sizes")
    ap.add_argument("--lora-rank", type=int, default=0, help="LoRA rank on both frameworks (0: full fine-tuning on both; default 0)")
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.worker:  # one run in this process
        result = (run_rewardflow if a.worker == "rewardflow" else run_trl)(a)
        result["peak_rss_mb"] = peak_rss_mb()
        write_json(a.result, result)
        return 0

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    peak = measure_peak(a.threads)
    report = {"machine": machine_note(), "peak": peak, "task": {"name": "chain_sum", **TASK_KWARGS}, "sizes": {}}
    print(f"fp32 matmul peak at {a.threads} thread(s): {peak['peak_gflops']:.1f} GFLOP/s", flush=True)
    for size in [a.model] if a.model else a.sizes.split(","):
        model = _real_model(a.model) if a.model else prepare_model(out, size, a.seed)
        B = a.prompts or (SIZES[size][4] if size in SIZES else 4)
        steps = a.steps or (8 if size == "1m" else 4)
        runs = _alternating_runs(a, out, size, model, B, steps)
        params = runs["rewardflow"][0]["params"]
        entry = {"params": params, "prompts_per_step": B, "group_size": a.group, "samples_per_step": B * a.group, "steps": steps,
                 "reps": a.reps, "max_new_tokens": a.max_new_tokens, "lr": a.lr, "lora_rank": a.lora_rank,
                 **{fw: summarise(rs, B * a.group, params, peak["peak_gflops"]) for fw, rs in runs.items()},
                 "rewardflow_profile": runs["rewardflow"][0]["profile"]}
        entry["speedup_samples_per_s"] = entry["rewardflow"]["samples_per_s"] / entry["trl"]["samples_per_s"]
        report["sizes"][size] = entry
        write_json(out / "vs_trl.json", report)
        print(f"[{size}] rewardflow {entry['rewardflow']['samples_per_s']:.1f} samples/s vs TRL {entry['trl']['samples_per_s']:.1f}: "
              f"{entry['speedup_samples_per_s']:.2f}x", flush=True)
    write_json(out / "vs_trl.json", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
