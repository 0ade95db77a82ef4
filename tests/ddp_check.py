"""A self-check of data-parallel training, runnable under torchrun:

    torchrun --nproc_per_node 2 tests/ddp_check.py --out /tmp/ddp.pt
    python tests/ddp_check.py --out /tmp/single.pt          # the same global batch on 1 process

Each run builds the same tiny seeded model and the same global batch (8 sequences, prompts and
completions of different lengths), takes one RL step (clipped policy loss, GRPO-style advantages,
token-mean over the global batch) and one SFT step, and rank 0 saves the losses and the updated weights.
Before that, the ranks sample 5 prompts × 2 between them (generate_sharded). The two files must agree
(tests/test_dist_ddp.py compares them).

With `--loop RUN_DIR` it runs the real RL loop instead (`train.rl.train_rl`, LOOP_OVERRIDES: 2 steps of GRPO
with a KL term, 2 epochs) and saves rank 0's logged metrics and final weights;
tests/test_dist_ray.py runs the same loop with Ray rollout workers.
"""
from __future__ import annotations

import argparse
import os

import torch


def build(seed: int = 0, max_positions: int = 64):
    from rewardflow.policy.hf import HFPolicy
    from rewardflow.policy.tiny import TinyModelConfig, build_tokenizer, build_tiny_model

    tok = build_tokenizer(None)
    cfg = TinyModelConfig(hidden_size=32, layers=2, heads=2, intermediate_size=64, max_positions=max_positions, seed=seed)
    model = build_tiny_model(tok, cfg)
    return HFPolicy(model, tok)


def global_batch(policy, n: int = 8, seed: int = 0):
    """A fixed global batch: prompt/completion ids, old logprobs near the current ones, advantages."""
    gen = torch.Generator().manual_seed(seed)
    prompts = [f"What is {i} + {i * 3}?" + "!" * i for i in range(n)]
    prompt_ids = policy.encode_prompts(prompts)
    completions = [torch.randint(5, len(policy.tokenizer), (3 + i % 4,), generator=gen).tolist() for i in range(n)]
    batch = policy.token_batch(prompt_ids, completions)
    with torch.no_grad():
        logp = policy.logprobs(batch).logprobs  # [N, T]
    old_logp = logp + 0.3 * torch.randn(logp.shape, generator=gen)  # ratios away from 1: some clip
    adv = torch.randn(n, generator=gen)  # [N]
    return batch, old_logp, adv


def run(micro_batch_size: int = 2, seed: int = 0) -> dict:
    """One RL step then one SFT step on this rank's shard; returns losses and the final weights (rank 0's)."""
    from rewardflow.algos import POLICY_LOSSES
    from rewardflow.policy.base import SamplingParams
    from rewardflow.distributed.ddp import broadcast_parameters, data_parallel_step, generate_sharded, rl_loss_of_rows, sft_loss_of_rows

    policy = build(seed)
    broadcast_parameters(policy.model)
    policy.model.eval()
    prompts = [f"{i} + {i} = ?" + "?" * (i % 3) for i in range(5)]  # 5 prompts over 2 ranks: shards of 2 and 3
    groups = generate_sharded(policy, prompts, SamplingParams(n=2, max_new_tokens=6, seed=3))
    sampled = [[c.token_ids for c in g] for g in groups]
    policy.model.train()
    opt = torch.optim.AdamW(policy.model.parameters(), lr=1e-2, betas=(0.9, 0.99))
    batch, old_logp, adv = global_batch(policy, seed=seed)
    mask = batch.completion_mask
    rl = rl_loss_of_rows(policy, batch, old_logp, adv, loss_fn=POLICY_LOSSES["clip"], normalizer=mask.sum().item())
    rl_stats = data_parallel_step(policy.model, opt, None, rl, len(adv), micro_batch_size=micro_batch_size, max_grad_norm=1.0)
    sft_stats = data_parallel_step(policy.model, opt, None, sft_loss_of_rows(policy, batch), len(adv), micro_batch_size=micro_batch_size, max_grad_norm=1.0)
    return {"sampled": sampled, "rl_loss": rl_stats["loss"], "rl_grad_norm": rl_stats["train/grad_norm"], "sft_loss": sft_stats["loss"],
            "sft_grad_norm": sft_stats["train/grad_norm"], "state": {k: v.detach().clone() for k, v in policy.model.state_dict().items()}}


