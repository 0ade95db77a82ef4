"""A self-check of data-parallel training, runnable under torchrun:

    torchrun --nproc_per_node 2 -m rewardflow.dist.ddp_check --out /tmp/ddp.pt
    python -m rewardflow.dist.ddp_check --out /tmp/single.pt          # the same global batch on 1 process

Each run builds the same tiny seeded model and the same global batch (8 sequences, prompts and
completions of different lengths), takes one RL step (clipped policy loss, GRPO-style advantages,
token-mean over the global batch) and one SFT step, and rank 0 saves the losses and the updated weights.
Before that, the ranks sample 5 prompts × 2 between them (generate_sharded). The two files must agree
(tests/test_dist_ddp.py compares them).
"""
from __future__ import annotations

import argparse
import os

import torch


def build(seed: int = 0):
    from ..policy.hf import HFPolicy
    from ..policy.tiny import TinyModelConfig, build_tokenizer, build_tiny_model

    tok = build_tokenizer(None)
    model = build_tiny_model(tok, TinyModelConfig(hidden_size=32, layers=2, heads=2, intermediate_size=64, max_positions=64, seed=seed))
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
    from ..algos import POLICY_LOSSES
    from ..policy.base import SamplingParams
    from .ddp import broadcast_parameters, data_parallel_step, generate_sharded, rl_loss_of_rows, sft_loss_of_rows

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
    return {"sampled": sampled, "rl_loss": rl_stats["loss"], "rl_grad_norm": rl_stats["grad_norm"], "sft_loss": sft_stats["loss"],
            "sft_grad_norm": sft_stats["grad_norm"], "state": {k: v.detach().clone() for k, v in policy.model.state_dict().items()}}


def main(argv: list[str] | None = None) -> int:
    from .ddp import init_distributed, rank_world

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="where rank 0 saves {losses, grad norms, state_dict} (torch.save)")
    ap.add_argument("--micro-batch-size", type=int, default=2, help="rows per forward/backward on each rank (default 2)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    init_distributed("cpu")
    result = run(args.micro_batch_size)
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
