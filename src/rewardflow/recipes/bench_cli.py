"""`rewardflow bench trl | sampler | mfu`: the speed benchmarks (their code: recipes/bench/)."""
from __future__ import annotations

import argparse


def lazy_bench(name: str):
    """The handler of `rewardflow bench NAME`: imports recipes/bench/NAME.py only when the verb runs (keeps
    `--help` fast) and hands it the parsed arguments."""
    def run(args) -> int:
        from importlib import import_module

        return import_module(f".bench.{name}", __package__).run_from_args(args)
    return run


def _run_script(name: str, argv: list[str]) -> int:
    """The speed benchmarks keep their own argument parsers (they also run as `python -m`); hand them the arguments."""
    from importlib import import_module

    return import_module(f".bench.{name}", __package__).main(argv)


def _trl(args) -> int:
    argv = ["--out", args.out, "--sizes", args.sizes, "--reps", str(args.reps), "--steps", str(args.steps), "--threads", str(args.threads),
            "--lora-rank", str(args.lora_rank)] + (["--model", args.model] if args.model else [])
    return _run_script("vs_trl", argv)


def _sampler(args) -> int:
    argv = ["--out", args.out, "--batches", args.batches, "--reps", str(args.reps), "--max-new-tokens", str(args.max_new_tokens),
            "--peak-sizes", args.peak_sizes, "--model", args.model, "--dtype", args.dtype, "--modes", args.modes,
            "--contestants", args.contestants, "--profile" if args.profile else "--no-profile",
            "--decode-step" if args.decode_step else "--no-decode-step"] + (["--prompts", args.prompts] if args.prompts else [])
    return _run_script("sampler", argv)


def _mfu(args) -> int:
    import json

    import torch

    from ..eval.flops import matmul_peak_gflops, memory_bandwidth_gbs

    torch.set_num_threads(args.threads or torch.get_num_threads())
    out = matmul_peak_gflops(reps=args.reps)
    out["memory_bandwidth"] = memory_bandwidth_gbs(reps=args.reps)  # the decode limit at small batch (GB/s)
    print(json.dumps(out, indent=2))
    return 0


