"""Scale-out on existing engines: Ray actors (or child processes) for rollout/scoring fan-out, torch.distributed data-parallel
training, and the FLOPs/MFU accounting the benchmarks report. Ray is imported only when a fleet starts."""
from .ddp import (ShardedGeneration, allreduce_gradients, allreduce_stats, broadcast_parameters, data_parallel_step, generate_sharded,
                  init_distributed, rank_world, rl_loss_of_rows, sft_loss_of_rows, shard_rows)
from ..eval.flops import attention_flops, matmul_peak_gflops, mfu, model_flops, throughput_mfu
from .fleet import Fleet, RolloutWorker, WorkerLost, split_evenly
from .ray_rollout import RayRollouts

__all__ = [
    "Fleet", "RayRollouts", "RolloutWorker", "WorkerLost", "ShardedGeneration", "allreduce_gradients", "allreduce_stats", "attention_flops", "broadcast_parameters",
    "data_parallel_step", "generate_sharded", "init_distributed", "matmul_peak_gflops", "mfu", "model_flops", "rank_world",
    "rl_loss_of_rows", "sft_loss_of_rows", "shard_rows", "split_evenly", "throughput_mfu",
]