# Small enough for a 2-core CI machine: 16 rows (every one trains: KL in the loss), a reference model, 2 optimiser
# steps per batch, and a large lr so the weights move. Micro-batches of 4 tile both one process's 16 rows and
# each of 2 ranks' 8 rows the same way, so even micro-batch-weighted statistics (clip_frac) are comparable.
LOOP_OVERRIDES = ["rollout.prompts_per_step=4", "rollout.group_size=4", "rollout.max_new_tokens=8", "trainer.micro_batch_size=4",
                  "trainer.steps=2", "trainer.save_every=0", "trainer.eval_every=0", "trainer.lr=1e-2", "trainer.warmup_steps=0",
                  "algo.kl_coef=0.05", "algo.epochs=2"]


class DigitScorer:
    """Correct when the completion contains a digit: a random tiny model is rarely right on the task, and this
    gives groups with mixed verdicts, hence non-zero advantages, without training first."""

    def score_texts(self, problems: list, texts: list[str]):
        from rewardflow.verify.verifier import VerifyResult

        return [VerifyResult(any(ch.isdigit() for ch in t), None, "ok") for t in texts]


def run_loop(run_dir, overrides: list[str] | None = None, seed: int = 1) -> dict:
    """`train_rl` with LOOP_OVERRIDES (+ `overrides`) on a tiny seeded model; returns rank 0's logged metrics and
    the final weights (other ranks return their weights and no metrics)."""
    from pathlib import Path

    from rewardflow.recipes.config_loader import load_config
    from rewardflow.data import GymSource
    from rewardflow.train.metrics import MetricsLog
    from rewardflow.train.rl import train_rl
    from rewardflow.distributed.ddp import rank_world

    cfg = load_config(overrides=LOOP_OVERRIDES + list(overrides or []))
    policy, ref = build(seed, max_positions=128), build(seed, max_positions=128)
    source = GymSource("chain_sum", seed=0, eval_size=8, min_terms=2, max_terms=2, min_digits=1, max_digits=2)
    log = MetricsLog(Path(run_dir) / "metrics.jsonl") if rank_world()[0] == 0 else None
    train_rl(cfg, policy, ref, source, DigitScorer(), Path(run_dir), log=log)
    return {"metrics": log.read() if log else None, "state": {k: v.detach().clone() for k, v in policy.model.state_dict().items()}}


def loop_differences(a: dict, b: dict) -> tuple[dict, float]:
    """Two `run_loop` results: the largest |difference| of each logged metric over the steps (timings and
    throughputs left out) and the largest weight difference."""
    diffs: dict = {}
    for row_a, row_b in zip(a["metrics"], b["metrics"], strict=True):
        for k, v in row_a.items():
            if isinstance(v, (int, float)) and not k.startswith(("perf/", "time/")):
                diffs[k] = max(diffs.get(k, 0.0), abs(v - row_b[k]))
    weights = max((a["state"][k] - b["state"][k]).abs().max().item() for k in a["state"])
    return diffs, weights


def main(argv: list[str] | None = None) -> int:
    from rewardflow.distributed.ddp import init_distributed, rank_world

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="where rank 0 saves {losses, grad norms, state_dict} (torch.save)")
    ap.add_argument("--micro-batch-size", type=int, default=2, help="rows per forward/backward on each rank (default 2)")
    ap.add_argument("--loop", metavar="RUN_DIR", default=None, help="run the RL loop (train_rl, LOOP_OVERRIDES) in RUN_DIR instead")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    init_distributed("cpu")
    result = run_loop(args.loop) if args.loop else run(args.micro_batch_size)
    result["world"] = rank_world()[1]
    if rank_world()[0] == 0:
        tmp = args.out + ".tmp"
        torch.save(result, tmp)
        os.replace(tmp, args.out)
    if rank_world()[1] > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
