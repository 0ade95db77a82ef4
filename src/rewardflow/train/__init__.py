"""Loops that wire the rooms together: SFT and online RL; checkpoints, metrics, optimizer."""
from .checkpoint import latest_checkpoint, load_trainer_state, save_checkpoint
from .metrics import MetricsLog
from .rl import collect_rollout, optimise, train_rl
from .sft import run_sft, sft_loss

__all__ = ["MetricsLog", "collect_rollout", "latest_checkpoint", "load_trainer_state", "optimise", "run_sft", "save_checkpoint", "sft_loss", "train_rl"]