def register_bench(bench_sub: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = bench_sub.add_parser("trl", formatter_class=fmt, help="rewardflow vs TRL's GRPOTrainer on the same GRPO work -> DIR/vs_trl.json",
                             description="Run the same GRPO work (tiny model, chain_sum with 3 one-digit terms, same prompts, group size,\n"
                             "completion length, lr, token-mean clipped loss) with rewardflow and with TRL's GRPOTrainer, alternating,\n"
                             "each repetition in its own process. Writes seconds/step (median/min/max), samples/s, generation and\n"
                             "training tokens/s, MFU, peak RSS, reward curves and a profile of one rewardflow step.\n"
                             "Needs the bench extra: pip install -e '.[bench]'.\n\n"
                             "example: rewardflow bench trl --out runs/bench_trl --sizes 1m --reps 3")
    p.add_argument("--out", default="runs/bench_trl", help="output folder (default runs/bench_trl)")
    p.add_argument("--sizes", default="1m,20m", help="1m (1.07M params), 20m (19.5M), comma-separated (default 1m,20m)")
    p.add_argument("--reps", type=int, default=3, help="runs per framework and size (default 3)")
    p.add_argument("--steps", type=int, default=0, help="GRPO steps per run (default: 8 at 1m, 4 at 20m)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    p.add_argument("--model", default=None, help="a real model instead of --sizes, e.g. smollm2-135m-instruct (used as it is, no warm-start)")
    p.add_argument("--lora-rank", type=int, default=0, help="LoRA adapters of this rank on both frameworks (default 0: full fine-tuning on both)")
    p.set_defaults(func=_trl)
    _register_speed(bench_sub, fmt)


def _register_speed(bench_sub: argparse._SubParsersAction, fmt) -> None:
    """bench sampler, mfu and async: the decode path, this machine's limits, and overlapped RL."""
    s = bench_sub.add_parser("sampler", formatter_class=fmt, help="our sampler vs transformers' model.generate -> JSON",
                             description="Tokens/s of HFPolicy.generate against model.generate on the same model, dtype and batch, greedy\n"
                             "and sampled, with MFU against the measured fp32 peak, the memory-bandwidth bound\n"
                             "batch * read GB/s / (weight bytes + batch * context * KV bytes per token), and a profile of our sampler.\n\n"
                             "example: rewardflow bench sampler --out runs/bench_sampler.json --batches 1,16,64,256\n"
                             "example: rewardflow bench sampler --model smollm2-135m-instruct --dtype float32,bfloat16 --batches 1,8,32 \\\n"
                             "           --modes greedy --contestants ours,hf_generate --max-new-tokens 32 --reps 2\n"
                             "example: rewardflow bench sampler --model smollm2-135m-instruct --prompts ../shared/data/gsm8k/test.jsonl --batches 32")
    s.add_argument("--out", default="runs/bench_sampler.json", help="result JSON (default runs/bench_sampler.json)")
    s.add_argument("--batches", default="1,16,64,256", help="batch sizes (default 1,16,64,256)")
    s.add_argument("--reps", type=int, default=3, help="alternating repetitions, best kept (default 3)")
    s.add_argument("--max-new-tokens", type=int, default=48, help="tokens per sample (default 48)")
    s.add_argument("--peak-sizes", default="256,512,1024,2048", help="matmul sizes of the fp32 peak sweep (default 256,512,1024,2048)")
    s.add_argument("--model", default="tiny", help='"tiny" (1.07M random model, default) or a model name, directory or .gguf')
    s.add_argument("--dtype", default="float32", help="weight dtypes, comma-separated: float32, bfloat16 (default float32)")
    s.add_argument("--modes", default="greedy,sampled", help="greedy, sampled (temperature 1), comma-separated (default both)")
    s.add_argument("--contestants", default="ours,ours_compiled,ours_hf_forward,hf_generate",
                   help="subset of ours,ours_compiled (the decode step through torch.compile),ours_hf_forward,hf_generate")
    s.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True, help="profile ours at the largest batch (default on)")
    s.add_argument("--prompts", help="a problem file (as `train --data`): its first prompts instead of the synthetic ones (17-96 tokens)")
    s.add_argument("--decode-step", action=argparse.BooleanOptionalAction, default=True,
                   help="time one decode step alone, eager and compiled, at each batch (default on)")
    s.set_defaults(func=_sampler)

    m = bench_sub.add_parser("mfu", formatter_class=fmt, help="this machine's fp32 matmul peak (GFLOP/s) and memory bandwidth (GB/s): the two limits",
                             description="Square fp32 matmuls of sizes 256..2048, best of --reps timings each, and the memory bandwidth\n"
                             "(a sum over a 256 MB buffer: read GB/s; and a copy: read+write GB/s); prints JSON.\n\n"
                             "example: rewardflow bench mfu --threads 1")
    m.add_argument("--reps", type=int, default=5, help="timings per size (default 5)")
    m.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's current setting)")
    m.set_defaults(func=_mfu)

    a = bench_sub.add_parser("async", formatter_class=fmt, help="asynchronous vs synchronous RL on the same work -> DIR/async.json",
                             description="From one SFT warm-start of the quickstart model, GRPO for --steps steps in three modes, interleaved\n"
                             "in one process: sync (1 torch thread), async (trainer.async=true, max_staleness 1, algo.tis_cap 2:\n"
                             "a generation thread and a training thread, 1 torch thread each), sync_2threads, and async_process\n"
                             "(the producer's generation and verification in a child process, 1 torch thread). Writes samples/s\n"
                             "per mode, the async/sync ratio per repetition, and held-out pass@1 after the same samples, compared\n"
                             "problem by problem with a 95% interval.\n\n"
                             "example: rewardflow bench async --out runs/bench_async --steps 20 --reps 2")
    a.add_argument("--out", default="runs/bench_async", help="output folder (default runs/bench_async)")
    a.add_argument("--steps", type=int, default=20, help="RL steps per run (default 20)")
    a.add_argument("--reps", type=int, default=2, help="repetitions of every mode, order alternating (default 2)")
    a.add_argument("--n", type=int, default=4, help="samples per held-out problem for pass@1 (default 4)")
    a.add_argument("--eval-size", type=int, default=200, help="held-out problems (default 200)")
    a.add_argument("--sft-steps", type=int, default=400, help="SFT warm-start steps (default 400, the quickstart's)")
    a.add_argument("--modes", default="sync,async,sync_2threads,async_process",
                   help="comma-separated subset of sync, async, sync_2threads, async_process (default: all)")
    a.add_argument("overrides", nargs="*", help="dotted config overrides for every mode, e.g. rollout.prompts_per_step=16")
    a.add_argument("--quiet", action="store_true", help="no progress bars")
    a.set_defaults(func=lazy_bench("async_bench"))
